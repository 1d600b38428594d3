"""The declared-aggregation engine reproduces the hand-written families where a feature is
expressible as a declaration: the same value for every entity on every day. Also on a shop whose
orders change (contract v1.1: cancelled, refunded, discounted later), for the features the
families read as of T like declarations do (order counts, discount share, units and orders per
product; what was bought, the last order and the distinct products, the families read as placed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines import sources
from pipelines.run import read_source, run
from tests.support.pipelines_shop import build, write_batch

LIVE = "status != 'cancelled'"
# Each declared feature is named after the family's (behind a two-letter prefix) and spells its
# definition.
DECLARATIONS = f"""
views:
  - name: declared_activity
    entity: customer
    source: orders
    filter: {LIVE}
    description: customer_activity's expressible features, declared.
    features:
      - {{name: a_orders_7d, function: count, window: 7d, description: x}}
      - {{name: a_orders_30d, function: count, window: 30d, description: x}}
      - {{name: a_orders_90d, function: count, window: 90d, description: x}}
      - {{name: a_lifetime_orders, function: count, window: lifetime, description: x}}
      - {{name: a_last_order_ts, function: max, column: order_ts, window: lifetime,
         description: x}}
      - {{name: a_discount_share_90d, function: share, where: discount_amount > 0, window: 90d,
         description: x}}
      - {{name: a_distinct_products_90d, source: order_items, filter: "{LIVE}",
         function: count_distinct, column: product_id, window: 90d, description: x}}
      - {{name: a_events_30d, source: events, function: count, window: 30d, description: x}}
      - {{name: a_sessions_30d, source: events, function: count_distinct, column: session_id,
         window: 30d, description: x}}
      - {{name: a_add_to_cart_30d, source: events, function: count, window: 30d,
         filter: event_type == 'add_to_cart', description: x}}
      - {{name: a_product_views_30d, source: events, function: count, window: 30d,
         filter: event_type == 'product_view', description: x}}
      - {{name: a_searches_30d, source: events, function: count, window: 30d,
         filter: event_type == 'search', description: x}}
  - name: declared_product
    entity: product
    source: events
    description: product_stats' expressible features, declared.
    features:
      - {{name: p_product_views_7d, function: count, filter: event_type == 'product_view',
         window: 7d, description: x}}
      - {{name: p_product_views_30d, function: count, filter: event_type == 'product_view',
         window: 30d, description: x}}
      - {{name: p_product_carts_7d, function: count, filter: event_type == 'add_to_cart',
         window: 7d, description: x}}
      - {{name: p_product_carts_30d, function: count, filter: event_type == 'add_to_cart',
         window: 30d, description: x}}
      - {{name: p_product_units_sold_7d, source: order_items, filter: "{LIVE}", function: sum,
         column: quantity, window: 7d, description: x}}
      - {{name: p_product_units_sold_30d, source: order_items, filter: "{LIVE}", function: sum,
         column: quantity, window: 30d, description: x}}
      - {{name: p_product_orders_7d, source: orders, filter: "{LIVE}", function: count,
         window: 7d, description: x}}
      - {{name: p_product_orders_30d, source: orders, filter: "{LIVE}", function: count,
         window: 30d, description: x}}
"""
PAIRS = {
    "declared_activity": ("customer_activity", "customer_id"),
    "declared_product": ("product_stats", "product_id"),
}


# Features the families compute from the order in force at T (pipelines.order_versions.steps).
IN_FORCE = {
    "orders_7d",
    "orders_30d",
    "orders_90d",
    "lifetime_orders",
    "discount_share_90d",
    "product_units_sold_7d",
    "product_units_sold_30d",
    "product_orders_7d",
    "product_orders_30d",
}
DAY = pd.Timedelta(days=1)


def _with_versions(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Later versions of some orders: cancelled 3 days after, discounted 9 days after, refunded
    (the refund known 2 days after its version) 12 days after."""
    orders = tables["orders"]
    cancel = orders.iloc[::6].assign(updated_at=lambda o: o["order_ts"] + 3 * DAY)
    cancel["status"] = "cancelled"
    discount = orders.iloc[2::9].assign(updated_at=lambda o: o["order_ts"] + 9 * DAY)
    discount["discount_amount"] = 4.0
    refund = orders.iloc[4::7].assign(updated_at=lambda o: o["order_ts"] + 12 * DAY)
    refund["status"] = "partially_refunded"
    refund["refunded_amount"] = 1.0
    refund["refund_ts"] = refund["updated_at"] + 2 * DAY
    merged = pd.concat([orders, cancel, discount, refund], ignore_index=True)
    merged["updated_at"] = merged["updated_at"].fillna(merged["order_ts"])
    return {**tables, "orders": merged.drop_duplicates(["order_id", "updated_at"], keep="last")}


@pytest.fixture(scope="module", params=["v1", "versions"])
def built(request, tmp_path_factory) -> tuple[Path, Path, str]:
    repo = tmp_path_factory.mktemp("repo")
    (repo / "aggregations.yaml").write_text(DECLARATIONS)
    root = tmp_path_factory.mktemp("store")
    tables = build(seed=5, customers=30, products=12, days=60)
    if request.param == "versions":
        tables = _with_versions(tables)
    write_batch(root, tables, "all")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
        run(root, "historical", only=[*PAIRS, *(f for f, _ in PAIRS.values())], echo=False)
    return root, repo, request.param


def _daily(frame: pd.DataFrame, key: str, columns: list[str], days: pd.DatetimeIndex):
    """Change-point rows as one value per (entity, day), as Feast's as-of join reads them."""
    out = []
    for entity, rows in frame.groupby(key, sort=True):
        rows = rows.set_index("event_timestamp")[columns].sort_index()
        dense = rows.reindex(rows.index.union(days)).ffill().loc[days]
        dense = dense[dense.index >= rows.index.min()]
        out.append(dense.assign(**{key: entity}))
    return pd.concat(out).reset_index(names="day").sort_values([key, "day"], ignore_index=True)


@pytest.mark.parametrize("declared", list(PAIRS))
def test_declared_features_equal_the_family(built, declared):
    root, repo, shop = built
    family, key = PAIRS[declared]
    catalog = sources.sources(repo=repo)
    mine, theirs = catalog[declared], catalog[family]
    names = [f.name[2:] for f in mine.features]
    if shop == "versions":
        names = [n for n in names if n in IN_FORCE]
        assert len(names) >= 4
    a = read_source(root, mine)
    b = read_source(root, theirs)
    days = pd.date_range(b["event_timestamp"].min(), b["event_timestamp"].max(), freq="D")
    left = _daily(
        a.rename(columns=lambda c: c[2:] if c in mine.feature_names else c), key, names, days
    )
    right = _daily(b, key, names, days)
    assert len(left) > 800  # entity-days compared
    pd.testing.assert_frame_equal(left, right, check_dtype=False)
