"""`drift_from`: before the day the shop is the control's, row for row; after it, prices are up,
sessions and orders fewer, and one category has collapsed."""

from __future__ import annotations

import pandas as pd
import pytest

from shopfeast import generator
from shopfeast.generator import drift

ARGS = {"customers": 300, "products": 40, "days": 90, "seed": 11}
DAY = 60
AT = pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=DAY)
TIME = {
    "orders": "order_ts",
    "events": "event_ts",
    "products": "updated_at",
    "reviews": "review_ts",
}


@pytest.fixture(scope="module")
def pair():
    control = generator.generate(**ARGS)
    shifted = generator.generate(**ARGS, drift_from=DAY)
    return control, shifted


def frames(shop, name: str) -> pd.DataFrame:
    return shop.tables[name].to_pandas()


def test_before_the_shift_the_shop_is_the_control(pair) -> None:
    control, shifted = pair
    for name, col in TIME.items():
        a, b = frames(control, name), frames(shifted, name)
        pd.testing.assert_frame_equal(
            a[a[col] < AT].reset_index(drop=True), b[b[col] < AT].reset_index(drop=True)
        )
    assert control.tables["customers"].equals(shifted.tables["customers"])
    assert "drift" not in control.info and shifted.info["drift"]["from"] == AT.isoformat()


def test_after_the_shift_prices_are_up_and_activity_down(pair) -> None:
    control, shifted = pair
    a, b = frames(control, "products"), frames(shifted, "products")

    def price_at(p: pd.DataFrame) -> pd.Series:
        live = p[p["updated_at"] <= AT].sort_values("updated_at")
        return live.groupby("product_id")["price"].last()

    ratio = price_at(b) / price_at(a)
    assert ratio.round(2).between(drift.PRICE_FACTOR - 0.01, drift.PRICE_FACTOR + 0.01).all()
    for name in ("orders", "events"):
        before = (frames(control, name)[TIME[name]] >= AT).sum()
        after = (frames(shifted, name)[TIME[name]] >= AT).sum()
        assert after < 0.5 * before, name
    collapsed = shifted.info["drift"]["collapsed_category"]
    cat = set(a.loc[a["category"] == collapsed, "product_id"])
    ev_a, ev_b = frames(control, "events"), frames(shifted, "events")
    late = lambda e: ((e["event_ts"] >= AT) & e["product_id"].isin(cat)).sum()  # noqa: E731
    assert late(ev_b) < 0.1 * late(ev_a)
