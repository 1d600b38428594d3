"""`shopfeast features`: build the feature sources from the clean tables, historical or incremental.

Layout written under a data directory:

    DIR/features/<source>/<YYYY-MM>.parquet   change-point rows of the snapshots in that month,
                                             sorted by (event_timestamp, join key); row groups
                                             small enough for min/max pruning of time ranges
    DIR/state/features/<source>.json          watermark: last snapshot day written, the clean
                                             files seen (path -> size, mtime), the declaration's
                                             fingerprint

Historical mode rebuilds a source from scratch. Incremental mode compares the clean files with
those seen last time and recomputes from the earliest day they touch:
- new files only after the watermark: the run starts at the day after the watermark;
- a late file (rows older than the watermark, e.g. a day's events that arrive a week late): the
  run starts at the snapshot after the oldest late row, deletes the stored rows from that day on
  and writes them again. Recomputing from the affected day is what keeps incremental == historical;
- no new files and no new days: nothing is read or written (a rerun is a no-op);
- a removed file, or a changed declaration (fingerprint): the source is rebuilt.

The snapshot range is global: the first snapshot is the day after the oldest clean row, the last
is the day after the newest one, or the day of the latest `ingest --as-of` instant when that is
later (the export is complete up to it: windows empty out on days without rows), so every source
ends on the same day. `created_timestamp` equals
`event_timestamp` (the instant the value became computable); it is deterministic, so a historical
and an incremental build of the same data are identical file contents, not just equal values.
The family interface is in pipelines/family.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import realtime, sources
from pipelines.contract import TABLES
from pipelines.family import Input
from pipelines.ingest_state import horizon
from pipelines.lock import data_dir_lock
from pipelines.specs import FeatureSource, conform, from_arrow, to_arrow
from pipelines.specs import _types_mapper as specs_types_mapper
from pipelines.storage import (
    DAY_PARTITION,
    clean_dir,
    partition_time_column,
    read_clean,
    state_dir,
)
from pipelines.windows import Snapshots, change_points, day_of, day_ts, to_day
from shopconfig.progress import progress

MODES = ("historical", "incremental")
ROW_GROUP_ROWS = 128_000


@dataclass
class Outcome:
    source: str
    rows: int
    seconds: float
    start_day: int | None  # None: nothing to do
    end_day: int | None

    def line(self) -> str:
        if self.start_day is None:
            return f"{self.source:<24} up to date ({self.seconds:.1f}s)"
        span = f"{day_ts(self.start_day).iloc[0]:%Y-%m-%d}..{day_ts(self.end_day).iloc[0]:%Y-%m-%d}"
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"{self.source:<24} {self.rows:>10,} rows  {self.seconds:6.1f}s  "
            f"{rate:>10,.0f} rows/s  snapshots {span}"
        )


def run(
    data_dir: Path,
    mode: str = "incremental",
    only: list[str] | None = None,
    echo: bool = True,
    wait: float = 0.0,
) -> list[Outcome]:
    """Build (historical) or bring up to date (incremental) every registered source, holding the
    data directory's lock (waiting up to `wait` seconds for it; else DataDirBusy)."""
    with data_dir_lock(data_dir, f"features --mode {mode}", wait):
        return _run(Path(data_dir), mode, only, echo)


def _run(data_dir: Path, mode: str, only: list[str] | None, echo: bool) -> list[Outcome]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    data_dir = Path(data_dir)
    fams = sources.families()
    if only:
        fams = {k: v for k, v in fams.items() if k in only}
    files = {t: _clean_files(data_dir, t) for t in TABLES}
    span = _data_span(data_dir, files)
    outcomes = []
    with progress(f"features {mode}", total=len(fams), unit="families") as bar:
        for name, module in fams.items():
            t0 = time.perf_counter()
            outcome = _run_family(data_dir, module, mode, files, span)
            outcome.seconds = time.perf_counter() - t0
            outcomes.append(outcome)
            if echo:
                print(outcome.line(), flush=True)
            bar.step(name)
    if not only or set(only) & set(realtime.SOURCES):
        # Printed, not returned: they are kept by their own state (realtime.json), not a watermark.
        _run_realtime(data_dir, mode, files, span, echo)
    return outcomes


