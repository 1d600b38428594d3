"""shopfeast's offline store: Feast's `get_historical_features` as DuckDB ASOF joins.

Feast 0.67's DuckDB store joins every entity row to every older row of its key and keeps the
latest (through ibis), carrying list columns through the blow-up: 6-9x slower than an ASOF join
and several times its memory. This store answers the same call with one DuckDB statement, one
`ASOF LEFT JOIN` per feature view over its parquet source, and keeps Feast's semantics:

- the row served for an entity row at t is the latest with `event_timestamp <= t` (inclusive, as
  Feast's `feature_ts <= entity_ts`); ties on `event_timestamp` go to the latest
  `created_timestamp` (a missing one loses), as Feast's deduplication orders them;
- a view with a TTL serves nothing when that row is older than `t - ttl` (inclusive bound);
- `full_feature_names` gives `view__feature`; projections (`view[[...]]`, aliases, join key maps)
  and source field mappings are honoured;
- one output row per entity row, in the entity frame's order, never dropped: an entity row with no
  feature row (unknown key, before the first row, null key or timestamp) gets nulls;
- the views are joined each on its own, all at once on threads (AsofRetrievalJob._join); a
  source small next to the retrieval is read once and matched by row number with numpy (one
  sort of the source, one binary search per entity row: _asof_rows), its columns gathered into
  entity order afterwards; its list and string features reach the on-demand views' column
  code dictionary-encoded over its rows (and string join keys over the frame's distinct
  values), so that code works once per source row; a bigger source is joined by a DuckDB ASOF
  statement;
- on-demand views run on a table of only the columns each reads (its source features, request
  fields and the entity frame's columns), not on the whole result: Feast's python mode turns the
  table it is given into Python lists (`to_pydict`), list features of every view included, once
  per view. A view tagged ARROW_TAG (featurestore.odfv) has its UDF called once with pyarrow
  columns, which featurestore/odfv.py computes with numpy; others go through Feast's
  `transform_arrow`.

What the ASOF plan does not cover is handed to Feast's DuckDB store unchanged: an entity frame given
as SQL or none (a time range), `filter_by_created_timestamp`, sources that are not local parquet
files. Materialization's pulls (`pull_latest_from_table_or_query`, `pull_all_from_table_or_query`),
`offline_write_batch`, logging and monitoring are Feast's DuckDB store's, inherited as they are.

DuckDB gets a memory limit (`memory_limit`, else SHOPFEAST_DUCKDB_MEMORY_LIMIT, else 4GB) and a
spill directory (`temp_directory`, else $SHOPFEAST_DATA_DIR/tmp/duckdb), like Feast's store under
featurestore.store.bound_duckdb.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast.data_format import ParquetFormat
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from pydantic import StrictInt, StrictStr, model_validator

from featurestore import repo_env
from featurestore.odfv import ARROW_TAG

DEFAULT_MEMORY_LIMIT = "4GB"
ROW = "__shopfeast_row"  # the entity row's position, carried through the joins
_US = "__shopfeast_us"  # the entity row's timestamp in microseconds (BIGINT)
_SHIFT = 2**64  # ASOF order key: event_timestamp in the high 64 bits, created_timestamp below
_CREATED_OFFSET = 2**63  # created_timestamp (signed microseconds) made non-negative
_UTC = pa.timestamp("us", tz="UTC")
# A source of at most max(GATHER_MIN_ROWS, GATHER_RATIO x entity rows) rows is read whole and
# gathered from; a bigger one is streamed through the join (see AsofRetrievalJob._join).
GATHER_MIN_ROWS = 1_000_000
GATHER_RATIO = 1.0
# A source of at least KEY_FILTER_RATIO x the entity rows is read only for the frame's keys (the
# monitor's skew check: 1,000 customers against 5M rows of product_stats at 100k customers).
KEY_FILTER_RATIO = 10
# _asof_rows orders a source by key position x span + microseconds while that stays below this,
# else by key position x distinct instants + rank
_SPAN_LIMIT = 2**62


class AsofOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """`offline_store: {type: featurestore.offline.AsofOfflineStore}` in a profile's yaml."""

    type: StrictStr = "featurestore.offline.AsofOfflineStore"
    memory_limit: StrictStr | None = None
    temp_directory: StrictStr | None = None
    threads: StrictInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _variables_are_set(cls, data: Any) -> Any:
        """`requires: ${A} ${B}`: the profile's variables, checked before Feast opens anything."""
        return repo_env.variables_are_set(data)


class AsofOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store with point-in-time joins as DuckDB ASOF joins."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        plans = [
            _plan(config, view, feature_refs, full_feature_names, i)
            for i, view in enumerate(feature_views)
        ]
        if (
            not isinstance(entity_df, pd.DataFrame)
            or filter_by_created_timestamp
            or kwargs
            or any(p is None for p in plans)
        ):
            return DuckDBOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
                **kwargs,
            )
        timestamp = infer_event_timestamp_from_entity_df(
            dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        )
        for p in plans:
            for column in p.join_keys.values():
                if column not in entity_df.columns:
                    raise ValueError(
                        f"the entity frame has no column {column!r}, which feature view "
                        f"{p.view!r} joins on"
                    )
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        return AsofRetrievalJob(
            config=config,
            plans=plans,
            entity_df=entity_df,
            timestamp=timestamp,
            on_demand=[v for v in odfvs if v.mode != "substrait"],
            full_feature_names=full_feature_names,
            feature_refs=feature_refs,
        )


@dataclass(frozen=True)
class _ViewPlan:
    """What one feature view contributes: its source, keys, timestamps and output columns."""

    view: str
    alias: str
    path: str
    join_keys: dict[str, str]  # source column -> entity frame column
    timestamp: str
    created: str | None
    columns: list[tuple[str, str]]  # (source column, output name)
    ttl: timedelta | None


def _plan(
    config: RepoConfig, view: FeatureView, refs: list[str], full: bool, i: int
) -> _ViewPlan | None:
    """The ASOF plan of one view, or None when its source is not a local parquet file source."""
    source = view.batch_source
    if not isinstance(source, FileSource) or source.path is None:
        return None
    if source.file_format is not None and not isinstance(source.file_format, ParquetFormat):
        return None
    path = str(FileSource.get_uri_for_file_path(config.repo_path, source.path))
    if "://" in path:
        if not path.startswith("file://"):
            return None
        path = path[len("file://") :]
    if not path.endswith(".parquet") and Path(path).is_dir():
        path = str(Path(path) / "**" / "*.parquet")
    to_source = {feast: raw for raw, feast in (source.field_mapping or {}).items()}
    prefix = view.projection.name_to_use()
    names = [r.split(":", 1)[1] for r in refs if r.startswith(f"{prefix}:")]
    base = view.projection.name_alias or view.name  # as Feast's ibis store names columns
    keys = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
    created = source.created_timestamp_column or None
    return _ViewPlan(
        view=view.name,
        alias=f"v{i}",
        path=path,
        join_keys={to_source.get(k, k): v for k, v in keys.items()},
        timestamp=to_source.get(source.timestamp_field, source.timestamp_field),
        created=to_source.get(created, created) if created else None,
        columns=[(to_source.get(n, n), f"{base}__{n}" if full else n) for n in names],
        ttl=view.ttl or None,
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def asof_sql(plans: list[_ViewPlan], timestamp: str, latest: pd.Timestamp | None) -> str:
    """The statement: the entity rows (`entity_rows`: the join keys, `timestamp` as TIMESTAMPTZ
    and ROW) ASOF LEFT JOINed to each view's source, in entity row order.

    Each source row gets an order key `event_timestamp * 2^64 + created_timestamp` (microseconds,
    created made non-negative, missing lowest), each entity row `t * 2^64 + (2^64 - 1)`: the ASOF
    match (the greatest key not above the entity row's) is the latest row with event_timestamp
    <= t, the latest created among equal event_timestamps, in one sort and no window function.
    Rows after the latest entity timestamp are not read (parquet statistics skip them).
    """
    ts = f"e.{_ident(timestamp)}"
    probe = f"epoch_us({ts})::HUGEINT * {_SHIFT} + {_SHIFT - 1}"
    bound = f"{_text(latest.isoformat())}::TIMESTAMPTZ" if latest is not None else None
    ctes, joins, selects = [], [], []
    for p in plans:
        keys = [_ident(k) for k in p.join_keys]
        created = (
            f"coalesce(epoch_us({_ident(p.created)}), {-_CREATED_OFFSET}) + {_CREATED_OFFSET}"
            if p.created
            else "0"
        )
        outputs = "".join(f", {_ident(src)} AS {_ident(out)}" for src, out in p.columns)
        where = f" WHERE {_ident(p.timestamp)} <= {bound}" if bound else ""
        ctes.append(
            f"{p.alias} AS (SELECT {', '.join(keys)}, {_ident(p.timestamp)} AS __ts, "
            f"epoch_us({_ident(p.timestamp)})::HUGEINT * {_SHIFT} + {created} AS __order"
            f"{outputs} FROM read_parquet({_text(p.path)}){where})"
        )
        on = [f"e.{_ident(e)} = {p.alias}.{_ident(s)}" for s, e in p.join_keys.items()]
        joins.append(
            f"ASOF LEFT JOIN {p.alias} ON {' AND '.join(on)} AND {probe} >= {p.alias}.__order"
        )
        for _, out in p.columns:
            value = f"{p.alias}.{_ident(out)}"
            if p.ttl:
                ttl = p.ttl // timedelta(microseconds=1)
                fresh = f"epoch_us({p.alias}.__ts) >= epoch_us({ts}) - {ttl}"
                value = f"CASE WHEN {fresh} THEN {value} END"
            selects.append(f"{value} AS {_ident(out)}")
    if not plans:
        return f"SELECT e.{_ident(ROW)} FROM entity_rows e ORDER BY e.{_ident(ROW)}"
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM entity_rows e "
        f"{' '.join(joins)} ORDER BY e.{_ident(ROW)}"
    )


