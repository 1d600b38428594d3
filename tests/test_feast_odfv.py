"""The on-demand logic on small inputs, as Feast hands them offline and online."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from shopfeast import odfv

T = datetime(2025, 3, 10, 12, 0, 30, 700_000, tzinfo=UTC)


def nan_or(value):
    return None if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize(
    "request_time",
    [T, pd.Timestamp(T), T.isoformat(), np.datetime64(T.replace(tzinfo=None), "us")],
)
def test_recency_from_any_request_time_at_whole_seconds(request_time) -> None:
    last = datetime(2025, 3, 1, 6, 0, 0, 900_000, tzinfo=UTC)
    out = odfv.customer_recency(
        {
            "event_timestamp": [request_time],
            "last_order_ts": [last],
            "signup_ts": [pd.Timestamp("2024-03-10 12:00:30", tz="UTC")],
        }
    )
    whole = (T.replace(microsecond=0) - last.replace(microsecond=0)).total_seconds() / 86400
    assert out["days_since_last_order"] == [pytest.approx(whole, abs=1e-12)]
    assert out["days_since_last_activity"] == out["days_since_last_order"]
    assert out["tenure_days"] == [pytest.approx(365.0)]


def test_recency_unknowns_are_nan_and_activity_takes_the_latest() -> None:
    out = odfv.customer_recency(
        {
            "event_timestamp": [T, T, None],
            "last_order_ts": [None, T - timedelta(days=3), T],
            "last_event_ts": [T - timedelta(days=1), T - timedelta(days=2), None],
            "signup_ts": [None, pd.NaT, T],
        }
    )
    assert [nan_or(v) for v in out["days_since_last_order"]] == [None, 3.0, None]
    assert [nan_or(v) for v in out["days_since_last_activity"]] == [1.0, 2.0, None]
    assert all(math.isnan(v) for v in out["tenure_days"])


def test_product_age() -> None:
    out = odfv.product_age(
        {"event_timestamp": [T, T], "product_created_at": [T - timedelta(days=10), None]}
    )
    assert out["days_since_created"][0] == pytest.approx(10.0)
    assert math.isnan(out["days_since_created"][1])


def match_inputs(**overrides):
    row = {
        "product_id": ["p9"],
        "recent_product_ids": [["p1", "p2", "p3"]],
        "favourite_category_90d": ["shoes"],
        "product_price": [30.0],
        "category": ["shoes"],
        "brand": ["acme"],
        "copurchase_product_ids": [["p2", "p7", "p3"]],
        "copurchase_scores": [[0.5, 0.9, 0.25]],
    }
    row.update({k: [v] for k, v in overrides.items()})
    return row


def test_match_with_the_guaranteed_inputs() -> None:
    out = odfv.customer_product_match(match_inputs())
    assert out["copurchase_score"] == [0.75] and out["copurchase_hits"] == [2]
    assert out["is_favourite_category"] == [1] and out["category_affinity"] == [1.0]
    assert out["already_purchased"] == [0]
    for name in ("price_ratio", "price_distance", "brand_affinity"):  # inputs not declared
        assert math.isnan(out[name][0])
    assert set(out) == set(odfv.MATCH_OUTPUTS)


def test_match_with_the_optional_inputs() -> None:
    out = odfv.customer_product_match(
        match_inputs(
            avg_item_price_90d=15.0,
            purchased_product_ids=["p9", "p1"],
            top_categories_90d=["bags", "shoes"],
            top_category_shares_90d=[0.7, 0.3],
            top_brands_90d=["other"],
            top_brand_shares_90d=[1.0],
        )
    )
    assert out["price_ratio"] == [2.0]
    assert out["price_distance"] == [pytest.approx(math.log(2.0))]
    assert out["category_affinity"] == [0.3] and out["brand_affinity"] == [0.0]
    assert out["already_purchased"] == [1]


def test_match_for_an_unknown_customer_and_product() -> None:
    """Online, an entity missing from the store arrives as None everywhere."""
    row = {k: [None] for k in match_inputs()}
    out = odfv.customer_product_match(row)
    assert out["copurchase_score"] == [0.0] and out["copurchase_hits"] == [0]
    assert out["already_purchased"] == [0] and out["is_favourite_category"] == [0]
    assert math.isnan(out["price_ratio"][0])


def test_match_accepts_numpy_arrays_as_offline_lists() -> None:
    out = odfv.customer_product_match(
        match_inputs(
            recent_product_ids=np.array(["p7"], dtype=object),
            copurchase_scores=np.array([0.5, 0.9, 0.25]),
        )
    )
    assert out["copurchase_score"] == [0.9]
