"""collection_stats: a merchandising collection (Shopify's collections; the contract's
product_collections) as of T: its products, how they are seen and sold over 7 and 30 days, their
price range, and the collection's share of the shop's sales.

Membership is a change log read as of T like every change log: a product counts in a collection at
T when its latest membership row with `updated_at < T` says it is in, and the product exists at T.
Its figures are the product's own over the window (what the collection holds now is judged by how
it sells), so a product added yesterday brings its whole 30 days. Windows are `[T - W, T)`; orders
are read as of T (pipelines.order_versions: an order counts while the version in force is not
cancelled); revenue is a line's `quantity * unit_price - discount`. Price figures use each
member's price as of T. A collection exists from the first snapshot at which it has a member.

The (collection, member, day) grid is dense over the run's days: its size is the memberships times
the days (a shop of 50 collections of 200 products over a year: 3.6M rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import order_versions
from pipelines.existence import product_first_day
from pipelines.family import ORDER_COLUMNS, Input
from pipelines.specs import STRING, Feature, FeatureSource
from pipelines.windows import (
    MICRO,
    EntityIndex,
    Snapshots,
    Streams,
    as_of,
    day_of,
    day_ts,
    entry_day,
    fixed,
)

WINDOWS = (7, 30)

SOURCE = FeatureSource(
    name="collection_stats",
    entity="collection",
    description="A collection's products, views, carts, units, revenue, prices and sales share.",
    tags=(("domain", "collection"), ("family", "stats")),
    features=(
        Feature("collection_products", "int64", "member products that exist at T", None, 0),
        Feature("collection_views_7d", "int64", "product_view events of its products", "7d", 0),
        Feature("collection_views_30d", "int64", "product_view events of its products", "30d", 0),
        Feature("collection_carts_7d", "int64", "add_to_cart events of its products", "7d", 0),
        Feature("collection_carts_30d", "int64", "add_to_cart events of its products", "30d", 0),
        Feature("collection_units_7d", "int64", "units of its products sold", "7d", 0),
        Feature("collection_units_30d", "int64", "units of its products sold", "30d", 0),
        Feature(
            "collection_revenue_7d",
            "float64",
            "quantity * unit_price - discount of its products' order lines",
            "7d",
            0.0,
        ),
        Feature(
            "collection_revenue_30d",
            "float64",
            "quantity * unit_price - discount of its products' order lines",
            "30d",
            0.0,
        ),
        Feature(
            "collection_conversion_rate_30d",
            "float64",
            "purchase events / product_view events of its products; null without views",
            "30d",
        ),
        Feature("collection_price_min", "float64", "lowest member price as of T", None),
        Feature("collection_price_max", "float64", "highest member price as of T", None),
        Feature("collection_price_median", "float64", "median member price as of T", None),
        Feature(
            "collection_sales_share_30d",
            "float64",
            "collection_revenue_30d / the shop's revenue over 30 days; null when the shop sold "
            "nothing",
            "30d",
        ),
    ),
)

INPUTS = (
    Input(
        "product_collections",
        ("product_id", "collection_id", "updated_at", "in_collection"),
    ),
    Input("products", ("product_id", "price", "created_at", "updated_at")),
    Input(
        "orders",
        ORDER_COLUMNS,
        lookback_days=30,
    ),
    Input(
        "order_items",
        ("order_id", "product_id", "quantity", "unit_price", "discount", "order_ts"),
        lookback_days=30,
    ),
    Input("events", ("product_id", "event_type", "event_ts"), lookback_days=30),
)

# The events are read reduced (pipelines.run.read_input): batch by batch to one row per (product,
# entry day) with its counts of each kind, so memory follows the products x days, not the events
REDUCED = ("events",)
_KINDS = {"views": "product_view", "carts": "add_to_cart", "purchases": "purchase"}

_SUMS = tuple(f"{k}_{w}d" for k in ("views", "carts", "units", "revenue") for w in WINDOWS) + (
    "purchases_30d",
)


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    products = tables["products"]
    index = EntityIndex(products["product_id"])
    members = _memberships(tables["product_collections"], index, product_first_day(products, index))
    cindex = EntityIndex(members["collection_id"])
    days = np.arange(snapshots.start_day, snapshots.end_day + 1, dtype=np.int64)
    empty = _frame(cindex, np.zeros(0, np.int64), np.zeros(0, np.int64), {})
    if not len(members) or not len(days):
        return empty
    lines = _lines(tables, index)
    shop = _shop_revenue(lines).evaluate(snapshots.start_day, snapshots.end_day, True)
    lines = lines[lines["p"].to_numpy() >= 0]
    ev = _event_counts(tables["events"])
    ev = ev.assign(p=index.codes(ev["product_id"]))
    ev = ev[ev["p"].to_numpy() >= 0]
    price_log = _prices(products, index)
    out = []
    for chunk in _chunks(members, cindex, len(days)):  # the collections a few at a time
        at_hand = np.unique(chunk["p"].to_numpy())
        acc = _product_streams(
            ev[np.isin(ev["p"].to_numpy(), at_hand)],
            lines[np.isin(lines["p"].to_numpy(), at_hand)],
        ).evaluate(snapshots.start_day, snapshots.end_day, True)
        out.append(_collections(chunk, cindex, days, acc, shop, price_log))
    return pd.concat(out, ignore_index=True)


GRID_ROWS = 2_000_000  # (collection, member, day) rows worked on at once


def _chunks(members: pd.DataFrame, cindex: EntityIndex, days: int) -> Iterator[pd.DataFrame]:
    """`members` split by collection into groups of at most GRID_ROWS grid rows (a bigger
    collection alone), so the products' streams and the grid are a group's at a time."""
    codes = cindex.codes(members["collection_id"])
    sizes = np.bincount(codes, minlength=len(cindex)) * days
    group = np.zeros(len(sizes), np.int64)
    total = 0
    for c, size in enumerate(sizes):
        if total and total + size > GRID_ROWS:
            group[c], total = group[c - 1] + 1, size
        else:
            group[c], total = group[c - 1] if c else 0, total + size
    for g in np.unique(group):
        yield members[group[codes] == g]


def _collections(
    members: pd.DataFrame,
    cindex: EntityIndex,
    days: np.ndarray,
    acc: Streams,
    shop: Streams,
    price_log: pd.DataFrame,
) -> pd.DataFrame:
    """The rows of the collections in `members`, from their products' streams `acc`."""
    # (collection, product, day) for every day of the run on which the product is a member
    c, p, d = _expand(members, days, cindex)
    at = as_of(p, d, acc.entity, acc.day)
    v = {k: np.where(at >= 0, a[np.maximum(at, 0)], 0) for k, a in acc.values.items()}
    price = price_log["price"].to_numpy(np.float64)[
        as_of(p, d, price_log["c"].to_numpy(), price_log["valid"].to_numpy())
    ]
    grid = pd.DataFrame({"c": c, "d": d, "price": price, **v})
    del c, p, d, at, v, price
    g = grid.groupby(["c", "d"], sort=True)
    # Every day from a collection's first member on: a day without members is a row of zeros
    first = members.groupby(cindex.codes(members["collection_id"]))["start"].min()
    full = _days_from(first.index.to_numpy(), first.to_numpy(), days)
    agg = g[list(_SUMS)].sum().reindex(full, fill_value=0)
    prices = g["price"].agg(["count", "min", "max", "median"]).reindex(full)
    prices["count"] = prices["count"].fillna(0)
    out_c = agg.index.get_level_values("c").to_numpy()
    out_d = agg.index.get_level_values("d").to_numpy()
    s_at = as_of(np.zeros(len(out_d), np.int64), out_d, shop.entity, shop.day)
    shop_rev = np.where(s_at >= 0, shop.values["revenue_30d"][np.maximum(s_at, 0)], 0)
    cols = {
        "collection_products": prices["count"].to_numpy(np.int64),
        "collection_conversion_rate_30d": _ratio(agg["purchases_30d"], agg["views_30d"]),
        "collection_price_min": prices["min"].to_numpy(),
        "collection_price_max": prices["max"].to_numpy(),
        "collection_price_median": prices["median"].to_numpy(),
        "collection_sales_share_30d": _ratio(agg["revenue_30d"], shop_rev),
    }
    for w in WINDOWS:
        for k in ("views", "carts", "units"):
            cols[f"collection_{k}_{w}d"] = agg[f"{k}_{w}d"].to_numpy(np.int64)
        cols[f"collection_revenue_{w}d"] = agg[f"revenue_{w}d"].to_numpy() / MICRO
    return _frame(cindex, out_c, out_d, cols)


