"""customer_collections recomputed naively (plain loops over the raw rows) on the hand-made oracle
shop, whose memberships join, leave and join before the product exists and whose orders are
cancelled, refunded and re-sent naming another customer; incremental == historical is
tests/pipelines/test_pipelines_incremental.py (it covers every source)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from pipelines.contract import PANDAS_DTYPES, TABLES
from pipelines.families import customer_collections
from pipelines.run import compute_rows
from pipelines.specs import LIST_SEP
from pipelines.windows import Snapshots, to_day
from tests.support import oracle, oracle_shop

UTC = "UTC"
START, END = "2024-10-01", "2025-03-05"


def tables(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for spec in customer_collections.INPUTS:
        kinds = {c.name: c.kind for c in TABLES[spec.table].clean_columns()}
        df = frames[spec.table].reindex(columns=list(spec.columns))
        out[spec.table] = df.astype({c: PANDAS_DTYPES[kinds[c]] for c in spec.columns})
    return out


def collections_at(raw: oracle.RawShop, product: str, T: pd.Timestamp) -> set[str]:
    """The product's collections at T: per collection, its latest membership row before T."""
    latest: dict[str, tuple] = {}
    for r in raw.of("product_collections", "product_id", product):
        if r["updated_at"] < T and (
            r["collection_id"] not in latest or r["updated_at"] > latest[r["collection_id"]][0]
        ):
            latest[r["collection_id"]] = (r["updated_at"], r["in_collection"] is not False)
    return {c for c, (_, isin) in latest.items() if isin}


def naive(raw: oracle.RawShop, orders: list[dict], T: pd.Timestamp) -> list[str]:
    """The collections at T of the products on the customer's `orders` (their first versions)
    placed in [T - 90 d, T), not cancelled when placed."""
    held: set[str] = set()
    for order in orders:
        if order["status"] != "cancelled" and T - timedelta(days=90) <= order["order_ts"] < T:
            for line in raw.of("order_items", "order_id", order["order_id"]):
                held |= collections_at(raw, line["product_id"], T)
    return sorted(held)


def exists(raw: oracle.RawShop, customer: str, T: pd.Timestamp) -> bool:
    """The contract's rule: the profile in force at T exists and says signup_ts < T."""
    rows = [
        r
        for r in raw.of("customers", "customer_id", customer)
        if (r["updated_at"] or r["signup_ts"]) < T
    ]
    return (
        bool(rows) and max(rows, key=lambda r: r["updated_at"] or r["signup_ts"])["signup_ts"] < T
    )


def test_customer_collections_match_a_naive_recomputation():
    frames = oracle_shop.build(seed=4)
    raw = oracle.RawShop(**frames)
    snaps = Snapshots(to_day(pd.Timestamp(START, tz=UTC)), to_day(pd.Timestamp(END, tz=UTC)), True)
    served = oracle.by_entity(
        compute_rows(customer_collections, tables(frames), snaps), "customer_id"
    )
    first = raw.first_versions()  # an order is its first version's customer's
    checked = nonempty = 0
    for customer in raw.customers["customer_id"].unique():
        orders = first[first["customer_id"] == customer].to_dict("records")
        for T in pd.date_range(START, END, tz=UTC):  # every day: a window's edges are days
            actual = oracle.lookup(served, customer, T)
            if not exists(raw, customer, T):
                assert actual is None, (customer, T)
                continue
            expected = naive(raw, orders, T)
            ids = actual["collection_ids_90d"]  # packed (specs.LIST_SEP) as the family writes it
            assert (ids.split(LIST_SEP) if ids else []) == expected, (customer, T)
            assert actual["collection_count_90d"] == len(expected)
            checked += 1
            nonempty += bool(expected)
    assert checked > 1000 and 0 < nonempty < checked  # both kinds of answer were checked


def test_an_incremental_run_gives_the_historical_rows_from_its_start():
    """An incremental run reads 90 days of order lines (INPUTS' lookback) and all memberships."""
    frames = oracle_shop.build(seed=4)
    t = tables(frames)
    whole = Snapshots(to_day(pd.Timestamp(START, tz=UTC)), to_day(pd.Timestamp(END, tz=UTC)), True)
    historical = compute_rows(customer_collections, t, whole)
    cut = pd.Timestamp("2025-01-20", tz=UTC)
    later = Snapshots(to_day(cut), whole.end_day, False)
    lookback = later.read_from(90)
    t_inc = dict(t, order_items=t["order_items"][t["order_items"]["order_ts"] >= lookback])
    before = historical[historical["event_timestamp"] < cut]
    prior = before.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    incremental = compute_rows(customer_collections, t_inc, later, prior.reset_index(drop=True))
    expected = historical[historical["event_timestamp"] >= cut].reset_index(drop=True)
    cols = ["customer_id", "event_timestamp", "collection_ids_90d", "collection_count_90d"]
    pd.testing.assert_frame_equal(
        incremental[cols].sort_values(cols[:2]).reset_index(drop=True),
        expected[cols].sort_values(cols[:2]).reset_index(drop=True),
    )
