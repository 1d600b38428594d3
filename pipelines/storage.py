"""Where things live under a data directory, and how the clean tables are read back.

DIR/clean/<table>/day=YYYY-MM-DD/part-<batch>.parquet   event-like tables, by UTC day
DIR/clean/<table>/part-<batch>.parquet                  change logs (customers, products)
DIR/quarantine/<table>/part-<batch>.parquet             rejected rows, raw text + _rule ...
DIR/reports/validation_report.json                      per-table accounting
DIR/reports/monitoring/                                 monitor runs: report.json/.html, latest.json
DIR/state/                                              manifests and watermarks
DIR/features/<source>/                                  feature sources Feast reads
DIR/models/                                             trained models and their cards
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from pipelines.contract import TABLES, Table

DAY_PARTITION = "day"


def clean_dir(data_dir: Path, table: str) -> Path:
    return Path(data_dir) / "clean" / table


def quarantine_dir(data_dir: Path, table: str) -> Path:
    return Path(data_dir) / "quarantine" / table


def reports_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "reports"


def monitoring_dir(data_dir: Path) -> Path:
    """`shopfeast monitor`'s reports: <run-id>/report.{json,html} and latest.json."""
    return reports_dir(data_dir) / "monitoring"


def monitoring_latest(data_dir: Path) -> Path:
    return monitoring_dir(data_dir) / "latest.json"


def state_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "state"


def models_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "models"


def partition_time_column(table: Table) -> str:
    """The timestamp a clean row's day partition comes from."""
    return table.time_column or "order_ts"


def read_clean(
    data_dir: Path,
    table: str,
    columns: list[str] | None = None,
    start: datetime | pd.Timestamp | None = None,
    end: datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Read a clean table as a DataFrame in the contract's dtypes.

    `start`/`end` bound the table's time column to `[start, end)`; for partitioned tables only the
    needed day partitions are opened. A table that was never ingested (an optional one) reads as an
    empty frame with the right columns.
    """
    spec = TABLES[table]
    schema = spec.arrow_schema()
    names = columns or schema.names
    path = clean_dir(data_dir, table)
    if not path.exists() or not any(path.rglob("*.parquet")):
        return schema.empty_table().select(names).to_pandas(types_mapper=_types_mapper)
    partitioning = ds.partitioning(pa.schema([(DAY_PARTITION, pa.string())]), flavor="hive")
    dataset = ds.dataset(
        path,
        format="parquet",
        schema=schema,
        partitioning=(partitioning if spec.partitioned else None),
    )
    time_col = partition_time_column(spec)
    expr = None
    if start is not None:
        start = pd.Timestamp(start)
        expr = ds.field(time_col) >= pa.scalar(start.to_pydatetime(), schema.field(time_col).type)
    if end is not None:
        end = pd.Timestamp(end)
        e = ds.field(time_col) < pa.scalar(end.to_pydatetime(), schema.field(time_col).type)
        expr = e if expr is None else expr & e
    if spec.partitioned and (start is not None or end is not None):
        # Prune partitions by day before reading row groups.
        days = []
        if start is not None:
            days.append(ds.field(DAY_PARTITION) >= start.strftime("%Y-%m-%d"))
        if end is not None:
            days.append(ds.field(DAY_PARTITION) <= end.strftime("%Y-%m-%d"))
        for d in days:
            expr = d & expr
        dataset = ds.dataset(path, format="parquet", partitioning=partitioning)
        arrow = dataset.to_table(columns=names, filter=expr)
        arrow = arrow.cast(pa.schema([schema.field(n) for n in names]))
    else:
        arrow = dataset.to_table(columns=names, filter=expr)
    return arrow.to_pandas(types_mapper=_types_mapper)


def _types_mapper(t: pa.DataType):
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype()
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None
