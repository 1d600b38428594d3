"""product_copurchase: for each product, the 20 products most often bought with it, with scores.

Definitions (all from orders placed before T and not cancelled when placed):
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
its old top 20 plus the pairs whose count changed that week. Between runs the counts are carried
(`restore`/`carry`, under DIR/state/features/): a Monday of an incremental run counts only the
orders since the Monday before (and the 30 days they can pair with) on top of them, instead of
recounting all history (on the 100k-customer bench shop: 6.3 s -> 1.7 s, docs/benchmarks.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import order_versions
from pipelines.existence import product_first_day
from pipelines.family import Input
from pipelines.specs import LIST_SEP, STRING, Feature, FeatureSource
from pipelines.storage import state_dir
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

# Orders before the run's first Monday are counted in the carried state (see `carry`); the run
# reads the week before that Monday and the 30 days a purchase in it can pair with.
LOOKBACK_DAYS = TOGETHER_DAYS + GRAIN_DAYS
INPUTS = (
    Input("products", ("product_id", "updated_at", "created_at")),
    Input("orders", ("order_id", "customer_id", "order_ts", "status", "updated_at"), LOOKBACK_DAYS),
    Input("order_items", ("order_id", "product_id"), LOOKBACK_DAYS),
)
# The Spark engine (pipelines/spark/features.py): the pair and buyer counts are its global step,
# a Spark aggregation over all orders (pipelines/spark/cross_sections.py) handed to each product
# shard as running counts by product id (PAIR_IDS, BUYER_IDS, the shard's products as `a`); the
# shard walks the weeks for its own products. The orders reach only that aggregation.
SHARD_BY = {
    "products": "product_id",
    "order_items": "product_id",
    "orders": ("order_items", "order_id"),
}
GLOBAL_INPUTS = ("orders", "order_items")
PAIR_IDS, BUYER_IDS = "copurchase_pair_ids", "copurchase_buyer_ids"


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    index = EntityIndex(tables["products"]["product_id"])
    first = snap_up(product_first_day(tables["products"], index))
    days = grain_days(snapshots.start_day, snapshots.end_day)
    if not len(days):  # no Monday in this run: nothing to read or write
        none = np.zeros(0, np.int64)
        return _lists(index, none, none, [none] * 4, none)
    if PAIR_IDS in tables:  # counted by Spark for this product shard
        return _emit_given(tables, snapshots, days)
    if PAIRS in tables:  # counted by `carry`, on top of the state carried from earlier runs
        pairs, buyers = tables[PAIRS], tables[BUYERS]
    else:  # all history at hand (a test, or a caller without the runner)
        pairs, buyers = _frames(count(tables, index, None, int(days[-1])), None)
    return _emit_shards(index, first, days, pairs, buyers)


def _emit_given(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, days: np.ndarray
) -> pd.DataFrame:
    """The weekly walk of this shard's products on counts made elsewhere (by Spark, over all
    orders): `tables[PAIR_IDS]` holds n(a, b) (`a`, `b` product ids, `day`, `n`) for the shard's
    products as `a`, both orders of each pair, `tables[BUYER_IDS]` n(a). The index holds the
    shard's products and every listed `b` (ids in sorted order, as locally: ties go by id); a `b`
    of another shard never gets a row here (it has no first day)."""
    pairs, buyers, products = tables[PAIR_IDS], tables[BUYER_IDS], tables["products"]
    index = EntityIndex(
        pd.concat([products["product_id"].astype(object), pairs["b"].astype(object)])
    )
    first = snap_up(product_first_day(products, index))
    day = pairs["day"].to_numpy(np.int64)
    order = np.argsort(day, kind="stable")  # _emit reads the pairs by day
    frame = pd.DataFrame(
        {
            "a": index.codes(pairs["a"])[order],
            "b": index.codes(pairs["b"])[order],
            "day": day[order],
            "n": pairs["n"].to_numpy(np.int64)[order],
        }
    )
    counts = pd.DataFrame(
        {
            "a": index.codes(buyers["a"]),
            "day": buyers["day"].to_numpy(np.int64),
            "n": buyers["n"].to_numpy(np.int64),
        }
    )
    return _emit(index, first, days, frame, counts)


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


# --- the state carried between runs -------------------------------------------------------------
#
# n(a, b) and n(a) are distinct counts over all history: they cannot continue from the stored rows
# (a top 20 and a ratio). Without a carried state every Monday recounts every order of all time.
# What is carried, with the grain day on which each item was first counted:
# - each customer's pairs (customer, a, b, day) and products (customer, p, day): a buyer counts
#   once per pair, so a pair seen again later must be recognised (guests are one order each: a
#   guest's pairs are always new and are not kept);
# - the running counts n(a, b) and n(a) at every grain day where they grew.
# Keeping the first-counted day makes the state usable as of any earlier Monday: a late file that
# restarts the run from an older day drops what was counted after that day's Monday and recounts
# from there (the runner guarantees no older order changed). A run with no usable state (none
# kept, another version, or older than the run needs) reads all history and recounts; so does a
# historical run. Customer and product codes are positions in sorted id lists kept beside them:
# ids only get added, so a code remapped to today's lists keeps its order, and so do the sorted
# key arrays.

CARRY_VERSION = 1
PAIRS, BUYERS = "copurchase_pairs", "copurchase_buyers"  # what `carry` hands to `compute`
_GROUPS = {  # carried arrays, each group sorted by its columns in this order
    "together": ("c", "a", "b", "day"),  # customer pairs, a < b
    "bought": ("c", "p", "day"),  # customer products
    "pairs": ("a", "b", "day", "n"),  # running n(a, b), a < b
    "buyers": ("a", "day", "n"),  # running n(a)
}


@dataclass
class Carried:
    """Counts of the orders before grain day `since` (and id lists for the codes)."""

    since: int
    customers: np.ndarray  # sorted customer ids ('<U')
    products: np.ndarray  # sorted product ids ('<U')
    arrays: dict[str, dict[str, np.ndarray]]


def carry_path(data_dir: Path) -> Path:
    return state_dir(data_dir) / "features" / f"{SOURCE.name}.carry.npz"


def restore(data_dir: Path, snapshots: Snapshots) -> Carried | None:
    """The carried counts as of the Monday before the run's first one, or None."""
    days = grain_days(snapshots.start_day, snapshots.end_day)
    path = carry_path(data_dir)
    if not len(days) or not path.exists():
        return None
    since = int(days[0]) - GRAIN_DAYS
    with np.load(path, allow_pickle=False) as z:
        if int(z["version"]) != CARRY_VERSION or int(z["through"]) < since:
            return None
        arrays = {g: {c: z[f"{g}.{c}"] for c in cols} for g, cols in _GROUPS.items()}
        customers, products = z["customers"], z["products"]
    for group in arrays.values():  # as of `since`: forget what was counted later
        keep = group["day"] <= since
        if not keep.all():
            for c in group:
                group[c] = group[c][keep]
    return Carried(since, customers, products, arrays)


