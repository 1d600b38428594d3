"""Orders as a change log (contract v1.1): the order at T is its newest version as of T.

An order may come again with a newer `updated_at` (refunded, cancelled, edited). Read at a snapshot
day d (rows stamped before d's midnight, pipelines.windows.entry_day):

- the order's first version (smallest `updated_at`) stands for it from its `order_ts` on; a later
  version from its `updated_at` on (never before `order_ts`);
- the order is live (counts) when the version in force is not cancelled; its total and discount
  are that version's;
- its refund is the `refunded_amount` of the newest version whose refund is known: the version is in
  force and its `refund_ts` has passed (a version without `refund_ts` knows its refund as soon as it
  is in force), else 0. So no snapshot sees a refund before it happened, and an older version that
  arrives late never hides a newer one: what counts is `updated_at`, not arrival.

`order_ts` and `customer_id` of an order are those of its first version. A table with one row per
order (contract v1) is a change log whose orders have a single version: everything here then
reduces to the v1 rules (a cancelled order never counts, a refund counts from its `refund_ts`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.windows import Streams, entry_day, fixed

# Per order and change day, the values of the order in force (the step function's values).
STEP_VALUES = ("live", "spend", "refunded", "discounted")


def _sorted(orders: pd.DataFrame) -> pd.DataFrame:
    o = orders
    if "updated_at" not in o:
        o = o.assign(updated_at=o["order_ts"])
    else:
        o = o.assign(updated_at=o["updated_at"].fillna(o["order_ts"]))
    return o.sort_values(["order_id", "updated_at"], kind="stable").reset_index(drop=True)


def single_versions(orders: pd.DataFrame) -> bool:
    return not orders["order_id"].duplicated().any()


def first_versions(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per order: its first version (the order as placed)."""
    if single_versions(orders):
        return orders
    return _sorted(orders).drop_duplicates("order_id", keep="first").reset_index(drop=True)


