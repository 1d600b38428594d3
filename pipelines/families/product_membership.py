"""product_membership: the collections a product belongs to as of T (contract table
product_collections, a change log read as of T: the latest membership row with `updated_at < T`
per collection says whether the product is in it). From the product's first snapshot on; the
ids are sorted. With collection_stats, what a ranker needs for "shares a collection with the
customer's recent purchases".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.existence import product_first_day
from pipelines.family import Input
from pipelines.specs import LIST_SEP, STRING, Feature, FeatureSource
from pipelines.windows import EntityIndex, Snapshots, day_ts, entry_day

SOURCE = FeatureSource(
    name="product_membership",
    entity="product",
    description="The collections a product belongs to, as of T.",
    tags=(("domain", "product"), ("family", "membership")),
    features=(
        Feature(
            "collection_ids",
            "string_list",
            "ids of the collections the product is in at T, sorted; empty when none",
            None,
            (),
        ),
        Feature(
            "collection_count", "int64", "number of collections the product is in at T", None, 0
        ),
    ),
)

INPUTS = (
    Input("product_collections", ("product_id", "collection_id", "updated_at", "in_collection")),
    Input("products", ("product_id", "created_at", "updated_at")),
)
# The Spark engine's split (pipelines/spark/features.py): every row is one product's own.
SHARD_BY = {"products": "product_id", "product_collections": "product_id"}


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    products = tables["products"]
    index = EntityIndex(products["product_id"])
    first = product_first_day(products, index)
    log = tables["product_collections"]
    log = log.assign(p=index.codes(log["product_id"]), day=entry_day(log["updated_at"]))
    log = log[(log["p"] >= 0) & log["updated_at"].notna().to_numpy()]
    log = log.sort_values(["p", "day", "updated_at"], kind="stable")
    # Each product's state on each day its memberships change, from its first snapshot on (and on
    # the run's first day, so an incremental run starts from the right state).
    start, end = snapshots.start_day, snapshots.end_day
    exists = np.flatnonzero(first <= end)
    rows_p: list[int] = []
    rows_d: list[int] = []
    rows_v: list[str] = []
    pos = log["p"].to_numpy()
    day = log["day"].to_numpy()
    coll = log["collection_id"].astype(str).to_numpy(object)
    inside = log["in_collection"].fillna(True).astype(bool).to_numpy()
    bounds = dict(zip(*np.unique(pos, return_index=True), strict=True))
    counts = dict(zip(*np.unique(pos, return_counts=True), strict=True))
    for p in exists:
        lo = max(int(first[p]), start)
        days = [lo]
        a = bounds.get(p)
        if a is not None:
            b = a + counts[p]
            days += sorted({int(d) for d in day[a:b] if lo < d <= end})
        for d in days:
            state: dict[str, bool] = {}
            if a is not None:
                for k in range(a, b):  # rows sorted by day: the last row on or before d wins
                    if day[k] > d:
                        break
                    state[coll[k]] = inside[k]
            members = sorted(c for c, isin in state.items() if isin)
            rows_p.append(int(p))
            rows_d.append(d)
            rows_v.append(LIST_SEP.join(members))
    out = pd.DataFrame(
        {
            "product_id": index.lookup(np.asarray(rows_p, np.int64)),
            "event_timestamp": day_ts(np.asarray(rows_d, np.int64)),
        }
    )
    out["collection_ids"] = pd.Series(rows_v, dtype=STRING)
    out["collection_count"] = [len(v.split(LIST_SEP)) if v else 0 for v in rows_v]
    return out
