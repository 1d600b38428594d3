"""product_copurchase: for each product, the 20 products most often bought with it, with scores.

Definitions (all from non-cancelled orders placed before T):
- A buyer is a customer, or, for a guest order, that order alone.
- Two products are bought together by a buyer when the buyer bought both within 30 days of each
  other (`|order_ts_a - order_ts_b| < 30 days`; the same order is 0 apart). Guests therefore only
  contribute same-order pairs.
- `n(a, b)`: distinct buyers who bought a and b together at some time before T. A buyer counts
  once per pair however often they repeat it, so one heavy buyer cannot make a pair.
- `n(a)`: distinct buyers of a before T.
- The list holds the 20 products b with the largest `n(a, b)` (ties: smaller product_id first);
  the score of b is `n(a, b) / n(a)`, the share of a's buyers who also bought b within 30 days
  (in (0, 1]; ordered like `n(a, b)`). Empty lists, never null, for a product that exists.

Grain: WEEKLY. Rows are stamped on Mondays 00:00 UTC (GRAIN_DAYS, ANCHOR_DAY) and computed from
orders before that Monday; Feast serves the latest Monday <= t, so a list is up to 7 days old and
never from the future. This view is not one of the contract's named features: its cost is a
cumulative pair count over all history, and a weekly grain keeps an incremental day cheap (six
days out of seven there is no new snapshot to compute, so nothing is read) and the source small.
A product's first row is on the first Monday of its existence.

Cost: pairs are generated per buyer by walking their purchases in time order (lag 1, 2, ... while
still within 30 days), so the work is the number of within-30-day pairs, not buyers x purchases^2.
The top 20 is maintained week to week: counts only grow, so the new top 20 of a product lies in
its old top 20 plus the pairs whose count changed that week.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.entities import product_first_day
from pipelines.family import Input
from pipelines.specs import LIST_SEP, STRING, Feature, FeatureSource
from pipelines.windows import (
    EntityIndex,
    Snapshots,
    as_of,
    day_ts,
    duration_us,
    entry_day,
    pack,
)

TOP_K = 20
TOGETHER_DAYS = 30
GRAIN_DAYS = 7
ANCHOR_DAY = 4  # day index of Monday 1970-01-05: weekly snapshots fall on Mondays

SOURCE = FeatureSource(
    name="product_copurchase",
    entity="product",
    join_key="product_id",
    description="The 20 products most often bought together with this one (same buyer, within "
    "30 days), with scores; weekly snapshots on Mondays 00:00 UTC.",
    tags=(("domain", "product"), ("family", "copurchase"), ("grain", "weekly")),
    features=(
        Feature(
            "copurchase_product_ids",
            "string_list",
            "up to 20 products with the most "
            "distinct buyers who bought both within 30 days, before T; most first, ties by "
            "product_id; empty when none",
            "lifetime",
            (),
        ),
        Feature(
            "copurchase_scores",
            "float_list",
            "for each listed product b: n(a, b) / n(a), "
            "the share of this product's buyers who also bought b within 30 days",
            "lifetime",
            (),
        ),
        Feature(
            "copurchase_buyers",
            "int64",
            "n(a): distinct buyers of the product before T (the scores' denominator)",
            "lifetime",
            0,
        ),
    ),
)

INPUTS = (
    Input("products", ("product_id", "updated_at", "created_at")),
    Input("orders", ("order_id", "customer_id", "order_ts", "status")),
    Input("order_items", ("order_id", "product_id")),
)


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    index = EntityIndex(tables["products"]["product_id"])
    first = snap_up(product_first_day(tables["products"], index))
    days = grain_days(snapshots.start_day, snapshots.end_day)
    if not len(days):  # no Monday in this run: nothing to read or write
        none = np.zeros(0, np.int64)
        return _lists(index, none, none, [none] * 4, none)
    lines = purchases(tables["orders"], tables["order_items"], index)
    pairs = pair_counts(lines)
    buyers = buyer_counts(lines)
    return _emit(index, first, days, pairs, buyers)


# --- snapshots on the weekly grain --------------------------------------------------------------


def emits(snapshots: Snapshots) -> bool:
    """Whether the run holds a Monday; without one no row can change and the runner skips the
    family without reading its inputs (all orders: the bulk of an incremental day's reads)."""
    return len(grain_days(snapshots.start_day, snapshots.end_day)) > 0


def snap_up(day: np.ndarray) -> np.ndarray:
    """The first grain day on or after each day."""
    day = np.asarray(day, np.int64)
    return day + np.mod(ANCHOR_DAY - day, GRAIN_DAYS)


def grain_days(start_day: int, end_day: int) -> np.ndarray:
    first = int(snap_up(np.array([start_day]))[0])
    return np.arange(first, end_day + 1, GRAIN_DAYS, dtype=np.int64)


# --- buyers, pairs and counts -------------------------------------------------------------------


def purchases(orders: pd.DataFrame, items: pd.DataFrame, index: EntityIndex) -> pd.DataFrame:
    """One row per (buyer, product, order) of non-cancelled orders: `u`, `p`, `us` (order time in
    microseconds), sorted by buyer and time."""
    o = orders.loc[orders["status"] != "cancelled", ["order_id", "customer_id", "order_ts"]]
    it = items[["order_id", "product_id"]].merge(o, on="order_id")
    p = index.codes(it["product_id"])
    customer = pd.factorize(it["customer_id"])[0]
    order = pd.factorize(it["order_id"])[0]
    u = np.where(customer >= 0, customer, customer.max(initial=0) + 1 + order)
    lines = pd.DataFrame({"u": u, "p": p, "o": order, "us": duration_us(it["order_ts"])})
    lines = lines[lines["p"] >= 0].drop_duplicates(["u", "p", "o"])
    return lines.sort_values(["u", "us", "p"], kind="stable").reset_index(drop=True)


def pair_counts(lines: pd.DataFrame) -> pd.DataFrame:
    """Cumulative `n(a, b)` at each grain day where it grows: columns a, b, day, n (both
    directions, sorted by day)."""
    u, p, us = (lines[c].to_numpy() for c in ("u", "p", "us"))
    limit = TOGETHER_DAYS * 86_400_000_000
    found: list[tuple[np.ndarray, ...]] = []
    alive = np.arange(max(len(u) - 1, 0), dtype=np.int64)
    lag = 1
    while len(alive):  # purchase i with the purchase `lag` places later, while still together
        j = alive + lag
        ok = j < len(u)
        alive, j = alive[ok], j[ok]
        ok = (u[j] == u[alive]) & (us[j] - us[alive] < limit)
        alive, j = alive[ok], j[ok]
        i, k = alive[p[alive] != p[j]], j[p[alive] != p[j]]
        # (buyer, smaller product, larger product, when the later purchase happens)
        found.append((u[i], np.minimum(p[i], p[k]), np.maximum(p[i], p[k]), us[k]))
        lag += 1
    u_, a_, b_, us_ = (np.concatenate([f[n] for f in found] or [u[:0]]) for n in range(4))
    if not len(u_):
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in ("a", "b", "day", "n")})
    # The first time each buyer bought each pair together: one sort of a packed (u, a, b) key
    # (pandas' three-key groupby costs several times more on a year of pairs).
    order = _argsort(u_, a_, b_)
    key = np.stack([u_[order], a_[order], b_[order]])
    starts = np.flatnonzero(np.r_[True, (key[:, 1:] != key[:, :-1]).any(axis=0)])
    a1, b1 = key[1, starts], key[2, starts]
    us1 = np.minimum.reduceat(us_[order], starts) if len(starts) else us_[:0]
    day = snap_up(_entry(us1))
    # New buyers per (a, b, day), both directions, then running counts per pair.
    a2, b2, d2 = np.r_[a1, b1], np.r_[b1, a1], np.r_[day, day]
    order = _argsort(a2, b2, d2)
    a2, b2, d2 = a2[order], b2[order], d2[order]
    first = np.r_[True, (a2[1:] != a2[:-1]) | (b2[1:] != b2[:-1]) | (d2[1:] != d2[:-1])]
    at = np.flatnonzero(first)
    inc = np.diff(np.r_[at, len(a2)])
    a3, b3, d3 = a2[at], b2[at], d2[at]
    pair_start = np.flatnonzero(np.r_[True, (a3[1:] != a3[:-1]) | (b3[1:] != b3[:-1])])
    run = np.cumsum(inc)
    before = np.r_[np.int64(0), run[pair_start[1:] - 1]]
    n = run - np.repeat(before, np.diff(np.r_[pair_start, len(a3)]))
    by_day = np.argsort(d3, kind="stable")
    return pd.DataFrame({"a": a3[by_day], "b": b3[by_day], "day": d3[by_day], "n": n[by_day]})


