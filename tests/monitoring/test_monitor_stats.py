"""PSI and its test against hand computations; declared drift policies."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitoring import stats
from monitoring.drift import compare
from pipelines.sources import sources
from pipelines.specs import Drift, Feature, drift_policy


def test_psi_matches_the_formula() -> None:
    ref, cur = np.array([50, 30, 20]), np.array([20, 30, 50])
    p = (ref + 0.5) / (ref + 0.5).sum()
    q = (cur + 0.5) / (cur + 0.5).sum()
    expected = sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))
    assert stats.psi(ref, cur) == pytest.approx(expected)
    assert stats.psi(ref, ref) == 0.0


def test_bins_are_fixed_on_the_reference_with_a_bin_for_nulls() -> None:
    ref = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5], dtype=float)
    cur = np.array([0, 7, 8, 9, np.nan, np.nan], dtype=float)
    b = stats.bin_numeric(ref, cur, bins=5)
    assert b.labels[-1] == stats.NULL
    assert b.ref.sum() == len(ref) and b.cur.sum() == len(cur)
    assert b.cur[-1] == 2  # the nulls
    assert b.cur[-2] == 3  # beyond the reference's range: its top bin
    assert b.ref[0] == 5 and b.cur[0] == 1  # the reference's many zeros keep a bin of their own


def test_categories_unseen_in_the_reference_count_as_other() -> None:
    b = stats.bin_categorical(pd.Series(["a", "a", "b", None]), pd.Series(["a", "c", "c", "c"]))
    counts = dict(zip(b.labels, b.cur.tolist(), strict=True))
    assert counts == {"a": 1, "b": 0, stats.OTHER: 3, stats.NULL: 0}


def test_the_test_counts_entities_not_rows() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 700), rng.normal(0.3, 1, 700)
    b = stats.bin_numeric(ref, cur)
    # 700 rows from 100 entities read on 7 days are 100 observations, not 700
    assert stats.p_value(b, 100, 100) > stats.p_value(b, 700, 700)
    assert stats.p_value(b, 700, 700) < 1e-3


def test_a_small_sample_is_not_flagged_however_large_its_psi() -> None:
    f = Feature("x", "float64", "test")
    few = compare(f, Drift(), pd.Series([1.0, 2.0, 3.0]), pd.Series([7.0, 8.0, 9.0]), 3, 3)
    many = compare(
        f, Drift(), pd.Series(np.arange(300.0)), pd.Series(np.arange(300.0) + 200), 300, 300
    )
    assert few["psi"] > 0.25 and few["status"] == "ok"
    assert many["status"] == "alert"


def test_policies_by_kind_and_as_declared() -> None:
    declared = {s.name: {f.name: drift_policy(f) for f in s.features} for s in sources().values()}
    activity = declared["customer_activity"]
    assert activity["lifetime_orders"].mode == "increment"
    assert activity["lifetime_spend"].mode == "increment"
    assert activity["last_order_ts"].mode == "skip"
    assert activity["recent_product_ids"].mode == "items"
    assert activity["orders_30d"] == Drift()
    assert declared["customer_profile"]["signup_ts"].mode == "skip"
    assert declared["product_stats"]["category_price_median"].grain == "category"
    for view in declared.values():
        for policy in view.values():
            assert 0 < policy.warn < policy.alert
            assert policy.mode != "skip" or policy.reason
