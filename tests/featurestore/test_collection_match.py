"""collection_match (the on-demand view of ranking_model_v4): hand cases, then from scratch on the
hand-made oracle shop: the view's answer over the stored rows of product_membership and
customer_collections as of T equals one worked out from the raw rows alone. Offline == online
through Feast is tests/featurestore/test_feast_ci_flow.py (ranking_model_v4)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.odfv import COLLECTION_OUTPUTS, collection_match
from pipelines.families import customer_collections, product_membership
from pipelines.run import compute_rows
from pipelines.specs import LIST_SEP
from pipelines.windows import Snapshots, to_day
from tests.pipelines.test_customer_collections import (
    END,
    START,
    UTC,
    collections_at,
    exists,
    naive,
    tables,
)
from tests.support import oracle, oracle_shop


def test_hand_cases():
    out = collection_match(
        {
            "collection_ids": [["k1", "k2"], ["k3"], [], None, ["k1"], ["k1", "k2", "k3"]],
            "collection_ids_90d": [["k2"], ["k1", "k2"], ["k1"], ["k1"], None, ["k1", "k3"]],
        }
    )
    assert out["shares_collection"] == [1, 0, 0, 0, 0, 1]
    assert out["shared_collections"] == [1, 0, 0, 0, 0, 2]
    share = out["shared_collection_share"]
    assert share[0] == 0.5 and share[1] == 0.0 and math.isnan(share[2]) and math.isnan(share[3])
    assert share[4] == 0.0 and share[5] == 2 / 3
    # the offline store's pyarrow columns give the same answer
    arrow = collection_match(
        {
            "collection_ids": pa.array([["k1", "k2"], None], pa.list_(pa.string())),
            "collection_ids_90d": pa.array([["k2"], ["k2"]], pa.list_(pa.string())),
        }
    )
    assert {k: list(v) for k, v in arrow.items()}["shares_collection"] == [1, 0]
    assert set(out) == set(COLLECTION_OUTPUTS)


def _ids(row: dict | None) -> list[str] | None:
    if row is None:
        return None
    packed = row.get("collection_ids", row.get("collection_ids_90d"))
    return packed.split(LIST_SEP) if packed else []


def test_matches_a_recomputation_from_the_raw_rows():
    frames = oracle_shop.build(seed=4)
    raw = oracle.RawShop(**frames)
    snaps = Snapshots(to_day(pd.Timestamp(START, tz=UTC)), to_day(pd.Timestamp(END, tz=UTC)), True)
    members = {
        spec.table: frames[spec.table].reindex(columns=list(spec.columns))
        for spec in product_membership.INPUTS
    }
    product_rows = oracle.by_entity(compute_rows(product_membership, members, snaps), "product_id")
    customer_rows = oracle.by_entity(
        compute_rows(customer_collections, tables(frames), snaps), "customer_id"
    )
    first = raw.first_versions()
    rng = np.random.default_rng(8)
    customers = raw.customers["customer_id"].unique()
    products = raw.products["product_id"].unique()
    shared = checked = 0
    for T in rng.choice(pd.date_range(START, END, tz=UTC), 40):
        T = pd.Timestamp(T)
        for c in rng.choice(customers, 4):
            orders = first[first["customer_id"] == c].to_dict("records")
            theirs = set(naive(raw, orders, T)) if exists(raw, c, T) else set()
            for p in rng.choice(products, 5):
                product = oracle.lookup(product_rows, p, T)
                mine = collections_at(raw, p, T) if product is not None else set()
                got = collection_match(
                    {
                        "collection_ids": [_ids(product)],
                        "collection_ids_90d": [_ids(oracle.lookup(customer_rows, c, T))],
                    }
                )
                k = len(mine & theirs)
                assert got["shares_collection"] == [int(k > 0)], (c, p, T)
                assert got["shared_collections"] == [k], (c, p, T)
                want = k / len(mine) if mine else math.nan
                assert oracle.same(want, got["shared_collection_share"][0], "share"), (c, p, T)
                checked += 1
                shared += k > 0
    assert checked == 800 and 50 < shared < checked - 50
