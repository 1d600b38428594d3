"""Feature declarations: every feature's name, dtype, window and description, written once.

Each family module declares its `SOURCE` at its top; `pipelines.registry` collects them. The
pipelines cast and write their output from these declarations, and the Feast definitions
(feature_repo/) derive their view schemas from the same objects, so a column cannot exist in one
place and not the other. This module knows nothing about Feast: `dtype` is a small vocabulary that
maps one to one onto Feast's types (see `FEAST_TYPE_NAMES`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

Dtype = Literal[
    "int64", "float64", "string", "unix_timestamp", "bool", "string_list", "float_list"
]
Entity = Literal["customer", "product"]

TIMESTAMP_FIELD = "event_timestamp"
CREATED_FIELD = "created_timestamp"

ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "unix_timestamp": pa.timestamp("us", tz="UTC"),
    "bool": pa.bool_(),
    "string_list": pa.list_(pa.string()),
    "float_list": pa.list_(pa.float64()),
}

# The feast.types name each dtype maps to (feature_repo resolves the names; pipelines never import
# Feast). Lists of strings/floats are Feast's Array(String) / Array(Float64).
FEAST_TYPE_NAMES: dict[str, str] = {
    "int64": "Int64",
    "float64": "Float64",
    "string": "String",
    "unix_timestamp": "UnixTimestamp",
    "bool": "Bool",
    "string_list": "Array(String)",
    "float_list": "Array(Float64)",
}

WINDOW_DAYS: dict[str, int] = {"7d": 7, "28d": 28, "30d": 30, "90d": 90}


@dataclass(frozen=True)
class Feature:
    """One feature column.

    `fill` is the value an entity that exists has when nothing happened (0 for counts and sums, so
    they are never null for an existing customer); None means null is the honest "no value" (a
    ratio with a zero denominator, a timestamp that never happened). `window` is one of
    `WINDOW_DAYS`, "lifetime", or None for values read as of T (profile fields).
    """

    name: str
    dtype: Dtype
    description: str
    window: str | None = None
    fill: Any = None

    @property
    def window_days(self) -> int | None:
        return WINDOW_DAYS.get(self.window) if self.window else None

    def pandas_dtype(self) -> str | pd.api.extensions.ExtensionDtype:
        """The dtype the pipelines hand to parquet: nullable unless `fill` makes it total."""
        if self.dtype == "int64":
            return "int64" if self.fill is not None else "Int64"
        if self.dtype == "float64":
            return "float64"
        if self.dtype == "string":
            return "string"
        if self.dtype == "unix_timestamp":
            return "datetime64[us, UTC]"
        if self.dtype == "bool":
            return "boolean"
        return "object"  # lists: one Python list per row (None for null)


@dataclass(frozen=True)
class FeatureSource:
    """One feature source = one parquet source under DIR/features/<name>/ = one Feast view."""

    name: str
    entity: Entity
    join_key: str
    features: tuple[Feature, ...]
    description: str
    owner: str = "feature-pipelines@shopfeast"
    tags: tuple[tuple[str, str], ...] = ()
    timestamp_field: str = TIMESTAMP_FIELD
    created_timestamp_column: str = CREATED_FIELD

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"{self.name}: features declared twice: {sorted(dupes)}")
        reserved = {self.join_key, self.timestamp_field, self.created_timestamp_column}
        if reserved & set(names):
            raise ValueError(f"{self.name}: feature names clash with {sorted(reserved)}")

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        """Output columns, in file order."""
        return [self.join_key, self.timestamp_field, self.created_timestamp_column,
                *self.feature_names]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} declares no feature {name!r}")

    def arrow_schema(self) -> pa.Schema:
        ts = pa.timestamp("us", tz="UTC")
        return pa.schema(
            [pa.field(self.join_key, pa.string(), nullable=False),
             pa.field(self.timestamp_field, ts, nullable=False),
             pa.field(self.created_timestamp_column, ts, nullable=False)]
            + [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in self.features]
        )

    def fingerprint(self) -> str:
        """Changes whenever a column is added, removed, renamed or retyped (forces a rebuild)."""
        body = json.dumps([self.join_key, [(f.name, f.dtype, f.window) for f in self.features]])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def path(self, data_dir: Path) -> Path:
        return Path(data_dir) / "features" / self.name

    def empty_frame(self) -> pd.DataFrame:
        return conform(self, pd.DataFrame({c: [] for c in self.columns}))


def conform(source: FeatureSource, frame: pd.DataFrame) -> pd.DataFrame:
    """Select and cast `frame` to the declared columns and dtypes (raises on a missing column)."""
    missing = [c for c in source.columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{source.name}: output lacks declared columns {missing}")
    out = pd.DataFrame(index=frame.index)
    out[source.join_key] = frame[source.join_key].astype("string")
    for c in (source.timestamp_field, source.created_timestamp_column):
        out[c] = _utc_us(frame[c])
    for f in source.features:
        col = frame[f.name]
        if f.dtype == "unix_timestamp":
            out[f.name] = _utc_us(col)
        elif f.dtype in ("string_list", "float_list"):
            out[f.name] = [v if isinstance(v, list) else None if _null(v) else list(v)
                           for v in col.astype(object)]
        elif f.dtype == "int64" and f.fill is not None:
            out[f.name] = col.fillna(f.fill).astype("int64")
        elif f.dtype == "float64":
            col = pd.to_numeric(col, errors="raise").astype("float64")
            out[f.name] = col if f.fill is None else col.fillna(f.fill)
        else:
            out[f.name] = col.astype(f.pandas_dtype())
    return out.reset_index(drop=True)


def _null(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def _utc_us(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_convert("UTC")
    else:
        col = pd.to_datetime(col, utc=True)
    return col.astype("datetime64[us, UTC]")
