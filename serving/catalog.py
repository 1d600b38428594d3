"""The product catalog the candidate generator needs, kept from the online store.

Popular-in-category candidates need every product's category and popularity, and Redis is a
key-value store: it can't be asked "the top products of category c". So the service lists the
product keys Feast wrote (a SCAN over the project's product entity keys, decoded with Feast's own
key encoding), reads their product views in chunks into the decoded-row cache, and builds
`training.candidates.Catalog` from them. A background task repeats this every `refresh_s`
(materialization rewrites products once a day); a failed round keeps the previous catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import pandas as pd

from featurestore.online import OnlineFeatures, entity_ids
from training.candidates import PRICE, Catalog

log = logging.getLogger("serving.catalog")

CATEGORY = "category"


@dataclass
class CatalogState:
    catalog: Catalog | None = None
    products: int = 0
    loaded_at: float | None = None
    error: str | None = None


class CatalogKeeper:
    """Lists the products online, keeps their views cached and the catalog current."""

    def __init__(
        self,
        online: OnlineFeatures,
        services: list[str],
        join_key: str = "product_id",
        refresh_s: float = 300.0,
        deadline_s: float = 30.0,
    ) -> None:
        self.online = online
        self.services = services
        self.join_key = join_key
        self.refresh_s = refresh_s
        self.deadline_s = deadline_s  # per Redis step of a refresh: background work, not a request
        self.state = CatalogState()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def product_ids(self) -> list[str]:
        return await entity_ids(self.online, self.join_key)

    async def refresh(self, deadline_s: float | None = None) -> CatalogState:
        """One round: list products, re-read their cached views, rebuild the catalog.

        Each Redis step is bounded by `deadline_s` (default: the background deadline)."""
        start = time.perf_counter()
        deadline_s = deadline_s or self.deadline_s
        ids = await self.online._guarded(self.product_ids(), deadline_s)
        views = self.online.cached_views(self.services)
        await self.online.refresh_cached(views, [(p,) for p in ids], deadline_s=deadline_s)
        self.state = CatalogState(catalog=self._build(), products=len(ids), loaded_at=time.time())
        log.info("catalog: %d products in %.2fs", len(ids), time.perf_counter() - start)
        return self.state

    async def ensure_loaded(self) -> Catalog:
        """The catalog; when none is loaded yet (Redis was down at start), load it now, once
        for all the requests waiting, rather than failing until the next background round."""
        if self.state.catalog is None:
            async with self._lock:
                if self.state.catalog is None:  # a request waits: its own deadline per step
                    await self.refresh(self.online.deadline_s)
        assert self.state.catalog is not None
        return self.state.catalog

    def catalog_columns(self) -> tuple[str, str, str, str | None]:
        """(view, category, popularity, price or None): the product view and the features the
        candidate service asks of it; the popularity measure is whichever the service names
        besides the category and the price (`product_price`, when served)."""
        for vp in self.online.plan(self.services[0]).views:
            if vp.join_keys == (self.join_key,) and CATEGORY in vp.features:
                price = PRICE if PRICE in vp.features else None
                others = [f for f in vp.features if f not in (CATEGORY, PRICE)]
                if len(others) == 1:
                    return vp.view.name, CATEGORY, others[0], price
        raise ValueError(
            f"{self.services[0]} names no product view with {CATEGORY!r} and one popularity feature"
        )

    def _build(self) -> Catalog:
        view, category, popularity, price = self.catalog_columns()
        rows = [
            (key[0], row.get(category), row.get(popularity), row.get(price) if price else None)
            for key, (_, row) in self.online.cached_rows(view).items()
            if row is not None
        ]
        frame = pd.DataFrame(rows, columns=["product_id", category, popularity, "_price"])
        return Catalog.from_frame(
            frame, popularity=popularity, category=category, price="_price" if price else None
        ).warm()

    async def run_forever(self) -> None:
        """Refresh every `refresh_s`; after a failure, retry sooner (the store may be back)."""
        delay = self.refresh_s if self.state.catalog is not None else 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.refresh()
                delay = self.refresh_s
            except Exception as exc:  # keep serving the previous catalog
                self.state.error = f"{type(exc).__name__}: {exc}"
                log.warning("catalog refresh failed: %s", self.state.error)
                delay = min(2.0, self.refresh_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
