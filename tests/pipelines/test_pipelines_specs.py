"""Declarations: every source is registered, and what the pipelines write is what they declare."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import realtime, sources
from pipelines.specs import FEAST_TYPE_NAMES, Feature, FeatureSource, conform
from pipelines.windows import Snapshots, to_day
from tests.support.pipelines_shop import build

NAMES = (
    "customer_activity",
    "customer_profile",
    "customer_reviews",
    "product_stats",
    "product_copurchase",
    "collection_stats",
    "product_membership",
    "customer_collections",
    "customer_rhythm",
)


def test_all_families_are_registered_then_the_declared_then_the_real_time_views():
    found = sources.sources()
    missing = [n for n in NAMES if n not in found]
    if missing:  # families written by other helpers land separately
        pytest.xfail(f"families not landed yet: {missing}")
    names, declared = tuple(found), tuple(sources.declared_sources())
    assert names[: len(NAMES)] == NAMES
    assert names[len(NAMES) : len(NAMES) + len(declared)] == declared
    assert names[len(NAMES) + len(declared) :] == tuple(realtime.SOURCES)


def test_declarations_are_well_formed():
    for name, source in sources.sources().items():
        assert source.name == name
        assert source.join_keys == tuple(f"{e}_id" for e in source.entities)
        assert set(source.entities) <= {"customer", "product", "collection"}
        for f in source.features:
            assert f.dtype in FEAST_TYPE_NAMES, (name, f.name)
            assert f.description, (name, f.name)
            if f.window and f.window != "lifetime":
                assert f.window_days or f.window_hours, (name, f.name)
        assert source.arrow_schema().names == source.columns


def test_duplicate_or_reserved_names_are_rejected():
    f = Feature("x", "int64", "d")
    with pytest.raises(ValueError):
        FeatureSource("s", "customer", (f, f), "d")
    with pytest.raises(ValueError):
        FeatureSource("s", "customer", (Feature("event_timestamp", "int64", "d"),), "d")


def test_conform_rejects_a_missing_column():
    source = sources.sources()["customer_activity"]
    with pytest.raises(KeyError):
        conform(source, pd.DataFrame({"customer_id": ["a"]}))


@pytest.mark.parametrize("name", ["customer_activity", "customer_profile"])
def test_output_columns_and_dtypes_come_from_the_declaration(name):
    module = sources.families()[name]
    shop = build(seed=1, customers=8, products=5, days=20)
    snap = Snapshots(
        to_day(pd.Timestamp("2025-01-01", tz="UTC")),
        to_day(pd.Timestamp("2025-01-25", tz="UTC")),
        True,
    )
    tables = {i.table: shop[i.table][list(i.columns)] for i in module.INPUTS}
    out = module.compute(tables, snap, module.SOURCE.empty_frame())
    source = module.SOURCE
    assert set(out.columns) == set(source.columns) - {source.created_timestamp_column}
    rows = conform(source, out.assign(created_timestamp=out["event_timestamp"]))
    for f in source.features:
        assert str(rows[f.name].dtype) == str(f.pandas_dtype()), f.name
