"""Feature declarations: every feature's name, dtype, window and description, written once.

Each family module declares its `SOURCE` at its top; `pipelines.sources` collects them. The
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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Dtype = Literal["int64", "float64", "string", "unix_timestamp", "bool", "string_list", "float_list"]
Entity = Literal["customer", "product", "collection", "customer_product"]

# Who answers for what: the pipelines team for sources and their views, the platform team for
# entities, on-demand views and feature services. Written here once; Feast objects read them.
PIPELINES_OWNER = "feature-pipelines@shopfeast"
PLATFORM_OWNER = "feature-platform@shopfeast"


@dataclass(frozen=True)
class EntitySpec:
    """What features are about, keyed as in the raw contract (the Feast entity is built from it)."""

    name: str
    join_key: str
    description: str
    tags: tuple[tuple[str, str], ...] = ()


ENTITIES: dict[str, EntitySpec] = {
    "customer": EntitySpec(
        "customer",
        "customer_id",
        "A shop customer, keyed by the raw contract's customer_id.",
        (("domain", "customer"), ("pii", "false")),
    ),
    "product": EntitySpec(
        "product",
        "product_id",
        "A catalog product, keyed by the raw contract's product_id.",
        (("domain", "product"), ("pii", "false")),
    ),
    "collection": EntitySpec(
        "collection",
        "collection_id",
        "A merchandising collection, keyed by product_collections' collection_id.",
        (("domain", "collection"), ("pii", "false")),
    ),
}

# Entities made of others: a view keyed by several entities at once (a Feast view with several
# entities; each row is one combination that happened).
COMPOSITE: dict[str, tuple[str, ...]] = {"customer_product": ("customer", "product")}

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
# Windows of the real-time views (pipelines/realtime.py), ending at the entity's latest event.
WINDOW_HOURS: dict[str, int] = {"1h": 1, "6h": 6}


def window_days(window: str | None) -> int | None:
    """Days of a window written "<N>d" (None for "lifetime", as of T or anything else)."""
    if window and window.endswith("d") and window[:-1].isdigit():
        return int(window[:-1])
    return None


@dataclass(frozen=True)
class Feature:
    """One feature column.

    `fill` is the value an entity that exists has when nothing happened (0 for counts and sums, so
    they are never null for an existing customer); None means null is the honest "no value" (a
    ratio with a zero denominator, a timestamp that never happened). `window` is one of
    `WINDOW_DAYS`, `WINDOW_HOURS` (real-time views), "lifetime", or None for values read as of T
    (profile fields). `drift`: how the monitor compares its distribution over time, when the
    default for its kind does not fit (`drift_policy`).
    """

    name: str
    dtype: Dtype
    description: str
    window: str | None = None
    fill: Any = None
    drift: Drift | None = None
    owner: str | None = None  # who answers for it, when not its source's owner
    tags: tuple[tuple[str, str], ...] = ()
    definition: str | None = None  # a declared aggregation, in one line (declarations.py)

    @property
    def window_days(self) -> int | None:
        return window_days(self.window)

    @property
    def window_hours(self) -> int | None:
        return WINDOW_HOURS.get(self.window) if self.window else None

    def pandas_dtype(self) -> str | pd.api.extensions.ExtensionDtype:
        """The dtype the pipelines hand to parquet: nullable unless `fill` makes it total."""
        if self.dtype == "int64":
            return "int64" if self.fill is not None else "Int64"
        if self.dtype == "float64":
            return "float64"
        if self.dtype in ("string", "string_list", "float_list"):
            return STRING
        if self.dtype == "unix_timestamp":
            return "datetime64[us, UTC]"
        if self.dtype == "bool":
            return "boolean"
        raise ValueError(f"unknown dtype {self.dtype!r}")


DriftMode = Literal["distribution", "increment", "items", "skip"]


@dataclass(frozen=True)
class Drift:
    """How the monitor compares a feature's distribution over time (docs/monitoring.md).

    `warn`/`alert` are PSI thresholds. `mode`: `distribution` (the values; lists by length and
    items), `increment` (the change over the window's length: lifetime counts and sums, whose
    level grows with the shop's age), `items` (a list's items only: a lifetime list fills up as
    the shop ages, so its length would drift by construction), `skip` (not compared; `reason`).
    `grain`: for a value every entity of a group shares (a category's median price), the column
    naming the group: the distinct groups, not the entities, are the test's sample size.
    """

    mode: DriftMode = "distribution"
    warn: float = 0.1
    alert: float = 0.25
    reason: str = ""
    grain: str | None = None  # a column naming the group the value is shared by (category)


def drift_policy(feature: Feature) -> Drift:
    """The feature's declared policy, else the default for its kind."""
    if feature.drift is not None:
        return feature.drift
    if feature.dtype == "unix_timestamp":
        return Drift("skip", reason="a point in time: its age grows with the shop's")
    if feature.window == "lifetime":
        if feature.dtype in ("int64", "float64") and feature.fill == 0:
            return Drift("increment")
        if feature.dtype == "string_list":
            return Drift("items")
        if feature.dtype == "float_list":
            return Drift("skip", reason="values of a lifetime list that fills up with age")
    return Drift()


@dataclass(frozen=True)
class FeatureSource:
    """One feature source = one parquet source under DIR/features/<name>/ = one Feast view."""

    name: str
    entity: Entity
    features: tuple[Feature, ...]
    description: str
    owner: str = PIPELINES_OWNER
    tags: tuple[tuple[str, str], ...] = ()
    timestamp_field: str = TIMESTAMP_FIELD
    created_timestamp_column: str = CREATED_FIELD

    @property
    def entities(self) -> tuple[str, ...]:
        """The entities a row is about (one, or the parts of a composite)."""
        return COMPOSITE.get(self.entity, (self.entity,))

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(ENTITIES[e].join_key for e in self.entities)

    @property
    def join_key(self) -> str:
        """The join key of a single-entity source (the first of a composite's)."""
        return self.join_keys[0]

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES and self.entity not in COMPOSITE:
            known = sorted([*ENTITIES, *COMPOSITE])
            raise ValueError(f"{self.name}: unknown entity {self.entity!r}; one of {known}")
        names = [f.name for f in self.features]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"{self.name}: features declared twice: {sorted(dupes)}")
        reserved = {*self.join_keys, self.timestamp_field, self.created_timestamp_column}
        if reserved & set(names):
            raise ValueError(f"{self.name}: feature names clash with {sorted(reserved)}")

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        """Output columns, in file order."""
        return [
            *self.join_keys,
            self.timestamp_field,
            self.created_timestamp_column,
            *self.feature_names,
        ]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} declares no feature {name!r}")

    def arrow_schema(self) -> pa.Schema:
        ts = pa.timestamp("us", tz="UTC")
        return pa.schema(
            [pa.field(k, pa.string(), nullable=False) for k in self.join_keys]
            + [
                pa.field(self.timestamp_field, ts, nullable=False),
                pa.field(self.created_timestamp_column, ts, nullable=False),
            ]
            + [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in self.features]
        )

    def fingerprint(self) -> str:
        """Changes whenever a column is added, removed, renamed or retyped (forces a rebuild)."""
        columns = [
            (f.name, f.dtype, f.window) + ((f.definition,) if f.definition else ())
            for f in self.features
        ]
        body = json.dumps([self.join_key if len(self.join_keys) == 1 else self.join_keys, columns])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def path(self, data_dir: Path) -> Path:
        return Path(data_dir) / "features" / self.name

    def empty_frame(self) -> pd.DataFrame:
        return conform(self, pd.DataFrame({c: [] for c in self.columns}))