def latest_versions(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per order: its newest version (what finally happened), with the first version's
    `order_ts` and `customer_id`."""
    if single_versions(orders):
        return orders
    o = _sorted(orders)
    first = o.drop_duplicates("order_id", keep="first").set_index("order_id")
    last = o.drop_duplicates("order_id", keep="last").reset_index(drop=True)
    for col in ("order_ts", "customer_id"):
        if col in last:
            last[col] = last["order_id"].map(first[col]).astype(last[col].dtype)
    return last


def steps(orders: pd.DataFrame) -> pd.DataFrame:
    """Per order and day on which it changes: `order_id`, `customer_id`, `order_ts`, `enter` (the
    first snapshot that sees the order), `day`, and the values in force from `day` on (`live`,
    `spend` in fixed-point micro-units: total minus known refund while live, else 0; `refunded`
    and `discounted` as 0/1 while live) with their changes `d_<value>` since the previous step.

    Orders need `order_id, customer_id, order_ts, status, total_amount, discount_amount,
    refunded_amount, refund_ts` and, for versions, `updated_at`.
    """
    o = _sorted(orders)
    n = len(o)
    oid = pd.factorize(o["order_id"])[0] if n else np.zeros(0, np.int64)
    k = np.zeros(n, np.int64)
    if n:
        k = o.groupby(oid, sort=False).cumcount().to_numpy()
    first = np.flatnonzero(k == 0)
    head = np.repeat(first, np.diff(np.append(first, n)))  # row of each order's first version
    enter = entry_day(o["order_ts"]).astype(np.int64)[head]
    vday = np.where(k == 0, enter, np.maximum(entry_day(o["updated_at"]).astype(np.int64), enter))
    has_rts = o["refund_ts"].notna().to_numpy()
    rts_day = np.where(has_rts, entry_day(o["refund_ts"].fillna(o["order_ts"])), 0)
    rday = np.where(has_rts, np.maximum(rts_day, vday), vday)

    # Change points: each version takes force (kind 0), each version's refund becomes known (1).
    ev = pd.DataFrame(
        {
            "o": np.concatenate([oid, oid]),
            "day": np.concatenate([vday, rday]),
            "row": np.concatenate([np.arange(n), np.arange(n)]),
            "kind": np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8)]),
        }
    ).sort_values(["o", "day", "kind", "row"], kind="stable")
    row = ev["row"].to_numpy()
    vrow = np.where(ev["kind"].to_numpy() == 0, row, -1)
    rrow = np.where(ev["kind"].to_numpy() == 1, row, -1)
    g = ev["o"].to_numpy()
    ev = ev.assign(v=vrow, r=rrow)
    ev["v"] = ev.groupby(g, sort=False)["v"].cummax()  # newest version in force
    ev["r"] = ev.groupby(g, sort=False)["r"].cummax()  # newest version whose refund is known
    ev = ev.drop_duplicates(["o", "day"], keep="last")
    v, r = ev["v"].to_numpy(), ev["r"].to_numpy()

    live = (o["status"].to_numpy(dtype=object)[v] != "cancelled").astype(np.int64)
    total = fixed(o["total_amount"].fillna(0.0))[v]
    refund_all = fixed(o["refunded_amount"].fillna(0.0))
    refund = np.where(r >= 0, refund_all[np.maximum(r, 0)], 0)
    discount = (o["discount_amount"].fillna(0.0).to_numpy() > 0).astype(np.int64)[v]
    first_row = head[v]
    out = pd.DataFrame(
        {
            "order_id": o["order_id"].to_numpy()[first_row],
            "customer_id": o["customer_id"].array[first_row],
            "order_ts": o["order_ts"].array[first_row],
            "enter": enter[v],
            "day": ev["day"].to_numpy(),
            "live": live,
            "spend": live * (total - refund),
            "refunded": live * (refund > 0),
            "discounted": live * discount,
        }
    )
    o_of = ev["o"].to_numpy()
    starts = np.r_[True, o_of[1:] != o_of[:-1]] if len(o_of) else np.zeros(0, bool)
    for name in STEP_VALUES:
        vals = out[name].to_numpy()
        prev = np.r_[0, vals[:-1]] if len(vals) else vals
        out[f"d_{name}"] = np.where(starts, vals, vals - prev)
    return out


def window(
    s: Streams,
    entity: np.ndarray,
    enter: np.ndarray,
    day: np.ndarray,
    days: int | None,
    **deltas: np.ndarray,
) -> None:
    """Changes of an order's values, visible from `day` while the order is in its window
    `[enter, enter + days)` (a lifetime for `days=None`); a change after the window is dropped."""
    if days is None:
        s.window(entity, day, None, **deltas)
        return
    hit = day < enter + days
    s.window(entity[hit], day[hit], None, **{k: v[hit] for k, v in deltas.items()})
    s.add(entity[hit], enter[hit] + days, **{k: -v[hit] for k, v in deltas.items()})


NEVER = np.iinfo(np.int64).max // 4  # "no next step": in force for ever


def in_force(orders: pd.DataFrame, refunds: bool = True) -> pd.DataFrame:
    """The orders as every snapshot reads them: one row per order and step, the order's columns in
    force on the snapshot days `[_from, _until)` (`_until` = NEVER for the last step).

    A step's columns are those of the version in force (its newest version as of the day), with
    `order_ts` and `customer_id` of the first version. With `refunds`, `refunded_amount` and
    `refund_ts` are those of the newest version whose refund is known (0 and null before any is),
    so no snapshot sees a refund before its `refund_ts`; a version's refund becoming known is then a
    step of its own. Without `refunds` (nothing reads those columns) only versions make steps.
    A table of single versions without refunds to wait for is one step per order from its
    `order_ts` on. This is the row model the declared aggregations read (pipelines/aggregate.py).
    """
    if not refunds and single_versions(orders):  # the order as sent, from its order_ts on
        out = orders.reset_index(drop=True)
        if "updated_at" in out:
            out = out.assign(updated_at=out["updated_at"].fillna(out["order_ts"]))
        return out.assign(_from=entry_day(out["order_ts"]).astype(np.int64), _until=NEVER)
    o = _sorted(orders)
    n = len(o)
    oid = pd.factorize(o["order_id"])[0] if n else np.zeros(0, np.int64)
    k = o.groupby(oid, sort=False).cumcount().to_numpy() if n else np.zeros(0, np.int64)
    first = np.flatnonzero(k == 0)
    head = np.repeat(first, np.diff(np.append(first, n)))
    enter = entry_day(o["order_ts"]).astype(np.int64)[head] if n else np.zeros(0, np.int64)
    vday = enter.copy()
    if n:
        later = entry_day(o["updated_at"]).astype(np.int64)
        vday = np.where(k == 0, enter, np.maximum(later, enter))
    kinds = [np.zeros(n, np.int8)]
    days = [vday]
    if refunds:
        has_rts = o["refund_ts"].notna().to_numpy()
        rts_day = np.where(has_rts, entry_day(o["refund_ts"].fillna(o["order_ts"])), 0)
        kinds.append(np.ones(n, np.int8))
        days.append(np.where(has_rts, np.maximum(rts_day, vday), vday))
    m = len(kinds)
    ev = pd.DataFrame(
        {
            "o": np.tile(oid, m),
            "day": np.concatenate(days),
            "row": np.tile(np.arange(n), m),
            "kind": np.concatenate(kinds),
        }
    ).sort_values(["o", "day", "kind", "row"], kind="stable")
    kind = ev["kind"].to_numpy()
    ev = ev.assign(
        v=np.where(kind == 0, ev["row"].to_numpy(), -1),
        r=np.where(kind == 1, ev["row"].to_numpy(), -1),
    )
    g = ev["o"].to_numpy()
    ev["v"] = ev.groupby(g, sort=False)["v"].cummax()  # newest version in force
    if refunds:
        ev["r"] = ev.groupby(g, sort=False)["r"].cummax()  # newest version whose refund is known
    ev = ev.drop_duplicates(["o", "day"], keep="last")
    v = ev["v"].to_numpy()
    out = o.iloc[v].reset_index(drop=True)
    for col in ("order_ts", "customer_id"):
        if col in out:
            out[col] = o[col].iloc[head[v]].reset_index(drop=True)
    if refunds:
        r = ev["r"].to_numpy()
        known = r >= 0
        at = np.maximum(r, 0)
        if "refunded_amount" in out:
            amount = o["refunded_amount"].iloc[at].reset_index(drop=True)
            out["refunded_amount"] = amount.where(known, 0.0)
        if "refund_ts" in out:
            out["refund_ts"] = o["refund_ts"].iloc[at].reset_index(drop=True).where(known)
    day = ev["day"].to_numpy()
    o_of = ev["o"].to_numpy()
    last = np.r_[o_of[1:] != o_of[:-1], True] if len(o_of) else np.zeros(0, bool)
    out["_from"] = day
    out["_until"] = np.where(last, NEVER, np.r_[day[1:], NEVER][: len(day)])
    return out
