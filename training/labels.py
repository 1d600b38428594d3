"""Churn labels and the entity frame they live on: pure functions of the clean orders and customers.

Labels look forward, features look back. The definition is the point-in-time contract's: at a cutoff
t, a customer who exists and has at least one non-cancelled order before t is labelled churned (1)
when they place no non-cancelled order in `[t, t + horizon)`. A cutoff whose horizon reaches past
the end of the data is not labelled: its future is not fully observed yet.
"""

from __future__ import annotations

import pandas as pd

ENTITY_KEY = "customer_id"
TIMESTAMP = "event_timestamp"
LABEL = "churned"


def data_end(orders: pd.DataFrame) -> pd.Timestamp:
    """Exclusive end of the observed data: midnight after the last order's day.

    The last day is taken as complete; a label window `[t, t + horizon)` is fully observed when
    `t + horizon <= data_end`.
    """
    if orders.empty:
        raise ValueError("no orders: nothing to label")
    return orders["order_ts"].max().floor("D") + pd.Timedelta(days=1)


MIN_CUTOFFS = 3  # train, validation and test each need one cutoff of their own (split.py)


class NotEnoughHistory(ValueError):
    """The orders span too little time for the horizon; the message says what span it needs."""


def required_span(
    orders: pd.DataFrame, horizon: pd.Timedelta, freq: str = "MS", n: int = MIN_CUTOFFS
) -> str:
    """Why a shop has too few labellable cutoffs, and what span or horizon would do."""
    live = _live_orders(orders)
    if live.empty:
        return "no completed orders: nothing to label"
    first, end = live["order_ts"].min().floor("D"), data_end(live)
    grid = pd.date_range(first + pd.Timedelta(days=1), periods=n, freq=freq)
    needed_end = grid[-1] + horizon
    have, need = (end - first).days, (needed_end - first).days
    fits = (end - grid[-1]).days
    advice = (
        f"use --horizon-days {fits} or less, or" if fits > 0 else "use a shorter --cutoff-freq, or"
    )
    return (
        f"the orders run {first:%Y-%m-%d}..{end - pd.Timedelta(days=1):%Y-%m-%d} ({have} days); "
        f"{n} cutoffs ({freq}, the last {grid[-1]:%Y-%m-%d}) with a {horizon.days}-day horizon "
        f"need orders until {needed_end:%Y-%m-%d}, a span of {need} days: {advice} "
        f"ingest {need - have} more days of history"
    )


def cutoffs(orders: pd.DataFrame, horizon: pd.Timedelta, freq: str = "MS") -> list[pd.Timestamp]:
    """Calendar cutoffs (month starts by default) that have history before them and a fully
    observed horizon after them."""
    live = _live_orders(orders)
    if live.empty:
        return []
    first, end = live["order_ts"].min(), data_end(live)
    # Start the day after the first order, so every cutoff has some history before it.
    return list(pd.date_range(first.floor("D") + pd.Timedelta(days=1), end - horizon, freq=freq))


def churn_labels(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    at: list[pd.Timestamp],
    horizon: pd.Timedelta,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """One row per (customer, cutoff) that can be labelled: `customer_id, event_timestamp, churned`.

    `orders` needs `customer_id, order_ts, status`; `customers` needs `customer_id, signup_ts` (a
    change log is fine: the first signup counts). Cutoffs with `t + horizon > end` are skipped.
    """
    live = _live_orders(orders)
    signup = customers.groupby(ENTITY_KEY)["signup_ts"].min()
    first_order = live.groupby(ENTITY_KEY)["order_ts"].min()
    frames = []
    for t in sorted(at):
        if t + horizon > end:
            continue
        active = first_order.index[first_order < t]
        exists = signup.reindex(active)
        active = active[(exists < t).to_numpy()]
        window = live[(live["order_ts"] >= t) & (live["order_ts"] < t + horizon)]
        came_back = pd.Index(window[ENTITY_KEY].unique())
        frames.append(
            pd.DataFrame(
                {
                    ENTITY_KEY: active.astype("string"),
                    TIMESTAMP: t,
                    LABEL: (~active.isin(came_back)).astype("int8"),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            {
                ENTITY_KEY: pd.Series(dtype="string"),
                TIMESTAMP: pd.Series(dtype="datetime64[us, UTC]"),
                LABEL: pd.Series(dtype="int8"),
            }
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values([TIMESTAMP, ENTITY_KEY], ignore_index=True)


def _live_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders that count: not cancelled, placed by a known customer (guests cannot churn)."""
    keep = (orders["status"] != "cancelled") & orders[ENTITY_KEY].notna()
    return orders.loc[keep.fillna(False).astype(bool), [ENTITY_KEY, "order_ts"]]


def labels_at(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    rows: pd.DataFrame,
    horizon: pd.Timedelta,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """The label of each (customer_id, event_timestamp) row at its own instant, by the same
    definition as `churn_labels` (for predictions served at any time, not at cutoffs).

    Returns `rows` with `churned`, keeping only rows that can be labelled: the customer existed
    and had a non-cancelled order before t, and `t + horizon <= end` (the future is observed).
    """
    ns = "datetime64[ns, UTC]"
    live = _live_orders(orders)
    live = live.assign(
        **{ENTITY_KEY: live[ENTITY_KEY].astype(str), "order_ts": live["order_ts"].astype(ns)}
    )
    customers = customers.assign(**{ENTITY_KEY: customers[ENTITY_KEY].astype(str)})
    r = rows.reset_index(drop=True).copy()
    r[ENTITY_KEY] = r[ENTITY_KEY].astype(str)
    r[TIMESTAMP] = pd.to_datetime(r[TIMESTAMP], utc=True).astype(ns)
    r["_row"] = range(len(r))
    t = r[TIMESTAMP]
    first_order = live.groupby(ENTITY_KEY)["order_ts"].min()
    signup = customers.groupby(ENTITY_KEY)["signup_ts"].min()
    ok = (
        (r[ENTITY_KEY].map(first_order) < t).fillna(False).astype(bool)
        & (r[ENTITY_KEY].map(signup) < t).fillna(False).astype(bool)
        & (t + horizon <= end)
    )
    r = r[ok.to_numpy()]
    if r.empty:
        return r.drop(columns="_row").assign(**{LABEL: pd.Series(dtype="int8")})
    # the customer's first live order at or after t: back within the horizon -> not churned
    nxt = pd.merge_asof(
        r.sort_values(TIMESTAMP),
        live.rename(columns={"order_ts": "_next"})
        .assign(_next_key=lambda f: f["_next"])
        .sort_values("_next_key"),
        left_on=TIMESTAMP,
        right_on="_next_key",
        by=ENTITY_KEY,
        direction="forward",
        allow_exact_matches=True,
    )
    came_back = nxt["_next"].notna() & (nxt["_next"] < nxt[TIMESTAMP] + horizon)
    nxt[LABEL] = (~came_back).astype("int8")
    out = nxt.sort_values("_row").drop(columns=["_row", "_next", "_next_key"])
    return out.reset_index(drop=True)
