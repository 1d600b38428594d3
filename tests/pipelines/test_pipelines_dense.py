"""customer_activity's own features (beyond the contract's, which
tests/featurestore/test_pit_oracle.py checks)
against a naive evaluation of every customer on every day, read from the change-point rows as of
that day, the way Feast reads them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.families import customer_activity as ca
from pipelines.run import compute_rows
from pipelines.specs import unpack_list
from pipelines.windows import Snapshots, to_day
from tests.support.pipelines_shop import build

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    tables = build(seed=8, customers=10, products=8, days=40)
    items = tables["order_items"]
    items["category"] = [
        category_as_of(tables["products"], p, t)
        for p, t in zip(items["product_id"], items["order_ts"], strict=True)
    ]
    return tables


def category_as_of(products: pd.DataFrame, product: str, ts: pd.Timestamp) -> str:
    rows = products[products["product_id"] == product].sort_values("updated_at")
    before = rows[rows["updated_at"] < ts]
    row = before.iloc[-1] if len(before) else rows.iloc[0]
    return "unknown" if pd.isna(row["category"]) else row["category"]


def most_bought(items: pd.DataFrame, n: int) -> list[str]:
    """The products of the orders in `items` by how many orders held them, then the latest such
    order, then the id: the first n."""
    counts: dict[str, list] = {}
    lines = set(zip(items["order_id"], items["product_id"], items["order_ts"], strict=True))
    for _, product, ts in lines:  # an order holding a product twice counts once
        c = counts.setdefault(str(product), [0, ts])
        c[0] += 1
        c[1] = max(c[1], ts)
    ranked = sorted(counts, key=lambda p: (-counts[p][0], -counts[p][1].value, p))
    return ranked[:n]


def naive(shop: dict, customer: str, T: pd.Timestamp) -> dict:
    o = shop["orders"]
    o = o[(o["customer_id"] == customer) & (o["status"] != "cancelled")]
    known = o["refund_ts"].isna() | (o["refund_ts"] < T)
    win = (o["order_ts"] >= T - 90 * DAY) & (o["order_ts"] < T)
    n90 = int(win.sum())
    refunded = (o["refunded_amount"].fillna(0) > 0) & known
    items = shop["order_items"].merge(o[["order_id"]], on="order_id")
    items = items[items["order_ts"] < T]
    in90 = items[items["order_ts"] >= T - 90 * DAY]
    cats = in90["category"].tolist()
    units = pd.Series(in90["quantity"].to_numpy(), index=cats, dtype="int64").groupby(level=0).sum()
    favourite = None
    if len(units):
        top = units.max()
        favourite = sorted(units[units == top].index)[0]
    recent = items.sort_values(["order_ts", "product_id"], ascending=[False, True])
    ev = shop["events"]
    ev = ev[
        (ev["customer_id"] == customer) & (ev["event_ts"] >= T - 30 * DAY) & (ev["event_ts"] < T)
    ]
    sessions = (
        ev.assign(cart=ev["event_type"] == "add_to_cart", buy=ev["event_type"] == "purchase")
        .groupby("session_id")
        .agg(
            lo=("event_ts", "min"), hi=("event_ts", "max"), cart=("cart", "any"), buy=("buy", "any")
        )
    )
    carting = sessions[sessions["cart"]]
    return {
        "lifetime_orders": int((o["order_ts"] < T).sum()),
        "lifetime_spend": float(
            (o["total_amount"] - o["refunded_amount"].fillna(0).where(known, 0))[
                o["order_ts"] < T
            ].sum()
        ),
        "discount_share_90d": (
            float((o.loc[win, "discount_amount"].fillna(0) > 0).sum()) / n90 if n90 else None
        ),
        "refund_rate_90d": float((refunded & win).sum()) / n90 if n90 else None,
        "purchase_frequency_90d": n90 / (90 / 7),
        "distinct_products_90d": int(in90["product_id"].nunique()),
        "distinct_categories_90d": len(set(cats)),
        "category_diversity_90d": len(set(cats)) / len(in90) if len(in90) else None,
        "favourite_category_90d": favourite,
        "product_views_30d": int((ev["event_type"] == "product_view").sum()),
        "searches_30d": int((ev["event_type"] == "search").sum()),
        "avg_session_length_30d": (
            float(((sessions["hi"] - sessions["lo"]).dt.total_seconds()).mean())
            if len(sessions)
            else None
        ),
        "cart_abandonment_rate_30d": (float((~carting["buy"]).mean()) if len(carting) else None),
        "recent_product_ids": list(dict.fromkeys(recent["product_id"]))[:10],
        "frequent_product_ids": most_bought(items, ca.FREQUENT_PRODUCTS),
    }


def exists(shop: dict, customer: str, T: pd.Timestamp) -> bool:
    c = shop["customers"]
    c = c[(c["customer_id"] == customer) & (c["updated_at"] < T)].sort_values("updated_at")
    return len(c) > 0 and c.iloc[-1]["signup_ts"] < T


def same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA:
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if isinstance(a, float):
        return (
            b is not None
            and not pd.isna(b)
            and math.isclose(a, float(b), rel_tol=1e-9, abs_tol=1e-9)
        )
    return a == b


@pytest.mark.parametrize("kept", [None, 3])
def test_every_customer_every_day(shop, kept, monkeypatch):
    """`kept` 3: the most-bought lists cut at 3 of the shop's 8 products, so the order of
    counts, ties and the cut itself are checked, not only which products were bought."""
    if kept is not None:
        monkeypatch.setattr(ca, "FREQUENT_PRODUCTS", kept)
    start, end = pd.Timestamp("2024-12-30", tz="UTC"), pd.Timestamp("2025-05-01", tz="UTC")
    tables = {i.table: shop[i.table][list(i.columns)] for i in ca.INPUTS}
    rows = compute_rows(ca, tables, Snapshots(to_day(start), to_day(end), True))
    for name in ("recent_product_ids", "frequent_product_ids"):
        rows[name] = [unpack_list(v) for v in rows[name]]
    checked = 0
    days = pd.date_range(start, end, freq="D")
    for i, customer in enumerate(shop["customers"]["customer_id"].unique()):
        mine = rows[rows["customer_id"] == customer].set_index("event_timestamp").sort_index()
        for T in days[i % 4 :: 4]:  # every fourth day, a different one per customer
            if not exists(shop, customer, T):
                assert not (mine.index <= T).any(), (customer, T)
                continue
            got = mine[mine.index <= T].iloc[-1]
            want = naive(shop, customer, T)
            for name, value in want.items():
                assert same(value, got[name]), (customer, T, name, value, got[name])
            checked += 1
    assert checked > 150
    lengths = [len(v) for v in rows["frequent_product_ids"]]
    assert min(lengths) == 0  # empty before any order
    assert max(lengths) == 3 if kept else max(lengths) > 3  # with 3 kept, the lists were cut
    assert np.isfinite(rows["avg_session_length_30d"].dropna()).all()
