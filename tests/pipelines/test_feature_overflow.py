"""Feature arithmetic at its limits: exact up to EXACT_LIMIT per entity, refused beyond, never
wrapped (before: total_amount = 1.7e308 became lifetime_spend = -9.22e12, a quantity of 2**63-1
product_units_sold_30d = INT64_MIN)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import run as pipeline_run
from pipelines.ingest import ingest, parse_now
from pipelines.windows import EXACT_LIMIT, MICRO, FeatureOverflow, Streams, fixed
from tests.support.ingest_support import BASE, run, shop, write_raw


def test_fixed_is_exact_below_the_limit_and_refuses_above() -> None:
    top = 9_007_199_254.0  # (EXACT_LIMIT - 1) / MICRO, rounded down to an exact cent
    assert fixed(pd.Series([top, -top])).tolist() == [9_007_199_254_000_000, -9_007_199_254_000_000]
    for value in (EXACT_LIMIT / MICRO, 1.7e308, float("inf")):
        with pytest.raises(FeatureOverflow, match="total_amount"):
            fixed(pd.Series([1.0, value], name="total_amount"))


def test_running_sums_are_exact_at_the_limit_and_refused_past_it() -> None:
    """The bound is on each entity's summed movement (|+v| on entry plus |-v| on leaving)."""
    half = EXACT_LIMIT // 2
    s = Streams()
    s.window(np.array([0, 0]), np.array([10, 11]), None, x=np.array([half, half - 1]))
    s.window(np.array([1]), np.array([10]), 5, x=np.array([7]))
    acc = s.evaluate()
    keys = zip(acc.entity.tolist(), acc.day.tolist(), strict=True)
    values = dict(zip(keys, acc.values["x"].tolist(), strict=True))
    assert values[(0, 11)] == EXACT_LIMIT - 1 and values[(1, 10)] == 7 and values[(1, 15)] == 0
    s.window(np.array([0]), np.array([12]), None, x=np.array([1]))
    with pytest.raises(FeatureOverflow, match="'x'"):
        s.evaluate()
    windowed = Streams()  # entering and leaving: half the range each way
    windowed.window(np.array([0]), np.array([10]), 5, x=np.array([half]))
    with pytest.raises(FeatureOverflow):
        windowed.evaluate()


def test_features_refuse_values_beyond_the_contract_bounds(tmp_path) -> None:
    """With the bounds lifted, the feature step stops instead of writing wrapped values."""
    order = dict(BASE["orders"][0])
    raw = write_raw(
        tmp_path / "raw", shop(orders=[{**order, "order_id": "o-max", "total_amount": "1.7e308"}])
    )
    data = tmp_path / "data"
    ingest(raw, data, parse_now("2025-06-01"), bounds={"orders.total_amount": 1e309})
    with pytest.raises(FeatureOverflow, match="total_amount = 1.7e\\+308"):
        pipeline_run.run(data, mode="historical", echo=False)
    ok = tmp_path / "ok"
    run(raw, ok)  # the default bounds quarantine it, and the features build
    assert pipeline_run.run(ok, mode="historical", echo=False)
