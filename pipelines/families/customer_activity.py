"""customer_activity: what a customer bought and did, over 7/30/90-day windows and lifetime.

Orders are read as of T (pipelines.order_versions): an order counts while the version in force
is not cancelled, and a refund lowers spend from the snapshot after its `refund_ts` (from the
version itself when `refund_ts` is missing), never earlier: using a refund that happens after T
would leak the future. What was bought (products, categories, the last order, recent products)
counts the orders that were not cancelled when placed (their first version); the most-bought
products (`frequent_product_ids`) count the orders not cancelled as of T (an order cancelled later
leaves them from the snapshot after its cancelling version), over all history. Categories are the
product's as of the order (latest product row with `updated_at` before `order_ts`, else its first
row), so a later re-categorisation does not rewrite what a customer bought. Sessions are
(customer, session_id) keys: a session counts in a window when any of its events does, and its
length is the span of its events inside the window, so a session across midnight never uses
events from after T.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import order_versions
from pipelines.existence import customer_first_day
from pipelines.family import ORDER_COLUMNS, Input, customer_parts
from pipelines.specs import LIST_SEP, STRING, Feature, FeatureSource
from pipelines.windows import (
    MICRO,
    EntityIndex,
    Snapshots,
    Streams,
    as_of,
    day_ts,
    duration_us,
    entry_day,
    segment_states,
    state_deltas,
    top_key,
)

RECENT_PRODUCTS = 10
ITEM_WINDOW_DAYS = 90  # the longest window of the features read from order items
# The customer's most-bought products kept (`frequent_product_ids`; training/candidates.py's
# `frequent` source offers up to this many). On Complete Journey a household's 50 most-bought
# products hold 31.3% of a basket, its last 10 distinct ones 9.8% (docs/training.md).
FREQUENT_PRODUCTS = 50  # a change needs a historical run: an incremental one seeds from prior rows

SOURCE = FeatureSource(
    name="customer_activity",
    entity="customer",
    description="Orders, spend, sessions and browsing of a customer: 7/30/90 days and lifetime.",
    tags=(("domain", "customer"), ("family", "activity")),
    features=(
        Feature("orders_7d", "int64", "non-cancelled orders in the window", "7d", 0),
        Feature("orders_30d", "int64", "non-cancelled orders in the window", "30d", 0),
        Feature("orders_90d", "int64", "non-cancelled orders in the window", "90d", 0),
        Feature(
            "spend_30d",
            "float64",
            "total_amount minus refunds known before T, orders in the window",
            "30d",
            0.0,
        ),
        Feature(
            "spend_90d",
            "float64",
            "total_amount minus refunds known before T, orders in the window",
            "90d",
            0.0,
        ),
        Feature(
            "avg_order_value_90d", "float64", "spend_90d / orders_90d; null without orders", "90d"
        ),
        Feature(
            "last_order_ts", "unix_timestamp", "latest non-cancelled order_ts before T", "lifetime"
        ),
        Feature("lifetime_orders", "int64", "non-cancelled orders before T", "lifetime", 0),
        Feature(
            "lifetime_spend",
            "float64",
            "spend of all non-cancelled orders before T",
            "lifetime",
            0.0,
        ),
        Feature(
            "purchase_frequency_90d",
            "float64",
            "orders per week over 90 days (orders_90d / (90 / 7))",
            "90d",
            0.0,
        ),
        Feature(
            "discount_share_90d",
            "float64",
            "share of the window's orders with a discount; null without orders",
            "90d",
        ),
        Feature(
            "refund_rate_90d",
            "float64",
            "share of the window's orders with a refund known before T; null without orders",
            "90d",
        ),
        Feature(
            "distinct_products_90d", "int64", "distinct products bought in the window", "90d", 0
        ),
        Feature(
            "distinct_categories_90d", "int64", "distinct categories bought in the window", "90d", 0
        ),
        Feature(
            "category_diversity_90d",
            "float64",
            "distinct categories / order lines in the window; null without purchases",
            "90d",
        ),
        Feature(
            "favourite_category_90d",
            "string",
            "category with the most units bought in the "
            "window (ties: alphabetical); null without purchases",
            "90d",
        ),
        Feature("events_30d", "int64", "events of the customer in the window", "30d", 0),
        Feature("sessions_30d", "int64", "distinct sessions with an event in the window", "30d", 0),
        Feature("add_to_cart_30d", "int64", "add_to_cart events in the window", "30d", 0),
        Feature("product_views_30d", "int64", "product_view events in the window", "30d", 0),
        Feature("searches_30d", "int64", "search events in the window", "30d", 0),
        Feature(
            "avg_session_length_30d",
            "float64",
            "mean seconds between a session's first and "
            "last event inside the window; null without sessions",
            "30d",
        ),
        Feature(
            "cart_abandonment_rate_30d",
            "float64",
            "share of sessions with add_to_cart and no "
            "purchase event, among sessions with add_to_cart; null without such",
            "30d",
        ),
        Feature(
            "recent_product_ids",
            "string_list",
            "the last 10 distinct products bought before "
            "T, most recent first (candidate generation); empty without purchases",
            "lifetime",
            (),
        ),
        Feature(
            "frequent_product_ids",
            "string_list",
            "the customer's 50 most-bought products before T: by the number of their orders, not "
            "cancelled as of T, holding the product (ties: the latest such order first, then the "
            "product id); candidate generation; empty without purchases",
            "lifetime",
            (),
        ),
    ),
)

INPUTS = (
    Input("customers", ("customer_id", "signup_ts", "updated_at")),
    Input("products", ("product_id", "category", "updated_at", "created_at")),
    Input(
        "orders",
        ORDER_COLUMNS,
    ),
    # all history: frequent_product_ids counts every order (the windowed features take the last
    # ITEM_WINDOW_DAYS of it; an incremental day recomputes the most-bought lists of the customers
    # whose orders changed from all their lines, which a prior row's top 50 cannot seed: a product
    # outside it may enter when an order of one inside is cancelled)
    Input("order_items", ("order_id", "product_id", "quantity", "order_ts")),
    Input("events", ("customer_id", "session_id", "event_type", "event_ts"), lookback_days=30),
)
# How the Spark engine splits the inputs by customer (pipelines/spark/features.py): a table by its
# own column (an order's versions by its first version's customer), order items by their order's
# customer; the products are read whole by every shard.
SHARD_BY = {
    "customers": "customer_id",
    "orders": "customer_id",
    "events": "customer_id",
    "order_items": ("orders", "order_id"),
}


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    index = EntityIndex(tables["customers"]["customer_id"])
    first_day = customer_first_day(tables["customers"], index)
    orders = _live_orders(tables["orders"], index)
    all_items = tables["order_items"]
    window_items = all_items  # what the 90-day features need (what the runner read before)
    since = snapshots.read_from(ITEM_WINDOW_DAYS)
    if since is not None:
        window_items = all_items[(all_items["order_ts"] >= since).to_numpy(dtype=bool)]
    items = _items(window_items, orders, tables["products"])
    steps = _order_steps(tables["orders"], index)
    frequent = _frequent_table(all_items, steps, index, snapshots, prior)
    streams = Streams()
    streams.points(np.arange(len(index)), first_day)
    streams.points(frequent[0], frequent[1])  # a row on every day a most-bought list changes
    _order_streams(streams, steps)
    _item_streams(streams, items)
    _event_streams(streams, tables["events"], index)
    acc = streams.evaluate(snapshots.start_day, snapshots.end_day)
    alive = acc.day >= first_day[acc.entity]
    entity, day = acc.entity[alive], acc.day[alive]
    v = {k: a[alive] for k, a in acc.values.items()}

    out = pd.DataFrame({"customer_id": index.lookup(entity), "event_timestamp": day_ts(day)})
    for w in (7, 30, 90):
        out[f"orders_{w}d"] = v[f"orders_{w}d"]
    out["spend_30d"] = v["spend_30d"] / MICRO
    out["spend_90d"] = v["spend_90d"] / MICRO
    out["avg_order_value_90d"] = _ratio(v["spend_90d"] / MICRO, v["orders_90d"])
    out["lifetime_orders"] = v["lifetime_orders"]
    out["lifetime_spend"] = v["lifetime_spend"] / MICRO
    out["purchase_frequency_90d"] = v["orders_90d"] / (90 / 7)
    out["discount_share_90d"] = _ratio(v["discounted_90d"], v["orders_90d"])
    out["refund_rate_90d"] = _ratio(v["refunded_90d"], v["orders_90d"])
    out["distinct_products_90d"] = v["distinct_products_90d"]
    out["distinct_categories_90d"] = v["distinct_categories_90d"]
    out["category_diversity_90d"] = _ratio(v["distinct_categories_90d"], v["lines_90d"])
    for name in (
        "events_30d",
        "sessions_30d",
        "add_to_cart_30d",
        "product_views_30d",
        "searches_30d",
    ):
        out[name] = v[name]
    out["avg_session_length_30d"] = _ratio(v["session_us_30d"] / MICRO, v["sessions_30d"])
    out["cart_abandonment_rate_30d"] = _ratio(v["abandoned_30d"], v["cart_sessions_30d"])
    out["last_order_ts"] = _last_order(orders, entity, day)
    out["favourite_category_90d"] = _favourite(items, entity, day, snapshots)
    out["recent_product_ids"] = _recent(items, index, entity, day, snapshots, prior)
    out["frequent_product_ids"] = _frequent(frequent, entity, day)
    return out


def shard(tables: dict[str, pd.DataFrame], n: int) -> Iterator[dict[str, pd.DataFrame]]:
    """Split by customer (every feature here is one customer's own): n disjoint input sets."""
    parts = customer_parts(tables, n)
    orders, items = tables["orders"], tables["order_items"]
    for k in range(n):
        o = orders[parts["orders"] == k]
        mine = pc.is_in(_strings(items["order_id"]), value_set=_strings(o["order_id"]))
        yield {
            "customers": tables["customers"][parts["customers"] == k],
            "products": tables["products"],
            "orders": o,
            "order_items": items[mine.to_numpy(zero_copy_only=False)],
            "events": tables["events"][parts["events"] == k],
        }


def _strings(col: pd.Series) -> pa.Array:
    return pa.array(col.astype(STRING).array).cast(pa.string())


# --- inputs -----------------------------------------------------------------------------------


def _live_orders(orders: pd.DataFrame, index: EntityIndex) -> pd.DataFrame:
    """Orders not cancelled when placed (first versions), with customer code and entry day."""
    o = order_versions.first_versions(orders)
    o = o[o["status"] != "cancelled"]
    o = o.assign(c=index.codes(o["customer_id"]), enter=entry_day(o["order_ts"]))
    return o[o["c"] >= 0]


def _order_steps(orders: pd.DataFrame, index: EntityIndex) -> pd.DataFrame:
    """Each order's values as of each day it changes (order_versions.steps), known customers."""
    st = order_versions.steps(orders)
    st = st.assign(c=index.codes(st["customer_id"]))
    return st[st["c"] >= 0]


def _items(items: pd.DataFrame, orders: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """Items of live orders with the customer code, entry day and the category as of the order."""
    if len(items):  # items carry their order's order_ts: older orders cannot match (an
        # incremental day joins 90 days of items, not all of history's orders)
        orders = orders[orders["order_ts"] >= items["order_ts"].min()]
    it = items.merge(orders[["order_id", "c", "enter"]], on="order_id", how="inner")
    cat = products[["product_id", "category", "updated_at", "created_at"]].copy()
    cat["updated_at"] = cat["updated_at"].fillna(cat["created_at"])
    cat["category"] = cat["category"].fillna("unknown")
    cat = cat.dropna(subset=["updated_at"]).sort_values("updated_at", kind="stable")
    it = it.sort_values("order_ts", kind="stable")
    it = pd.merge_asof(
        it,
        cat[["product_id", "updated_at", "category"]],
        left_on="order_ts",
        right_on="updated_at",
        by="product_id",
        allow_exact_matches=False,
    )
    first_cat = cat.drop_duplicates("product_id").set_index("product_id")["category"]
    it["category"] = it["category"].fillna(it["product_id"].map(first_cat)).fillna("unknown")
    return it.drop(columns="updated_at").reset_index(drop=True)


# --- streams ----------------------------------------------------------------------------------


def _order_streams(s: Streams, st: pd.DataFrame) -> None:
    """Order counts, spend, refunds and discounts from the orders' steps: a change (a refund, a
    cancellation) is known from its day and leaves with the order's window."""
    c, enter, day = st["c"].to_numpy(), st["enter"].to_numpy(), st["day"].to_numpy()
    live, spend = st["d_live"].to_numpy(), st["d_spend"].to_numpy()
    for w in (7, 30, 90):
        order_versions.window(s, c, enter, day, w, **{f"orders_{w}d": live})
    order_versions.window(s, c, enter, day, None, lifetime_orders=live, lifetime_spend=spend)
    for w in (30, 90):
        order_versions.window(s, c, enter, day, w, **{f"spend_{w}d": spend})
    order_versions.window(
        s,
        c,
        enter,
        day,
        90,
        discounted_90d=st["d_discounted"].to_numpy(),
        refunded_90d=st["d_refunded"].to_numpy(),
    )


def _item_streams(s: Streams, it: pd.DataFrame) -> None:
    c, enter = it["c"].to_numpy(), it["enter"].to_numpy()
    s.window(c, enter, 90, lines_90d=np.ones(len(it), np.int64))
    s.distinct("distinct_products_90d", c, it["product_id"], enter, 90)
    s.distinct("distinct_categories_90d", c, it["category"], enter, 90)


def _event_streams(s: Streams, events: pd.DataFrame, index: EntityIndex) -> None:
    ev = events.assign(c=index.codes(events["customer_id"]))
    ev = ev[ev["c"] >= 0]
    kind = ev["event_type"]
    ev = ev.assign(
        enter=entry_day(ev["event_ts"]),
        us=duration_us(ev["event_ts"]),
        cart=(kind == "add_to_cart").to_numpy(np.int64),
        view=(kind == "product_view").to_numpy(np.int64),
        search=(kind == "search").to_numpy(np.int64),
        buy=(kind == "purchase").to_numpy(np.int64),
        n=np.int64(1),
    )
    daily = ev.groupby(["c", "enter"], sort=False)[["n", "cart", "view", "search"]].sum()
    daily = daily.reset_index()
    s.window(
        daily["c"].to_numpy(),
        daily["enter"].to_numpy(),
        30,
        events_30d=daily["n"].to_numpy(),
        add_to_cart_30d=daily["cart"].to_numpy(),
        product_views_30d=daily["view"].to_numpy(),
        searches_30d=daily["search"].to_numpy(),
    )
    # Sessions: one piece per (customer, session, day); the window state of each session is the
    # aggregate of its visible pieces, turned into deltas at the days where that set changes.
    ev["sid"] = pd.factorize(ev["session_id"])[0]
    pieces = ev.groupby(["c", "sid", "enter"], sort=False).agg(
        first=("us", "min"), last=("us", "max"), cart=("cart", "max"), buy=("buy", "max")
    )
    states = segment_states(
        pieces.reset_index(),
        ["c", "sid"],
        "enter",
        30,
        {
            "first": ("first", "min"),
            "last": ("last", "max"),
            "cart": ("cart", "max"),
            "buy": ("buy", "max"),
        },
    )
    present = states["present"].to_numpy()
    cart = states["cart"].fillna(0).to_numpy(np.int64)
    states = states.assign(
        sessions_30d=present.astype(np.int64),
        session_us_30d=(states["last"] - states["first"]).fillna(0).to_numpy(np.int64),
        cart_sessions_30d=cart,
        abandoned_30d=cart * (1 - states["buy"].fillna(0).to_numpy(np.int64)),
    )
    cols = ["sessions_30d", "session_us_30d", "cart_sessions_30d", "abandoned_30d"]
    d = state_deltas(states, ["c", "sid"], cols)
    s.add(d["c"].to_numpy(), d["day"].to_numpy(), **{k: d[k].to_numpy() for k in cols})


# --- derived ----------------------------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(len(num), np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


def _last_order(o: pd.DataFrame, entity: np.ndarray, day: np.ndarray) -> pd.Series:
    last = (
        o.groupby(["c", "enter"])["order_ts"]
        .max()
        .reset_index()
        .sort_values(["c", "enter"], kind="stable")
    )
    pos = as_of(entity, day, last["c"].to_numpy(), last["enter"].to_numpy())
    ts = last["order_ts"].reset_index(drop=True)
    return ts.reindex(pos).reset_index(drop=True)


def _favourite(
    it: pd.DataFrame, entity: np.ndarray, day: np.ndarray, snapshots: Snapshots
) -> pd.Series:
    names = np.sort(it["category"].unique())
    rank = np.searchsorted(names, it["category"].to_numpy())
    pair = pd.factorize(pd.Series(it["c"].to_numpy() * (len(names) + 1) + rank))[0]
    s = Streams()
    s.window(pair, it["enter"].to_numpy(), 90, units=it["quantity"].to_numpy(np.int64))
    # Carry the prior day, so a pair that has not changed since before the run still counts.
    acc = s.evaluate(snapshots.start_day, snapshots.end_day, carry=True)
    pairs = (
        pd.DataFrame({"pair": pair, "c": it["c"].to_numpy(), "rank": rank})
        .drop_duplicates("pair")
        .set_index("pair")
    )
    c = pairs["c"].reindex(acc.entity).to_numpy()
    r = pairs["rank"].reindex(acc.entity).to_numpy()
    order = np.lexsort((acc.day, r, c))
    e, d, k = top_key(c[order], r[order], acc.day[order], acc.values["units"][order])
    pos = as_of(entity, day, e, d)
    winner = np.where(pos >= 0, k[np.maximum(pos, 0)] if len(k) else -1, -1)
    out = pd.Series(pd.NA, index=range(len(day)), dtype="string")
    hit = winner >= 0
    out[hit] = names[winner[hit]]
    return out


def _recent(
    it: pd.DataFrame,
    index: EntityIndex,
    entity: np.ndarray,
    day: np.ndarray,
    snapshots: Snapshots,
    prior: pd.DataFrame,
) -> pd.Series:
    """Last RECENT_PRODUCTS distinct products per customer and entry day, seeded from `prior`.

    Values are packed strings (specs.pack_list): one join per (customer, day), not per row.
    """
    seed_c, seed_v = np.zeros(0, np.int64), []
    lists: dict[int, list[str]] = {}
    if len(prior):
        codes = index.codes(prior["customer_id"])
        packed = prior["recent_product_ids"].tolist()
        keep = [
            i
            for i, c in enumerate(codes)
            if c >= 0 and packed[i] is not pd.NA and packed[i] is not None
        ]
        seed_c = codes[keep]
        seed_v = [packed[i] for i in keep]
        lists = {
            int(c): (v.split(LIST_SEP) if v else []) for c, v in zip(seed_c, seed_v, strict=True)
        }
    new = it if snapshots.historical else it[it["enter"] >= snapshots.start_day]
    new = new.sort_values(
        ["c", "enter", "order_ts", "product_id"], ascending=[True, True, False, True], kind="stable"
    )
    c, d = new["c"].to_numpy(), new["enter"].to_numpy()
    p = new["product_id"].astype(object).to_numpy()
    bounds = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (d[1:] != d[:-1]), True])
    bounds = bounds if len(c) else bounds[:0]
    rows_v = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        cust = int(c[a])
        merged = list(dict.fromkeys([*p[a:b], *lists.get(cust, ())]))[:RECENT_PRODUCTS]
        lists[cust] = merged
        rows_v.append(LIST_SEP.join(merged))
    # Seeds sit on the day before the run; the as-of lookup carries them forward.
    table_c = np.r_[seed_c, c[bounds[:-1]]].astype(np.int64)
    table_d = np.r_[np.full(len(seed_c), snapshots.prior_day, np.int64), d[bounds[:-1]]]
    table_v = np.array([*seed_v, *rows_v, ""], dtype=object)  # the last: "no purchase yet"
    order = np.lexsort((table_d, table_c))
    pos = as_of(entity, day, table_c[order], table_d[order])
    picked = np.where(pos >= 0, order[np.maximum(pos, 0)] if len(order) else -1, -1)
    return pd.Series(table_v[picked], dtype=STRING)


