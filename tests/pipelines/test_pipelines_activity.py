"""customer_activity on five-row frames, expected values worked out by hand from the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.families import customer_activity as ca
from pipelines.run import compute_rows
from pipelines.specs import unpack_list
from pipelines.windows import Snapshots, to_day
from tests.support.pipelines_shop import typed


def T(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def days(*s: str) -> pd.Series:
    return pd.Series([T(x) for x in s], dtype="datetime64[us, UTC]", name="event_timestamp")


SNAP = Snapshots(to_day(T("2025-01-01")), to_day(T("2025-06-30")), historical=True)


@pytest.fixture
def shop() -> dict[str, pd.DataFrame]:
    customers = typed(
        "customers",
        [
            dict(customer_id="c1", signup_ts=T("2025-01-01 10:00")),
            dict(customer_id="c2", signup_ts=T("2025-01-03 00:00")),  # never active
            dict(customer_id="c3", signup_ts=T("2025-03-01 08:00")),  # exists from 03-02 only
        ],
    )
    customers["updated_at"] = customers["signup_ts"]
    products = typed(
        "products",
        [
            dict(product_id="p1", name="a", category="toys", price=1.0, created_at=T("2024-12-01")),
            dict(product_id="p2", name="b", category="food", price=1.0, created_at=T("2024-12-01")),
        ],
    )
    products["updated_at"] = products["created_at"]
    orders = typed(
        "orders",
        [
            dict(
                order_id="o1",
                customer_id="c1",
                order_ts=T("2025-01-02 12:00"),
                status="completed",
                total_amount=10.5,
                discount_amount=1.0,
                refunded_amount=0.0,
            ),
            dict(
                order_id="o2",
                customer_id="c1",
                order_ts=T("2025-01-05 12:00"),
                status="refunded",
                total_amount=20.0,
                refunded_amount=20.0,
                refund_ts=T("2025-01-07 01:00"),
            ),
            dict(
                order_id="o3",
                customer_id="c1",
                order_ts=T("2025-01-06 12:00"),
                status="cancelled",
                total_amount=99.0,
            ),
            dict(
                order_id="o4",
                customer_id=None,
                order_ts=T("2025-01-06 12:00"),
                status="completed",
                total_amount=5.0,
            ),  # guest checkout
        ],
    )
    items = typed(
        "order_items",
        [
            dict(order_id=o, product_id=p, quantity=q, unit_price=1.0, order_ts=T(t))
            for o, p, q, t in [
                ("o1", "p1", 2, "2025-01-02 12:00"),
                ("o2", "p2", 1, "2025-01-05 12:00"),
                ("o2", "p1", 1, "2025-01-05 12:00"),
                ("o3", "p2", 9, "2025-01-06 12:00"),
            ]
        ],
    )
    return {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": items,
        "events": typed("events", []),
    }


def rows_of(shop: dict, customer: str, snap: Snapshots = SNAP) -> pd.DataFrame:
    rows = compute_rows(ca, shop, snap)
    return rows[rows["customer_id"] == customer].reset_index(drop=True)


def test_orders_spend_and_window_exits(shop):
    got = rows_of(shop, "c1")
    expected = pd.DataFrame(
        {
            # signup, o1 enters, o2 enters, refund known, o1 and o2 leave 7d, o1 and o2 leave 30d,
            # o1 and o2 leave 90d: a row on each day, and on no other
            "event_timestamp": days(
                "2025-01-02",
                "2025-01-03",
                "2025-01-06",
                "2025-01-08",
                "2025-01-10",
                "2025-01-13",
                "2025-02-02",
                "2025-02-05",
                "2025-04-03",
                "2025-04-06",
            ),
            "orders_7d": [0, 1, 2, 2, 1, 0, 0, 0, 0, 0],
            "orders_30d": [0, 1, 2, 2, 2, 2, 1, 0, 0, 0],
            "orders_90d": [0, 1, 2, 2, 2, 2, 2, 2, 1, 0],
            "spend_30d": [0.0, 10.5, 30.5, 10.5, 10.5, 10.5, 0.0, 0.0, 0.0, 0.0],
            "spend_90d": [0.0, 10.5, 30.5, 10.5, 10.5, 10.5, 10.5, 10.5, 0.0, 0.0],
            "avg_order_value_90d": [np.nan, 10.5, 15.25, 5.25, 5.25, 5.25, 5.25, 5.25, 0.0, np.nan],
            "lifetime_orders": [0, 1, 2, 2, 2, 2, 2, 2, 2, 2],
            "lifetime_spend": [0.0, 10.5, 30.5, 10.5, 10.5, 10.5, 10.5, 10.5, 10.5, 10.5],
            "refund_rate_90d": [np.nan, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, np.nan],
            "discount_share_90d": [np.nan, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, np.nan],
        }
    )
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    last = got["last_order_ts"]
    assert last.isna().tolist() == [True] + [False] * 9
    assert (last.iloc[2:] == T("2025-01-05 12:00")).all()  # the cancelled o3 is not an order


def test_products_categories_and_favourite(shop):
    got = rows_of(shop, "c1")
    at = got.set_index("event_timestamp")
    assert at.loc[T("2025-01-03"), "favourite_category_90d"] == "toys"
    assert at.loc[T("2025-01-06"), "favourite_category_90d"] == "toys"  # 3 toys units vs 1 food
    assert at.loc[T("2025-04-03"), "favourite_category_90d"] == "food"  # 1 vs 1: alphabetical
    assert pd.isna(at.loc[T("2025-04-06"), "favourite_category_90d"])
    assert at.loc[T("2025-01-06"), "distinct_products_90d"] == 2
    assert at.loc[T("2025-01-06"), "distinct_categories_90d"] == 2
    assert at.loc[T("2025-01-06"), "category_diversity_90d"] == pytest.approx(2 / 3)
    assert at.loc[T("2025-04-03"), "category_diversity_90d"] == 1.0  # o1's line has left
    assert at.loc[T("2025-04-06"), "distinct_products_90d"] == 0
    # Purchases stay in the recent list after leaving every window.
    assert unpack_list(at.loc[T("2025-01-03"), "recent_product_ids"]) == ["p1"]
    assert unpack_list(at.loc[T("2025-04-06"), "recent_product_ids"]) == ["p1", "p2"]


def test_never_active_and_not_yet_existing(shop):
    c2 = rows_of(shop, "c2")
    assert c2["event_timestamp"].tolist() == [T("2025-01-04")]  # signup at 00:00 on 01-03
    for name in ("orders_7d", "orders_90d", "events_30d", "sessions_30d", "lifetime_orders"):
        assert c2.loc[0, name] == 0
    assert c2.loc[0, "spend_90d"] == 0.0 and c2.loc[0, "lifetime_spend"] == 0.0
    for name in (
        "avg_order_value_90d",
        "last_order_ts",
        "favourite_category_90d",
        "avg_session_length_30d",
        "cart_abandonment_rate_30d",
    ):
        assert pd.isna(c2.loc[0, name])
    assert unpack_list(c2.loc[0, "recent_product_ids"]) == []
    c3 = rows_of(shop, "c3")
    assert c3["event_timestamp"].tolist() == [T("2025-03-02")]  # nothing before it exists
    rows = compute_rows(ca, shop, SNAP)
    assert set(rows["customer_id"]) == {"c1", "c2", "c3"}  # the guest order feeds no one


def test_events_sessions_across_midnight(shop):
    shop["events"] = typed(
        "events",
        [
            dict(
                customer_id="c2",
                session_id="s1",
                event_type="page_view",
                event_ts=T("2025-01-10 23:50"),
            ),
            dict(
                customer_id="c2",
                session_id="s1",
                event_type="add_to_cart",
                event_ts=T("2025-01-11 00:10"),
                product_id="p1",
            ),
            dict(
                customer_id="c2",
                session_id="s2",
                event_type="search",
                event_ts=T("2025-01-12 10:00"),
            ),
            dict(
                customer_id="c2",
                session_id="s2",
                event_type="add_to_cart",
                event_ts=T("2025-01-12 10:01"),
                product_id="p1",
            ),
            dict(
                customer_id="c2",
                session_id="s2",
                event_type="purchase",
                event_ts=T("2025-01-12 10:02"),
                product_id="p1",
            ),
            dict(
                customer_id=None,
                session_id="s3",
                event_type="page_view",
                event_ts=T("2025-01-12 11:00"),
            ),
        ],
    )
    got = rows_of(shop, "c2")
    expected = pd.DataFrame(
        {
            "event_timestamp": days(
                "2025-01-04",
                "2025-01-11",
                "2025-01-12",
                "2025-01-13",
                "2025-02-10",
                "2025-02-11",
                "2025-02-12",
            ),
            "events_30d": [0, 1, 2, 5, 4, 3, 0],
            "sessions_30d": [0, 1, 1, 2, 2, 1, 0],
            "add_to_cart_30d": [0, 0, 1, 2, 2, 1, 0],
            "searches_30d": [0, 0, 0, 1, 1, 1, 0],
            # s1 spans midnight: 0 s while only its first day is visible, 20 min once both are,
            # 0 s again once its first day has left the window
            "avg_session_length_30d": [np.nan, 0.0, 1200.0, 660.0, 60.0, 120.0, np.nan],
            "cart_abandonment_rate_30d": [np.nan, np.nan, 1.0, 0.5, 0.5, 0.0, np.nan],
        }
    )
    pd.testing.assert_frame_equal(got[expected.columns], expected)


def test_incremental_window_equals_historical(shop):
    """Compute from a later first day with the stored prior row: same rows from that day on."""
    full = compute_rows(ca, shop, SNAP)
    start = T("2025-01-08")
    later = Snapshots(to_day(start), SNAP.end_day, historical=False)
    prior = (
        full[full["event_timestamp"] < start]
        .sort_values("event_timestamp")
        .drop_duplicates("customer_id", keep="last")
    )
    part = compute_rows(ca, shop, later, prior)
    expected = full[full["event_timestamp"] >= start]
    key = ["customer_id", "event_timestamp"]
    pd.testing.assert_frame_equal(
        part.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
    )


def test_sharded_equals_whole():
    from tests.support.pipelines_shop import build

    shop = build(seed=5, customers=25, products=9, days=50)
    tables = {i.table: shop[i.table][list(i.columns)] for i in ca.INPUTS}
    key = ["customer_id", "event_timestamp"]
    whole = compute_rows(ca, tables, SNAP).sort_values(key).reset_index(drop=True)
    parts = compute_rows(ca, tables, SNAP, shard_rows=200).sort_values(key).reset_index(drop=True)
    assert whole["customer_id"].nunique() == 25
    pd.testing.assert_frame_equal(parts, whole)
