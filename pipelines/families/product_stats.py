"""product_stats: what a product is (as of T), how it sells and is seen, and where it sits in its
category: the product side of the ranking model and the shop's collections.

A product exists from the first snapshot after its first change-log row (pipelines.existence);
its attributes (price, category, brand, ...) are those of the row with the latest `updated_at < T`.
Windows are `[T - W, T)` as everywhere (pipelines.windows). Orders are read as of T
(pipelines.order_versions): units, order counts and refunds count an order while the version in
force is not cancelled, guest orders included (a product sells to guests too); an order that lists
a product twice counts once in the order counts and fully in the units. A refund is known from the
snapshot after its `refund_ts` (from the version itself when `refund_ts` is missing), never
earlier. Popularity counts the buyers of orders not cancelled when placed.

Category-level figures are cross-sections: at each T, over every product that exists at T in the
product's category (as of T), active or not. They change whenever any product of the category
changes, so in a busy shop most products get a row most days. The product's age is not stored
(the contract: ages change every instant): `product_created_at` is, and days since created is
`t - product_created_at`, computed on demand like `tenure_days`.

Definitions that the names alone do not pin down:
- `product_popularity_30d`: distinct buyers of the product in the window; a buyer is a customer,
  or, for a guest order, that order.
- `product_trending_score`: `(orders_7d + 1) / (orders_28d_before / 4 + 1)`, where
  `orders_28d_before` counts the product's orders in `[T - 35d, T - 7d)`: the last week's order
  rate over the weekly rate of the four weeks before, add-one smoothed. 1 is steady, above 1 rising.
- `product_conversion_rate_30d`: `purchase` events over `product_view` events of the product in
  the window (clickstream to clickstream, so orders from channels without a clickstream do not
  inflate it); null without views.
- `product_refund_rate_90d`: share of the window's orders of the product whose refund is known
  before T (a partial refund of the order counts: items are not refunded one by one in the data).
- sentiment: VADER compound of the review text (pipelines.sentiment, via the review NLP cache in
  pipelines.review_nlp); reviews without English text have none. Sums are kept in micro-units, so
  means carry at most 5e-7 of rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import order_versions, review_nlp
from pipelines.existence import product_first_day
from pipelines.family import ORDER_COLUMNS, Input
from pipelines.specs import Drift, Feature, FeatureSource
from pipelines.windows import (
    MICRO,
    Accumulated,
    EntityIndex,
    Snapshots,
    Streams,
    as_of,
    day_of,
    day_ts,
    duration_us,
    entry_day,
    fixed,
    pack,
)

CHUNK_DAYS = 32  # days of the dense grid held in memory at once (a part of the rows: compute_parts)

# Category figures repeat on every product of the category: the categories are the sample.
BY_CATEGORY = Drift(grain="category")

SOURCE = FeatureSource(
    name="product_stats",
    entity="product",
    description="A product as of T: price, catalog fields, views, carts and sales over 7/30 "
    "days, reviews, refunds, trend, popularity and its category's figures.",
    tags=(("domain", "product"), ("family", "stats")),
    features=(
        Feature("product_price", "float64", "price of the product row as of T"),
        Feature("category", "string", "category as of T ('unknown' when missing)"),
        Feature("subcategory", "string", "subcategory as of T; null when missing"),
        Feature("brand", "string", "brand as of T; null when missing"),
        Feature("product_is_active", "bool", "is_active as of T (missing means active)"),
        Feature(
            "product_created_at",
            "unix_timestamp",
            "created_at of the row as of T; days "
            "since created = (t - product_created_at), computed on demand (ages are not "
            "stored)",
        ),
        Feature(
            "product_views_7d", "int64", "product_view events of the product in the window", "7d", 0
        ),
        Feature(
            "product_views_30d",
            "int64",
            "product_view events of the product in the window",
            "30d",
            0,
        ),
        Feature(
            "product_carts_7d", "int64", "add_to_cart events of the product in the window", "7d", 0
        ),
        Feature(
            "product_carts_30d",
            "int64",
            "add_to_cart events of the product in the window",
            "30d",
            0,
        ),
        Feature(
            "product_units_sold_7d",
            "int64",
            "sum of quantity over order_items of non-cancelled orders in the window",
            "7d",
            0,
        ),
        Feature(
            "product_units_sold_30d",
            "int64",
            "sum of quantity over order_items of non-cancelled orders in the window",
            "30d",
            0,
        ),
        Feature(
            "product_orders_7d",
            "int64",
            "distinct non-cancelled orders with the product in the window",
            "7d",
            0,
        ),
        Feature(
            "product_orders_30d",
            "int64",
            "distinct non-cancelled orders with the product in the window",
            "30d",
            0,
        ),
        Feature(
            "product_conversion_rate_30d",
            "float64",
            "purchase events / product_view events "
            "of the product in the window; null without views",
            "30d",
        ),
        Feature(
            "product_popularity_30d",
            "int64",
            "distinct buyers of the product in the window (a customer, or a guest order)",
            "30d",
            0,
        ),
        Feature(
            "product_trending_score",
            "float64",
            "(orders in [T-7d, T) + 1) / (orders in "
            "[T-35d, T-7d) / 4 + 1): the last 7 days against the 28 days before",
            "28d",
            1.0,
        ),
        Feature(
            "product_refund_rate_90d",
            "float64",
            "share of the window's orders of the "
            "product with a refund known before T; null without orders",
            "90d",
        ),
        Feature("product_review_count", "int64", "reviews of the product before T", "lifetime", 0),
        Feature(
            "product_avg_rating",
            "float64",
            "mean rating of the product's reviews before T; null without reviews",
            "lifetime",
        ),
        Feature(
            "product_avg_sentiment",
            "float64",
            "mean VADER compound of the product's reviews "
            "before T with English text; null when none",
            "lifetime",
        ),
        Feature(
            "product_price_pct_in_category",
            "float64",
            "share of the category's products (as of T) priced at or below this one, in (0, 1]",
        ),
        Feature(
            "category_product_count",
            "int64",
            "products that exist at T in the product's category",
            None,
            0,
            drift=BY_CATEGORY,
        ),
        Feature(
            "category_popularity_30d",
            "int64",
            "sum of product_popularity_30d over the category's products (as of T)",
            "30d",
            0,
            drift=BY_CATEGORY,
        ),
        Feature(
            "category_price_min",
            "float64",
            "lowest price in the category as of T",
            drift=BY_CATEGORY,
        ),
        Feature(
            "category_price_max",
            "float64",
            "highest price in the category as of T",
            drift=BY_CATEGORY,
        ),
        Feature(
            "category_price_median",
            "float64",
            "median price in the category as of T",
            drift=BY_CATEGORY,
        ),
    ),
)

INPUTS = (
    Input(
        "products",
        (
            "product_id",
            "category",
            "subcategory",
            "brand",
            "price",
            "created_at",
            "updated_at",
            "is_active",
        ),
    ),
    Input(
        "orders",
        ORDER_COLUMNS,
        lookback_days=90,
    ),
    Input("order_items", ("order_id", "product_id", "quantity", "order_ts"), lookback_days=90),
    Input("events", ("product_id", "event_type", "event_ts"), lookback_days=30),
    Input("reviews", ("review_id", "product_id", "rating", "title", "body", "review_ts")),
)
# How the Spark engine splits the inputs by product (pipelines/spark/features.py): a table by its
# product column; an order goes to every shard holding one of its items. The category figures
# (cross-sections over every product) are the global step: each shard's `cross_section_rows`
# are aggregated by Spark and handed back in `tables[FIGURES]` and `tables[PRICE_PCT]`.
SHARD_BY = {
    "products": "product_id",
    "order_items": "product_id",
    "events": "product_id",
    "reviews": "product_id",
    "orders": ("order_items", "order_id"),
}
PERSIST_INPUTS = ("reviews",)  # what `persist` reads (the Spark engine reads only these for it)
FIGURES = "category_figures"  # (day, category) -> the category_* figures
PRICE_PCT = "price_pct_in_category"  # (product_id, day) -> product_price_pct_in_category
CROSS_SECTION = ("product_id", "day", "category", "price", "popularity")


def persist(data_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Add review sentiment from the review NLP cache (shared with customer_reviews)."""
    reviews = tables["reviews"]
    model = review_nlp.ensure_topic_model(data_dir, reviews)
    tables["reviews"] = review_nlp.enriched(data_dir, reviews, model)