def _created_part(p: _ViewPlan) -> str:
    """The low 64 bits of a source row's ASOF order key: its created_timestamp in microseconds
    made non-negative, a missing one lowest; "0" when the view has none."""
    if not p.created:
        return "0"
    return f"coalesce(epoch_us({_ident(p.created)}), {-_CREATED_OFFSET}) + {_CREATED_OFFSET}"


def _read_source(con: Any, p: _ViewPlan, scan: str) -> pa.Table:
    """A source's rows up to the latest entity timestamp as Arrow: its join keys (`__k0`...),
    event and created microseconds (`__ts`, `__created` when it has one) and output columns."""
    keys = [f"{_ident(k)} AS __k{j}" for j, k in enumerate(p.join_keys)]
    outputs = [f"{_ident(src)} AS {_ident(out)}" for src, out in p.columns]
    created = [f"epoch_us({_ident(p.created)}) AS __created"] if p.created else []
    columns = [*keys, f"epoch_us({_ident(p.timestamp)}) AS __ts", *created, *outputs]
    return con.sql(f"SELECT {', '.join(columns)} FROM {scan}").to_arrow_table().combine_chunks()


class _Frame:
    """The entity rows as the matches read them: `probe` (the join key columns, the timestamp
    in microseconds UTC, ROW and _US), per join key column its distinct values and each row's
    position among them (-1 for a null key), and the timestamps as int64 (`valid`: not null)."""

    def __init__(self, probe: pa.Table, keys: list[str]) -> None:
        self.probe = probe
        self.rows = probe.num_rows
        self.keys: dict[str, tuple[pa.Array, np.ndarray]] = {}
        for name in keys:
            encoded = pc.dictionary_encode(probe.column(name).combine_chunks())
            codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            self.keys[name] = (encoded.dictionary, codes.astype(np.int64))
        us = probe.column(_US).combine_chunks()
        self.valid = ~pc.is_null(us).to_numpy(zero_copy_only=False)
        self.us = pc.fill_null(us, 0).to_numpy(zero_copy_only=False)


