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

KEY_SEP = "\x1f"  # joins the ids of a view keyed by several entities (customer x product)
COMPOSITE_KEY = "__key"


@dataclass(frozen=True)
class ParquetSource:
    """A view's parquet source. A view keyed by several entities is read by one string key, its
    ids joined by KEY_SEP (column `__key` in the batches), so order, resume and lookups by key
    work as for one."""

    path: str  # a file or a glob
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    timestamp_field: str
    created_timestamp_column: str | None = None

    def exists(self) -> bool:
        return bool(glob.glob(self.path))

    @property
    def key_column(self) -> str:
        """The batches' key column: the join key, or `__key` for several."""
        return self.join_keys[0] if len(self.join_keys) == 1 else COMPOSITE_KEY

    @property
    def key_sql(self) -> str:
        """The key as an expression over the file's columns."""
        if len(self.join_keys) == 1:
            return _q(self.join_keys[0])
        sep = f"chr({ord(KEY_SEP)})"
        return "(" + f" || {sep} || ".join(_q(k) for k in self.join_keys) + ")"


@dataclass(frozen=True)
class Resume:
    """Continue an interrupted window: keys <= `after_key` were written with rows up to
    `written_end`; they only need rows newer than that."""

    after_key: str
    written_end: datetime


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for one materialization run (50-150 ms to open on this machine, so
    one per run, not one per view); views read through their own `cursor`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A connection of its own to `con`'s database (under a millisecond), for one view: the
    memory limit and threads are the database's, shared by the views read at the same time."""
    cur = con.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    return cur


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
    key, ts = _q(src.key_column), _q(src.timestamp_field)
    keys = [key] if len(src.join_keys) == 1 else [key, *(_q(k) for k in src.join_keys)]
    columns = ", ".join([*keys, *(_q(f) for f in src.features), ts])
    expr = src.key_sql  # the key in the WHERE clause, where the alias is not yet defined
    extra = "" if len(src.join_keys) == 1 else f", {expr} AS {key}"
    where = [f"{ts} >= $start", f"{ts} <= $end"]
    params: dict[str, object] = {"path": src.path, "start": _utc(start), "end": _utc(end)}
    if resume is not None:
        where.append(f"({expr} > $after OR {ts} > $written_end)")
        params.update(after=resume.after_key, written_end=_utc(resume.written_end))
    if only_keys is not None:
        where.append(f"{expr} IN (SELECT unnest($keys))")
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
        f"WITH window_rows AS NOT MATERIALIZED (SELECT *{extra} FROM read_parquet($path, "
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


def known_keys(con: duckdb.DuckDBPyConnection, src: ParquetSource, end: datetime) -> pa.Table:
    """Every entity with a row at or before `end` (what should be online after the window): its
    key column and, for several join keys, each key's column (as `latest_rows` gives them)."""
    key = _q(src.key_column)
    keys = [f"{src.key_sql} AS {key}"]
    if len(src.join_keys) > 1:
        keys += [_q(k) for k in src.join_keys]
    if not src.exists():
        return pa.table({n: pa.array([], pa.string()) for n in _names(src)})
    sql = (
        f"SELECT DISTINCT {', '.join(keys)} FROM read_parquet($path, union_by_name = true) "
        f"WHERE {_q(src.timestamp_field)} <= $end"
    )
    return con.sql(sql, params={"path": src.path, "end": _utc(end)}).to_arrow_table()


def _names(src: ParquetSource) -> list[str]:
    return [src.key_column, *(src.join_keys if len(src.join_keys) > 1 else ())]
