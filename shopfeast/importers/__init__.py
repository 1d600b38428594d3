"""Converters from real public data sets to the raw data contract.

An importer maps what a data set has onto the contract's tables and writes one parquet file per
table. It does not clean: rows the contract rejects (a zero quantity, an exact duplicate) are
written as they are, so that ingest quarantines them under their rule and the accounting shows
what the real data holds. Each importer returns the row counts it wrote and the counts of rows it
knows the contract will reject, for its report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contract import TABLES


def write_table(df: pd.DataFrame, out: Path, table: str) -> int:
    """Write `df` as `out/<table>.parquet` in the contract's types; returns the row count.

    Only contract columns are written (in contract order); columns the frame lacks are left out,
    which the contract allows for optional ones. An empty frame writes a valid empty file with the
    columns given, so a required table with no rows still exists.
    """
    spec = TABLES[table]
    cols = [c for c in spec.columns if c.name in df.columns]
    schema = pa.schema([(c.name, spec.arrow_schema().field(c.name).type) for c in cols])
    frame = df[[c.name for c in cols]].reset_index(drop=True)
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, out / f"{table}.parquet")
    return len(frame)


def empty_frame(table: str, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A zero-row frame with the contract's (required, unless named) columns of `table`."""
    spec = TABLES[table]
    names = list(columns) if columns is not None else spec.required_columns
    return spec.arrow_schema().empty_table().select(names).to_pandas()


def stable_id(*parts: object, length: int = 16) -> str:
    """A deterministic id from the given values: the same content always gets the same id."""
    text = "\x1f".join("" if p is None or p is pd.NA else str(p) for p in parts)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def to_utc(values: pd.Series, unit: str | None = None) -> pd.Series:
    """Timestamps as tz-aware UTC microseconds; naive values are UTC (the contract's rule)."""
    ts = pd.to_datetime(values, unit=unit, utc=True)
    return ts.astype("datetime64[us, UTC]")
