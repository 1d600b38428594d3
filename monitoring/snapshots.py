"""Feature values as of given instants, read from the offline sources (change-point parquet).

A source holds a row per entity only when a value changed, so the value of an entity at T is its
latest row at or before T. DuckDB's ASOF join does that for a grid of (sampled entity, instant) in
one sort-merge pass; entities without a row yet at T do not exist at T and are left out. Entities
are sampled by a hash of their key (the same ones on both sides of a comparison, and across runs).
The pipelines write at most one row per entity and snapshot, so no tie-breaking is needed and
(keys, time) names one row.
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
    picked = ", ".join(f'"{k}" as k{i}' for i, k in enumerate(keys))
    ks = ", ".join(f"k{i}" for i in range(len(keys)))
    semi = " and ".join(f'r."{k}" = keys.k{i}' for i, k in enumerate(keys))
    on = " and ".join(f's."{k}" = grid.k{i}' for i, k in enumerate(keys))
    out = ", ".join(f'hit.k{i} as "{k}"' for i, k in enumerate(keys))
    order = ", ".join(str(i + 2) for i in range(len(keys)))
    # Two steps: the ASOF join sorts only keys and times (narrow); the values of the rows it
    # picked are then fetched by (keys, time), unique per source. An ASOF join carrying every
    # column sorts the whole wide source (product_stats at 100k customers: 7.6 s against 1.9 s).
    if columns:
        cols = ", ".join(f's."{c}"' for c in columns)
        same = " and ".join(f's."{k}" = hit.k{i}' for i, k in enumerate(keys))
        fetch = f"""
            select hit.{INSTANT}, {out}, {cols}
            from hit join read_parquet('{glob}') s on {same} and s."{ts}" = hit._ts"""
    else:
        fetch = f"select hit.{INSTANT}, {out} from hit"
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
            stamps as (
                select {", ".join(f'r."{k}"' for k in keys)}, r."{ts}"
                from read_parquet('{glob}') r semi join keys on {semi}
            ),
            hit as (
                select grid.{INSTANT}, {ks}, s."{ts}" as _ts
                from grid asof join stamps s on {on} and grid.{INSTANT} >= s."{ts}"
            )
            {fetch}
            order by 1, {order}
            """
        ).df()
    finally:
        con.unregister("monitor_instants")