def _key_codes(table: pa.Table, p: _ViewPlan, frame: _Frame) -> tuple[np.ndarray, int] | None:
    """Per source row the position of its key tuple among the frame's (-1: a tuple the frame
    does not hold, or a null key), and how many positions there are; the same positions for
    the frame's rows come from _frame_codes. None when a key cannot be compared as the frame
    holds it (another type than a string or integer of the entity column's kind)."""
    code = np.zeros(table.num_rows, dtype=np.int64)
    size = 1
    for j, column in enumerate(p.join_keys.values()):
        values = frame.keys[column][0]
        key = table.column(f"__k{j}")
        if key.type != values.type:
            strings = all(_is_string(t) for t in (key.type, values.type))
            integers = all(pa.types.is_integer(t) for t in (key.type, values.type))
            if not (strings or integers):
                return None
            try:
                key = key.cast(values.type)  # safe: an integer out of range raises
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        at = pc.fill_null(pc.index_in(key, value_set=values), -1)
        at = at.to_numpy(zero_copy_only=False).astype(np.int64)
        code = np.where((code < 0) | (at < 0), -1, code * len(values) + at)
        size *= max(len(values), 1)
    return code, size


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _frame_codes(p: _ViewPlan, frame: _Frame) -> np.ndarray:
    """_key_codes for the frame's rows."""
    code = np.zeros(frame.rows, dtype=np.int64)
    for column in p.join_keys.values():
        values, at = frame.keys[column]
        code = np.where((code < 0) | (at < 0), -1, code * len(values) + at)
    return code


