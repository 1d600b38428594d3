"""Pipelined writes of one feature view's rows into Feast's Redis layout.

Same keys, fields and bytes as `RedisOnlineStore.online_write_batch`
(featurestore/redis_encoding.py),
same rule for older rows (a row is skipped when the stored event time is newer or equal, unless
the store is configured with `skip_dedup`), same key expiry. The difference is cost: values are
encoded column-wise and commands are packed as raw RESP and pipelined `pipeline_commands` at a
time (resp.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis import Redis

from featurestore.materialize import resp
from featurestore.materialize.source import COMPOSITE_KEY, KEY_SEP
from featurestore.redis_encoding import (
    encode_segments,
    entity_keys,
    event_timestamps,
    feature_field,
    string_redis_keys,
    timestamp_field,
)
from featurestore.segments import Segments, concat_rows, lookup


def composite_keys(arr: pa.Array | pa.ChunkedArray, join_keys: tuple[str, ...], project: str):
    """Redis keys of string ids of several join keys, joined by KEY_SEP (Feast's `_redis_key`:
    the serialized entity key, v3, then the project).

    Written by `redis_encoding.string_redis_keys` (serialize_entity_key's bytes without a proto
    per row); when a value does not split into one id per join key, Feast's function writes them."""
    splits = [str(joined).split(KEY_SEP) for joined in arr.to_pylist()]
    if all(len(ids) == len(join_keys) for ids in splits):
        return string_redis_keys(join_keys, splits, project)
    suffix = project.encode()  # the same bytes for the rows that do split (tests compare them)
    return [
        serialize_entity_key(
            EntityKeyProto(
                join_keys=list(join_keys), entity_values=[ValueProto(string_val=v) for v in ids]
            ),
            3,
        )
        + suffix
        for ids in splits
    ]


@dataclass
class ViewLayout:
    """Where one view's values go: join key, Redis hash fields, value types."""

    project: str
    view_name: str
    join_keys: tuple[str, ...]
    key_type: ValueType
    features: tuple[str, ...]
    value_types: tuple[ValueType, ...]

    @classmethod
    def of(cls, config: RepoConfig, view: FeatureView) -> ViewLayout:
        types = {e.dtype.to_value_type() for e in view.entity_columns}
        if len(view.entity_columns) != 1 and types != {ValueType.STRING}:
            raise ValueError(f"{view.name}: several join keys must be strings: {types}")
        return cls(
            project=config.project,
            view_name=_versioned_fv_name(view, config),
            join_keys=tuple(e.name for e in view.entity_columns),
            key_type=view.entity_columns[0].dtype.to_value_type(),
            features=tuple(f.name for f in view.features),
            value_types=tuple(f.dtype.to_value_type() for f in view.features),
        )

    @property
    def key_column(self) -> str:
        """The batches' key column (source.ParquetSource.key_column)."""
        return self.join_keys[0] if len(self.join_keys) == 1 else COMPOSITE_KEY

    @property
    def ts_field(self) -> bytes:
        return timestamp_field(self.view_name)

    def fields(self) -> list[bytes]:
        return [feature_field(self.view_name, f) for f in self.features]

    def batch_keys(self, batch: pa.RecordBatch | pa.Table) -> tuple[list[str], list[bytes]]:
        """(ids, Redis keys) of a batch's rows: the key column's values and their keys; several
        join keys are encoded from their own columns (no split of the joined id)."""
        ids = batch.column(self.key_column).to_pylist()
        if len(self.join_keys) == 1:
            return ids, self.keys(batch.column(self.key_column))
        columns = [batch.column(k).to_pylist() for k in self.join_keys]
        keys = string_redis_keys(self.join_keys, list(zip(*columns, strict=True)), self.project)
        if keys is None:
            keys = composite_keys(batch.column(self.key_column), self.join_keys, self.project)
        return ids, keys

    def keys(self, values: pa.Array | Sequence[str]) -> list[bytes]:
        """Redis keys of the key column's values (ids joined by KEY_SEP for several keys)."""
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if len(self.join_keys) == 1:
            return entity_keys(arr, self.join_keys[0], self.key_type, self.project)
        return composite_keys(arr, self.join_keys, self.project)


