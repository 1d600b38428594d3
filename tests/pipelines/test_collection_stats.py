"""collection_stats recomputed naively (plain loops over the raw rows) on the hand-made oracle shop
at random (collection, T) points; the hand-worked values are in tests/test_importer_shopify.py."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.families import collection_stats, product_membership
from pipelines.run import compute_rows
from pipelines.specs import LIST_SEP
from pipelines.windows import Snapshots, to_day
from tests.support import oracle, oracle_shop

UTC = "UTC"


def _tables(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    from pipelines.contract import PANDAS_DTYPES, TABLES

    out = {}
    for spec in collection_stats.INPUTS:
        kinds = {c.name: c.kind for c in TABLES[spec.table].clean_columns()}
        df = frames[spec.table].reindex(columns=list(spec.columns))
        out[spec.table] = df.astype({c: PANDAS_DTYPES[kinds[c]] for c in spec.columns})
    return out


def naive(raw: oracle.RawShop, shop_lines: list[dict], collection: str, T: pd.Timestamp):
    """collection_stats at snapshot T, from the raw rows."""

    def inside(ts, days: int) -> bool:
        return T - timedelta(days=days) <= ts < T

    prices = {}
    for p in raw.products["product_id"].unique():
        rows = [r for r in raw.of("products", "product_id", p) if r["updated_at"] < T]
        if rows:
            prices[p] = max(rows, key=lambda r: r["updated_at"])["price"]
    members = []
    for p in prices:
        rows = [
            r
            for r in raw.of("product_collections", "product_id", p)
            if r["collection_id"] == collection and r["updated_at"] < T
        ]
        if rows and max(rows, key=lambda r: r["updated_at"])["in_collection"]:
            members.append(p)
    if not members:
        return None

    def live(line) -> bool:  # the order's version in force at T is not cancelled
        version, _ = oracle._order_at(raw.order_versions(line["order_id"]), T)
        return version["status"] != "cancelled"

    out = {"collection_products": len(members)}
    for w in (7, 30):
        ev = [
            e
            for p in members
            for e in raw.of("events", "product_id", p)
            if inside(e["event_ts"], w)
        ]
        out[f"collection_views_{w}d"] = sum(e["event_type"] == "product_view" for e in ev)
        out[f"collection_carts_{w}d"] = sum(e["event_type"] == "add_to_cart" for e in ev)
        lines = [
            i
            for p in members
            for i in raw.of("order_items", "product_id", p)
            if inside(i["order_ts"], w) and live(i)
        ]
        out[f"collection_units_{w}d"] = sum(i["quantity"] for i in lines)
        out[f"collection_revenue_{w}d"] = sum(
            i["quantity"] * i["unit_price"] - (i["discount"] or 0.0) for i in lines
        )
    ev = [
        e for p in members for e in raw.of("events", "product_id", p) if inside(e["event_ts"], 30)
    ]
    views = sum(e["event_type"] == "product_view" for e in ev)
    buys = sum(e["event_type"] == "purchase" for e in ev)
    out["collection_conversion_rate_30d"] = buys / views if views else None
    ps = sorted(prices[p] for p in members)
    out["collection_price_min"], out["collection_price_max"] = ps[0], ps[-1]
    out["collection_price_median"] = float(np.median(ps))
    shop = sum(
        i["quantity"] * i["unit_price"] - (i["discount"] or 0.0)
        for i in shop_lines
        if inside(i["order_ts"], 30) and live(i)
    )
    out["collection_sales_share_30d"] = out["collection_revenue_30d"] / shop if shop else None
    return out


@pytest.mark.parametrize("events", ["raw", "reduced"])
def test_every_feature_matches_a_naive_recomputation(events, monkeypatch):
    """`reduced`: the events as pipelines.run reads them for this family (REDUCED): handed to
    `reduce_input` in batches of 7 rows, so a (product, day)'s counts add up across batches; and
    the collections computed one at a time (GRID_ROWS) and the order lines 7 order versions at a
    time (ORDER_ROWS), as a big shop's are."""
    frames = oracle_shop.build(seed=4)
    frames["order_items"] = frames["order_items"].assign(discount=0.25)
    raw = oracle.RawShop(**frames)
    snaps = Snapshots(
        to_day(pd.Timestamp("2024-10-01", tz=UTC)), to_day(pd.Timestamp("2025-03-05", tz=UTC)), True
    )
    tables = _tables(frames)
    if events == "reduced":
        batches = pa.Table.from_pandas(tables["events"], preserve_index=False).to_batches(7)
        assert len(batches) > 100
        tables["events"] = collection_stats.reduce_input("events", iter(batches))
        monkeypatch.setattr(collection_stats, "GRID_ROWS", 1)
        monkeypatch.setattr(collection_stats, "ORDER_ROWS", 7)
        assert len(tables["events"]) < len(frames["events"])
    rows = compute_rows(collection_stats, tables, snaps)
    served = oracle.by_entity(rows, "collection_id")
    shop_lines = [
        i
        for p in raw.order_items["product_id"].unique()
        for i in raw.of("order_items", "product_id", p)
    ]
    rng = np.random.default_rng(3)
    days = pd.date_range("2024-10-01", "2025-03-05", tz=UTC)
    problems, checked = [], 0
    for collection in ("k1", "k2", "k3"):
        for T in rng.choice(days, 15):
            T = pd.Timestamp(T)
            expected = naive(raw, shop_lines, collection, T)
            actual = oracle.lookup(served, collection, T)
            if expected is None:  # never had a member, or has none left
                assert actual is None or actual["collection_products"] == 0, (collection, T)
                continue
            assert actual is not None, (collection, T)
            for name, e in expected.items():
                checked += 1
                if not oracle.same(e, actual[name], name):
                    problems.append(
                        f"{collection} {T:%Y-%m-%d} {name}: naive {e}, pipeline {actual[name]}"
                    )
    assert checked > 300
    assert not problems, "\n".join(problems[:20])


def test_product_membership_matches_a_naive_reading():
    frames = oracle_shop.build(seed=4)
    raw = oracle.RawShop(**frames)
    tables = {
        spec.table: frames[spec.table].reindex(columns=list(spec.columns))
        for spec in product_membership.INPUTS
    }
    snaps = Snapshots(
        to_day(pd.Timestamp("2024-09-01", tz=UTC)), to_day(pd.Timestamp("2025-03-05", tz=UTC)), True
    )
    served = oracle.by_entity(compute_rows(product_membership, tables, snaps), "product_id")
    rng = np.random.default_rng(5)
    days = pd.date_range("2024-09-01", "2025-03-05", tz=UTC)
    checked = 0
    for p in raw.products["product_id"].unique():
        for T in rng.choice(days, 12):
            T = pd.Timestamp(T)
            exists = any(r["updated_at"] < T for r in raw.of("products", "product_id", p))
            actual = oracle.lookup(served, p, T)
            if not exists:
                assert actual is None, (p, T)
                continue
            latest = {}
            for r in sorted(
                raw.of("product_collections", "product_id", p), key=lambda r: r["updated_at"]
            ):
                if r["updated_at"] < T:
                    latest[r["collection_id"]] = r["in_collection"]
            expected = sorted(c for c, isin in latest.items() if isin)
            ids = actual["collection_ids"]  # packed (specs.LIST_SEP) as the family writes it
            assert (ids.split(LIST_SEP) if ids else []) == expected, (p, T)
            assert actual["collection_count"] == len(expected)
            checked += 1
    assert checked > 80
