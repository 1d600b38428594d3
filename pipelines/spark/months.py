"""One month of a feature source, gathered from every shard's part and written in bounded slices.

The Spark engine's write tasks turn the shards' parts into the month files the local engine writes
(`DIR/features/<source>/<YYYY-MM>.parquet`, rows sorted by (timestamp, key)). Reading a whole month
and sorting it in one task made the task grow with the shop: at ten times the bench shop a month of
customer_session is about 10M rows and the task's Python worker held 4 GiB. Here a month is split
into runs of whole days of at most `slice_rows` rows (one day alone may exceed it), each run read
with a time filter, sorted and appended to the file; rows are carried over so that every row group
but the last holds exactly `row_group_size` rows, as one `pq.write_table` of the sorted month would
write them. The sort is stable and a run's rows keep the order they had in the month, so the file is
the one the whole-month write gave, row for row and row group for row group. Each source's
latest-row file (one row per entity, sorted by key) is written the same way, a run of entities
(a range of the first key's values) at a time: at 1M customers one sort of
customer_product_history's 28.2M pairs held 5.8 GiB, the runs 1.1 GiB (docs/benchmarks.md).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SLICE_ROWS = 1_000_000  # rows sorted at once by a write task (~0.3-0.5 GiB of Python worker)
PYARROW_ROW_GROUP = 1024 * 1024  # pq.write_table's row group size when none is given
DAY_US = 86_400_000_000
UTC = pa.timestamp("us", "UTC")


def write_month(
    parts: list[str],
    schema: pa.Schema,
    month: str,
    timestamp: str,
    keys: list[str],
    path: Path,
    row_group_size: int | None = None,
    slice_rows: int = SLICE_ROWS,
    compression: str = "snappy",
) -> int:
    """Write `month` ("YYYY-MM") of the rows in `parts` to `path`, sorted by (timestamp, *keys),
    through a temporary file swapped in when complete; returns the rows written."""
    group = row_group_size or PYARROW_ROW_GROUP
    lo = pd.Timestamp(f"{month}-01", tz="UTC")
    hi = lo + pd.offsets.MonthBegin(1)
    data = ds.dataset(parts, format="parquet", schema=schema)
    order = [(timestamp, "ascending"), *((k, "ascending") for k in keys)]
    runs = (
        data.to_table(filter=_within(timestamp, start, end)).sort_by(order)
        for start, end in _slices(data, timestamp, lo, hi, slice_rows)
    )
    return _write_runs(runs, schema, Path(path), group, compression)


def write_latest(
    parts: list[str],
    schema: pa.Schema,
    keys: list[str],
    timestamp: str,
    path: Path,
    slice_rows: int = SLICE_ROWS,
    compression: str = "zstd",
) -> int:
    """Write the rows of `parts` (each entity's last row, an entity in one part) to `path` sorted
    by (*keys, timestamp), as one sort of them all would, a run of first-key values of at most
    `slice_rows` rows at a time (one value may exceed it); returns the rows written."""
    data = ds.dataset(parts, format="parquet", schema=schema)
    order = [*((k, "ascending") for k in keys), (timestamp, "ascending")]
    first = ds.field(keys[0])
    counts = pc.value_counts(data.to_table(columns=[keys[0]]).column(0).combine_chunks())
    values, rows = counts.field("values"), counts.field("counts").to_numpy()
    known = pc.invert(pc.is_null(values)).to_numpy(zero_copy_only=False)
    values, rows, nulls = values.filter(known), rows[known], int(rows[~known].sum())
    ranked = pc.sort_indices(values)
    values, rows = values.take(ranked), rows[ranked.to_numpy()]
    bounds, start, held = [], 0, 0
    for i, n in enumerate(rows):
        if held and held + n > slice_rows:
            bounds.append((values[start], values[i - 1]))
            start, held = i, 0
        held += int(n)
    if len(values):
        bounds.append((values[start], values[len(values) - 1]))
    runs = (data.to_table(filter=(first >= lo) & (first <= hi)).sort_by(order) for lo, hi in bounds)
    if nulls:  # sorted last, as one sort places them
        runs = itertools.chain(runs, [data.to_table(filter=first.is_null()).sort_by(order)])
    return _write_runs(runs, schema, Path(path), PYARROW_ROW_GROUP, compression)


def _write_runs(runs, schema: pa.Schema, path: Path, group: int, compression: str) -> int:
    """Append sorted runs to `path` (through a temporary file swapped in when complete), carrying
    rows over so that every row group but the last holds exactly `group` rows."""
    tmp = path.with_name(f".{path.name}.tmp")
    written = 0
    with pq.ParquetWriter(tmp, schema, compression=compression) as writer:
        held: list[pa.Table] = []  # sorted rows not yet a full row group
        held_rows = 0
        for run in runs:
            held.append(run)
            held_rows += len(run)
            if held_rows >= group:
                table = pa.concat_tables(held)
                full = (len(table) // group) * group
                writer.write_table(table.slice(0, full), row_group_size=group)
                written += full
                held, held_rows = [table.slice(full)], len(table) - full
        if held_rows or not written:  # the remainder (or an empty file)
            table = pa.concat_tables(held) if held else schema.empty_table()
            writer.write_table(table, row_group_size=group)
            written += len(table)
    os.replace(tmp, path)
    return written


def _within(timestamp: str, start: pd.Timestamp, end: pd.Timestamp):
    ts = ds.field(timestamp)
    lo, hi = (pa.scalar(t.to_pydatetime(), UTC) for t in (start, end))
    return (ts >= lo) & (ts < hi)


def _slices(data: ds.Dataset, timestamp: str, lo: pd.Timestamp, hi: pd.Timestamp, slice_rows: int):
    """Consecutive runs of whole days in [lo, hi), each at most `slice_rows` rows unless one day
    holds more, from the month's timestamps alone (8 bytes a row)."""
    stamps = data.to_table(columns=[timestamp], filter=_within(timestamp, lo, hi)).column(0)
    us = pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False)
    first = lo.value // 1000 // DAY_US
    days = int((hi.value // 1000) // DAY_US - first)
    counts = np.bincount(us // DAY_US - first, minlength=days) if len(us) else np.zeros(days, int)
    start, rows = 0, 0
    for day in range(days):
        if rows and rows + counts[day] > slice_rows:
            yield _day(lo, first, start), _day(lo, first, day)
            start, rows = day, 0
        rows += int(counts[day])
    yield _day(lo, first, start), hi


def _day(lo: pd.Timestamp, first: int, day: int) -> pd.Timestamp:
    return pd.Timestamp((first + day) * DAY_US * 1000, tz="UTC") if day else lo
