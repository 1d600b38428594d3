"""Reading what a materialization window needs from a parquet feature source, with DuckDB.

Online, only the latest row per entity in `[start, end]` matters (Feast's own rule, ties broken by
the created timestamp). DuckDB computes it out of core without sorting the window and hands it
back ordered by the join key, so a run holds one chunk in memory and can resume after the last key
it wrote.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class ParquetSource:
    path: str  # a file or a glob
    join_key: str
    features: tuple[str, ...]
    timestamp_field: str
    created_timestamp_column: str | None = None

    def exists(self) -> bool:
        return bool(glob.glob(self.path))


@dataclass(frozen=True)
class Resume:
    """Continue an interrupted window: keys <= `after_key` were written with rows up to
    `written_end`; they only need rows newer than that."""

    after_key: str
    written_end: datetime


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def latest_rows(
    con: duckdb.DuckDBPyConnection,
    src: ParquetSource,
    start: datetime,
    end: datetime,
    batch_rows: int,
    resume: Resume | None = None,
    only_keys: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The latest row per entity with `start <= event time <= end`, ordered by join key."""
    if not src.exists():
        return iter(())
    key, ts = _q(src.join_key), _q(src.timestamp_field)
    columns = ", ".join([key, *(_q(f) for f in src.features), ts])
    where = [f"{ts} >= $start", f"{ts} <= $end"]
    params: dict[str, object] = {"path": src.path, "start": _utc(start), "end": _utc(end)}
    if resume is not None:
        where.append(f"({key} > $after OR {ts} > $written_end)")
        params.update(after=resume.after_key, written_end=_utc(resume.written_end))
    if only_keys is not None:
        where.append(f"{key} IN (SELECT unnest($keys))")
        params["keys"] = list(only_keys)
    # Two scans of the window instead of a sort of it: the latest event time per key from the key
    # and time columns alone, then the rows at those times; ties on the event time (rare) resolve
    # by the created timestamp over that small result, as Feast resolves them. (Not MATERIALIZED:
    # a materialized window would copy every column of every row; arg_max over whole rows copies
    # each row again on time-sorted files, where every row is a new maximum.)
    tie = (
        f"QUALIFY row_number() OVER (PARTITION BY {key} "
        f"ORDER BY {_q(src.created_timestamp_column)} DESC) = 1 "
        if src.created_timestamp_column
        else ""
    )
    sql = (
        f"WITH window_rows AS NOT MATERIALIZED (SELECT * FROM read_parquet($path, "
        f"union_by_name = true) WHERE {' AND '.join(where)}), "
        f"latest AS (SELECT {key}, max({ts}) AS {ts} FROM window_rows GROUP BY {key}) "
        f"SELECT {columns} FROM window_rows SEMI JOIN latest USING ({key}, {ts}) "
        f"{tie}ORDER BY {key}"
    )
    reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
    return _batches(reader)


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        if batch.num_rows:
            yield batch


def known_keys(con: duckdb.DuckDBPyConnection, src: ParquetSource, end: datetime) -> list[str]:
    """Every entity with a row at or before `end` (what should be online after the window)."""
    if not src.exists():
        return []
    key, ts = _q(src.join_key), _q(src.timestamp_field)
    sql = (
        f"SELECT DISTINCT {key} FROM read_parquet($path, union_by_name = true) "
        f"WHERE {ts} <= $end ORDER BY {key}"
    )
    table = con.sql(sql, params={"path": src.path, "end": _utc(end)}).to_arrow_table()
    return table.column(0).to_pylist()
