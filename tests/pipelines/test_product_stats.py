"""product_stats: a five-order shop worked out by hand, and every feature recomputed naively (plain
loops over the raw rows) on the hand-made oracle shop at random (product, T) points."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines import review_nlp, sentiment
from pipelines.families import product_stats
from pipelines.run import compute_rows
from pipelines.windows import Snapshots, to_day
from tests.support import oracle, oracle_shop

UTC = "UTC"


def at(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


def _tables(**frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Frames with every declared input column (missing ones null), in contract dtypes."""
    from pipelines.contract import PANDAS_DTYPES, TABLES

    out = {}
    for spec in product_stats.INPUTS:
        table = TABLES[spec.table]
        kinds = {c.name: c.kind for c in table.clean_columns()}
        df = frames.get(spec.table, pd.DataFrame()).reindex(columns=list(spec.columns))
        out[spec.table] = df.astype({c: PANDAS_DTYPES[kinds[c]] for c in spec.columns})
    return out


def _rows(tables: dict[str, pd.DataFrame], start: str, end: str) -> pd.DataFrame:
    snaps = Snapshots(to_day(at(start)), to_day(at(end)), True)
    return compute_rows(product_stats, tables, snaps)


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    products = pd.DataFrame(
        {
            "product_id": ["p1", "p1", "p2", "p3"],
            "category": ["a", "a", "a", "b"],
            "brand": [None, None, None, "x"],
            "price": [10.0, 20.0, 30.0, 5.0],
            "created_at": [at("2025-01-01 10:00")] * 2 + [at("2025-01-03"), at("2024-12-01")],
            "updated_at": [
                at("2025-01-01 10:00"),
                at("2025-01-05"),
                at("2025-01-03"),
                at("2024-12-01"),
            ],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "o4", "o5"],
            "customer_id": ["c1", "c1", None, "c2", "c2"],
            "order_ts": [
                at("2025-01-02 08:00"),
                at("2025-01-02 09:00"),
                at("2025-01-02 10:00"),
                at("2025-01-03 08:00"),
                at("2025-01-04 08:00"),
            ],
            "status": ["completed", "completed", "completed", "cancelled", "refunded"],
            "refunded_amount": [0.0, 0.0, 0.0, 0.0, 9.0],
            "refund_ts": [pd.NaT] * 4 + [at("2025-01-06 12:00")],
        }
    )
    items = pd.DataFrame(
        {
            "order_id": ["o1", "o1", "o2", "o3", "o4", "o5"],
            "product_id": ["p1", "p1", "p1", "p1", "p1", "p1"],
            "quantity": [1, 1, 1, 1, 5, 1],
        }
    )
    events = pd.DataFrame(
        {
            "product_id": ["p1"] * 6 + [None],
            "event_type": ["product_view"] * 3
            + ["purchase", "add_to_cart", "add_to_cart", "page_view"],
            "event_ts": [at("2025-01-02 07:00")] * 7,
        }
    )
    reviews = pd.DataFrame(
        {
            "review_id": ["r1", "r2"],
            "product_id": ["p1", "p1"],
            "rating": [4.0, 2.0],
            "body": ["great product, love it", ""],
            "review_ts": [at("2025-01-02 12:00"), at("2025-01-02 13:00")],
        }
    )
    tables = _tables(
        products=products, orders=orders, order_items=items, events=events, reviews=reviews
    )
    return _rows(tables, "2024-12-30", "2025-02-15")


def _at(rows: pd.DataFrame, product: str, day: str) -> pd.Series:
    """The served row: latest with event_timestamp <= day."""
    r = rows[(rows["product_id"] == product) & (rows["event_timestamp"] <= at(day))]
    return r.sort_values("event_timestamp").iloc[-1]


def test_first_row_is_the_snapshot_after_creation(tiny):
    first = tiny.groupby("product_id")["event_timestamp"].min()
    assert first["p1"] == at("2025-01-02") and first["p2"] == at("2025-01-04")
    assert first["p3"] == at("2024-12-30")  # existed before the run started