def _asof_rows(table: pa.Table, p: _ViewPlan, frame: _Frame) -> np.ndarray | None:
    """Per entity row the row of `table` (a read source, _read_source) Feast serves it, -1 for
    none: among the rows of its keys with `event_timestamp <= t`, the latest, ties to the
    latest created timestamp (a missing one lowest); none when that row is older than the
    view's TTL. None when the keys cannot be coded (_key_codes): then DuckDB joins the view.

    One sort of the source by (key, event_timestamp[, created]) and one binary search per entity
    row, over one int64 per row: the key's position times the span of the source's instants plus
    the instant within it (an entity row's clipped to it), or when that does not fit in 62 bits,
    times (distinct source instants + 1) plus how many distinct source instants are at or
    before the row's own (so `<=` on it is `<=` on the instants)."""
    coded = _key_codes(table, p, frame)
    if coded is None:
        return None
    code, size = coded
    ts = table.column("__ts")
    keep = code >= 0
    if ts.null_count:  # a row without an event_timestamp is never served
        keep &= ~pc.is_null(ts).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(keep)
    found = np.full(frame.rows, -1, dtype=np.int64)
    if not len(rows):
        return found
    key = code[rows]
    ts = pc.fill_null(ts, 0).to_numpy(zero_copy_only=False)[rows]
    first, last = int(ts.min()), int(ts.max())
    if size * (last - first + 2) < _SPAN_LIMIT:  # microseconds since just before the first row
        base = last - first + 2
        order_key = key * base + (ts - (first - 1))
        # an entity row before the first row: 0 (no row of its key is at or before it)
        when = np.clip(frame.us, first - 1, last) - (first - 1)
    else:  # ranks among the distinct instants (np.unique is many times slower: it hashes)
        instants = np.sort(ts)
        instants = instants[np.r_[True, instants[1:] != instants[:-1]]]
        base = len(instants) + 1
        if size * base >= 2**62:
            return None
        order_key = key * base + np.searchsorted(instants, ts, "right")
        when = np.searchsorted(instants, frame.us, "right")
    order = np.argsort(order_key, kind="stable")
    ordered = order_key[order]
    if p.created and len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        created = table.column("__created")
        created = pc.fill_null(created, np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
        order = np.lexsort((created[rows], order_key))  # ties: the latest created last
        ordered = order_key[order]
    entity_key = _frame_codes(p, frame)
    probe = entity_key * base + when
    at = np.searchsorted(ordered, probe, "right") - 1  # the last row at or before
    hit = frame.valid & (entity_key >= 0) & (at >= 0)
    at = order[np.maximum(at, 0)]
    hit &= key[at] == entity_key
    if p.ttl:
        hit &= ts[at] >= frame.us - p.ttl // timedelta(microseconds=1)
    found[hit] = rows[at[hit]]
    return found


def _asof_statement(con: Any, p: _ViewPlan, scan: str) -> pa.Table:
    """One view joined by DuckDB with its columns (`entity_rows` registered on `con`): ROW and
    the view's output columns, one row per entity row in no particular order. The ASOF order
    key is `event_timestamp * 2^64 + created` (asof_sql's)."""
    keys = [_ident(k) for k in p.join_keys]
    outputs = "".join(f", {_ident(src)} AS {_ident(out)}" for src, out in p.columns)
    inner = (
        f"SELECT {', '.join(keys)}, epoch_us({_ident(p.timestamp)}) AS __ts, "
        f"epoch_us({_ident(p.timestamp)})::HUGEINT * {_SHIFT} + {_created_part(p)} "
        f"AS __order{outputs} FROM {scan}"
    )
    ts = f"e.{_US}"
    probe = f"{ts}::HUGEINT * {_SHIFT} + {_SHIFT - 1}"
    on = [f"e.{_ident(e)} = v.{_ident(k)}" for k, e in p.join_keys.items()]
    fresh = None
    if p.ttl:
        fresh = f"v.__ts >= {ts} - {p.ttl // timedelta(microseconds=1)}"
    selects = [f"e.{_ident(ROW)}"]
    for _, out in p.columns:
        value = f"v.{_ident(out)}"
        if fresh:
            value = f"CASE WHEN {fresh} THEN {value} END"
        selects.append(f"{value} AS {_ident(out)}")
    sql = (
        f"SELECT {', '.join(selects)} FROM entity_rows e ASOF LEFT JOIN ({inner}) v "
        f"ON {' AND '.join([*on, f'{probe} >= v.__order'])}"
    )
    return con.sql(sql).to_arrow_table()


class AsofRetrievalJob(RetrievalJob):
    """Runs the statement when asked for the result (Feast's RetrievalJob contract: to_df and
    to_arrow add the remaining on-demand features)."""

    def __init__(
        self,
        config: RepoConfig,
        plans: list[_ViewPlan],
        entity_df: pd.DataFrame,
        timestamp: str,
        on_demand: list[OnDemandFeatureView],
        full_feature_names: bool,
        feature_refs: list[str],
    ) -> None:
        super().__init__()
        self._config = config
        self._plans = plans
        self._timestamp = timestamp
        self._full = full_feature_names
        self._refs = feature_refs
        self._on_demand = on_demand
        frame = entity_df
        column = frame[timestamp]
        if not isinstance(column.dtype, pd.DatetimeTZDtype) or str(column.dt.tz) != "UTC":
            frame = frame.copy()
            frame[timestamp] = pd.to_datetime(column, utc=True)
        self._entity = frame
        earliest, latest = frame[timestamp].min(), frame[timestamp].max()
        self._latest = None if pd.isna(latest) else latest
        self._metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_df.columns if c != timestamp],
            min_event_timestamp=None if pd.isna(earliest) else earliest.to_pydatetime(warn=False),
            max_event_timestamp=None if pd.isna(latest) else latest.to_pydatetime(warn=False),
        )
        self.timings: dict[str, float] = {}
        self._steps: dict[str, float] = {}  # read, asof, gather: parts of "join"
        # list and string features of gathered views as (row in the source -> the source's
        # values), and string join keys as (row -> the frame's distinct keys), for the on-demand
        # views' column code to work per source row (_on_demand_columns)
        self._encoded: dict[str, pa.DictionaryArray] = {}

    @property
    def full_feature_names(self) -> bool:
        return self._full

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        """None left for Feast's to_arrow: _to_arrow_internal has applied them (on the columns
        each reads, see _apply_on_demand)."""
        return []

    @property
    def metadata(self) -> RetrievalMetadata:
        return self._metadata

    def to_sql(self) -> str:
        return asof_sql(self._plans, self._timestamp, self._latest)

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        began, began_cpu = time.perf_counter(), time.process_time()
        self._steps = {}
        entity = pa.Table.from_pandas(self._entity, preserve_index=False)
        features = self._join(entity)
        for name, column in zip(features.column_names, features.columns, strict=True):
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
            entity = entity.append_column(name, column)
        joined, joined_cpu = time.perf_counter(), time.process_time()
        result = self._apply_on_demand(entity)
        self.timings = {
            "join": joined - began,
            "on_demand": time.perf_counter() - joined,
            "join_cpu": joined_cpu - began_cpu,  # the process's, every thread's
            "on_demand_cpu": time.process_time() - joined_cpu,
            **self._steps,
        }
        return result

    def _apply_on_demand(self, table: pa.Table) -> pa.Table:
        """Each on-demand view's requested outputs appended, computed on the columns it reads
        (Feast's RetrievalJob hands each view the whole table, which python mode converts to
        Python lists, every view's list features included)."""
        keep = set(self._entity.columns)
        requested = {r.split(":", 1)[0]: set() for r in self._refs}
        for r in self._refs:
            view, name = r.split(":", 1)
            requested[view].add(name)

        def compute(odfv: OnDemandFeatureView) -> pa.Table | dict[str, pa.Array]:
            reads = set(keep)
            for p in odfv.source_feature_view_projections.values():
                for f in p.features:
                    reads |= {f.name, f"{p.name_to_use()}__{f.name}", f"{p.name}__{f.name}"}
            for source in odfv.source_request_sources.values():
                reads |= {f.name for f in source.schema}
            inputs = table.select([c for c in table.column_names if c in reads])
            return _on_demand_columns(odfv, inputs, self._full, self._encoded)

        out = table
        for odfv in self._on_demand:
            columns = compute(odfv)
            prefix = odfv.projection.name_to_use()
            order = [f.name for f in odfv.features]
            for name in sorted(requested.get(prefix, ()), key=order.index):
                column = f"{prefix}__{name}" if self._full else name
                out = out.append_column(column, columns[column])
        return out

    def _join(self, entity: pa.Table) -> pa.Table:
        """The features of every plan, one row per entity row, in entity order.

        Each view is joined on its own, all at once on a pool of threads (DuckDB, Arrow and
        numpy let go of the GIL, so one view's read overlaps another's match): reading the
        sources one after another was half of a 100,000-row ranking retrieval (_view).

        A view whose source is small next to the retrieval (at most GATHER_MIN_ROWS rows, or
        GATHER_RATIO x the entity rows) is read once into Arrow and matched by row number
        (_asof_rows); its feature columns are then gathered with one `take` each into entity
        order, so nothing moves them but that take. A bigger source is joined with its columns
        by a DuckDB ASOF statement, bounded by DuckDB's memory limit."""
        needed = {self._timestamp} | {k for p in self._plans for k in p.join_keys.values()}
        probe = entity.select([c for c in entity.column_names if c in needed])
        i = probe.column_names.index(self._timestamp)
        # microseconds, as the sources: flooring a finer instant keeps `event_timestamp <= t`
        probe = probe.set_column(i, self._timestamp, probe.column(i).cast(_UTC, safe=False))
        probe = probe.append_column(ROW, pa.array(np.arange(entity.num_rows, dtype=np.int64)))
        probe = probe.append_column(_US, probe.column(i).cast(pa.int64()))
        frame = _Frame(probe, sorted(needed - {self._timestamp}))
        for name, (values, codes) in frame.keys.items():
            if _is_string(values.type):
                at = pa.array(codes, mask=codes < 0)
                self._encoded[name] = pa.DictionaryArray.from_arrays(at, values)
        began = time.perf_counter()
        con = duckdb.connect(config=_duckdb_settings(self._config))
        try:
            con.register("entity_rows", probe)
            workers = max(1, len(self._plans))
            with ThreadPoolExecutor(workers) as pool:
                joined = list(pool.map(lambda p: self._view(con, p, frame), self._plans))
        finally:
            con.close()
        mark = time.perf_counter()
        self._steps["sources"] = mark - began
        # (output name, column, rows to take from it, in entity order)
        takes: list[tuple[str, pa.ChunkedArray, pa.Array]] = []
        for p, table, found in joined:
            if found is not None:  # a gathered source: its row per entity row (-1: none)
                at = pa.array(found, mask=found < 0)
                for name, column in zip(table.column_names, table.columns, strict=True):
                    takes.append((name, column, at))
                    kind = column.type
                    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or _is_string(kind):
                        self._encoded[name] = pa.DictionaryArray.from_arrays(
                            at, column.combine_chunks()
                        )
            else:  # a joined statement's rows, in no particular order
                rows = table.column(ROW).to_numpy()
                if len(rows) != entity.num_rows:  # the contract; an ASOF LEFT JOIN keeps it
                    raise RuntimeError(f"{entity.num_rows} entity rows in, {len(rows)} out")
                order = np.empty_like(rows)
                order[rows] = np.arange(len(rows), dtype=rows.dtype)
                at = pa.array(order)
                takes += [(out, table.column(out), at) for _, out in p.columns]
        columns = _take_all(takes, _threads(self._config))
        names = [out for p in self._plans for _, out in p.columns]
        self._steps["gather"] = time.perf_counter() - mark
        return pa.table({name: columns[name] for name in names})

    def _view(
        self, con: Any, p: _ViewPlan, frame: _Frame
    ) -> tuple[_ViewPlan, pa.Table, np.ndarray | None]:
        """One view's features for the entity rows, on a cursor of its own: its source's
        output columns and per entity row the source row to take (-1: none) when gathered,
        else a statement's result (ROW and the output columns, in no particular order)."""
        cur = con.cursor()
        try:
            cur.register("entity_rows", frame.probe)
            latest = self._latest
            bound = f"{_text(latest.isoformat())}::TIMESTAMPTZ" if latest is not None else None
            conditions = [f"{_ident(p.timestamp)} <= {bound}"] if bound else []
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            scan = f"read_parquet({_text(p.path)}){where}"
            rows = cur.sql(f"SELECT count(*) FROM {scan}").fetchall()[0][0]
            if frame.rows * KEY_FILTER_RATIO <= rows:
                # Few entity rows against a big source: only the rows of their keys can match
                # (the ASOF join matches on them), so only those are read. One filter per key
                # column, a superset of the rows of the key tuples the frame holds.
                conditions += [
                    f"{_ident(k)} IN (SELECT DISTINCT e.{_ident(e)} FROM entity_rows e)"
                    for k, e in p.join_keys.items()
                ]
                scan = f"read_parquet({_text(p.path)}) WHERE {' AND '.join(conditions)}"
                rows = cur.sql(f"SELECT count(*) FROM {scan}").fetchall()[0][0]
            if rows <= max(GATHER_MIN_ROWS, GATHER_RATIO * frame.rows):
                table = _read_source(cur, p, scan)
                found = _asof_rows(table, p, frame)
                if found is not None:
                    return p, table.select([out for _, out in p.columns]), found
            return p, _asof_statement(cur, p, scan), None
        finally:
            cur.close()

    def persist(
        self, storage: Any, allow_overwrite: bool = False, timeout: int | None = None
    ) -> None:
        """A saved dataset: the result (on-demand features included) as one parquet file."""
        path = storage.to_data_source().path
        if os.path.exists(path) and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=path)
        pq.write_table(self.to_arrow(), path)