def buyer_counts(lines: pd.DataFrame) -> pd.DataFrame:
    """Cumulative `n(a)` at each grain day where it grows: columns a, day, n."""
    first = lines.groupby(["u", "p"], sort=False)["us"].min().reset_index()
    first["day"] = snap_up(_entry(first["us"].to_numpy()))
    inc = first.groupby(["p", "day"]).size().rename("inc").reset_index()
    inc["n"] = inc.groupby("p", sort=False)["inc"].cumsum()
    return inc.rename(columns={"p": "a"})[["a", "day", "n"]]


def _entry(us: np.ndarray) -> np.ndarray:
    """First snapshot day (daily) at which a purchase at `us` is visible: the next 00:00 UTC."""
    return entry_day(pd.to_datetime(us, unit="us", utc=True))


# --- the weekly walk ----------------------------------------------------------------------------


def _emit(
    index: EntityIndex,
    first: np.ndarray,
    days: np.ndarray,
    pairs: pd.DataFrame,
    buyers: pd.DataFrame,
) -> pd.DataFrame:
    """Rows (product, day, top list, scores, n(a)) at every grain day of `days` where a product
    starts to exist or its list, scores or buyers change."""
    start = days[0]
    pa_, pb, pd_, pn = (pairs[c].to_numpy(np.int64) for c in ("a", "b", "day", "n"))
    ba, bd = buyers["a"].to_numpy(np.int64), buyers["day"].to_numpy(np.int64)
    # State as of the first day: each pair's latest count, then the top K per product.
    upto = pd_ <= start
    state = _top(pa_[upto], pb[upto], pn[upto])
    grown_at = np.unique(bd[bd > start])
    changed_at = np.unique(pd_[pd_ > start])
    p_lo = np.searchsorted(pd_, changed_at)  # pairs are sorted by day
    p_hi = np.searchsorted(pd_, changed_at, side="right")

    out: list[tuple[np.ndarray, ...]] = []  # (a, day) rows and their (a, b, n, day) list items
    born = np.flatnonzero(first <= start)
    out.append(_rows_of(state, born, start))
    for d in np.union1d(np.union1d(grown_at, changed_at), first[first > start]):
        if d > days[-1]:
            break
        touched = [np.flatnonzero(first == d), ba[bd == d]]
        k = np.searchsorted(changed_at, d)
        if k < len(changed_at) and changed_at[k] == d:
            ca, cb, cn = (x[p_lo[k] : p_hi[k]] for x in (pa_, pb, pn))
            mine = np.isin(state[0], ca)
            fresh = _top(*(np.r_[s[mine], c] for s, c in zip(state, (ca, cb, cn), strict=True)))
            state = tuple(np.r_[s[~mine], f] for s, f in zip(state, fresh, strict=True))
            touched.append(ca)
        touched = np.unique(np.concatenate(touched))
        touched = touched[first[touched] <= d]
        if len(touched):
            out.append(_rows_of(state, touched, d))
    entity, day = (np.concatenate([o[i] for o in out]) for i in (0, 1))
    flat = [np.concatenate([o[i] for o in out]) for i in (2, 3, 4, 5)]
    n_all = _buyers_at(buyers, entity, day)
    return _lists(index, entity, day, flat, n_all)