def attach(data_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """A shard's reviews with the sentiment `persist` scored on the driver (read from the NLP
    cache; never trains a model or scores a review)."""
    model = review_nlp.model_in_use(data_dir)
    tables["reviews"] = review_nlp.enriched(data_dir, tables["reviews"], model, keep=False)


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    parts = [rows for _, rows in compute_parts(tables, snapshots, prior)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def compute_parts(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> Iterator[tuple[int, pd.DataFrame]]:
    """`compute`'s rows CHUNK_DAYS at a time, in time order: (first day, rows of the days from it
    to the next part's first day; one empty part when there are no days). The runner reduces and
    writes each part as it comes (pipelines.run), so only a part of the rows is held: the category
    figures give most products a row most days (Complete Journey: 17.4M rows, 68k products x 366
    days, about 4 GB in pandas)."""
    products = tables["products"]
    index = EntityIndex(products["product_id"])
    first_day = product_first_day(products, index)
    log = _versions(products, index)
    vocab = {name: pd.factorize(log[name]) for name in ("category", "subcategory", "brand")}
    acc = _streams(tables, index).evaluate(snapshots.start_day, snapshots.end_day, carry=True)
    figures = _given_figures(tables, index, vocab) if FIGURES in tables else None
    # The dense (product, day) grid is built CHUNK_DAYS at a time (bounded memory); each chunk
    # starts one day early so its first rows can be compared with the day before.
    for lo in range(snapshots.start_day, snapshots.end_day + 1, CHUNK_DAYS):
        hi = min(lo + CHUNK_DAYS - 1, snapshots.end_day)
        entity, day = _grid(first_day, max(lo - 1, snapshots.start_day), hi)
        cols = _columns(entity, day, log, vocab, acc, figures)
        keep = _changed(entity, cols) & (day >= lo)  # the source keeps change points only
        rows = _frame(index, entity[keep], day[keep], {k: v[keep] for k, v in cols.items()}, vocab)
        del entity, day, cols, keep  # not held while the caller works on the part
        yield lo, rows
        del rows
    if snapshots.start_day > snapshots.end_day:
        yield snapshots.start_day, _frame(index, *(np.zeros(0, np.int64),) * 2, {}, vocab)


def _columns(
    entity: np.ndarray,
    day: np.ndarray,
    log: pd.DataFrame,
    vocab: dict[str, tuple[np.ndarray, pd.Index]],
    acc: Accumulated,
    figures=None,
) -> dict[str, np.ndarray]:
    """Every feature as a numpy array on the grid; strings as codes into the log's vocabularies.
    The category figures are computed here over the grid's products, or looked up in `figures`
    (computed over every shard's products by the Spark engine)."""
    pos = as_of(entity, day, log["c"].to_numpy(), log["valid"].to_numpy())  # always found
    at = as_of(entity, day, acc.entity, acc.day)
    v = {
        k: np.where(at >= 0, a[np.maximum(at, 0)], 0) if len(a) else np.zeros(len(at), np.int64)
        for k, a in acc.values.items()
    }
    cols: dict[str, np.ndarray] = {"product_price": log["price"].to_numpy(np.float64)[pos]}
    for name, (codes, _) in vocab.items():
        cols[name] = codes[pos]
    cols["product_is_active"] = log["is_active"].fillna(True).to_numpy(bool)[pos]
    cols["product_created_at"] = duration_us(log["created_at"])[pos]
    for name in (
        "views_7d",
        "views_30d",
        "carts_7d",
        "carts_30d",
        "units_sold_7d",
        "units_sold_30d",
        "orders_7d",
        "orders_30d",
        "popularity_30d",
        "review_count",
    ):
        cols[f"product_{name}"] = v[name]
    cols["product_conversion_rate_30d"] = _ratio(v["purchases_30d"], v["views_30d"])
    before = v["orders_35d"] - v["orders_7d"]
    cols["product_trending_score"] = (v["orders_7d"] + 1) / (before / 4 + 1)
    cols["product_refund_rate_90d"] = _ratio(v["refunded_90d"], v["orders_90d"])
    cols["product_avg_rating"] = _ratio(v["rating_sum"] / MICRO, v["review_count"])
    cols["product_avg_sentiment"] = _ratio(v["sentiment_sum"] / MICRO, v["felt"])
    cols.update(_category_figures(cols, day) if figures is None else figures(entity, day, cols))
    return cols


def _frame(
    index: EntityIndex,
    entity: np.ndarray,
    day: np.ndarray,
    cols: dict[str, np.ndarray],
    vocab: dict[str, tuple[np.ndarray, pd.Index]],
) -> pd.DataFrame:
    out = pd.DataFrame({"product_id": index.lookup(entity), "event_timestamp": day_ts(day)})
    for name in SOURCE.feature_names:
        values = cols.get(name, np.zeros(0))
        if name in vocab:
            out[name] = pd.Categorical.from_codes(values, vocab[name][1]).astype(object)
        elif name == "product_created_at":
            out[name] = pd.to_datetime(values, unit="us", utc=True)
        else:
            out[name] = values
    return out


def _changed(entity: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Grid rows that are a product's first or differ from its previous row (NaN equals NaN)."""
    keep = np.r_[True, entity[1:] != entity[:-1]]
    for values in cols.values():
        cur, prev = values[1:], values[:-1]
        differ = cur != prev
        if values.dtype.kind == "f":
            differ &= ~(np.isnan(cur) & np.isnan(prev))
        keep[1:] |= differ
    return keep


# --- the grid and the catalog -----------------------------------------------------------------


def _grid(first_day: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (product, day) in `start .. end` from the product's first snapshot on, sorted by
    product then day."""
    lo = np.maximum(first_day, start)
    n = np.clip(end - lo + 1, 0, None)
    entity = np.repeat(np.arange(len(first_day), dtype=np.int64), n)
    offset = np.arange(n.sum(), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    return entity, np.repeat(lo, n) + offset


def _versions(products: pd.DataFrame, index: EntityIndex) -> pd.DataFrame:
    """Change-log rows with the day each takes effect (`valid`), one per (product, day)."""
    log = products.assign(updated_at=products["updated_at"].fillna(products["created_at"]))
    log = log.dropna(subset=["updated_at"])
    log = log.assign(
        c=index.codes(log["product_id"]),
        valid=day_of(log["updated_at"]) + 1,
        category=log["category"].fillna("unknown"),
        is_active=log["is_active"].astype("boolean"),
    )
    log = log[log["c"] >= 0].sort_values(["c", "updated_at"], kind="stable")
    return log.drop_duplicates(["c", "valid"], keep="last").reset_index(drop=True)


# --- the category figures of a product-sharded build ---------------------------------------------


def cross_section_rows(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots
) -> Iterator[pd.DataFrame]:
    """What the category figures aggregate, for this shard's products: every (product, day) from
    the product's first snapshot on, with its category and price as of that day and its
    popularity_30d (CROSS_SECTION columns; `day` a day number, a missing price null), CHUNK_DAYS
    at a time. The Spark engine aggregates every shard's rows by (day, category)."""
    products = tables["products"]
    index = EntityIndex(products["product_id"])
    first_day = product_first_day(products, index)
    log = _versions(products, index)
    s = Streams()
    _popularity_stream(s, tables["orders"], tables["order_items"], index)
    acc = s.evaluate(snapshots.start_day, snapshots.end_day, carry=True)
    category = log["category"].astype(object).to_numpy()
    price = log["price"].to_numpy(np.float64, na_value=np.nan)
    popularity = acc.values.get("popularity_30d", np.zeros(0, np.int64))
    for lo in range(snapshots.start_day, snapshots.end_day + 1, CHUNK_DAYS):
        hi = min(lo + CHUNK_DAYS - 1, snapshots.end_day)
        entity, day = _grid(first_day, lo, hi)
        pos = as_of(entity, day, log["c"].to_numpy(), log["valid"].to_numpy())
        at = as_of(entity, day, acc.entity, acc.day)
        pop = (
            np.where(at >= 0, popularity[np.maximum(at, 0)], 0)
            if len(popularity)
            else np.zeros(len(entity), np.int64)
        )
        yield pd.DataFrame(
            {
                "product_id": index.lookup(entity).to_numpy(object),
                "day": day,
                "category": category[pos],
                "price": pd.array(price[pos], dtype="Float64"),  # NaN -> null
                "popularity": pop.astype(np.int64),
            }
        )


FIGURE_NAMES = (
    "category_product_count",
    "category_popularity_30d",
    "category_price_min",
    "category_price_max",
    "category_price_median",
)


def _given_figures(tables: dict[str, pd.DataFrame], index: EntityIndex, vocab: dict):
    """A lookup of the figures handed in `tables` for (entity, day) grid rows: the per-(day,
    category) figures by the row's category, its price percentile by (product, day)."""
    figs, pct = tables[FIGURES], tables[PRICE_PCT]
    cats = vocab["category"][1]
    width = len(cats) + 1
    code = cats.get_indexer(figs["category"].astype(object))
    mine = code >= 0
    fkey = figs["day"].to_numpy(np.int64)[mine] * width + code[mine]
    order = np.argsort(fkey, kind="stable")
    fkey = fkey[order]
    fvals = {  # prices (null: NaN), counts and sums (never null)
        n: (
            figs[n].to_numpy(np.float64, na_value=np.nan)
            if "price" in n
            else figs[n].to_numpy(np.int64)
        )[mine][order]
        for n in FIGURE_NAMES
    }
    pkey = pack(index.codes(pct["product_id"]), pct["day"].to_numpy(np.int64))
    porder = np.argsort(pkey, kind="stable")
    pkey = pkey[porder]
    pval = pct[PCT_FEATURE].to_numpy(np.float64, na_value=np.nan)[porder]

    def lookup(entity: np.ndarray, day: np.ndarray, cols: dict) -> dict[str, np.ndarray]:
        key = day * width + cols["category"].astype(np.int64)
        at = np.minimum(np.searchsorted(fkey, key), max(len(fkey) - 1, 0))
        want = pack(entity, day)
        pat = np.minimum(np.searchsorted(pkey, want), max(len(pkey) - 1, 0))
        if len(key) and (not len(fkey) or (fkey[at] != key).any()):
            raise ValueError("product_stats: category figures missing for some (day, category)")
        if len(want) and (not len(pkey) or (pkey[pat] != want).any()):
            raise ValueError("product_stats: price percentile missing for some (product, day)")
        out = {PCT_FEATURE: pval[pat] if len(want) else np.zeros(0)}
        out.update({n: v[at] if len(key) else v[:0] for n, v in fvals.items()})
        return out

    return lookup


PCT_FEATURE = "product_price_pct_in_category"


# --- windowed and lifetime streams --------------------------------------------------------------


def _streams(tables: dict[str, pd.DataFrame], index: EntityIndex) -> Streams:
    s = Streams()
    _event_streams(s, tables["events"], index)
    _order_streams(s, tables["orders"], tables["order_items"], index)
    _review_streams(s, tables["reviews"], index)
    return s


def _event_streams(s: Streams, events: pd.DataFrame, index: EntityIndex) -> None:
    kind = events["event_type"]
    ev = pd.DataFrame(
        {
            "p": index.codes(events["product_id"]),
            "enter": entry_day(events["event_ts"]),
            "view": (kind == "product_view").to_numpy(np.int64),
            "cart": (kind == "add_to_cart").to_numpy(np.int64),
            "buy": (kind == "purchase").to_numpy(np.int64),
        }
    )
    ev = ev[(ev["p"] >= 0) & (ev[["view", "cart", "buy"]].sum(axis=1) > 0)]
    daily = ev.groupby(["p", "enter"], sort=False)[["view", "cart", "buy"]].sum().reset_index()
    p, enter = daily["p"].to_numpy(), daily["enter"].to_numpy()
    for w in (7, 30):
        s.window(
            p,
            enter,
            w,
            **{f"views_{w}d": daily["view"].to_numpy(), f"carts_{w}d": daily["cart"].to_numpy()},
        )
    s.window(p, enter, 30, purchases_30d=daily["buy"].to_numpy())


def _order_streams(
    s: Streams, orders: pd.DataFrame, items: pd.DataFrame, index: EntityIndex
) -> None:
    """Units, orders and refunds per product from the orders' steps (order_versions): an order
    counts while the version in force is not cancelled; its refund is known from its day."""
    st = order_versions.steps(orders)
    st = st[(st["d_live"] != 0) | (st["d_refunded"] != 0)]
    it = items[["order_id", "product_id", "quantity"]].merge(
        st[["order_id", "enter", "day", "d_live", "d_refunded"]], on="order_id"
    )
    it = it.assign(p=index.codes(it["product_id"]))
    it = it[it["p"] >= 0]
    p, enter, day = it["p"].to_numpy(), it["enter"].to_numpy(), it["day"].to_numpy()
    units = it["quantity"].fillna(0).to_numpy(np.int64) * it["d_live"].to_numpy()
    for w in (7, 30):
        order_versions.window(s, p, enter, day, w, **{f"units_sold_{w}d": units})

    lines = it.drop_duplicates(["order_id", "p", "day"])  # an order counts once per product
    p, enter, day = lines["p"].to_numpy(), lines["enter"].to_numpy(), lines["day"].to_numpy()
    live = lines["d_live"].to_numpy()
    for w in (7, 30, 35, 90):
        order_versions.window(s, p, enter, day, w, **{f"orders_{w}d": live})
    order_versions.window(s, p, enter, day, 90, refunded_90d=lines["d_refunded"].to_numpy())

    _popularity_stream(s, orders, items, index)


def _popularity_stream(
    s: Streams, orders: pd.DataFrame, items: pd.DataFrame, index: EntityIndex
) -> None:
    """Distinct buyers per product (`popularity_30d`): customers, or the order for a guest."""
    placed = order_versions.first_versions(orders)
    placed = placed[placed["status"] != "cancelled"]
    bought = items[["order_id", "product_id"]].merge(
        placed[["order_id", "customer_id", "order_ts"]], on="order_id"
    )
    bought = bought.assign(p=index.codes(bought["product_id"]), enter=entry_day(bought["order_ts"]))
    bought = bought[bought["p"] >= 0].drop_duplicates(["order_id", "p"])
    customers = pd.factorize(bought["customer_id"])[0]  # -1 for guests
    guests = pd.factorize(bought["order_id"])[0]
    buyer = np.where(customers >= 0, customers, customers.max(initial=0) + 1 + guests)
    s.distinct("popularity_30d", bought["p"].to_numpy(), buyer, bought["enter"].to_numpy(), 30)


def _review_streams(s: Streams, reviews: pd.DataFrame, index: EntityIndex) -> None:
    r = reviews.assign(p=index.codes(reviews["product_id"]), enter=entry_day(reviews["review_ts"]))
    r = r[r["p"] >= 0]
    if "sentiment" not in r:  # called without persist (a unit test): score here
        r = review_nlp.enrich_reviews(r, None)
    felt = r["sentiment"].notna().to_numpy().astype(np.int64)
    s.window(
        r["p"].to_numpy(),
        r["enter"].to_numpy(),
        None,
        review_count=np.ones(len(r), np.int64),
        rating_sum=fixed(r["rating"]),
        felt=felt,
        sentiment_sum=fixed(r["sentiment"]),
    )


# --- cross-sections -----------------------------------------------------------------------------


def _category_figures(cols: dict[str, np.ndarray], day: np.ndarray) -> dict[str, np.ndarray]:
    """Per (day, category) over the products that exist that day: counts, prices, popularity."""
    cat = cols["category"].astype(np.int64)
    key = day * (cat.max(initial=0) + 2) + cat + 1  # category codes start at -1 (null)
    g = pd.Series(cols["product_price"]).groupby(key, sort=False)
    popularity = pd.Series(cols["product_popularity_30d"]).groupby(key, sort=False)
    return {
        "product_price_pct_in_category": g.rank(method="max", pct=True).to_numpy(),
        "category_product_count": g.transform("size").to_numpy(np.int64),
        "category_popularity_30d": popularity.transform("sum").to_numpy(np.int64),
        "category_price_min": g.transform("min").to_numpy(),
        "category_price_max": g.transform("max").to_numpy(),
        "category_price_median": g.transform("median").to_numpy(),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(len(num), np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out
