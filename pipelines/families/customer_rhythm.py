"""customer_rhythm: how regularly a customer buys, and whether their buying is slowing down.

Churn in a shop is non-contractual: nobody cancels, they stop coming. What says a customer has
stopped is their silence measured against their own rhythm (a weekly shopper silent for three
weeks is not a quarterly one silent for three weeks) and a falling trend. So, as of T:

- the rhythm, over the orders not cancelled when placed (their first version, as customer_activity's
  `last_order_ts` counts them), before T: the first order, the repeat orders after it (BG/NBD's x),
  the mean gap between consecutive orders, the spread of the gaps, the last and the longest gap.
  An order's gap is known from the day it enters (the day after it was placed), like every order
  feature;
- the trend, over the orders as of T (the version in force, not cancelled; spend net of refunds
  known before T, pipelines.order_versions, as customer_activity's windows): orders and spend in
  180 days and in the 90 days before the last 90 ([T - 180 d, T - 90 d)), the last 30 days against
  the 90-day rate and the last quarter against the one before.

What depends on the instant T itself (days since the first order, days since the last order over
the usual gap) is on demand (featurestore/odfv.py `customer_cycle`), exact at any request time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from pipelines import order_versions
from pipelines.existence import customer_first_day
from pipelines.family import ORDER_COLUMNS, Input, customer_parts
from pipelines.specs import Drift, Feature, FeatureSource
from pipelines.windows import (
    MICRO,
    EntityIndex,
    Snapshots,
    Streams,
    as_of,
    day_ts,
    duration_us,
    entry_day,
)

US_PER_DAY = 86_400 * 1_000_000
# How `shopfeast monitor` compares them (pipelines.specs.drift_policy): not at all, because they
# move by construction while a shop is young, past the monitor's 90-day warm-up.
GAPS_STRETCH = Drift(
    "skip", reason="gaps between orders stretch as the shop ages (none is longer than the history)"
)
FILLS_UP = Drift(
    "skip", reason="a 180-day window fills up over the shop's first 180 days, past the warm-up"
)

SOURCE = FeatureSource(
    name="customer_rhythm",
    entity="customer",
    description="A customer's buying rhythm (gaps between orders, first order, repeat orders) and "
    "trends (30 against 90 days, this quarter against the previous one), for churn.",
    tags=(("domain", "customer"), ("family", "rhythm"), ("use", "churn")),
    features=(
        Feature(
            "first_order_ts",
            "unix_timestamp",
            "earliest order_ts before T of an order not cancelled when placed",
            "lifetime",
        ),
        Feature(
            "repeat_orders",
            "int64",
            "orders not cancelled when placed, before T, after the first one (BG/NBD's x)",
            "lifetime",
            0,
        ),
        Feature(
            "mean_gap_days",
            "float64",
            "mean days between consecutive orders (not cancelled when placed) before T; null "
            "with fewer than two orders",
            "lifetime",
            drift=GAPS_STRETCH,
        ),
        Feature(
            "gap_std_days",
            "float64",
            "standard deviation (population) of those gaps in days; null with fewer than two gaps",
            "lifetime",
            drift=GAPS_STRETCH,
        ),
        Feature(
            "last_gap_days",
            "float64",
            "days between the last two orders before T; null with fewer than two orders",
            "lifetime",
            drift=GAPS_STRETCH,
        ),
        Feature(
            "max_gap_days",
            "float64",
            "the longest gap in days between consecutive orders before T (the longest silence the "
            "customer came back from); null with fewer than two orders",
            "lifetime",
            drift=GAPS_STRETCH,
        ),
        Feature(
            "orders_180d",
            "int64",
            "non-cancelled orders in the window",
            "180d",
            0,
            drift=FILLS_UP,
        ),
        Feature(
            "spend_180d",
            "float64",
            "total_amount minus refunds known before T, orders in the window",
            "180d",
            0.0,
            drift=FILLS_UP,
        ),
        Feature(
            "orders_prev_90d",
            "int64",
            "non-cancelled orders placed in [T - 180 d, T - 90 d): the quarter before the last",
            "180d",
            0,
            drift=FILLS_UP,
        ),
        Feature(
            "spend_prev_90d",
            "float64",
            "spend (refunds known before T deducted) of the orders placed in [T - 180 d, T - 90 d)",
            "180d",
            0.0,
            drift=FILLS_UP,
        ),
        Feature(
            "orders_trend_30_90d",
            "float64",
            "orders in 30 days / (orders in 90 days / 3): 1 is a steady rate, 0 nothing lately; "
            "null without orders in 90 days",
            "90d",
        ),
        Feature(
            "spend_trend_30_90d",
            "float64",
            "spend in 30 days / (spend in 90 days / 3); null without positive spend in 90 days",
            "90d",
        ),
        Feature(
            "orders_trend_quarter",
            "float64",
            "(orders in the last 90 days - in the 90 before) / their sum, in [-1, 1]; null "
            "without orders in 180 days",
            "180d",
            drift=FILLS_UP,
        ),
        Feature(
            "spend_trend_quarter",
            "float64",
            "(spend in the last 90 days - in the 90 before) / their sum; null without positive "
            "spend in 180 days",
            "180d",
            drift=FILLS_UP,
        ),
    ),
)

INPUTS = (
    Input("customers", ("customer_id", "signup_ts", "updated_at")),
    Input("orders", ORDER_COLUMNS),  # all history: the gaps and the first order need it
)
# The Spark engine splits by customer as customer_activity does (an order's versions together).
SHARD_BY = {"customers": "customer_id", "orders": "customer_id"}


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    index = EntityIndex(tables["customers"]["customer_id"])
    first_day = customer_first_day(tables["customers"], index)
    streams = Streams()
    # a row on each customer's first snapshot of the run (the run's first day for older ones)
    streams.points(np.arange(len(index)), np.maximum(first_day, snapshots.start_day))
    _window_streams(streams, tables["orders"], index)
    acc = streams.evaluate(snapshots.start_day, snapshots.end_day)
    alive = acc.day >= first_day[acc.entity]
    entity, day = acc.entity[alive], acc.day[alive]
    v = {k: a[alive] for k, a in acc.values.items()}

    out = pd.DataFrame({"customer_id": index.lookup(entity), "event_timestamp": day_ts(day)})
    for name, values in _rhythm(tables["orders"], index, entity, day).items():
        out[name] = values
    spend = {w: v[f"spend_{w}d"] / MICRO for w in (30, 90, 180)}
    orders_prev = v["orders_180d"] - v["orders_90d"]
    spend_prev = spend[180] - spend[90]
    out["orders_180d"] = v["orders_180d"]
    out["spend_180d"] = spend[180]
    out["orders_prev_90d"] = orders_prev
    out["spend_prev_90d"] = spend_prev
    out["orders_trend_30_90d"] = _ratio(3 * v["orders_30d"], v["orders_90d"])
    out["spend_trend_30_90d"] = _ratio(3 * spend[30], spend[90])
    out["orders_trend_quarter"] = _ratio(v["orders_90d"] - orders_prev, v["orders_180d"])
    out["spend_trend_quarter"] = _ratio(spend[90] - spend_prev, spend[180])
    return out


def shard(tables: dict[str, pd.DataFrame], n: int) -> Iterator[dict[str, pd.DataFrame]]:
    """Split by customer (every feature here is one customer's own): n disjoint input sets."""
    parts = customer_parts(tables, n)
    for k in range(n):
        yield {t: tables[t][parts[t] == k] for t in ("customers", "orders")}


def _window_streams(s: Streams, orders: pd.DataFrame, index: EntityIndex) -> None:
    """Orders and spend as of each day, in 30/90/180-day windows (customer_activity's rules)."""
    st = order_versions.steps(orders)
    st = st.assign(c=index.codes(st["customer_id"]))
    st = st[st["c"] >= 0]
    c, enter, day = st["c"].to_numpy(), st["enter"].to_numpy(), st["day"].to_numpy()
    live, spend = st["d_live"].to_numpy(), st["d_spend"].to_numpy()
    for w in (30, 90, 180):
        order_versions.window(s, c, enter, day, w, **{f"orders_{w}d": live, f"spend_{w}d": spend})


def _rhythm(
    orders: pd.DataFrame, index: EntityIndex, entity: np.ndarray, day: np.ndarray
) -> dict[str, pd.Series | np.ndarray]:
    """First order, repeat orders and the gaps, as of each (entity, day) grid row."""
    o = order_versions.first_versions(orders)
    o = o[o["status"] != "cancelled"]
    o = pd.DataFrame(
        {
            "c": index.codes(o["customer_id"]),
            "us": duration_us(o["order_ts"]),
            "enter": entry_day(o["order_ts"]),
            "ts": o["order_ts"].array,
        }
    )
    o = o[o["c"] >= 0].sort_values(["c", "us"], kind="stable").reset_index(drop=True)
    c, us = o["c"].to_numpy(), o["us"].to_numpy()
    same = np.zeros(len(c), bool)  # the customer's previous order is the row before
    same[1:] = c[1:] == c[:-1]
    gap = np.zeros(len(us))
    gap[1:] = np.diff(us) / US_PER_DAY
    gap = np.where(same, gap, 0.0)  # days; 0 for a customer's first order
    rank = o.groupby("c", sort=False).cumcount().to_numpy()  # 0 for a customer's first order
    group_start = np.flatnonzero(~same)
    first_row = np.repeat(group_start, np.diff(np.r_[group_start, len(us)]))
    # per customer, in order (a running sum across customers would round by their neighbours)
    sum_sq = pd.Series(gap**2).groupby(c, sort=False).cumsum().to_numpy()
    max_gap = pd.Series(gap).groupby(c, sort=False).cummax().to_numpy()
    # The state after each order; an (entity, day) row reads the last order entered by then.
    state = o.assign(
        rank=rank,
        first_us=us[first_row],
        first_ts=o["ts"].array.take(first_row),
        gap=gap,
        sum_sq=sum_sq,
        max_gap=max_gap,
    )
    state = state.drop_duplicates(["c", "enter"], keep="last").reset_index(drop=True)
    if not len(state):  # nobody here ordered (a shard can be so)
        none = np.full(len(entity), np.nan)
        return {
            "first_order_ts": pd.Series(
                pd.NaT, index=range(len(entity)), dtype="datetime64[us, UTC]"
            ),
            "repeat_orders": np.zeros(len(entity), np.int64),
            **{
                name: none
                for name in ("mean_gap_days", "gap_std_days", "last_gap_days", "max_gap_days")
            },
        }
    pos = as_of(entity, day, state["c"].to_numpy(), state["enter"].to_numpy())
    hit = pos >= 0
    at = np.maximum(pos, 0)
    n_gaps = np.where(hit, state["rank"].to_numpy()[at], 0)
    span = (state["us"].to_numpy()[at] - state["first_us"].to_numpy()[at]) / US_PER_DAY
    mean = np.where(n_gaps >= 1, span / np.maximum(n_gaps, 1), np.nan)
    mean_sq = state["sum_sq"].to_numpy()[at] / np.maximum(n_gaps, 1)
    std = np.where(n_gaps >= 2, np.sqrt(np.maximum(mean_sq - mean**2, 0.0)), np.nan)
    first_ts = pd.Series(state["first_ts"].array.take(at)).where(hit)
    return {
        "first_order_ts": first_ts,
        "repeat_orders": n_gaps,
        "mean_gap_days": mean,
        "gap_std_days": std,
        "last_gap_days": np.where(n_gaps >= 1, state["gap"].to_numpy()[at], np.nan),
        "max_gap_days": np.where(n_gaps >= 1, state["max_gap"].to_numpy()[at], np.nan),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else null (NaN)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(len(num), np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out