STRING = pd.StringDtype("pyarrow")  # arrow-backed: vectorised comparisons, free parquet I/O
LIST_SEP = "\x1f"  # list features travel through pandas as one packed string per row


def pack_list(values: list | tuple | np.ndarray | None) -> str | None:
    """A list feature value as its packed string ("" is the empty list, None stays null)."""
    if values is None:
        return None
    return LIST_SEP.join(map(str, values))


def unpack_list(packed: str | None, dtype: Dtype = "string_list") -> list | None:
    if packed is None or packed is pd.NA:
        return None
    items = packed.split(LIST_SEP) if packed else []
    return [float(v) for v in items] if dtype == "float_list" else items


def conform(source: FeatureSource, frame: pd.DataFrame) -> pd.DataFrame:
    """Select and cast `frame` to the declared columns and dtypes (raises on a missing column).

    List features come out packed (`pack_list`): comparing and storing one string per row is
    vectorised, a Python list per row is not. `to_arrow` unpacks them into parquet lists.
    """
    missing = [c for c in source.columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{source.name}: output lacks declared columns {missing}")
    out = pd.DataFrame(index=frame.index)
    for key in source.join_keys:
        out[key] = frame[key].astype(STRING)
    for c in (source.timestamp_field, source.created_timestamp_column):
        out[c] = _utc_us(frame[c])
    for f in source.features:
        col = frame[f.name]
        if f.dtype == "unix_timestamp":
            out[f.name] = _utc_us(col)
        elif f.dtype in ("string_list", "float_list"):
            if not isinstance(col.dtype, pd.StringDtype):  # lists, or strings already packed
                col = pd.Series(
                    [None if _null(v) else v if isinstance(v, str) else pack_list(v) for v in col],
                    index=col.index,
                    dtype=object,
                )
            out[f.name] = col.astype(STRING)
        elif f.dtype == "int64" and f.fill is not None:
            out[f.name] = col.fillna(f.fill).astype("int64")
        elif f.dtype == "float64":
            col = pd.to_numeric(col, errors="raise").astype("float64")
            out[f.name] = col if f.fill is None else col.fillna(f.fill)
        else:
            out[f.name] = col.astype(f.pandas_dtype())
    return out.reset_index(drop=True)


def to_arrow(source: FeatureSource, rows: pd.DataFrame) -> pa.Table:
    """Conformed rows as a table in the declared schema (packed lists become parquet lists)."""
    schema = source.arrow_schema()
    arrays = []
    for field in schema:
        col = rows[field.name]
        if pa.types.is_list(field.type):
            packed = pa.array(col.astype(STRING).array, type=pa.large_string()).cast(pa.string())
            split = pc.split_pattern(packed, LIST_SEP)
            empty = pa.scalar([], pa.list_(pa.string()))
            lists = pc.if_else(pc.equal(packed, ""), empty, split)
            arrays.append(lists.cast(field.type))
        else:
            arrays.append(pa.array(col, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def from_arrow(source: FeatureSource, table: pa.Table, lists: bool = True) -> pd.DataFrame:
    """Stored rows back as a conformed frame; `lists=False` keeps list features packed."""
    packed = {}
    for f in source.features:
        if f.dtype == "string_list":
            packed[f.name] = pc.binary_join(table.column(f.name), LIST_SEP).to_pandas(
                types_mapper=_types_mapper
            )
        elif f.dtype == "float_list":  # Python's float formatting, as the pipelines pack them
            packed[f.name] = pd.Series(
                [pack_list(v) for v in table.column(f.name).to_pylist()], dtype=object
            )
    table = table.drop_columns(list(packed))
    frame = table.to_pandas(types_mapper=_types_mapper)
    for name, strings in packed.items():
        frame[name] = pd.Series(strings.astype(STRING).array, index=frame.index)
    frame = conform(source, frame[source.columns])
    if lists:
        for f in source.features:
            if f.dtype in ("string_list", "float_list"):
                frame[f.name] = [unpack_list(v, f.dtype) for v in frame[f.name].tolist()]
    return frame


def _types_mapper(t: pa.DataType):
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return STRING
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def _null(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def _utc_us(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_convert("UTC")
    else:
        col = pd.to_datetime(col, utc=True)
    return col.astype("datetime64[us, UTC]")