def test_windows_sales_and_funnel(tiny):
    r = _at(tiny, "p1", "2025-01-03")
    # o1 (two lines), o2, o3 (a guest): o4 is cancelled; o5 is not placed yet
    assert (r.product_units_sold_7d, r.product_orders_7d, r.product_popularity_30d) == (4, 3, 2)
    assert (r.product_views_7d, r.product_carts_7d) == (3, 2)
    assert r.product_conversion_rate_30d == pytest.approx(1 / 3, abs=1e-12)
    assert r.product_trending_score == 4.0  # (3 + 1) / (0 / 4 + 1)
    r = _at(tiny, "p1", "2025-01-10")  # January 2nd's rows left the 7-day window today
    assert (r.product_orders_7d, r.product_views_7d, r.product_views_30d) == (1, 0, 3)
    assert r.product_trending_score == pytest.approx(2 / (3 / 4 + 1), abs=1e-12)
    r = _at(tiny, "p1", "2025-02-02")  # everything but o5 left 30 days; o5 leaves on Feb 4
    assert (r.product_units_sold_30d, r.product_popularity_30d) == (1, 1)
    r = _at(tiny, "p1", "2025-02-04")
    assert (r.product_units_sold_30d, r.product_popularity_30d) == (0, 0)
    assert math.isnan(r.product_conversion_rate_30d)  # no views: null, not 0


def test_refunds_count_from_the_snapshot_after_refund_ts(tiny):
    assert _at(tiny, "p1", "2025-01-06").product_refund_rate_90d == 0.0
    assert _at(tiny, "p1", "2025-01-07").product_refund_rate_90d == 0.25
    assert math.isnan(_at(tiny, "p2", "2025-01-07").product_refund_rate_90d)


def test_reviews_rating_and_sentiment(tiny):
    r = _at(tiny, "p1", "2025-01-03")
    assert (r.product_review_count, r.product_avg_rating) == (2, 3.0)
    # only the review with text has a sentiment; sums are kept in micro-units
    expected = sentiment.compound("great product, love it")
    assert r.product_avg_sentiment == pytest.approx(expected, abs=5e-7)
    assert math.isnan(_at(tiny, "p2", "2025-01-07").product_avg_sentiment)


def test_price_and_category_cross_sections(tiny):
    r = _at(tiny, "p1", "2025-01-03")  # p2 does not exist yet
    assert (r.category_product_count, r.product_price_pct_in_category) == (1, 1.0)
    r = _at(tiny, "p1", "2025-01-04")
    assert (r.category_product_count, r.product_price_pct_in_category) == (2, 0.5)
    assert (r.category_price_min, r.category_price_max, r.category_price_median) == (10, 30, 20)
    r = _at(tiny, "p1", "2025-01-05")  # the price change of Jan 5 00:00 is not in force yet
    assert r.product_price == 10.0
    r = _at(tiny, "p1", "2025-01-06")
    assert (r.product_price, r.category_price_median) == (20.0, 25.0)
    assert (
        r.category_popularity_30d
        == r.product_popularity_30d + _at(tiny, "p2", "2025-01-06").product_popularity_30d
    )
    r3 = _at(tiny, "p3", "2025-01-06")
    assert (r3.category, r3.brand, r3.category_product_count) == ("b", "x", 1)
    assert r3.product_created_at == at("2024-12-01")  # the age is computed on demand from it
    assert pd.isna(_at(tiny, "p1", "2025-01-06").brand)


def test_rows_only_where_something_changes(tiny):
    """p3 sells nothing and is alone in its category: one row. p1's last change before the run
    ends (Feb 15) is o5 (entered Jan 5) leaving the 35 days the trending score looks at."""
    assert len(tiny[tiny["product_id"] == "p3"]) == 1
    assert tiny[tiny["product_id"] == "p1"]["event_timestamp"].max() == at("2025-02-09")


# --- every feature, naively, on the hand-made shop ---------------------------------------------


