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

from pipelines.entities import product_first_day
from pipelines.family import Input
from pipelines.specs import Feature, FeatureSource
from pipelines.windows import EntityIndex, Snapshots, as_of, day_ts, duration_us, entry_day

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
        return _frame(index, np.zeros(0, np.int64), np.zeros(0, np.int64), [], [], [])
    lines = purchases(tables["orders"], tables["order_items"], index)
    pairs = pair_counts(lines)
    buyers = buyer_counts(lines)
    return _emit(index, first, days, pairs, buyers)


# --- snapshots on the weekly grain --------------------------------------------------------------


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
    if not found:
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in ("a", "b", "day", "n")})
    frame = pd.DataFrame(
        {c: np.concatenate([f[n] for f in found]) for n, c in enumerate(("u", "a", "b", "us"))}
    )
    frame = frame.groupby(["u", "a", "b"], sort=False)["us"].min().reset_index()
    frame["day"] = snap_up(_entry(frame["us"].to_numpy()))
    inc = frame.groupby(["a", "b", "day"], sort=False).size().rename("inc").reset_index()
    both = pd.concat([inc, inc.rename(columns={"a": "b", "b": "a"})], ignore_index=True)
    both = both.sort_values(["a", "b", "day"], kind="stable")
    both["n"] = both.groupby(["a", "b"], sort=False)["inc"].cumsum()
    return both.drop(columns="inc").sort_values("day", kind="stable").reset_index(drop=True)


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
    # State as of the first day: each pair's latest count, then the top K per product.
    upto = pairs[pairs["day"] <= start]
    state = _top(upto.drop_duplicates(["a", "b"], keep="last"))
    n_a = np.zeros(len(index), np.int64)
    b0 = buyers[buyers["day"] <= start].drop_duplicates("a", keep="last")
    n_a[b0["a"].to_numpy()] = b0["n"].to_numpy()

    out_e, out_d, tops = [], [], []
    born = np.flatnonzero(first <= start)
    out_e.append(born)
    out_d.append(np.full(len(born), start))
    tops.append(state[state["a"].isin(born)].assign(d=start, nn=lambda f: n_a[f["a"]]))

    pair_by_day = dict(tuple(pairs[pairs["day"] > start].groupby("day", sort=True)))
    buyer_by_day = dict(tuple(buyers[buyers["day"] > start].groupby("day", sort=True)))
    for d in days[1:]:
        changed = pair_by_day.get(d)
        grown = buyer_by_day.get(d)
        touched = []
        if grown is not None:
            n_a[grown["a"].to_numpy()] = grown["n"].to_numpy()
            touched.append(grown["a"].to_numpy())
        if changed is not None:
            hit = changed["a"].unique()
            mine = state["a"].isin(hit).to_numpy()
            fresh = _top(
                pd.concat(
                    [state[mine], changed[["a", "b", "n"]]], ignore_index=True
                ).drop_duplicates(["a", "b"], keep="last")
            )
            state = pd.concat([state[~mine], fresh], ignore_index=True)
            touched.append(hit)
        new = np.flatnonzero(first == d)
        touched.append(new)
        touched = np.unique(np.concatenate(touched))
        touched = touched[first[touched] <= d]
        if not len(touched):
            continue
        out_e.append(touched)
        out_d.append(np.full(len(touched), d))
        rows = state[state["a"].isin(touched)]
        tops.append(rows.assign(d=d, nn=n_a[rows["a"].to_numpy()]))

    entity, day = np.concatenate(out_e), np.concatenate(out_d)
    flat = (
        pd.concat(tops, ignore_index=True)
        if tops
        else pd.DataFrame(columns=["a", "b", "n", "d", "nn"])
    )
    return _lists(index, entity, day, flat, n_a_at=buyers)


def _top(counts: pd.DataFrame) -> pd.DataFrame:
    """The TOP_K rows per product a: most `n` first, ties by b (codes follow product_id order)."""
    ranked = counts[["a", "b", "n"]].sort_values(
        ["a", "n", "b"], ascending=[True, False, True], kind="stable"
    )
    return ranked.groupby("a", sort=False).head(TOP_K).reset_index(drop=True)


def _lists(
    index: EntityIndex,
    entity: np.ndarray,
    day: np.ndarray,
    flat: pd.DataFrame,
    n_a_at: pd.DataFrame,
) -> pd.DataFrame:
    """Assemble one row per (entity, day) with its list columns, from the flat top rows."""
    rows = pd.DataFrame({"a": entity, "d": day})
    rows["r"] = np.arange(len(rows))
    flat = flat.merge(rows, on=["a", "d"]).sort_values(
        ["r", "n", "b"], ascending=[True, False, True], kind="stable"
    )
    counts = np.bincount(flat["r"].to_numpy(np.int64), minlength=len(rows))
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    ids = pa.array(index.ids.to_numpy(dtype=object)[flat["b"].to_numpy(np.int64)], pa.string())
    scores = pa.array(flat["n"].to_numpy(np.float64) / flat["nn"].to_numpy(np.float64))
    id_lists = pa.ListArray.from_arrays(pa.array(offsets), ids).to_pandas()
    score_lists = pa.ListArray.from_arrays(pa.array(offsets), scores).to_pandas()
    buyers = _buyers_at(n_a_at, entity, day)
    return _frame(index, entity, day, list(id_lists), list(score_lists), buyers)


def _buyers_at(buyers: pd.DataFrame, entity: np.ndarray, day: np.ndarray) -> np.ndarray:
    b = buyers.sort_values(["a", "day"], kind="stable")
    pos = as_of(entity, day, b["a"].to_numpy(), b["day"].to_numpy())
    n = b["n"].to_numpy()
    return np.where(pos >= 0, n[np.maximum(pos, 0)] if len(n) else 0, 0)


def _frame(
    index: EntityIndex, entity: np.ndarray, day: np.ndarray, ids: list, scores: list, buyers
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": index.lookup(entity),
            "event_timestamp": day_ts(day),
            "copurchase_product_ids": pd.Series([list(v) for v in ids], dtype=object),
            "copurchase_scores": pd.Series([list(v) for v in scores], dtype=object),
            "copurchase_buyers": np.asarray(buyers, np.int64),
        }
    )