def _frequent_lists(
    items: pd.DataFrame, steps: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer's FREQUENT_PRODUCTS most-bought products on every day one of its orders
    holding a product changes liveness: (customer code, day, packed list), sorted by both.

    A product's count is the number of the customer's orders live on that day (the version in
    force not cancelled: order_versions.steps) holding it at least once; ties go to the latest
    such order's `order_ts`, then the product id. Every order's whole history is read: a
    cancellation lowers its products' counts from its day on, and the latest order among equals
    falls back to the previous live one.
    """
    change = steps.loc[steps["d_live"] != 0, ["order_id", "c", "day", "order_ts", "d_live"]]
    lines = items[["order_id", "product_id"]]
    if len(change) and len(lines):  # only the lines of the orders to count (not every line)
        mine = pc.is_in(_strings(lines["order_id"]), value_set=_strings(change["order_id"]))
        lines = lines[mine.fill_null(False).to_numpy(zero_copy_only=False)].dropna()
    if len(change) and len(lines):
        change = change.assign(order_id=change["order_id"].astype(str).astype(object))
        lines = lines.assign(order_id=lines["order_id"].astype(str).astype(object))
        lines = lines.assign(product_id=lines["product_id"].astype(str).astype(object))
        ev = change.merge(lines.drop_duplicates(), on="order_id", how="inner")
    else:
        ev = pd.DataFrame(columns=["order_id", "c", "day", "order_ts", "d_live", "product_id"])
    ev = ev.assign(us=ev["order_ts"].astype("datetime64[us, UTC]").astype("int64"))
    ev = ev.sort_values(["c", "day"], kind="stable")
    c = ev["c"].to_numpy(np.int64)
    d = ev["day"].to_numpy(np.int64)
    prod = ev["product_id"].to_numpy(object)
    us = ev["us"].to_numpy(np.int64)
    delta = ev["d_live"].to_numpy(np.int64)
    bounds = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (d[1:] != d[:-1]), True])
    bounds = bounds if len(c) else bounds[:0]
    out_c, out_d, out_v = [], [], []
    ranked: list[tuple[int, int, str]] = []  # (-count, -latest order, product): best first
    # product -> [count, latest live order's time, {order time: live orders at it}]
    state: dict[str, list] = {}
    cust = -1
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if c[a] != cust:
            cust, ranked, state = int(c[a]), [], {}
        for i in range(a, b):
            p, t, dn = prod[i], int(us[i]), int(delta[i])
            st = state.get(p)
            if st is None:
                st = state[p] = [0, 0, {}]
            was = st[0]
            if was > 0:
                del ranked[bisect_left(ranked, (-was, -st[1], p))]
            times = st[2]
            times[t] = times.get(t, 0) + dn
            if times[t] == 0:
                del times[t]
            st[0] = was + dn
            if st[0] > 0:
                st[1] = max(st[1], t) if dn > 0 and was > 0 else max(times)
                insort(ranked, (-st[0], -st[1], p))
        out_c.append(cust)
        out_d.append(int(d[a]))
        out_v.append(LIST_SEP.join(p for _, _, p in ranked[:FREQUENT_PRODUCTS]))
    return (
        np.asarray(out_c, np.int64),
        np.asarray(out_d, np.int64),
        np.asarray(out_v, dtype=object),
    )


def _frequent_table(
    items: pd.DataFrame,
    steps: pd.DataFrame,
    index: EntityIndex,
    snapshots: Snapshots,
    prior: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_frequent_lists`, in an incremental run only for the customers whose orders change
    liveness from the run's first day on (or who have no prior row): the others' lists cannot
    have changed since the prior day, so their prior value stands, stamped on the prior day."""
    if snapshots.historical or not len(prior):
        return _frequent_lists(items, steps)
    codes = index.codes(prior["customer_id"])
    packed = prior["frequent_product_ids"].tolist()
    live = (steps["d_live"] != 0).to_numpy() & (steps["day"] >= snapshots.start_day).to_numpy()
    changed = set(steps.loc[live, "c"].tolist())
    seed = {
        int(c): v
        for c, v in zip(codes, packed, strict=True)
        if c >= 0 and int(c) not in changed and v is not pd.NA and v is not None
    }
    redo = ~steps["c"].isin(list(seed)).to_numpy()
    lists_c, lists_d, lists_v = _frequent_lists(items, steps[redo])
    seed_c = np.fromiter(seed, np.int64, len(seed))
    table_c = np.r_[seed_c, lists_c].astype(np.int64)
    table_d = np.r_[np.full(len(seed_c), snapshots.prior_day, np.int64), lists_d]
    table_v = np.array([*seed.values(), *lists_v], dtype=object)
    order = np.lexsort((table_d, table_c))
    return table_c[order], table_d[order], table_v[order]


def _frequent(
    lists: tuple[np.ndarray, np.ndarray, np.ndarray], entity: np.ndarray, day: np.ndarray
) -> pd.Series:
    """`_frequent_lists` as of every (entity, day): its latest list on or before the day, empty
    before the customer's first live order."""
    table_c, table_d, table_v = lists
    pos = as_of(entity, day, table_c, table_d)
    values = np.append(table_v, "")  # the last: "no purchase yet"
    return pd.Series(values[np.where(pos >= 0, pos, len(table_v))], dtype=STRING)