def _run_realtime(
    data_dir: Path,
    mode: str,
    files: dict[str, dict[str, list[int]]],
    span: tuple[int, int] | None,
    echo: bool,
) -> list[Outcome]:
    """The real-time views' offline sources from the clean events. Rebuilt whole when historical,
    on the first run, or when an events file seen before changed or went away, or a declaration
    changed; otherwise only the rows from the oldest event of the new files on are recomputed
    (`realtime.write_sources(since=...)`: a late day's events restart the views there, as late
    data restarts a family)."""
    t0 = time.perf_counter()
    path = state_dir(data_dir) / "features" / "realtime.json"
    seen = json.loads(path.read_text()) if path.exists() else None
    now = _realtime_stamp(files)
    exist = all(s.path(data_dir).exists() for s in realtime.SOURCES.values())
    since, written = None, None
    if mode == "historical" or seen is None or not exist or not _only_added(seen, now):
        written = realtime.write_sources(data_dir)
    elif seen != now:
        added = [f for f in now["events"] if f not in seen["events"]]
        since = _oldest_event(data_dir, added)
        if since is not None:
            written = realtime.write_sources(data_dir, since=since)
    if seen != now:
        _save_realtime_stamp(data_dir, files)
    out = []
    for name in realtime.SOURCES:
        rows = written[name] if written else 0
        days = (None, None)
        if written and span:
            days = (span[0] if since is None else max(span[0], int(to_day(since))), span[1])
        out.append(Outcome(name, rows, time.perf_counter() - t0, *days))
        if echo:
            print(out[-1].line(), flush=True)
    return out


def _only_added(seen: dict, now: dict) -> bool:
    """Since the last run, events files were only added (none changed or removed), and the
    declarations are the same: the stored rows before the new events still hold."""
    return seen.get("fingerprints") == now["fingerprints"] and all(
        now["events"].get(f) == v for f, v in seen.get("events", {}).items()
    )


def _oldest_event(data_dir: Path, added: list[str]) -> pd.Timestamp | None:
    """The oldest `event_ts` in the given clean events files (None: they hold no row)."""
    if not added:
        return None
    root = clean_dir(data_dir, "events")
    col = ds.dataset([str(root / f) for f in added], format="parquet").to_table(["event_ts"])
    oldest = pc.min(col["event_ts"]).as_py()
    if oldest is None:
        return None
    ts = pd.Timestamp(oldest)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _realtime_stamp(files: dict[str, dict[str, list[int]]]) -> dict:
    """What the real-time sources were built from: the events' files, the declarations."""
    return {
        "events": files.get("events", {}),
        "fingerprints": {n: s.fingerprint() for n, s in realtime.SOURCES.items()},
    }


def _save_realtime_stamp(data_dir: Path, files: dict[str, dict[str, list[int]]]) -> None:
    path = state_dir(data_dir) / "features" / "realtime.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_realtime_stamp(files)))


# --- one family -------------------------------------------------------------------------------


