"""The declared-aggregation engine reproduces the hand-written families where a feature is
expressible as a declaration: the same value for every entity on every day."""

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


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    repo = tmp_path_factory.mktemp("repo")
    (repo / "aggregations.yaml").write_text(DECLARATIONS)
    root = tmp_path_factory.mktemp("store")
    write_batch(root, build(seed=5, customers=30, products=12, days=60), "all")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
        run(root, "historical", only=[*PAIRS, *(f for f, _ in PAIRS.values())], echo=False)
    return root, repo


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
    root, repo = built
    family, key = PAIRS[declared]
    catalog = sources.sources(repo=repo)
    mine, theirs = catalog[declared], catalog[family]
    names = [f.name[2:] for f in mine.features]
    a = read_source(root, mine)
    b = read_source(root, theirs)
    days = pd.date_range(b["event_timestamp"].min(), b["event_timestamp"].max(), freq="D")
    left = _daily(
        a.rename(columns=lambda c: c[2:] if c in mine.feature_names else c), key, names, days
    )
    right = _daily(b, key, names, days)
    assert len(left) > 800  # entity-days compared
    pd.testing.assert_frame_equal(left, right, check_dtype=False)