def _memberships(log: pd.DataFrame, index: EntityIndex, first_day: np.ndarray) -> pd.DataFrame:
    """Membership intervals `[start, end)` in snapshot days, one row per stretch in a collection;
    never before the product exists."""
    m = log.assign(
        p=index.codes(log["product_id"]),
        valid=entry_day(log["updated_at"]),
        inside=log["in_collection"].fillna(True).astype(bool).to_numpy(),
    )
    m = m[(m["p"] >= 0) & log["updated_at"].notna().to_numpy()]
    m = m.sort_values(["collection_id", "p", "valid"], kind="stable")
    m = m.drop_duplicates(["collection_id", "p", "valid"], keep="last")  # the day's last word
    same = (m["collection_id"].shift(-1) == m["collection_id"]) & (m["p"].shift(-1) == m["p"])
    end = np.where(same.to_numpy(), m["valid"].shift(-1).fillna(0).to_numpy(np.int64), 2**40)
    m = m.assign(end=end, start=np.maximum(m["valid"].to_numpy(), first_day[m["p"].to_numpy()]))
    m = m[m["inside"] & (m["start"] < m["end"])]
    return m[["collection_id", "p", "start", "end"]].reset_index(drop=True)


def _days_from(codes: np.ndarray, start: np.ndarray, days: np.ndarray) -> pd.MultiIndex:
    """(collection, day) for every day of the run from each collection's first day on."""
    first = np.maximum(start, days[0])
    n = np.maximum(days[-1] + 1 - first, 0)
    c = np.repeat(codes, n)
    d = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    return pd.MultiIndex.from_arrays([c, d], names=["c", "d"])