def _on_demand_columns(
    odfv: OnDemandFeatureView,
    inputs: pa.Table,
    full: bool,
    encoded: dict[str, pa.DictionaryArray] | None = None,
) -> pa.Table | dict[str, pa.Array]:
    """One on-demand view's outputs over `inputs`: a python-mode view tagged ARROW_TAG gets its
    UDF called once with pyarrow columns (short and full names, as Feast's transform_arrow gives
    them), the list and string columns in `encoded` dictionary-encoded (the same values, one
    per source row or distinct key: featurestore.odfv decodes what it does not use that way);
    any other goes through Feast's transform_arrow."""
    if odfv.mode != "python" or odfv.tags.get(ARROW_TAG[0]) != ARROW_TAG[1]:
        return odfv.transform_arrow(inputs, full)
    encoded = encoded or {}
    columns: dict[str, Any] = {
        name: encoded.get(name, inputs[name]) for name in inputs.column_names
    }
    for p in odfv.source_feature_view_projections.values():
        for f in p.features:
            long = f"{p.name_to_use()}__{f.name}"
            if long in columns:
                columns.setdefault(f.name, columns[long])
    outputs = odfv.feature_transformation.udf(columns)
    prefix = odfv.projection.name_to_use()
    return {
        (f"{prefix}__{f.name}" if full else f.name): pa.array(outputs[f.name])
        for f in odfv.features
    }


