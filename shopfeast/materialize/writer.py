"""Pipelined writes of one feature view's rows into Feast's Redis layout.

Same keys, fields and bytes as `RedisOnlineStore.online_write_batch` (shopfeast/redis_encoding.py),
same rule for older rows (a row is skipped when the stored event time is newer or equal, unless
the store is configured with `skip_dedup`), same key expiry. The difference is cost: values are
encoded column-wise and commands go out in pipelines of `pipeline_commands`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis import Redis

from shopfeast.redis_encoding import (
    encode_values,
    entity_keys,
    event_timestamps,
    feature_field,
    timestamp_field,
)


@dataclass
class ViewLayout:
    """Where one view's values go: join key, Redis hash fields, value types."""

    project: str
    view_name: str
    join_key: str
    key_type: ValueType
    features: tuple[str, ...]
    value_types: tuple[ValueType, ...]

    @classmethod
    def of(cls, config: RepoConfig, view: FeatureView) -> ViewLayout:
        if len(view.entity_columns) != 1:
            raise ValueError(f"{view.name}: one join key expected, got {view.entity_columns}")
        entity = view.entity_columns[0]
        return cls(
            project=config.project,
            view_name=_versioned_fv_name(view, config),
            join_key=entity.name,
            key_type=entity.dtype.to_value_type(),
            features=tuple(f.name for f in view.features),
            value_types=tuple(f.dtype.to_value_type() for f in view.features),
        )

    @property
    def ts_field(self) -> bytes:
        return timestamp_field(self.view_name)

    def fields(self) -> list[bytes]:
        return [feature_field(self.view_name, f) for f in self.features]

    def keys(self, values: pa.Array | Sequence[str]) -> list[bytes]:
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        return entity_keys(arr, self.join_key, self.key_type, self.project)


class RedisViewWriter:
    def __init__(
        self,
        client: Redis,
        layout: ViewLayout,
        timestamp_column: str,
        key_ttl_seconds: int | None,
        skip_dedup: bool,
        pipeline_commands: int,
    ) -> None:
        self.client = client
        self.layout = layout
        self.timestamp_column = timestamp_column
        self.key_ttl_seconds = key_ttl_seconds
        self.skip_dedup = skip_dedup
        self.pipeline_commands = pipeline_commands
        self._fields = layout.fields()

    def write(self, batch: pa.RecordBatch) -> int:
        """Write a batch (join key, features, event timestamp); returns the rows written."""
        keys = self.layout.keys(batch.column(self.layout.join_key))
        ts_bytes, ts_ns = event_timestamps(batch.column(self.timestamp_column))
        values = [
            encode_values(batch.column(f), vt)
            for f, vt in zip(self.layout.features, self.layout.value_types, strict=True)
        ]
        keep = np.ones(len(keys), dtype=bool) if self.skip_dedup else self._newer(keys, ts_ns)
        ts_field = self.layout.ts_field
        fields = self._fields
        step = self.pipeline_commands
        written = 0
        rows = zip(keys, ts_bytes, zip(*values, strict=True), keep, strict=True)
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for key, ts, row, ok in rows:
            if not ok:
                continue
            mapping = dict(zip(fields, row, strict=True))
            mapping[ts_field] = ts
            pipe.hset(key, mapping=mapping)
            if self.key_ttl_seconds:
                pipe.expire(key, self.key_ttl_seconds)
            written += 1
            queued += 1
            if queued >= step:
                pipe.execute()
                queued = 0
        if queued:
            pipe.execute()
        return written

    def _newer(self, keys: list[bytes], ts_ns: np.ndarray) -> np.ndarray:
        """Rows whose event time is later than the one stored (Feast's rule for older rows)."""
        stored = self._stored_ns(keys)
        keep = ts_ns > stored
        # Several rows of one batch for the same key: only the latest may win (never happens
        # with latest-per-entity reads, kept for parity with Feast's write path).
        if len(set(keys)) != len(keys):
            latest: dict[bytes, int] = {}
            for i, (k, t) in enumerate(zip(keys, ts_ns.tolist(), strict=True)):
                if keep[i] and t <= latest.get(k, -1):
                    keep[i] = False
                elif keep[i]:
                    latest[k] = t
        return keep

    def _stored_ns(self, keys: list[bytes]) -> np.ndarray:
        out = np.zeros(len(keys), dtype=np.int64)
        ts_field = self.layout.ts_field
        for lo in range(0, len(keys), self.pipeline_commands):
            pipe = self.client.pipeline(transaction=False)
            for k in keys[lo : lo + self.pipeline_commands]:
                pipe.hget(k, ts_field)
            for i, raw in enumerate(pipe.execute(), start=lo):
                if raw:
                    t = Timestamp()
                    t.ParseFromString(raw)
                    out[i] = t.seconds * 1_000_000_000 + t.nanos
        return out

    def present(self, keys: list[bytes]) -> np.ndarray:
        """Which keys hold this view's values; re-arms their expiry on the way."""
        out = np.zeros(len(keys), dtype=bool)
        ts_field = self.layout.ts_field
        step = max(1, self.pipeline_commands // 2)
        for lo in range(0, len(keys), step):
            pipe = self.client.pipeline(transaction=False)
            for k in keys[lo : lo + step]:
                pipe.hexists(k, ts_field)
                if self.key_ttl_seconds:
                    pipe.expire(k, self.key_ttl_seconds)
            replies = pipe.execute()
            stride = 2 if self.key_ttl_seconds else 1
            out[lo : lo + step] = [bool(r) for r in replies[::stride]]
        return out