def _expand(members: pd.DataFrame, days: np.ndarray, cindex: EntityIndex) -> tuple[np.ndarray, ...]:
    lo, hi = int(days[0]), int(days[-1])
    start = np.clip(members["start"].to_numpy(), lo, hi + 1)
    end = np.clip(members["end"].to_numpy(), lo, hi + 1)
    n = np.maximum(end - start, 0)
    row = np.repeat(np.arange(len(members)), n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    codes = cindex.codes(members["collection_id"])
    return codes[row], members["p"].to_numpy()[row], start[row] + offset


def reduce_input(table: str, batches: Iterable[pa.RecordBatch]) -> pd.DataFrame:
    """The events as (product_id, enter, views, carts, purchases): each (product, entry day)'s
    count of each kind, summed in Arrow over `batches` one at a time (the day partitions: a
    batch's counts are mostly its own days', so the parts add up to about the result)."""
    assert table == "events", table
    parts = [_arrow_counts(b) for b in batches]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return _event_counts(
            pd.DataFrame({c: [] for c in ("product_id", "event_type", "event_ts")})
        )
    counts = _summed(pa.concat_tables(parts))
    del parts
    return counts.to_pandas(types_mapper={pa.string(): STRING}.get)


def _arrow_counts(batch: pa.RecordBatch) -> pa.Table:
    """A batch of raw events as counts per (product, entry day): `enter` is windows.entry_day
    (the UTC day, floored, plus one; a null time INT64 min plus one, as there)."""
    kind = batch["event_type"]
    keep = pc.and_(
        pc.is_valid(batch["product_id"]), pc.is_in(kind, pa.array(list(_KINDS.values())))
    )
    batch = batch.filter(keep)
    kind = batch["event_type"]
    day = pc.cast(pc.cast(batch["event_ts"], pa.date32()), pa.int32()).cast(pa.int64())
    enter = pc.add(pc.fill_null(day, np.iinfo(np.int64).min), 1)
    t = pa.table(
        {
            "product_id": batch["product_id"].cast(pa.string()),
            "enter": enter,
            **{k: pc.cast(pc.equal(kind, v), pa.int64()) for k, v in _KINDS.items()},
        }
    )
    return _summed(t)


def _summed(t: pa.Table) -> pa.Table:
    g = t.group_by(["product_id", "enter"]).aggregate([(k, "sum") for k in _KINDS])
    return g.rename_columns([c.removesuffix("_sum") for c in g.column_names])


def _event_counts(ev: pd.DataFrame) -> pd.DataFrame:
    """Raw events (product_id, event_type, event_ts) as counts per (product, entry day); counts
    already made pass through."""
    if "enter" in ev.columns:
        return ev
    ev = ev[ev["product_id"].notna().to_numpy() & ev["event_type"].isin(_KINDS.values())]
    counts = pd.DataFrame(
        {
            "product_id": ev["product_id"].astype(str).to_numpy(),
            "enter": entry_day(ev["event_ts"]) if len(ev) else np.zeros(0, np.int64),
            **{k: (ev["event_type"] == v).to_numpy(np.int64) for k, v in _KINDS.items()},
        }
    )
    return counts.groupby(["product_id", "enter"], as_index=False, sort=False).sum()


def _product_streams(ev: pd.DataFrame, it: pd.DataFrame) -> Streams:
    """Each product's sums: `ev` its event counts (_event_counts), `it` its order lines
    (_lines), both with the product's code `p`."""
    s = Streams()
    p, enter = ev["p"].to_numpy(), ev["enter"].to_numpy(np.int64)
    for w in WINDOWS:
        s.window(
            p,
            enter,
            w,
            **{
                f"views_{w}d": ev["views"].to_numpy(np.int64),
                f"carts_{w}d": ev["carts"].to_numpy(np.int64),
            },
        )
    s.window(p, enter, 30, purchases_30d=ev["purchases"].to_numpy(np.int64))
    p, enter, day = it["p"].to_numpy(), it["enter"].to_numpy(), it["day"].to_numpy()
    for w in WINDOWS:
        order_versions.window(
            s,
            p,
            enter,
            day,
            w,
            **{f"units_{w}d": it["units"].to_numpy(), f"revenue_{w}d": it["revenue"].to_numpy()},
        )
    return s


def _shop_revenue(it: pd.DataFrame) -> Streams:
    """The shop's revenue over 30 days from all its order lines (_lines), known products or not."""
    s = Streams()
    zero = np.zeros(len(it), np.int64)
    order_versions.window(
        s,
        zero,
        it["enter"].to_numpy(),
        it["day"].to_numpy(),
        30,
        revenue_30d=it["revenue"].to_numpy(),
    )
    return s


ORDER_ROWS = 200_000  # order versions turned into lines at once


def _lines(tables: dict[str, pd.DataFrame], index: EntityIndex) -> pd.DataFrame:
    """The order lines' units and revenue (fixed-point) summed per product code `p` (-1 for a
    product not in the catalogue), entry day `enter` of the order and `day` of a change of its
    liveness (order_versions.steps): they count while the order in force is live. Worked out a
    group of orders at a time (by a hash of order_id, ORDER_ROWS versions each)."""
    orders, items = tables["orders"], tables["order_items"]
    n = max(1, -(-len(orders) // ORDER_ROWS))
    if n == 1:
        return _line_sums(orders, items, index)
    o_part = _hashed(orders["order_id"]) % n
    i_part = _hashed(items["order_id"]) % n
    parts = [_line_sums(orders[o_part == k], items[i_part == k], index) for k in range(n)]
    return _summed_lines(pd.concat(parts, ignore_index=True))


def _hashed(ids: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(ids.astype(STRING), index=False).to_numpy()


def _line_sums(orders: pd.DataFrame, items: pd.DataFrame, index: EntityIndex) -> pd.DataFrame:
    st = order_versions.steps(orders)
    st = st[st["d_live"] != 0]
    it = items[["order_id", "product_id", "quantity", "unit_price", "discount"]]
    it = it.merge(st[["order_id", "enter", "day", "d_live"]], on="order_id")
    qty = it["quantity"].fillna(0).to_numpy(np.int64)
    net = qty * it["unit_price"].fillna(0.0).to_numpy() - it["discount"].fillna(0.0).to_numpy()
    live = it["d_live"].to_numpy()
    sums = pd.DataFrame(
        {
            "p": index.codes(it["product_id"]),
            "enter": it["enter"].to_numpy(np.int64),
            "day": it["day"].to_numpy(np.int64),
            "units": qty * live,
            "revenue": fixed(net) * live,
        }
    )
    return _summed_lines(sums)


def _summed_lines(lines: pd.DataFrame) -> pd.DataFrame:
    return lines.groupby(["p", "enter", "day"], as_index=False, sort=False).sum()


def _prices(products: pd.DataFrame, index: EntityIndex) -> pd.DataFrame:
    log = products.assign(updated_at=products["updated_at"].fillna(products["created_at"]))
    log = log.dropna(subset=["updated_at"])
    log = log.assign(c=index.codes(log["product_id"]), valid=day_of(log["updated_at"]) + 1)
    log = log[log["c"] >= 0].sort_values(["c", "updated_at"], kind="stable")
    return log.drop_duplicates(["c", "valid"], keep="last").reset_index(drop=True)


def _ratio(num, den) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(len(num), np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


def _frame(
    cindex: EntityIndex, c: np.ndarray, d: np.ndarray, cols: dict[str, np.ndarray]
) -> pd.DataFrame:
    out = pd.DataFrame({"collection_id": cindex.lookup(c), "event_timestamp": day_ts(d)})
    for f in SOURCE.features:
        out[f.name] = cols.get(f.name, np.zeros(len(c)))
    return out
