"""The product catalogue the candidate generator needs, kept from the online store.

Popular-in-category candidates need every product's category and popularity, and Redis is a
key-value store: it can't be asked "the top products of category c". So the service lists the
product keys Feast wrote (a SCAN over the project's product entity keys, decoded with Feast's own
key encoding), reads their product views in chunks into the decoded-row cache, and builds
`training.candidates.Catalog` from them. A background task repeats this every `refresh_s`
(materialization rewrites products once a day); a failed round keeps the previous catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import pandas as pd
from feast.infra.key_encoding_utils import deserialize_entity_key, serialize_entity_key_prefix
from feast.type_map import feast_value_type_to_python_type

from serving.online import OnlineFeatures
from training.candidates import Catalog

log = logging.getLogger("serving.catalog")

CATEGORY = "category"
POPULARITY = "popularity"


@dataclass
class CatalogState:
    catalog: Catalog | None = None
    products: int = 0
    loaded_at: float | None = None
    error: str | None = None


class CatalogKeeper:
    """Lists the products online, keeps their views cached and the catalogue current."""

    def __init__(self, online: OnlineFeatures, services: list[str], join_key: str = "product_id",
                 refresh_s: float = 300.0) -> None:
        self.online = online
        self.services = services
        self.join_key = join_key
        self.refresh_s = refresh_s
        self.state = CatalogState()
        self._task: asyncio.Task | None = None

    async def product_ids(self) -> list[str]:
        """Every product id with a row in the online store (Feast's Redis key layout)."""
        store = self.online.provider.online_store
        config = self.online.store.config
        client = await store._get_client_async(config.online_store)
        version = config.entity_key_serialization_version
        prefix = serialize_entity_key_prefix([self.join_key], version)
        project = config.project.encode()
        pattern = _glob_escape(prefix) + b"*" + _glob_escape(project)
        ids = []
        async for key in client.scan_iter(match=pattern, count=2000):
            if not key.endswith(project):
                continue
            entity = deserialize_entity_key(key[: -len(project)], version)
            if list(entity.join_keys) == [self.join_key]:
                ids.append(str(feast_value_type_to_python_type(entity.entity_values[0])))
        return sorted(ids)

    async def refresh(self) -> CatalogState:
        """One round: list products, re-read their cached views, rebuild the catalogue."""
        start = time.perf_counter()
        ids = await self.online._guarded(self.product_ids())
        views = self.online.cached_views(self.services)
        await self.online.refresh_cached(views, [(p,) for p in ids])
        self.state = CatalogState(catalog=self._build(views), products=len(ids),
                                  loaded_at=time.time())
        log.info("catalogue: %d products in %.2fs", len(ids), time.perf_counter() - start)
        return self.state

    def _build(self, views) -> Catalog:
        values: dict[str, dict] = {}
        for vp in views:
            if any(f.name == CATEGORY for f in vp.view.features):
                for key, (_, row) in self.online.cached_rows(vp.view.name).items():
                    if row is not None:
                        values[key[0]] = row
        frame = pd.DataFrame(
            [(pid, row.get(CATEGORY), row.get(POPULARITY)) for pid, row in values.items()],
            columns=["product_id", CATEGORY, POPULARITY])
        return Catalog.from_frame(frame, popularity=POPULARITY, category=CATEGORY)

    async def run_forever(self) -> None:
        """Refresh every `refresh_s`; after a failure, retry sooner (the store may be back)."""
        while True:
            try:
                await self.refresh()
                delay = self.refresh_s
            except Exception as exc:  # keep serving the previous catalogue
                self.state.error = f"{type(exc).__name__}: {exc}"
                log.warning("catalogue refresh failed: %s", self.state.error)
                delay = min(5.0, self.refresh_s)
            await asyncio.sleep(delay)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _glob_escape(raw: bytes) -> bytes:
    """Escape Redis glob characters in a binary key prefix."""
    out = bytearray()
    for b in raw:
        if b in b"*?[]\\":
            out.append(ord("\\"))
        out.append(b)
    return bytes(out)