def _threads(config: RepoConfig) -> int:
    """The store's threads (DuckDB's `threads` setting when the profile sets one, else every
    core, as DuckDB's default)."""
    return getattr(config.offline_store, "threads", None) or os.cpu_count() or 1


def _take_all(
    takes: list[tuple[str, pa.ChunkedArray, pa.Array]], threads: int
) -> dict[str, pa.ChunkedArray]:
    """Each (name, column, indices) as column.take(indices), on up to `threads` threads (Arrow's
    take is one thread per call and releases the GIL), biggest columns first."""
    positions: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    for _, _, at in takes:  # per distinct indices: as numpy, and which are not null
        if id(at) not in positions:
            valid = ~pc.is_null(at).to_numpy(zero_copy_only=False) if at.null_count else None
            filled = pc.fill_null(at, 0) if at.null_count else at
            positions[id(at)] = (filled.to_numpy(zero_copy_only=False), valid)

    def take(job: tuple[str, pa.ChunkedArray, pa.Array]) -> pa.Array | pa.ChunkedArray:
        _, column, at = job
        return _take_fixed_width(column, *positions[id(at)]) or column.take(at)

    if threads <= 1 or len(takes) <= 1:
        return {job[0]: take(job) for job in takes}
    ordered = sorted(takes, key=lambda t: -t[1].nbytes)
    with ThreadPoolExecutor(min(threads, len(ordered))) as pool:
        return dict(zip((t[0] for t in ordered), pool.map(take, ordered), strict=True))


