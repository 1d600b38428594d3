"""customer_collections: the collections of a customer's recent purchases, as of T.

The customer's side of the ranker's "the candidate shares a collection with the customer's recent
purchases" (the on-demand view `collection_match` compares it with the candidate's
product_membership). At snapshot T: the products on the customer's orders placed in the 90 days
before T (entry days T-89 .. T; orders not cancelled when placed, as customer_activity's 90-day
item features count them), each with its collections as of T (contract table
product_collections, a change log: the latest membership row with `updated_at < T` per (product,
collection) says whether it is in; the same reading as product_membership). Changes when a line
enters or leaves the 90 days and when one of those products joins or leaves a collection.

A 90-day window rather than `recent_product_ids` (the last 10 products, lifetime): a window needs
90 days of order lines, not all history, so an incremental day is cheap and equal to a historical
run by construction (order lines are read from 90 days before the run; memberships whole).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pandas as pd

from pipelines import order_versions
from pipelines.existence import customer_first_day
from pipelines.family import Input
from pipelines.specs import LIST_SEP, STRING, Feature, FeatureSource
from pipelines.windows import EntityIndex, Snapshots, day_ts, entry_day

WINDOW = 90

SOURCE = FeatureSource(
    name="customer_collections",
    entity="customer",
    description="The collections of the products a customer bought in the last 90 days, as of T.",
    tags=(("domain", "customer"), ("family", "membership")),
    features=(
        Feature(
            "collection_ids_90d",
            "string_list",
            "ids of the collections that at T hold a product of the customer's orders placed in "
            "the 90 days before T (not cancelled when placed), sorted; empty when none",
            "90d",
            (),
        ),
        Feature(
            "collection_count_90d",
            "int64",
            "number of collection_ids_90d",
            "90d",
            0,
        ),
    ),
)

INPUTS = (
    Input("customers", ("customer_id", "signup_ts", "updated_at")),
    Input("orders", ("order_id", "customer_id", "order_ts", "status", "updated_at")),
    Input("order_items", ("order_id", "product_id", "order_ts"), lookback_days=WINDOW),
    Input("product_collections", ("product_id", "collection_id", "updated_at", "in_collection")),
)
# The Spark engine's split (pipelines/spark/features.py): every row is one customer's own, from
# their orders' lines and the memberships (read whole by every shard, a small change log).
SHARD_BY = {
    "customers": "customer_id",
    "orders": "customer_id",
    "order_items": ("orders", "order_id"),
}


def membership_states(log: pd.DataFrame) -> dict[str, tuple[list[int], list[frozenset[str]]]]:
    """Per product: the snapshot days its collections change, and its collections from each on.

    A row stamped `updated_at` counts from its entry day; on one day the rows apply in time order
    (the last row of a (product, collection) that day wins), as product_membership reads them."""
    log = log[log["updated_at"].notna().to_numpy() & log["product_id"].notna().to_numpy()]
    log = log.assign(day=entry_day(log["updated_at"]))
    log = log.sort_values(["product_id", "day", "updated_at"], kind="stable")
    states: dict[str, tuple[list[int], list[frozenset[str]]]] = {}
    pids = log["product_id"].astype(str).to_numpy(object)
    days = log["day"].to_numpy()
    colls = log["collection_id"].astype(str).to_numpy(object)
    inside = log["in_collection"].fillna(True).astype(bool).to_numpy()
    current: dict[str, bool] = {}
    for k in range(len(log)):
        pid = pids[k]
        if k == 0 or pid != pids[k - 1]:
            current = {}
            states[pid] = ([], [])
        current[colls[k]] = bool(inside[k])
        change_days, sets = states[pid]
        members = frozenset(c for c, isin in current.items() if isin)
        if change_days and change_days[-1] == days[k]:
            sets[-1] = members  # a later row the same day
        else:
            change_days.append(int(days[k]))
            sets.append(members)
    return states


def _members(states: dict, pid: str, day: int) -> frozenset[str]:
    state = states.get(pid)
    if state is None:
        return frozenset()
    i = bisect_right(state[0], day) - 1
    return state[1][i] if i >= 0 else frozenset()


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    index = EntityIndex(tables["customers"]["customer_id"])
    first = customer_first_day(tables["customers"], index)
    start, end = snapshots.start_day, snapshots.end_day
    orders = order_versions.first_versions(tables["orders"])
    orders = orders[orders["status"] != "cancelled"]
    items = tables["order_items"]
    if len(items):  # only orders the lines read can match (an incremental run reads 90 days)
        orders = orders[orders["order_ts"] >= items["order_ts"].min()]
    orders = orders.assign(c=index.codes(orders["customer_id"]))
    it = items.merge(orders.loc[orders["c"] >= 0, ["order_id", "c"]], on="order_id", how="inner")
    it = it.assign(enter=entry_day(it["order_ts"]))
    it = it[(it["enter"] + WINDOW > start) & (it["enter"] <= end)]
    it = it.sort_values(["c", "enter"], kind="stable")
    states = membership_states(tables["product_collections"])

    exists = np.flatnonzero(first <= end)
    from_day = np.maximum(first, start)
    rows_c: list[int] = [int(c) for c in exists]  # every customer's first row in the run: empty,
    rows_d: list[int] = [int(from_day[c]) for c in exists]  # overwritten by a later one that day
    rows_v: list[str] = [""] * len(exists)
    c_arr = it["c"].to_numpy()
    e_arr = it["enter"].to_numpy()
    p_arr = it["product_id"].astype(str).to_numpy(object)
    bounds = np.flatnonzero(np.r_[True, c_arr[1:] != c_arr[:-1], True]) if len(it) else [0]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        cust = int(c_arr[a])
        lo = int(from_day[cust])
        if lo > end:
            continue
        lines = list(zip(e_arr[a:b].tolist(), p_arr[a:b], strict=True))
        days = {lo}
        for e, pid in lines:
            days.add(e)
            days.add(e + WINDOW)
            state = states.get(pid)
            if state is not None:
                days.update(x for x in state[0] if e < x < e + WINDOW)
        for d in sorted(x for x in days if lo <= x <= end):
            held: set[str] = set()
            for e, pid in lines:
                if e <= d < e + WINDOW:
                    held |= _members(states, pid, d)
            rows_c.append(cust)
            rows_d.append(d)
            rows_v.append(LIST_SEP.join(sorted(held)))
    out = pd.DataFrame(
        {
            "customer_id": index.lookup(np.asarray(rows_c, np.int64)),
            "event_timestamp": day_ts(np.asarray(rows_d, np.int64)),
            "collection_ids_90d": pd.Series(rows_v, dtype=STRING),
        }
    )
    out["collection_count_90d"] = [len(v.split(LIST_SEP)) if v else 0 for v in rows_v]
    # one row per (customer, day): the computed one wins over the empty first row
    out = out.iloc[np.lexsort((np.arange(len(out)), rows_d, rows_c))]
    out = out.drop_duplicates(["customer_id", "event_timestamp"], keep="last")
    return out.reset_index(drop=True)