@pytest.fixture(scope="module")
def shop_rows():
    tables = oracle_shop.build(seed=4)
    raw = oracle.RawShop(**tables)
    tables = _tables(**tables)
    rows = _rows(tables, "2024-09-20", "2025-03-05")
    raw.reviews = review_nlp.enrich_reviews(raw.reviews, None)  # the sentiment per review
    return raw, rows


def naive(raw: oracle.RawShop, product: str, T: pd.Timestamp) -> dict | None:
    """product_stats at snapshot T for one product, from the raw rows with plain loops."""

    def as_of(pid: str) -> dict | None:
        rows = [r for r in raw.of("products", "product_id", pid) if r["updated_at"] < T]
        return max(rows, key=lambda r: r["updated_at"]) if rows else None

    def inside(ts, days: int, lag: int = 0) -> bool:
        return T - timedelta(days=days) <= ts < T - timedelta(days=lag)

    me = as_of(product)
    if me is None:
        return None
    ev = raw.of("events", "product_id", product)
    # an order counts while its version in force at T is not cancelled (contract v1.1)
    at_t = {}
    for i in raw.of("order_items", "product_id", product):
        if i["order_id"] not in at_t:
            at_t[i["order_id"]] = oracle._order_at(raw.order_versions(i["order_id"]), T)
    lines = [
        i
        for i in raw.of("order_items", "product_id", product)
        if at_t[i["order_id"]][0]["status"] != "cancelled"
    ]
    orders = {o["order_id"]: o for o in raw.orders.to_dict("records")}

    def n_orders(days: int, lag: int = 0) -> int:
        return len({i["order_id"] for i in lines if inside(i["order_ts"], days, lag)})

    def popularity(pid: str) -> int:
        buyers = set()
        for i in raw.of("order_items", "product_id", pid):
            if i["status"] != "cancelled" and inside(i["order_ts"], 30):
                c = orders[i["order_id"]]["customer_id"]
                buyers.add(("customer", c) if isinstance(c, str) else ("guest", i["order_id"]))
        return len(buyers)

    out = {
        "product_price": me["price"],
        "category": me["category"] or "unknown",
        "brand": me["brand"],
        "product_created_at": me["created_at"],
    }
    for w in (7, 30):
        out[f"product_views_{w}d"] = sum(
            e["event_type"] == "product_view" and inside(e["event_ts"], w) for e in ev
        )
        out[f"product_carts_{w}d"] = sum(
            e["event_type"] == "add_to_cart" and inside(e["event_ts"], w) for e in ev
        )
        out[f"product_units_sold_{w}d"] = sum(
            i["quantity"] for i in lines if inside(i["order_ts"], w)
        )
        out[f"product_orders_{w}d"] = n_orders(w)
    buys = sum(e["event_type"] == "purchase" and inside(e["event_ts"], 30) for e in ev)
    views = out["product_views_30d"]
    out["product_conversion_rate_30d"] = buys / views if views else None
    out["product_popularity_30d"] = popularity(product)
    out["product_trending_score"] = (n_orders(7) + 1) / (n_orders(35, 7) / 4 + 1)
    recent = {i["order_id"] for i in lines if inside(i["order_ts"], 90)}
    refunded = {o for o in recent if at_t[o][1] > 0}
    out["product_refund_rate_90d"] = len(refunded) / len(recent) if recent else None
    reviews = [r for r in raw.of("reviews", "product_id", product) if r["review_ts"] < T]
    felt = [r["sentiment"] for r in reviews if r["sentiment"] is not None]
    out["product_review_count"] = len(reviews)
    out["product_avg_rating"] = (
        sum(r["rating"] for r in reviews) / len(reviews) if reviews else None
    )
    out["product_avg_sentiment"] = sum(felt) / len(felt) if felt else None

    peers = [as_of(p) for p in raw.products["product_id"].unique()]
    peers = [p for p in peers if p is not None and (p["category"] or "unknown") == out["category"]]
    prices = sorted(p["price"] for p in peers)
    out["category_product_count"] = len(prices)
    out["category_price_min"], out["category_price_max"] = prices[0], prices[-1]
    out["category_price_median"] = float(np.median(prices))
    out["product_price_pct_in_category"] = sum(p <= me["price"] for p in prices) / len(prices)
    out["category_popularity_30d"] = sum(popularity(p["product_id"]) for p in peers)
    return out