def carry(
    data_dir: Path, tables: dict[str, pd.DataFrame], snapshots: Snapshots, carried: Carried | None
) -> None:
    """Count the run's orders on top of `carried`, keep the result as of the run's last Monday,
    and hand `compute` the running counts."""
    days = grain_days(snapshots.start_day, snapshots.end_day)
    path = carry_path(data_dir)
    if not len(days):  # a build without a Monday: no state, and none left from other data
        if carried is None:
            path.unlink(missing_ok=True)
        return
    index = EntityIndex(tables["products"]["product_id"])
    counted = count(tables, index, carried, int(days[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {f"{g}.{c}": _narrow(v) for g, group in counted.arrays.items() for c, v in group.items()}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            version=np.int64(CARRY_VERSION),
            through=np.int64(counted.since),
            customers=counted.customers,
            products=counted.products,
            **body,
        )
    os.replace(tmp, path)
    tables[PAIRS], tables[BUYERS] = _frames(counted, carried.since if carried else None)


def _narrow(values: np.ndarray) -> np.ndarray:
    """int32 when the values fit (codes, days and counts do: half the memory and the file)."""
    if values.dtype == np.int32:
        return values
    fits = values.max(initial=0) < 2**31 and values.min(initial=0) >= -(2**31)
    return values.astype(np.int32) if fits else values


# --- buyers, pairs and counts -------------------------------------------------------------------


# Memory bounds. A buyer's pairs within 30 days grow with the square of what they buy in 30 days:
# Complete Journey's 2,469 households make 152M of them from 1.46M lines (a household buying 250
# lines a month pairs each with ~250), and holding them at once took the local build past 22 GB.
# So the pairs are made and deduplicated one group of buyers at a time (a buyer's pairs are their
# own), each group reduced to counts by (a, b, grain day) before the next; and the weekly walk
# runs on product shards (a product's list depends only on its own pairs), as on Spark.
CHUNK_PAIRS = 8_000_000  # within-30-day purchase pairs made at once (about 32 bytes each)
SUM_ROWS = 16_000_000  # partial (a, b, day) counts held (over all ranges) before summing
SUM_RANGES = 16  # ranges of product a the counts are summed and continued in
EMIT_ROWS = 16_000_000  # pair-count rows (both orientations) in one shard of the weekly walk


def count(
    tables: dict[str, pd.DataFrame], index: EntityIndex, carried: Carried | None, through: int
) -> Carried:
    """`carried` (or nothing) plus the pairs and buyers first counted on grain days after it, up to
    `through`: the state as of `through`. `tables` must hold every order from 30 days before
    `carried.since` on (all orders without `carried`)."""
    since = carried.since if carried is not None else None
    lines, customers = purchases(
        tables["orders"],
        tables["order_items"],
        index,
        carried.customers if carried is not None else np.zeros(0, "<U1"),
    )
    old = _remapped(carried, index, customers)
    n_customers = len(customers)
    since_us = -(2**62) if since is None else int(since) * 86_400_000_000
    # Pairs, one group of buyers at a time: a customer's pair counted before is not counted
    # again; a guest's always is. The carried pairs of the group's customers are merged with its
    # new ones, so the groups, in buyer order, give the carried pairs in order.
    kept, sums = [], _Sums()
    old_c = old["together"]["c"]
    for lo, hi, c_lo, c_hi in _buyer_groups(lines, n_customers):
        part = slice(*np.searchsorted(old_c, [c_lo, c_hi]))
        before = {c: v[part] for c, v in old["together"].items()}
        u, a, b, day = _first(through, *together(lines.iloc[lo:hi], since_us))
        mine = u < n_customers
        seen = _find([before[c] for c in ("c", "a", "b")], [u[mine], a[mine], b[mine]])[0]
        fresh = np.ones(len(u), bool)
        fresh[np.flatnonzero(mine)[seen]] = False
        u, a, b, day, mine = u[fresh], a[fresh], b[fresh], day[fresh], mine[fresh]
        new = {"c": u[mine], "a": a[mine], "b": b[mine], "day": day[mine]}
        kept.append({c: _narrow(v) for c, v in _merged(before, new).items()})
        sums.add(a, b, day)
        del u, a, b, day, mine, new, before
    arrays = {"together": _joined(kept, _GROUPS["together"])}
    # The running counts n(a, b), one range of a at a time, continuing the carried ones.
    kept, old_a = [], old["pairs"]["a"]
    for lo, hi, (a, b, day, k) in sums.ranges():
        before = {c: v[slice(*np.searchsorted(old_a, [lo, hi]))] for c, v in old["pairs"].items()}
        new = _running(before, {"a": a, "b": b}, day, k)
        kept.append({c: _narrow(v) for c, v in _merged(before, new).items()})
        del a, b, day, k, before, new
    arrays["pairs"] = _joined(kept, _GROUPS["pairs"])
    # Buyers of each product, the same way.
    late = lines["us"].to_numpy() >= since_us
    u, p, day = _first(through, *(lines[c].to_numpy()[late] for c in ("u", "p", "us")))
    mine = u < n_customers
    seen = _find([old["bought"][c] for c in ("c", "p")], [u[mine], p[mine]])[0]
    fresh = np.ones(len(u), bool)
    fresh[np.flatnonzero(mine)[seen]] = False
    u, p, day, mine = u[fresh], p[fresh], day[fresh], mine[fresh]
    arrays["bought"] = _merged(old["bought"], {"c": u[mine], "p": p[mine], "day": day[mine]})
    arrays["buyers"] = _merged(old["buyers"], _running(old["buyers"], {"a": p}, day))
    arrays = {g: {c: _narrow(v) for c, v in group.items()} for g, group in arrays.items()}
    return Carried(through, customers, index.ids.to_numpy(dtype=str), arrays)


def _joined(parts: list[dict[str, np.ndarray]], columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The parts' columns end to end, each part's column let go once copied."""
    return {c: np.concatenate([p.pop(c) for p in parts]) for c in columns}


def _buyer_groups(lines: pd.DataFrame, n_customers: int) -> list[tuple[int, int, int, int]]:
    """Line ranges [lo, hi) of whole buyers, each with about CHUNK_PAIRS pairs within 30 days
    or one buyer, and the customer codes [c_lo, c_hi) each range answers for: together they
    cover every customer code (a carried customer without new lines included)."""
    u = lines["u"].to_numpy()
    if not len(u):
        return [(0, 0, 0, n_customers)]
    # Pairs per line, counted in whole minutes (sizing only): the later lines of the same buyer
    # less than 30 days after it. Lines are sorted by buyer and time.
    minute = (lines["us"].to_numpy() - lines["us"].min()) // 60_000_000
    starts = _runs(u)
    rank = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.r_[starts, len(u)]))
    key = rank * (int(minute.max()) + TOGETHER_DAYS * 1440 + 1) + minute
    ahead = np.searchsorted(key, key + TOGETHER_DAYS * 1440) - np.arange(len(u)) - 1
    done = np.r_[0, np.cumsum(ahead)][starts]  # pairs before each buyer's first line
    group = done // CHUNK_PAIRS
    cut = starts[np.r_[True, group[1:] != group[:-1]]]
    bounds = np.r_[cut, len(u)]
    codes = np.minimum(u[cut], n_customers)
    codes[0] = 0
    c_bounds = np.r_[codes, max(n_customers, int(u[-1]) + 1)]
    return [
        (int(bounds[i]), int(bounds[i + 1]), int(c_bounds[i]), int(c_bounds[i + 1]))
        for i in range(len(cut))
    ]


class _Sums:
    """Counts of (a, b, day) items summed over the buyer groups, kept in SUM_RANGES ranges of `a`
    (cut at the first group's quantiles of `a`), so that combining partial sums and continuing
    the running counts work on one range at a time. A range's partial sums are combined when
    they pass twice the size of its last combination (at least SUM_ROWS / SUM_RANGES rows)."""

    def __init__(self) -> None:
        self.cuts: np.ndarray | None = None
        self.parts: list[list[tuple[np.ndarray, ...]]] = []
        self.rows: list[int] = []
        self.limit: list[int] = []

    def add(self, a: np.ndarray, b: np.ndarray, day: np.ndarray) -> None:
        summed = _summed(a, b, day, np.ones(len(a), np.int32))  # sorted by a
        if self.cuts is None:
            edges = np.linspace(0, 1, SUM_RANGES + 1)[1:-1]
            cuts = np.quantile(summed[0], edges) if len(a) else np.zeros(0)
            self.cuts = np.unique(np.ceil(cuts).astype(np.int64))
            n = len(self.cuts) + 1
            self.parts, self.rows = [[] for _ in range(n)], [0] * n
            self.limit = [SUM_ROWS // SUM_RANGES] * n
        at = np.r_[0, np.searchsorted(summed[0], self.cuts), len(summed[0])]
        for i, (lo, hi) in enumerate(zip(at[:-1], at[1:], strict=True)):
            if hi > lo:
                self.parts[i].append(tuple(c[lo:hi] for c in summed))
                self.rows[i] += int(hi - lo)
            if self.rows[i] > self.limit[i] and len(self.parts[i]) > 1:
                self.parts[i] = [self._combined(i)]
                self.rows[i] = len(self.parts[i][0][0])
                self.limit[i] = max(self.limit[i], 2 * self.rows[i])

    def _combined(self, i: int) -> tuple[np.ndarray, ...]:
        parts, self.parts[i] = self.parts[i], []
        if len(parts) == 1:
            return parts[0]
        cols = [np.concatenate([p[j] for p in parts]) for j in range(4)]
        del parts
        return _summed(*cols)

    def ranges(self):
        """(lowest a, a past the range, (a, b, day, k) summed) for each range of `a` in order;
        the ranges cover every code."""
        cuts = np.zeros(0, np.int64) if self.cuts is None else self.cuts
        bounds = np.r_[0, cuts, 2**62]
        empty = tuple(np.zeros(0, np.int32) for _ in range(4))
        for i in range(len(bounds) - 1):
            sums = self._combined(i) if self.parts and self.parts[i] else empty
            yield int(bounds[i]), int(bounds[i + 1]), sums


def _summed(a: np.ndarray, b: np.ndarray, day: np.ndarray, k: np.ndarray) -> tuple:
    """Distinct (a, b, day) in order with their summed counts k (narrowed when they fit)."""
    if not len(a):
        return (a, b, day, k)
    order = _argsort(a, b, day)
    a, b, day, k = a[order], b[order], day[order], k[order]
    at = _runs(a, b, day)
    return (
        _narrow(a[at]),
        _narrow(b[at]),
        _narrow(day[at]),
        _narrow(np.add.reduceat(k, at)),
    )


def purchases(
    orders: pd.DataFrame, items: pd.DataFrame, index: EntityIndex, customers: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (buyer, product, order) of non-cancelled orders: `u`, `p`, `o`, `us` (order
    time in microseconds), sorted by buyer and time; and the sorted customer ids (`customers` and
    the new ones). A customer's `u` is their position in those ids; guests' come after."""
    o = order_versions.first_versions(orders)  # the orders as placed
    o = o.loc[o["status"] != "cancelled", ["order_id", "customer_id", "order_ts"]]
    it = items[["order_id", "product_id"]].merge(o, on="order_id")
    p = index.codes(it["product_id"])
    code, ids = pd.factorize(it["customer_id"])
    customers = np.union1d(customers, ids.to_numpy(dtype=str))
    order = pd.factorize(it["order_id"])[0]
    at = np.searchsorted(customers, ids.to_numpy(dtype=str))
    u = np.where(code >= 0, at[np.maximum(code, 0)] if len(at) else 0, len(customers) + order)
    lines = pd.DataFrame({"u": u, "p": p, "o": order, "us": duration_us(it["order_ts"])})
    lines = lines[lines["p"] >= 0].drop_duplicates(["u", "p", "o"])
    return lines.sort_values(["u", "us", "p"], kind="stable").reset_index(drop=True), customers


def together(lines: pd.DataFrame, since_us: int) -> tuple[np.ndarray, ...]:
    """Each time a buyer buys two products within 30 days, the later purchase at or after
    `since_us`: (buyer, smaller product, larger product, time of the later purchase)."""
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
        hit = (p[alive] != p[j]) & (us[j] >= since_us)
        i, k = alive[hit], j[hit]
        found.append((u[i], np.minimum(p[i], p[k]), np.maximum(p[i], p[k]), us[k]))
        lag += 1
    return tuple(np.concatenate([f[n] for f in found] or [u[:0]]) for n in range(4))


def _first(through: int, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct keys (all columns but the last, a time) sorted, with the grain day of their
    earliest time; only those counted by `through`."""
    *keys, us = columns
    if not len(us):
        return (*(np.zeros(0, np.int64) for _ in keys), np.zeros(0, np.int64))
    # One sort of a packed key (pandas' multi-key groupby costs several times more).
    order = _argsort(*keys)
    keys = [k[order] for k in keys]
    change = np.zeros(len(us), bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(change)
    day = snap_up(_entry(np.minimum.reduceat(us[order], starts)))
    keep = day <= through
    return (*(k[starts][keep] for k in keys), day[keep])


def _remapped(
    carried: Carried | None, index: EntityIndex, customers: np.ndarray
) -> dict[str, dict[str, np.ndarray]]:
    """The carried groups with their codes moved to today's id lists (order kept)."""
    if carried is None:
        return {g: {c: np.zeros(0, np.int64) for c in cols} for g, cols in _GROUPS.items()}
    to_customer = np.searchsorted(customers, carried.customers)
    to_product = index.codes(carried.products)
    if (to_product < 0).any():
        raise ValueError("a product counted in the carried state is no longer known")
    moves = {"c": to_customer, "a": to_product, "b": to_product, "p": to_product}
    return {
        g: {c: moves[c][v] if c in moves else v for c, v in group.items()}
        for g, group in carried.arrays.items()
    }


def _key(columns: list[np.ndarray]) -> np.ndarray:
    """Non-negative integer columns as one int64 key in the same (lexicographic) order."""
    widths = [int(c.max(initial=0)).bit_length() for c in columns]
    if sum(widths) > 62:  # too wide to pack: rank the rows instead
        return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].ravel()
    key = np.zeros(len(columns[0]), np.int64)
    for column, width in zip(columns, widths, strict=True):
        key = (key << width) | column.astype(np.int64)
    return key


def _find(stored: list[np.ndarray], keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For each key: whether the stored rows (sorted by their columns) hold it, and the position
    of its last stored row."""
    if not len(stored[0]) or not len(keys[0]):
        return np.zeros(len(keys[0]), bool), np.zeros(len(keys[0]), np.int64)
    packed = _key([np.r_[s, k] for s, k in zip(stored, keys, strict=True)])
    left, right = packed[: len(stored[0])], packed[len(stored[0]) :]
    pos = np.maximum(np.searchsorted(left, right, side="right") - 1, 0)
    return left[pos] == right, pos


def _runs(*keys: np.ndarray) -> np.ndarray:
    """Start of each run of equal keys (rows sorted by them)."""
    change = np.zeros(len(keys[0]), bool)
    change[:1] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _running(
    group: dict[str, np.ndarray],
    keys: dict[str, np.ndarray],
    day: np.ndarray,
    weight: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """New rows (keys..., day, n) of a running count from the items first counted on `day`
    (`weight` items each, else one), continuing each key's carried count (its last carried row:
    counts only grow)."""
    names = list(keys)
    order = _argsort(*keys.values(), day)
    cols = [keys[c][order] for c in names] + [day[order]]
    at = _runs(*cols) if len(day) else np.zeros(0, np.int64)
    if weight is None:
        inc = np.diff(np.r_[at, len(day)])
    else:
        inc = np.add.reduceat(weight[order].astype(np.int64), at) if len(at) else at
    cols = [c[at] for c in cols]
    starts = _runs(*cols[:-1]) if len(at) else at
    run = np.cumsum(inc)
    before = np.r_[np.int64(0), run[starts[1:] - 1]][: len(starts)]
    n = run - np.repeat(before, np.diff(np.r_[starts, len(at)]))
    found, pos = _find([group[c] for c in names], cols[:-1])
    n = n + np.where(found, group["n"][pos] if len(group["n"]) else 0, 0)
    return {**dict(zip(names, cols[:-1], strict=True)), "day": cols[-1], "n": n}


def _merged(group: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The carried group with the new rows inserted in order (no key of them is in it)."""
    names = list(group)
    sort_by = [c for c in names if c != "n"]
    order = _argsort(*(new[c] for c in sort_by))
    new = {c: new[c][order] for c in names}
    if not len(group[names[0]]) or not len(new[names[0]]):
        return new if len(new[names[0]]) else group
    size = len(group[names[0]])
    packed = _key([np.r_[group[c], new[c]] for c in sort_by])
    at = np.searchsorted(packed[:size], packed[size:])
    return {c: np.insert(group[c], at, new[c]) for c in names}


def _frames(counted: Carried, since: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The running counts as `_emit_shards` reads them: n(a, b) for a < b (as of `since`, only
    each pair's last row), n(a)."""
    pairs = counted.arrays["pairs"]
    a, b, day, n = (pairs[c] for c in ("a", "b", "day", "n"))
    if since is not None and len(day):
        old = day <= since
        last = np.r_[(a[1:] != a[:-1]) | (b[1:] != b[:-1]) | ~old[1:], True]
        keep = ~old | last
        a, b, day, n = a[keep], b[keep], day[keep], n[keep]
    frame = pd.DataFrame({"a": a, "b": b, "day": day, "n": n}, copy=False)
    buyers = pd.DataFrame({c: counted.arrays["buyers"][c] for c in ("a", "day", "n")})
    return frame, buyers


def _emit_shards(
    index: EntityIndex,
    first: np.ndarray,
    days: np.ndarray,
    pairs: pd.DataFrame,
    buyers: pd.DataFrame,
) -> pd.DataFrame:
    """`_emit` on the pair counts n(a, b) given once per pair (a < b), one shard of products
    (consecutive codes, about EMIT_ROWS pair rows with both orientations) at a time: a product's
    rows depend only on its own pairs, buyers and first day. Rows come out in (product, day)
    order either way."""
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    day, n = pairs["day"].to_numpy(), pairs["n"].to_numpy()
    per = np.bincount(a, minlength=len(index)) + np.bincount(b, minlength=len(index))
    shard = np.r_[0, np.cumsum(per)][: len(index)] // EMIT_ROWS
    cuts = np.r_[np.flatnonzero(np.r_[True, shard[1:] != shard[:-1]]), len(index)]
    ba = buyers["a"].to_numpy()
    out = []
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        one = np.flatnonzero((a >= lo) & (a < hi))
        two = np.flatnonzero((b >= lo) & (b < hi))
        by_day = np.argsort(np.r_[day[one], day[two]], kind="stable")
        frame = pd.DataFrame(
            {
                "a": np.r_[a[one], b[two]][by_day],
                "b": np.r_[b[one], a[two]][by_day],
                "day": np.r_[day[one], day[two]][by_day],
                "n": np.r_[n[one], n[two]][by_day],
            }
        )
        mine = first.copy()
        mine[:lo], mine[hi:] = _NEVER, _NEVER
        out.append(_emit(index, mine, days, frame, buyers[(ba >= lo) & (ba < hi)]))
        del one, two, by_day, frame
    return out[0] if len(out) == 1 else pd.concat(out, ignore_index=True)


_NEVER = np.iinfo(np.int64).max // 4  # a first day after every run: no row for such a product


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
