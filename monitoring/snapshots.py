"""Feature values as of given instants, read from the offline sources (change-point parquet).

A source holds a row per entity only when a value changed, so the value of an entity at T is its
latest row at or before T. DuckDB's ASOF join does that for a grid of (sampled entity, instant) in
one sort-merge pass; entities without a row yet at T do not exist at T and are left out. Entities
are sampled by a hash of their key (the same ones on both sides of a comparison, and across runs).
The pipelines write at most one row per entity and snapshot, so no tie-breaking is needed.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from pipelines.specs import FeatureSource

INSTANT = "_at"


def source_glob(data_dir: Path, source: FeatureSource) -> str | None:
    path = source.path(data_dir)
    if not path.exists() or not any(path.glob("*.parquet")):
        return None
    return str(path / "*.parquet")


def newest_row(con: duckdb.DuckDBPyConnection, glob: str, source: FeatureSource):
    row = con.execute(
        f"select max({source.timestamp_field}), count(*) from read_parquet('{glob}')"
    ).fetchall()[0]
    return (pd.Timestamp(row[0]) if row[0] is not None else None), int(row[1])


def as_of(
    con: duckdb.DuckDBPyConnection,
    glob: str,
    source: FeatureSource,
    instants: list[pd.Timestamp],
    columns: list[str],
    sample: int,
) -> pd.DataFrame:
    """One row per (sampled entity, instant) where the entity exists: INSTANT, keys, columns.

    An entity made of others (customer x product) is sampled and joined by all its keys."""
    keys = list(source.join_keys)
    ts = source.timestamp_field
    cols = "".join(f', s."{c}"' for c in columns)
    read = ", ".join(f'"{c}"' for c in [*keys, ts, *columns])
    semi = " and ".join(f'r."{k}" = keys.k{i}' for i, k in enumerate(keys))
    picked = ", ".join(f'"{k}" as k{i}' for i, k in enumerate(keys))
    ks = ", ".join(f"k{i}" for i in range(len(keys)))
    out = ", ".join(f'grid.k{i} as "{k}"' for i, k in enumerate(keys))
    on = " and ".join(f's."{k}" = grid.k{i}' for i, k in enumerate(keys))
    grid = pd.DataFrame({INSTANT: pd.to_datetime(list(instants), utc=True)})
    con.register("monitor_instants", grid)
    try:
        return con.sql(
            f"""
            with keys as (
                select {ks} from (select distinct {picked} from read_parquet('{glob}'))
                order by hash({ks}), {ks} limit {int(sample)}
            ),
            grid as (select {ks}, i.{INSTANT} from keys cross join monitor_instants i),
            rows as (select {read} from read_parquet('{glob}') r semi join keys on {semi})
            select grid.{INSTANT}, {out}{cols}
            from grid asof join rows s on {on} and grid.{INSTANT} >= s."{ts}"
            order by 1, {", ".join(str(i + 2) for i in range(len(keys)))}
            """
        ).df()
    finally:
        con.unregister("monitor_instants")
