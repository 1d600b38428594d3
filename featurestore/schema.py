"""Feast objects generated from the feature declarations (pipelines/specs.py).

feature_repo/ holds only definitions; the translation from a `FeatureSource` declaration to a Feast
file source and feature view lives here, so a view's schema is never typed by hand: add a feature
to a family's SOURCE and the view has it after the next `feast apply`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Array, Bool, FeastType, Float64, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from featurestore import odfv
from pipelines.specs import ENTITIES, FEAST_TYPE_NAMES, PLATFORM_OWNER, FeatureSource
from shopconfig.settings import SOURCE_FORMAT_ENV, resolve_data_dir

OWNER = PLATFORM_OWNER  # entities, on-demand views and feature services

# One entry per name in pipelines.specs.FEAST_TYPE_NAMES (a test checks the two agree).
FEAST_TYPES: dict[str, FeastType] = {
    "Int64": Int64,
    "Float64": Float64,
    "String": String,
    "UnixTimestamp": UnixTimestamp,
    "Bool": Bool,
    "Array(String)": Array(String),
    "Array(Float64)": Array(Float64),
}

# Change-point sources: a row is written only when a value changes, so the latest row at or
# before t is the value at t however old it is. A TTL would hide it (nulls for a customer who
# simply did nothing new), so every view lives forever offline; online freshness is handled by
# re-materialising and by Redis key expiry (docs/feast.md).
NO_TTL = timedelta(0)


def feast_type(dtype: str) -> FeastType:
    return FEAST_TYPES[FEAST_TYPE_NAMES[dtype]]


def source_glob(source: FeatureSource, root: Path | None = None) -> str:
    """The parquet glob Feast's DuckDB offline store reads for a source (one file per month)."""
    return str(source.path(root or resolve_data_dir()) / "*.parquet")


def file_source(source: FeatureSource, root: Path | None = None) -> FileSource:
    """The parquet source of a view.

    Its creation timestamps are cleared: Feast stamps every new DataSource object with `now` and
    embeds it in the view's proto, so once a view has been materialized (which makes the stored
    view differ from the repo's in its intervals) `feast plan` would report every view as updated
    on each apply, meta timestamps being the only difference. Without them a re-apply is a no-op.
    """
    src = FileSource(
        name=f"{source.name}_source",
        path=source_glob(source, root),
        file_format=ParquetFormat(),
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        description=f"Change-point rows of {source.name}: {source.description}",
        owner=source.owner,
        tags={**dict(source.tags), "layer": "source"},
    )
    src.created_timestamp = None
    src.last_updated_timestamp = None
    return src


def spark_source(source: FeatureSource, root: Path | None = None) -> SparkSource:
    """The same parquet files as a SparkSource: what Feast's Spark offline store reads (the spark
    profile). Spark expands the glob itself; shopfeast's chunked engine materializes from it too."""
    src = SparkSource(
        name=f"{source.name}_source",
        path=source_glob(source, root),
        file_format="parquet",
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        description=f"Change-point rows of {source.name}: {source.description}",
        owner=source.owner,
        tags={**dict(source.tags), "layer": "source"},
    )
    src.created_timestamp = None
    src.last_updated_timestamp = None
    return src


def batch_source(source: FeatureSource, root: Path | None = None) -> DataSource:
    """The view's batch source for the profile being applied: a SparkSource on the spark profile
    ($SHOPFEAST_SOURCE_FORMAT=spark, set by `profile_env`), a FileSource otherwise."""
    if os.environ.get(SOURCE_FORMAT_ENV) == "spark":
        return spark_source(source, root)
    return file_source(source, root)


def schema(source: FeatureSource) -> list[Field]:
    """The view's fields; a declared aggregation's carries its owner, tags and definition."""
    return [
        Field(
            name=f.name,
            dtype=feast_type(f.dtype),
            description=f.description,
            tags={
                "window": f.window or "as_of",
                "dtype": f.dtype,
                **({"owner": f.owner} if f.owner else {}),
                **dict(f.tags),
                **({"definition": f.definition} if f.definition else {}),
            },
        )
        for f in source.features
    ]


def entity(name: str) -> Entity:
    """The Feast entity of a declared entity (pipelines.specs.ENTITIES)."""
    spec = ENTITIES[name]
    return Entity(
        name=spec.name,
        join_keys=[spec.join_key],
        value_type=ValueType.STRING,
        description=spec.description,
        owner=OWNER,
        tags=dict(spec.tags),
    )


def feature_view(
    source: FeatureSource, entities: dict[str, Entity], batch_source: DataSource
) -> FeatureView:
    """The view of a declared source, keyed by its declared entity (one of `entities`), or by
    each part of a composite one (customer x product: a view keyed by both)."""
    return FeatureView(
        name=source.name,
        entities=[entities[e] for e in source.entities],
        ttl=NO_TTL,
        schema=schema(source),
        source=batch_source,
        online=True,
        description=source.description,
        owner=source.owner,
        tags={**dict(source.tags), "layer": "view", "grain": "daily"},
    )


def inputs(view: FeatureView, names: tuple[str, ...]) -> FeatureView:
    """A projection of `view` to the features an on-demand view reads.

    Names prefixed `OPTIONAL_` in featurestore/odfv.py may be absent from the declarations (the
    logic has a fallback); any other missing name is an error at `feast apply`.
    """
    optional = {v for k, v in vars(odfv).items() if k.startswith("OPTIONAL_")}
    declared = {f.name for f in view.features}
    missing = [n for n in names if n not in declared and n not in optional]
    if missing:
        raise KeyError(f"{view.name} declares no {missing}, which on-demand features read")
    return view[[n for n in names if n in declared]]


def outputs(names: dict[str, str]) -> list[Field]:
    """An on-demand view's schema from its declared outputs (featurestore.odfv): name: dtype."""
    return [Field(name=name, dtype=feast_type(dtype)) for name, dtype in names.items()]