@dataclass
class Prepared:
    """A batch ready to send: the keys it writes and their commands in one buffer; (id, key) of
    the rows it does not write (Redis holds a newer or equal event time)."""

    keys: list[bytes]
    commands: Segments | None
    dropped: list[tuple[str, bytes]]


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
        self.window = pipeline_commands
        # Field order as Feast's write: the event timestamp first, then the view's features.
        fields = [layout.ts_field, *layout.fields()]
        self._hset_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(fields))
        self._field_bulks = [resp.bulk(f) for f in fields]
        self._ts_bulk = resp.bulk(layout.ts_field)
        self._expire_tail = resp.bulk(str(key_ttl_seconds).encode()) if key_ttl_seconds else b""

    def write(self, batch: pa.RecordBatch) -> list[bytes]:
        """Write a batch (join key, features, event timestamp); returns the keys written."""
        prepared = self.prepare(batch)
        self.send(prepared)
        return prepared.keys

    def prepare(self, batch: pa.RecordBatch) -> Prepared:
        """Encode a batch and build its commands (one round trip: the stored event times)."""
        ids, keys = self.layout.batch_keys(batch)
        ts_values, ts_ns = event_timestamps(batch.column(self.timestamp_column))
        values = [ts_values] + [
            encode_segments(batch.column(f), vt)
            for f, vt in zip(self.layout.features, self.layout.value_types, strict=True)
        ]
        keep = np.ones(len(keys), dtype=bool) if self.skip_dedup else self._newer(keys, ts_ns)
        dropped: list[tuple[str, bytes]] = []
        if not keep.all():
            dropped = [(ids[i], keys[i]) for i in np.flatnonzero(~keep).tolist()]
            idx = np.flatnonzero(keep)
            keys = [keys[i] for i in idx.tolist()]
            values = [v.take(idx) for v in values]
        commands = self._commands(keys, values) if keys else None
        return Prepared(keys, commands, dropped)

    def send(self, prepared: Prepared) -> None:
        """Pipeline a prepared batch's commands and wait for every reply."""
        if prepared.commands is None:
            return
        per_row = 2 if self.key_ttl_seconds else 1
        replies = resp.execute_rows(
            self.client, prepared.commands, per_row, max(self.window // per_row, 1)
        )
        for _ in replies:
            pass

    def _commands(self, keys: list[bytes], values: list[Segments]) -> Segments:
        """Every row's `HSET key field value ...` (and `EXPIRE key ttl`), as one buffer.

        Each value is preceded by one looked-up piece holding the previous value's CRLF, the
        field name and the value's length header, so a column costs two gathers.
        """
        key_bulks = Segments.from_list([b"$%d\r\n%b\r\n" % (len(k), k) for k in keys])
        parts: list[bytes | Segments] = [self._hset_head, key_bulks]
        for j, (field, column) in enumerate(zip(self._field_bulks, values, strict=True)):
            lengths = column.lengths
            crlf = b"\r\n" if j else b""
            heads = [b"%b%b$%d\r\n" % (crlf, field, n) for n in range(int(lengths.max()) + 1)]
            parts += [lookup(heads, lengths), column]
        parts.append(b"\r\n")
        if self.key_ttl_seconds:
            parts += [b"*3\r\n$6\r\nEXPIRE\r\n", key_bulks, self._expire_tail]
        return concat_rows(parts, len(keys))

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
        for lo, raw in self._scripted(_STORED_TS, keys, [self.layout.ts_field]):
            for i, value in enumerate(raw, start=lo):
                if value:
                    t = Timestamp()
                    t.ParseFromString(value)
                    out[i] = t.seconds * 1_000_000_000 + t.nanos
        return out

    def present(self, keys: list[bytes]) -> np.ndarray:
        """Which keys hold this view's values; re-arms their expiry on the way."""
        out = np.ones(len(keys), dtype=bool)
        ttl = str(self.key_ttl_seconds or 0).encode()
        for lo, missing in self._scripted(_PRESENT, keys, [self.layout.ts_field, ttl]):
            for i in missing:
                out[lo + int(i) - 1] = False
        return out

    def _scripted(self, script: str, keys: list[bytes], args: list[bytes]):
        """Run a Lua script over `keys` a window at a time (the per-key loop inside Redis);
        yields (offset, reply). The calls are pipelined as raw RESP, a few in flight, so Redis
        goes from one window to the next without waiting for this process to pack the next."""
        sha = self.client.script_load(script)
        sha = sha.encode() if isinstance(sha, str) else sha

        def calls():
            for lo in range(0, len(keys), self.window):
                window = keys[lo : lo + self.window]
                yield resp.command(b"EVALSHA", sha, b"%d" % len(window), *window, *args)

        for i, reply in enumerate(resp.execute(self.client, calls(), SCRIPT_CALLS_IN_FLIGHT)):
            yield i * self.window, reply


# EVALSHA calls per round trip: one window of keys costs Redis a few ms, packing the next far less.
SCRIPT_CALLS_IN_FLIGHT = 4


# The stored event time of a view for each key ('' when absent: Lua arrays cannot hold nil).
_STORED_TS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGET', key, ARGV[1]) or ''
end
return out
"""

# Positions (1-based) of the keys lacking the view's timestamp field; re-arm the others' expiry.
_PRESENT = """
local ttl = tonumber(ARGV[2])
local missing = {}
for i, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, ARGV[1]) == 1 then
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  else
    missing[#missing + 1] = i
  end
end
return missing
"""