def _run_family(
    data_dir: Path,
    module: ModuleType,
    mode: str,
    files: dict[str, dict[str, list[int]]],
    span: tuple[int, int] | None,
) -> Outcome:
    source: FeatureSource = module.SOURCE
    inputs: tuple[Input, ...] = module.INPUTS
    seen = {t.table: files[t.table] for t in inputs}
    state = _load_state(data_dir, source)
    if span is None:
        return Outcome(source.name, 0, 0.0, None, None)
    first_day, end_day = span
    start_day = _incremental_start(data_dir, source, inputs, state, seen, end_day)
    if mode == "historical" or start_day == "rebuild":
        historical, start_day = True, first_day
        _wipe(source.path(data_dir))
    elif start_day is None:
        return Outcome(source.name, 0, 0.0, None, None)
    else:
        historical = start_day <= first_day
        start_day = max(start_day, first_day)
    snapshots = Snapshots(int(start_day), int(end_day), historical)
    if not historical and hasattr(module, "emits") and not module.emits(snapshots):
        # None of the run's days is a snapshot of this source (a weekly grain on another
        # weekday): no stored row can change, so nothing is read or written but the watermark.
        _save_state(data_dir, source, end_day, seen)
        return Outcome(source.name, 0, 0.0, snapshots.start_day, snapshots.end_day)
    reading, carried = snapshots, None
    if hasattr(module, "restore"):
        carried = None if historical else module.restore(data_dir, snapshots)
        if carried is None:  # no state carried as of this run's start: read all history
            reading = replace(snapshots, historical=True)
    tables = {i.table: read_input(data_dir, module, i, reading) for i in inputs}
    if hasattr(module, "persist"):
        module.persist(data_dir, tables)
    if hasattr(module, "carry"):
        module.carry(data_dir, tables, snapshots, carried)
    prior = (
        source.empty_frame()
        if historical
        else _stored_as_of(data_dir, source, snapshots.start, state)
    )
    if hasattr(module, "compute_parts"):  # written a span of days at a time, as they come
        count, latest = 0, prior
        for first, rows, last in row_parts(module, tables, snapshots, prior):
            _write(data_dir, source, rows, day_ts(first).iloc[0])
            count, latest = count + len(rows), last
            del rows  # not held while the next part is computed
        _save_latest(data_dir, source, prior, latest, end_day)
        _save_state(data_dir, source, end_day, seen)
        return Outcome(source.name, count, 0.0, snapshots.start_day, snapshots.end_day)
    rows = compute_rows(module, tables, snapshots, prior)
    _write(data_dir, source, rows, snapshots.start)
    _save_latest(data_dir, source, prior, rows, end_day)
    _save_state(data_dir, source, end_day, seen)
    return Outcome(source.name, len(rows), 0.0, snapshots.start_day, snapshots.end_day)


SHARD_ROWS = 3_000_000  # input rows per shard for families that can split by entity