def _take_fixed_width(
    column: pa.ChunkedArray, at: np.ndarray, valid: np.ndarray | None
) -> pa.Array | None:
    """column.take(at) (`valid`: False where the index is null) for a column of whole bytes per
    value (integers, floats, timestamps), as a numpy gather of its bytes: Arrow's take with
    null indices cost ~3x numpy's (half of a 500,000-row churn retrieval's indices are null: no
    review yet). None for other types (strings, lists, booleans): Arrow's take."""
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)):
        return None
    width = kind.bit_width
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if width not in (8, 16, 32, 64) or not len(array):
        return None
    raw = np.frombuffer(array.buffers()[1], dtype=f"u{width // 8}")
    raw = raw[array.offset : array.offset + len(array)]
    if array.null_count:
        present = ~pc.is_null(array).to_numpy(zero_copy_only=False)[at]
        valid = present if valid is None else valid & present
    nulls = 0 if valid is None else len(at) - int(np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    values = pa.py_buffer(np.ascontiguousarray(raw[at]))
    return pa.Array.from_buffers(column.type, len(at), [bitmap, values], null_count=nulls)


def _duckdb_settings(config: RepoConfig) -> dict[str, Any]:
    store = config.offline_store
    settings: dict[str, Any] = {
        "memory_limit": getattr(store, "memory_limit", None)
        or os.environ.get("SHOPFEAST_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
    }
    spill = getattr(store, "temp_directory", None)
    if spill is None and os.environ.get("SHOPFEAST_DATA_DIR"):
        spill = str(Path(os.environ["SHOPFEAST_DATA_DIR"]) / "tmp" / "duckdb")
    if spill:
        Path(spill).mkdir(parents=True, exist_ok=True)
        settings["temp_directory"] = spill
    if getattr(store, "threads", None):
        settings["threads"] = store.threads
    return settings