def _rows_of(state: tuple[np.ndarray, ...], products: np.ndarray, day: int) -> tuple:
    """Output rows for `products` on `day`, and their current list items."""
    hit = np.isin(state[0], products)
    a, b, n = (s[hit] for s in state)
    return (
        products,
        np.full(len(products), day, np.int64),
        a,
        b,
        n,
        np.full(len(a), day, np.int64),
    )


def _top(a: np.ndarray, b: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each pair's largest count, then the TOP_K pairs per product a: most `n` first, ties by b
    (codes follow product_id order). Counts only grow, so the largest is the latest."""
    order = _argsort(a, b, n)
    a, b, n = a[order], b[order], n[order]
    last_of_pair = np.r_[(a[1:] != a[:-1]) | (b[1:] != b[:-1]), True][: len(a)]
    a, b, n = a[last_of_pair], b[last_of_pair], n[last_of_pair]
    order = _argsort(a, n.max(initial=0) - n, b)
    a, b, n = a[order], b[order], n[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]][: len(a)])
    rank = np.arange(len(a)) - np.repeat(starts, np.diff(np.r_[starts, len(a)]))
    keep = rank < TOP_K
    return a[keep], b[keep], n[keep]


def _argsort(*columns: np.ndarray) -> np.ndarray:
    """Stable order by several non-negative integer columns, most significant first: packed
    into one int64 key when they fit (one sort instead of a lexsort)."""
    widths = [int(c.max(initial=0)).bit_length() for c in columns]
    if sum(widths) > 62:
        return np.lexsort(columns[::-1])
    key = np.zeros(len(columns[0]), np.int64)
    for column, width in zip(columns, widths, strict=True):
        key = (key << width) | column
    return np.argsort(key, kind="stable")


def _lists(
    index: EntityIndex,
    entity: np.ndarray,
    day: np.ndarray,
    flat: list[np.ndarray],
    n_all: np.ndarray,
) -> pd.DataFrame:
    """One row per (entity, day) with its list columns, from the flat list items."""
    fa, fb, fn, fd = flat
    row_key, item_key = pack(entity, day), pack(fa, fd)
    order_rows = np.argsort(row_key, kind="stable")
    entity, day, n_all = entity[order_rows], day[order_rows], n_all[order_rows]
    row_of_item = np.searchsorted(row_key[order_rows], item_key)
    order = _argsort(row_of_item, fn.max(initial=0) - fn, fb)
    row_of_item, fb, fn = row_of_item[order], fb[order], fn[order]
    counts = np.bincount(row_of_item, minlength=len(entity))
    offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
    ids = pa.array(index.ids.to_numpy(dtype=object), pa.string()).take(pa.array(fb))
    # Scores as Python prints floats (numpy's shortest round-trip repr is the same text); few
    # distinct values, so each is formatted once.
    values, inverse = np.unique(fn / n_all[row_of_item].astype(np.float64), return_inverse=True)
    scores = pa.array(values.astype(str), pa.string()).take(pa.array(inverse))
    return pd.DataFrame(
        {
            "product_id": index.lookup(entity),
            "event_timestamp": day_ts(day),
            "copurchase_product_ids": _packed(offsets, ids),
            "copurchase_scores": _packed(offsets, scores),
            "copurchase_buyers": n_all,
        }
    )


def _packed(offsets: pa.Array, items: pa.Array) -> pd.Series:
    """List values packed the way pipelines.specs carries them (one string per row), built in
    Arrow rather than a Python list per row."""
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), LIST_SEP)
    return pd.Series(pd.arrays.ArrowStringArray(joined.cast(pa.large_string())), dtype=STRING)


def _buyers_at(buyers: pd.DataFrame, entity: np.ndarray, day: np.ndarray) -> np.ndarray:
    b = buyers.sort_values(["a", "day"], kind="stable")
    pos = as_of(entity, day, b["a"].to_numpy(), b["day"].to_numpy())
    n = b["n"].to_numpy()
    return np.where(pos >= 0, n[np.maximum(pos, 0)] if len(n) else 0, 0)