def compute_rows(
    module: ModuleType,
    tables: dict[str, pd.DataFrame],
    snapshots: Snapshots,
    prior: pd.DataFrame | None = None,
    shard_rows: int = SHARD_ROWS,
) -> pd.DataFrame:
    """A family's stored rows for `snapshots`: its candidates, cast to the declaration, reduced to
    change points (against `prior`), with `created_timestamp`. Pure; tests call it directly.

    A family with a `shard(tables, n)` hook (entities independent of each other) is computed in
    `n` entity shards of about `shard_rows` input rows each, so its working memory is a shard's.
    A family with `compute_parts` is reduced a span of days at a time (`row_parts`).
    """
    source: FeatureSource = module.SOURCE
    prior = source.empty_frame() if prior is None else prior
    if hasattr(module, "compute_parts"):
        parts = [rows for _, rows, _ in row_parts(module, tables, snapshots, prior)]
        if len(parts) == 1:
            return parts[0]
        rows = pd.concat(parts, ignore_index=True)  # in change_points' order, as one part is
        by = [*source.join_keys, source.timestamp_field]
        return rows.sort_values(by, kind="stable", ignore_index=True)
    n = 1
    if hasattr(module, "shard"):
        n = max(1, -(-sum(len(t) for t in tables.values()) // shard_rows))
    parts = [tables] if n == 1 else module.shard(tables, n)
    reduced = [_reduce(module, part, snapshots, prior) for part in parts]
    return reduced[0] if len(reduced) == 1 else pd.concat(reduced, ignore_index=True)


def row_parts(
    module: ModuleType, tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """A family's stored rows from its `compute_parts(tables, snapshots, prior)` (candidate rows a
    span of days at a time, in time order: (first day, rows)): each part reduced to change points
    against every entity's last row before it (in `prior` or an earlier part). Yields (first day,
    rows, every entity's last row so far)."""
    source: FeatureSource = module.SOURCE
    for first, candidates in module.compute_parts(tables, snapshots, prior):
        rows = _reduced(source, candidates, snapshots, prior)
        del candidates
        prior = _last_rows(source, pd.concat([prior, rows], ignore_index=True))
        yield first, rows, prior
        del rows


def _reduce(
    module: ModuleType, tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    return _reduced(module.SOURCE, module.compute(tables, snapshots, prior), snapshots, prior)


def _reduced(
    source: FeatureSource, candidates: pd.DataFrame, snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    ts = candidates[source.timestamp_field]
    candidates = candidates[(ts >= snapshots.start) & (ts <= snapshots.end)]
    candidates = candidates.assign(
        **{source.created_timestamp_column: candidates[source.timestamp_field]}
    )
    rows = conform(source, candidates)
    del candidates
    return change_points(
        rows, source.join_keys, source.feature_names, prior, time=source.timestamp_field
    )


def _incremental_start(
    data_dir: Path,
    source: FeatureSource,
    inputs: tuple[Input, ...],
    state: dict | None,
    seen: dict[str, dict[str, list[int]]],
    end_day: int,
) -> int | str | None:
    """First snapshot day to recompute; "rebuild"; or None when nothing changed."""
    if state is None or state.get("fingerprint") != source.fingerprint():
        return "rebuild"
    start = state["end_day"] + 1 if end_day > state["end_day"] else None
    for table, now in seen.items():
        before = state["files"].get(table, {})
        if set(before) - set(now):
            return "rebuild"
        changed = [f for f, meta in now.items() if before.get(f) != meta]
        if not changed:
            continue
        oldest = _oldest_day(data_dir, table, changed) + 1
        start = oldest if start is None else min(start, oldest)
    return start


def _oldest_day(data_dir: Path, table: str, relpaths: list[str]) -> int:
    """The earliest day these clean files can change a snapshot from (minus one).

    A partitioned file: its day partition. A change-log file: its oldest `updated_at` (a version
    is read as of T, so it cannot matter before it took effect, whatever its `signup_ts`).
    """
    spec = TABLES[table]
    if spec.partitioned:
        return min(
            to_day(pd.Timestamp(Path(f).parent.name.split("=", 1)[1], tz="UTC")) for f in relpaths
        )
    fallback = {"customers": "signup_ts", "products": "created_at"}.get(table, spec.time_column)
    oldest = None
    for f in relpaths:
        cols = list(dict.fromkeys([spec.time_column, fallback]))
        t = pq.read_table(clean_dir(data_dir, table) / f, columns=cols)
        when = pc.coalesce(t[spec.time_column], t[fallback])
        m = pc.min(when).as_py()
        if m is not None:
            d = to_day(pd.Timestamp(m))
            oldest = d if oldest is None else min(oldest, d)
    return oldest if oldest is not None else 10**9


def read_input(
    data_dir: Path, module: ModuleType, spec: Input, snapshots: Snapshots
) -> pd.DataFrame:
    """A family's input table; one it names in `REDUCED` is handed to its `reduce_input(table,
    batches)` batch by batch (the batches as `_read_input` reads them, the table never whole)."""
    if spec.table in getattr(module, "REDUCED", ()):
        return module.reduce_input(spec.table, _scan_input(data_dir, spec, snapshots, lean=True))
    return _read_input(data_dir, spec, snapshots)


def _read_input(data_dir: Path, spec: Input, snapshots: Snapshots) -> pd.DataFrame:
    """A clean table in contract dtypes, strings arrow-backed (no Python object per value)."""
    batches = list(_scan_input(data_dir, spec, snapshots))
    if not batches:
        schema = TABLES[spec.table].arrow_schema()
        return from_schema(schema.empty_table().select(list(spec.columns)))
    return from_schema(pa.Table.from_batches(batches))


def _scan_input(
    data_dir: Path, spec: Input, snapshots: Snapshots, lean: bool = False
) -> Iterator[pa.RecordBatch]:
    """`spec`'s rows for `snapshots` as record batches in contract types (perhaps none). `lean`:
    one file and one batch read ahead (Arrow's defaults hold several files' batches in flight,
    which grows with the files)."""
    table = TABLES[spec.table]
    start = None if table.change_log else snapshots.read_from(spec.lookback_days)
    end = None if table.change_log else snapshots.end
    path = clean_dir(data_dir, spec.table)
    schema = table.arrow_schema()
    columns = list(spec.columns)
    if not path.exists() or not any(path.rglob("*.parquet")):
        return
    time_col = partition_time_column(table)
    ts_type = schema.field(time_col).type
    expr = None
    if start is not None:
        expr = ds.field(time_col) >= pa.scalar(start.to_pydatetime(), ts_type)
    if end is not None:
        e = ds.field(time_col) < pa.scalar(end.to_pydatetime(), ts_type)
        expr = e if expr is None else expr & e
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    if table.partitioned and start is not None:  # prune day partitions before opening files
        first = f"{DAY_PARTITION}={start:%Y-%m-%d}"
        files = [f for f in files if Path(f).parent.name >= first]
    dataset = ds.dataset(files, format="parquet", schema=schema)
    ahead = {"batch_readahead": 1, "fragment_readahead": 1} if lean else {}
    yield from dataset.to_batches(columns=columns, filter=expr, **ahead)


def from_schema(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=specs_types_mapper)


# --- the data's span and the files seen -------------------------------------------------------


def _clean_files(data_dir: Path, table: str) -> dict[str, list[int]]:
    root = clean_dir(data_dir, table)
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*.parquet")):
        st = p.stat()
        out[p.relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _data_span(data_dir: Path, files: dict[str, dict[str, list[int]]]) -> tuple[int, int] | None:
    """(first snapshot day, last snapshot day) over all clean tables; None without data."""
    days: list[int] = []
    for table, fs in files.items():
        if not fs:
            continue
        spec = TABLES[table]
        if spec.partitioned:
            names = {Path(f).parent.name for f in fs if f.startswith(f"{DAY_PARTITION}=")}
            ds_days = [to_day(pd.Timestamp(n.split("=", 1)[1], tz="UTC")) for n in names]
            days += [min(ds_days), max(ds_days)] if ds_days else []
            if table == "orders":  # a later version of an order changes snapshots after it
                t = read_clean(data_dir, table, ["updated_at"])["updated_at"].dropna()
                days += [int(day_of(t).max())] if len(t) else []
        else:
            col = spec.time_column
            t = read_clean(data_dir, table, [col])[col].dropna()
            if len(t):
                d = day_of(t)
                days += [int(d.min()), int(d.max())]
    if not days:
        return None
    last = max(days) + 1
    as_of = horizon(data_dir)  # exports complete up to: snapshots run on through empty days
    if as_of is not None:
        last = max(last, int(day_of(pd.DatetimeIndex([as_of]))[0]))
    return min(days) + 1, last


# --- stored rows ------------------------------------------------------------------------------


def read_source(
    data_dir: Path,
    source: FeatureSource,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    lists: bool = True,
) -> pd.DataFrame:
    """A stored source (rows with `start <= event_timestamp < end`) in declared dtypes; list
    features as Python lists, or packed strings with `lists=False` (specs.pack_list)."""
    path = source.path(data_dir)
    files = sorted(path.glob("*.parquet")) if path.exists() else []
    if not files:
        return (
            source.empty_frame()
            if not lists
            else from_arrow(source, source.arrow_schema().empty_table())
        )
    dataset = ds.dataset([str(f) for f in files], schema=source.arrow_schema(), format="parquet")
    ts = ds.field(source.timestamp_field)
    expr = None
    if start is not None:
        expr = ts >= pa.scalar(pd.Timestamp(start).to_pydatetime(), pa.timestamp("us", "UTC"))
    if end is not None:
        e = ts < pa.scalar(pd.Timestamp(end).to_pydatetime(), pa.timestamp("us", "UTC"))
        expr = e if expr is None else expr & e
    return from_arrow(source, dataset.to_table(filter=expr), lists=lists)


def _read_file(source: FeatureSource, path: Path, end: pd.Timestamp) -> pd.DataFrame:
    end_ts = pa.scalar(pd.Timestamp(end).to_pydatetime(), pa.timestamp("us", "UTC"))
    table = pq.read_table(
        path, schema=source.arrow_schema(), filters=ds.field(source.timestamp_field) < end_ts
    )
    return from_arrow(source, table, lists=False)


def _stored_as_of(
    data_dir: Path, source: FeatureSource, start: pd.Timestamp, state: dict | None = None
) -> pd.DataFrame:
    """Each entity's last stored row before `start` (the state the new rows continue).

    The common case (start = the day after the watermark) reads the small latest-row file the
    previous run left; a late-data restart reads the stored rows before `start`.
    """
    latest = _latest_path(data_dir, source)
    if state is not None and latest.exists() and to_day(start) == state["end_day"] + 1:
        table = pq.read_table(latest, schema=source.arrow_schema())
        if len(table) and table.column(source.timestamp_field).to_pandas().max() < start:
            return from_arrow(source, table, lists=False)
    rows = read_source(data_dir, source, end=start, lists=False)
    return _last_rows(source, rows)


def _last_rows(source: FeatureSource, rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return rows
    keys = list(source.join_keys)
    rows = rows.sort_values([*keys, source.timestamp_field], kind="stable")
    return rows.drop_duplicates(keys, keep="last").reset_index(drop=True)


def _latest_path(data_dir: Path, source: FeatureSource) -> Path:
    return state_dir(data_dir) / "features" / f"{source.name}.latest.parquet"


def _save_latest(
    data_dir: Path, source: FeatureSource, prior: pd.DataFrame, rows: pd.DataFrame, end_day: int
) -> None:
    """Each entity's last row as of `end_day`: the next on-time run's prior, without a scan."""
    latest = _last_rows(source, pd.concat([prior, rows], ignore_index=True))
    if latest.empty:
        latest = source.empty_frame()
    path = _latest_path(data_dir, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(to_arrow(source, latest), tmp, compression="zstd")
    os.replace(tmp, path)


def _write(data_dir: Path, source: FeatureSource, rows: pd.DataFrame, start: pd.Timestamp) -> None:
    """Replace stored rows from `start` on with `rows`, one file per month, atomically per file."""
    path = source.path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    first_month = f"{start:%Y-%m}"
    stamps = pd.DatetimeIndex(rows[source.timestamp_field]).tz_localize(None)
    months = stamps.to_numpy().astype("datetime64[M]")
    labels, inverse = np.unique(months.astype(str), return_inverse=True)
    by_month = {str(m): np.flatnonzero(inverse == i) for i, m in enumerate(labels)}
    kept = {}
    for f in sorted(path.glob("*.parquet")):
        if f.stem == first_month:
            kept[f.stem] = _read_file(source, f, end=start)
        if f.stem >= first_month:
            f.unlink()
    for m in sorted(set(by_month) | set(kept)):
        part = rows.iloc[by_month.get(m, [])]
        if m in kept:
            part = pd.concat([kept[m], part], ignore_index=True)
        table = to_arrow(source, part.reset_index(drop=True)).sort_by(
            [(source.timestamp_field, "ascending")] + [(k, "ascending") for k in source.join_keys]
        )
        tmp = path / f".{m}.parquet.tmp"
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd")
        os.replace(tmp, path / f"{m}.parquet")


def _wipe(path: Path) -> None:
    if path.exists():
        for f in path.glob("*.parquet"):
            f.unlink()


# --- watermarks -------------------------------------------------------------------------------


def _state_path(data_dir: Path, source: FeatureSource) -> Path:
    return state_dir(data_dir) / "features" / f"{source.name}.json"


def _load_state(data_dir: Path, source: FeatureSource) -> dict | None:
    p = _state_path(data_dir, source)
    if not p.exists() or not source.path(data_dir).is_dir():
        return None
    return json.loads(p.read_text())


def _save_state(
    data_dir: Path, source: FeatureSource, end_day: int, seen: dict[str, dict[str, list[int]]]
) -> None:
    p = _state_path(data_dir, source)
    p.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "source": source.name,
        "fingerprint": source.fingerprint(),
        "end_day": int(end_day),
        "end": f"{day_ts(end_day).iloc[0]:%Y-%m-%d}",
        "files": seen,
    }
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
    os.replace(tmp, p)
