"""Feast's side of the real-time views (`customer_session`, `product_realtime`).

Declared like every view (pipelines.realtime holds their features), with a `PushSource` as their
stream source and the parquet change points the batch side writes as its batch source, so
`get_online_features` and `get_historical_features` read them like any other view.

The stream worker writes their rows with `RowEncoder`: the same keys, fields and value bytes as
Feast's `push` / `write_to_online_store` (featurestore.redis_encoding; tests/featurestore compare
them byte for byte), packed column-wise, without the pandas-to-proto conversion per value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import redis
from feast import Entity, FeatureStore, FeatureView, PushSource, RepoConfig
from feast.data_source import PushMode
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.value_type import ValueType

from featurestore.materialize.writer import ViewLayout
from featurestore.redis_encoding import encode_segments, event_timestamps
from featurestore.schema import entity, feature_view, file_source
from pipelines.realtime import SOURCES
from pipelines.specs import ARROW_TYPES, ENTITIES, FeatureSource


def push_source_name(view: str) -> str:
    return f"{view}_push"


def push_source(source: FeatureSource, root=None) -> PushSource:
    """The push source of a real-time view; its batch source is the view's parquet change points.
    Creation timestamps are cleared, as for file sources (a re-apply stays a no-op)."""
    src = PushSource(
        name=push_source_name(source.name),
        batch_source=file_source(source, root),
        description=f"Stream pushes of {source.name} (shopfeast stream)",
        owner=source.owner,
        tags={**dict(source.tags), "layer": "source"},
    )
    src.created_timestamp = None
    src.last_updated_timestamp = None
    return src


def realtime_view(
    source: FeatureSource, entities: dict[str, Entity], push: PushSource
) -> FeatureView:
    """The view of a real-time source: like every view, with the push source as its source."""
    view = feature_view(source, entities, push)
    view.tags["grain"] = "event"
    return view


def realtime_views(root=None) -> dict[str, FeatureView]:
    """The views as feature_repo/ declares them (the worker needs no registry to write them)."""
    entities = {name: entity(name) for name in ENTITIES}
    return {
        name: realtime_view(source, entities, push_source(source, root))
        for name, source in SOURCES.items()
    }


def online_client(config: RepoConfig) -> redis.Redis:
    """A client on the online store's Redis, as Feast connects to it."""
    return RedisOnlineStore()._get_client(config.online_store)


def is_redis(config: RepoConfig) -> bool:
    """Whether the online store is Feast's Redis store (the worker's own write path)."""
    kind = str(getattr(config.online_store, "type", ""))
    return kind == "redis" or kind.endswith("RedisOnlineStore")


class FeastPush:
    """The stream worker's rows written with Feast's push API (`FeatureStore.push` to the view's
    push source, online only): any online store Feast supports, e.g. the embedded profile's
    SQLite (`make demo`). Needs the applied registry. Feast's write has no compare-and-set on the
    worker's buffer version (the Redis path's `_sv:<view>`), so two consumers updating one
    customer at once could leave the older row: run one consumer on such a store."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def write(self, view: str, rows: pd.DataFrame) -> None:
        """Rows as pipelines.realtime.compute returns them, stamped created now."""
        if rows.empty:
            return
        created = SOURCES[view].created_timestamp_column
        rows = rows.assign(**{created: pd.Timestamp.now(tz="UTC")})
        self.store.push(push_source_name(view), rows, to=PushMode.ONLINE)


@dataclass
class EncodedRow:
    key: bytes
    fields: list[bytes]  # field, value, field, value ... (the event timestamp first)


class RowEncoder:
    """Rows of a real-time view -> Feast's Redis hash fields for each entity."""

    def __init__(self, config: RepoConfig, view: FeatureView) -> None:
        self.source = SOURCES[view.name]
        # Built from the declaration: a view not yet applied has no inferred entity columns.
        self.layout = ViewLayout(
            project=config.project,
            view_name=_versioned_fv_name(view, config),
            join_keys=(self.source.join_key,),
            key_type=ValueType.STRING,
            features=tuple(f.name for f in view.features),
            value_types=tuple(f.dtype.to_value_type() for f in view.features),
        )
        self.fields = [self.layout.ts_field, *self.layout.fields()]
        self.key_ttl_seconds = int(getattr(config.online_store, "key_ttl_seconds", 0) or 0)

    @property
    def version_field(self) -> bytes:
        return f"_sv:{self.layout.view_name}".encode()

    def encode(self, rows: pd.DataFrame) -> list[EncodedRow]:
        """One entry per row (join key, `event_timestamp`, the declared features, as
        pipelines.realtime.compute returns them)."""
        if rows.empty:
            return []
        keys = self.layout.keys(pa.array(rows[self.source.join_key].astype(object).tolist()))
        ts, _ = event_timestamps(_timestamps(rows[self.source.timestamp_field]))
        columns = [ts.to_list()] + [
            encode_segments(_column(rows[f.name], f.dtype), vt).to_list()
            for f, vt in zip(self.source.features, self.layout.value_types, strict=True)
        ]
        out = []
        for i, key in enumerate(keys):
            pairs: list[bytes] = []
            for field, column in zip(self.fields, columns, strict=True):
                pairs += [field, column[i]]
            out.append(EncodedRow(key, pairs))
        return out


def _timestamps(s: pd.Series) -> pa.Array:
    return pa.array(s.astype("datetime64[us, UTC]"), pa.timestamp("us", tz="UTC"))


def _column(s: pd.Series, dtype: str) -> pa.Array:
    if dtype == "unix_timestamp":
        return _timestamps(s)
    if dtype == "string_list":
        return pa.array(s.tolist(), pa.list_(pa.string()))
    values = [None if v is pd.NA else v for v in s.astype(object).tolist()]
    return pa.array(values, ARROW_TYPES[dtype])


def layouts(config: RepoConfig, views: Iterable[FeatureView]) -> dict[str, RowEncoder]:
    return {v.name: RowEncoder(config, v) for v in views}
