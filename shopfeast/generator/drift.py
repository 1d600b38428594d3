"""A known shift from one day on (`--drift-from DAY`), for showing and testing the monitor.

From `span.start + DAY` on: every price rises by `PRICE_FACTOR` (a new products change-log row for
every product at that instant, later versions and order amounts scaled alike), 60% of the sessions
and of the orders do not happen (`KEEP`), and one category (the one with the most order lines
before the shift) collapses: `COLLAPSE_KEEP` of its remaining orders and product events survive.

Applied to the rendered tables, before corruption, with its own random stream: every row before
the shift is the same as in the shop generated without it (same seed, no corruption), so a control
shop and a shifted shop differ only where the shift says.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from shopfeast.generator.config import Span

PRICE_FACTOR = 1.8
KEEP = 0.4
COLLAPSE_KEEP = 0.05


def apply(tables: dict[str, pa.Table], span: Span, day: int, rng: np.random.Generator) -> dict:
    """Shift `tables` in place from `day` on; returns what was done (for generator.json)."""
    if not 0 < day < span.days:
        raise ValueError(
            f"--drift-from {day}: must be a day inside the export (1..{span.days - 1})"
        )
    at = span.start + pd.Timedelta(days=day)
    prods = tables["products"].to_pandas()
    orders = tables["orders"].to_pandas()
    items = tables["order_items"].to_pandas()
    events = tables["events"].to_pandas()

    category = _busiest_category(prods, orders, items, at)
    cat_products = set(prods.loc[prods["category"] == category, "product_id"])

    # Prices: a new version of every product that exists at the shift, later versions scaled.
    by_product = prods.sort_values(["product_id", "updated_at"], kind="stable")
    before = by_product[by_product["updated_at"] < at]
    latest = before.groupby("product_id", sort=False).tail(1).copy()
    latest["updated_at"] = at
    later = prods["updated_at"] >= at
    prods.loc[later, "price"] = (prods.loc[later, "price"] * PRICE_FACTOR).round(2)
    latest["price"] = (latest["price"] * PRICE_FACTOR).round(2)
    # in time order, as the generator writes the change log (rows before the shift unchanged)
    prods = pd.concat([prods, latest], ignore_index=True)
    prods = prods.sort_values("updated_at", kind="stable").reset_index(drop=True)

    # Orders: half of them go; of those left, most with a product of the collapsing category.
    after = orders["order_ts"] >= at
    draw = rng.random(len(orders))
    hit = set(items.loc[items["product_id"].isin(cat_products), "order_id"])
    in_cat = orders["order_id"].isin(hit).to_numpy()
    keep_p = np.where(in_cat, KEEP * COLLAPSE_KEEP, KEEP)
    drop = after.to_numpy() & (draw >= keep_p)
    dropped = set(orders.loc[drop, "order_id"])
    orders = orders[~drop].reset_index(drop=True)
    items = items[~items["order_id"].isin(dropped)].reset_index(drop=True)
    late = items["order_id"].isin(set(orders.loc[orders["order_ts"] >= at, "order_id"]))
    for col in ("unit_price", "discount"):
        items.loc[late, col] = (items.loc[late, col] * PRICE_FACTOR).round(2)
    after = orders["order_ts"] >= at
    for col in ("total_amount", "discount_amount", "refunded_amount"):
        orders.loc[after, col] = (orders.loc[after, col] * PRICE_FACTOR).round(2)

    # Sessions: half of those starting after the shift vanish; product events of the category
    # mostly vanish from the rest.
    first = events.groupby("session_id", sort=False)["event_ts"].transform("min")
    sessions = events.loc[first >= at, "session_id"].unique()
    gone = set(sessions[rng.random(len(sessions)) >= KEEP])
    ev_after = (events["event_ts"] >= at).to_numpy()
    ev_cat = events["product_id"].isin(cat_products).to_numpy()
    ev_drop = events["session_id"].isin(gone).to_numpy() | (
        ev_after & ev_cat & (rng.random(len(events)) >= COLLAPSE_KEEP)
    )
    events = events[~ev_drop].reset_index(drop=True)

    for name, frame in (
        ("products", prods),
        ("orders", orders),
        ("order_items", items),
        ("events", events),
    ):
        schema = tables[name].schema
        tables[name] = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return {
        "from_day": day,
        "from": at.isoformat(),
        "price_factor": PRICE_FACTOR,
        "sessions_and_orders_kept": KEEP,
        "collapsed_category": category,
        "collapsed_category_kept": COLLAPSE_KEEP,
    }


def _busiest_category(prods, orders, items, at) -> str:
    early = set(orders.loc[orders["order_ts"] < at, "order_id"])
    lines = items[items["order_id"].isin(early)]
    cats = prods.drop_duplicates("product_id", keep="last").set_index("product_id")["category"]
    counts = lines["product_id"].map(cats).value_counts()
    if counts.empty:
        return str(prods["category"].iloc[0])
    top = counts[counts == counts.max()].index
    return str(sorted(top)[0])