def test_every_feature_matches_a_naive_recomputation(shop_rows):
    raw, rows = shop_rows
    rng = np.random.default_rng(8)
    days = pd.date_range("2024-09-20", "2025-03-05", tz=UTC)
    served = oracle.by_entity(rows, "product_id")
    problems, checked = [], 0
    for product in raw.products["product_id"].unique():
        for T in rng.choice(days, 12):
            T = pd.Timestamp(T)
            expected = naive(raw, product, T)
            actual = oracle.lookup(served, product, T)
            if expected is None:
                assert actual is None, (product, T)
                continue
            for name, e in expected.items():
                a = actual[name]
                e, a = (
                    None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
                    for v in (e, a)
                )
                tol = 5e-7 if name == "product_avg_sentiment" else 1e-9
                ok = (e is None and a is None) or (
                    e is not None
                    and a is not None
                    and (
                        a == e
                        if isinstance(e, str | pd.Timestamp)
                        else math.isclose(a, e, rel_tol=tol, abs_tol=tol)
                    )
                )
                checked += 1
                if not ok:
                    problems.append(f"{product} {T:%Y-%m-%d} {name}: naive {e!r}, pipeline {a!r}")
    assert checked > 2000
    assert not problems, "\n".join(problems[:30])


def test_output_is_what_the_declaration_says(shop_rows):
    _, rows = shop_rows
    source = product_stats.SOURCE
    assert list(rows.columns) == source.columns
    for f in source.features:
        assert str(rows[f.name].dtype) == str(f.pandas_dtype()), f.name


def test_docs_name_every_product_feature(repo_root):
    from pipelines.families import product_copurchase

    text = (repo_root / "docs" / "features.md").read_text()
    for source in (product_stats.SOURCE, product_copurchase.SOURCE):
        missing = [f.name for f in source.features if f"`{f.name}`" not in text]
        assert not missing, f"docs/features.md does not describe {missing}"


def test_chunked_grid_gives_the_same_rows(monkeypatch):
    tables = _tables(**oracle_shop.build(seed=6))
    whole = _rows(tables, "2024-09-20", "2025-03-05")
    monkeypatch.setattr(product_stats, "CHUNK_DAYS", 5)
    pd.testing.assert_frame_equal(_rows(tables, "2024-09-20", "2025-03-05"), whole)


def test_rows_written_part_by_part_equal_one_part(tmp_path, monkeypatch):
    """The runner reduces and writes product_stats a span of days at a time (bounded memory on a
    big catalog): with 5-day parts (many per month file, and parts across month ends) the stored
    rows and the latest-row file equal those of a single part."""
    from pipelines import run
    from tests.support.oracle_shop import write_clean

    tables = oracle_shop.build(seed=6)
    stored = {}
    for days in (10_000, 5):
        data = tmp_path / f"chunk{days}"
        write_clean(data, tables)
        monkeypatch.setattr(product_stats, "CHUNK_DAYS", days)
        (outcome,) = run.run(data, mode="historical", only=["product_stats"], echo=False)
        rows = run.read_source(data, product_stats.SOURCE, lists=False)
        latest = pd.read_parquet(run._latest_path(data, product_stats.SOURCE))
        assert outcome.rows == len(rows)
        stored[days] = rows, latest.sort_values("product_id", ignore_index=True)
    (whole, whole_latest), (parts, parts_latest) = stored[10_000], stored[5]
    assert len(whole) > 1000 and whole["event_timestamp"].dt.month.nunique() >= 5
    pd.testing.assert_frame_equal(parts, whole)
    pd.testing.assert_frame_equal(parts_latest, whole_latest)
