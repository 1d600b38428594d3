"""Orders as a change log (contract v1.1): an order sent again with a newer `updated_at` is a new
version, read as of T; values are worked out by hand.

Customer c1 (signed up 1 February 2025) orders o1 on 1 March 10:00 for 100.00. A later batch
brings its refund of 30.00 on 5 March 15:00; another its cancellation on 20 March. Spend over 30
days is 100 in the snapshots of 2 to 5 March, 70 from 6 March, and 0 from 21 March on (a
cancelled order no longer counts).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import order_versions
from pipelines import run as pipeline_run
from pipelines.ingest import ingest, parse_now
from pipelines.storage import read_clean
from tests.support import oracle

NOW = parse_now("2025-06-01T00:00:00Z")
CUSTOMERS = [{"customer_id": "c1", "signup_ts": "2025-02-01T00:00:00Z"}]
PRODUCTS = [
    {"product_id": "p1", "name": "one", "price": "10", "created_at": "2025-01-01T00:00:00Z"}
]
PLACED = {
    "order_id": "o1",
    "customer_id": "c1",
    "order_ts": "2025-03-01T10:00:00Z",
    "status": "completed",
    "total_amount": "100",
}
REFUNDED = {
    **PLACED,
    "updated_at": "2025-03-05T15:00:00Z",
    "status": "partially_refunded",
    "refunded_amount": "30",
    "refund_ts": "2025-03-05T15:00:00Z",
}
CANCELLED = {**REFUNDED, "updated_at": "2025-03-20T08:00:00Z", "status": "cancelled"}
ITEMS = [{"order_id": "o1", "product_id": "p1", "quantity": "10", "unit_price": "10"}]
SPEND = {  # snapshot day -> spend_30d of c1, by hand
    "2025-03-02": 100.0,
    "2025-03-05": 100.0,  # the refund is on the 5th at 15:00: not before the 6th
    "2025-03-06": 70.0,
    "2025-03-20": 70.0,
    "2025-03-21": 0.0,  # cancelled on the 20th
}


def _write(raw: Path, **tables: list[dict]) -> Path:
    raw.mkdir(parents=True)
    for name, rows in tables.items():
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with (raw / f"{name}.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, cols)
            w.writeheader()
            w.writerows(rows)
    return raw


def _spend(data: Path) -> dict[str, float]:
    pipeline_run.run(data, mode="historical", only=["customer_activity"], echo=False)
    rows = oracle.by_entity(oracle.read_source(data, "customer_activity"), "customer_id")
    return {d: oracle.lookup(rows, "c1", pd.Timestamp(d, tz="UTC"))["spend_30d"] for d in SPEND}


def _first(root: Path) -> Path:
    data = root / "data"
    raw = _write(
        root / "b1", customers=CUSTOMERS, products=PRODUCTS, orders=[PLACED], order_items=ITEMS
    )
    assert ingest(raw, data, NOW) is not None
    return data


def test_later_versions_change_spend_only_from_their_day(tmp_path):
    data = _first(tmp_path)
    before = _spend(data)
    assert before == {d: 100.0 for d in SPEND}
    report = ingest(_write(tmp_path / "b2", orders=[REFUNDED, CANCELLED]), data, NOW)
    assert report["tables"]["orders"]["clean"] == 2
    assert _spend(data) == SPEND
    # the same as one batch with every version
    once = tmp_path / "once"
    raw = _write(
        once / "b1",
        customers=CUSTOMERS,
        products=PRODUCTS,
        orders=[PLACED, REFUNDED, CANCELLED],
        order_items=ITEMS,
    )
    ingest(raw, once / "data", NOW)
    assert _spend(once / "data") == SPEND


def test_a_resent_version_changes_nothing_and_a_late_older_one_does_not_overwrite(tmp_path):
    data = _first(tmp_path)
    ingest(_write(tmp_path / "b2", orders=[REFUNDED]), data, NOW)
    rows = read_clean(data, "orders")
    # the same version again (in another file, with its columns in another order)
    again = {k: REFUNDED[k] for k in reversed(list(REFUNDED))}
    report = ingest(_write(tmp_path / "b3", orders=[again]), data, NOW)
    assert report["tables"]["orders"]["by_rule"] == {"duplicate_row": 1}
    pd.testing.assert_frame_equal(read_clean(data, "orders"), rows)
    # a version older than the refund arrives late: kept, read at its own time
    late = {**PLACED, "updated_at": "2025-03-03T00:00:00Z", "total_amount": "100"}
    ingest(_write(tmp_path / "b4", orders=[late]), data, NOW)
    spend = _spend(data)
    assert spend["2025-03-06"] == 70.0 and spend["2025-03-20"] == 70.0
    # the same key with other values is a duplicate_id: the first kept row wins
    clash = {**REFUNDED, "refunded_amount": "50"}
    report = ingest(_write(tmp_path / "b5", orders=[clash]), data, NOW)
    assert report["tables"]["orders"]["by_rule"] == {"duplicate_id": 1}


def test_incremental_pipeline_run_equals_a_historical_one(tmp_path):
    """Features brought up to date after a batch of only updated orders equal a historical
    run over all batches."""
    data = _first(tmp_path)
    pipeline_run.run(data, mode="historical", only=["customer_activity"], echo=False)
    ingest(_write(tmp_path / "b2", orders=[REFUNDED, CANCELLED]), data, NOW)
    pipeline_run.run(data, mode="incremental", only=["customer_activity"], echo=False)
    incremental = oracle.read_source(data, "customer_activity")
    pipeline_run.run(data, mode="historical", only=["customer_activity"], echo=False)
    historical = oracle.read_source(data, "customer_activity")
    cols = [c for c in historical.columns if c != "created_timestamp"]
    key = ["customer_id", "event_timestamp"]
    pd.testing.assert_frame_equal(
        incremental[cols].sort_values(key).reset_index(drop=True),
        historical[cols].sort_values(key).reset_index(drop=True),
    )
    rows = oracle.by_entity(historical, "customer_id")
    assert oracle.lookup(rows, "c1", pd.Timestamp("2025-03-21", tz="UTC"))["spend_30d"] == 0.0


def test_steps_by_hand():
    """order_versions.steps: the order's values on each day it changes, and the changes."""
    at = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o1", "o1", "o2"],
            "customer_id": ["c1", "c1", "c1", None],
            "order_ts": [at("2025-03-01 10:00")] * 3 + [at("2025-03-02 00:00")],
            "updated_at": [
                at("2025-03-05 15:00"),  # listed first, but the second version
                pd.NaT,  # the order as placed
                at("2025-03-20 08:00"),
                pd.NaT,
            ],
            "status": ["partially_refunded", "completed", "cancelled", "refunded"],
            "total_amount": [100.0, 100.0, 100.0, 8.0],
            "discount_amount": [0.0, 0.0, 0.0, 1.0],
            "refunded_amount": [30.0, 0.0, 30.0, 8.0],
            # o2: one version whose refund is known on the 4th (v1: the row's refund_ts)
            "refund_ts": [at("2025-03-05 15:00"), pd.NaT, at("2025-03-05 15:00"), at("2025-03-03")],
        }
    )
    st = order_versions.steps(orders)
    day0 = int(np.datetime64("2025-03-02", "D").astype(np.int64))  # entry day of 1 March
    got = [
        (r.order_id, r.day - day0, r.live, r.spend / 1e6, r.refunded, r.d_spend / 1e6)
        for r in st.itertuples()
    ]
    assert got == [
        ("o1", 0, 1, 100.0, 0, 100.0),
        ("o1", 4, 1, 70.0, 1, -30.0),  # 6 March
        ("o1", 19, 0, 0.0, 0, -70.0),  # 21 March: cancelled
        ("o2", 1, 1, 8.0, 0, 8.0),  # 3 March
        ("o2", 2, 1, 0.0, 1, -8.0),  # 4 March: refunded in full
    ]
    latest = order_versions.latest_versions(orders).set_index("order_id")
    assert latest.loc["o1", "status"] == "cancelled"
    assert order_versions.first_versions(orders).set_index("order_id").loc["o1", "status"] == (
        "completed"
    )


@pytest.mark.parametrize("n", [0])
def test_steps_of_no_orders(n):
    empty = pd.DataFrame(
        {
            c: pd.Series([], dtype=t)
            for c, t in {
                "order_id": "string",
                "customer_id": "string",
                "order_ts": "datetime64[us, UTC]",
                "updated_at": "datetime64[us, UTC]",
                "status": "string",
                "total_amount": "float64",
                "discount_amount": "float64",
                "refunded_amount": "float64",
                "refund_ts": "datetime64[us, UTC]",
            }.items()
        }
    )
    assert len(order_versions.steps(empty)) == n


def test_the_oracle_reads_versions_as_worked_out_by_hand():
    """tests/oracle.py's reading of versions, on the shop of this module's docstring."""
    at = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    v = dict(order_id="o1", customer_id="c1", order_ts=at("2025-03-01 10:00"), total_amount=100.0)
    shop = oracle.RawShop(
        customers=pd.DataFrame(
            {
                "customer_id": ["c1"],
                "signup_ts": [at("2025-02-01")],
                "updated_at": [at("2025-02-01")],
                "birth_year": pd.array([None], dtype="Int64"),
            }
        ),
        products=pd.DataFrame(columns=["product_id", "price", "updated_at"]),
        orders=pd.DataFrame(
            [
                {
                    **v,
                    "updated_at": at("2025-03-05 15:00"),
                    "status": "partially_refunded",
                    "refunded_amount": 30.0,
                    "refund_ts": at("2025-03-05 15:00"),
                },
                {
                    **v,
                    "updated_at": at("2025-03-01 10:00"),
                    "status": "completed",
                    "refunded_amount": 0.0,
                    "refund_ts": None,
                },
                {
                    **v,
                    "updated_at": at("2025-03-20 08:00"),
                    "status": "cancelled",
                    "refunded_amount": 30.0,
                    "refund_ts": at("2025-03-05 15:00"),
                },
            ]
        ),
        order_items=pd.DataFrame(columns=["order_id", "product_id", "quantity"]),
        events=pd.DataFrame(columns=["customer_id", "session_id", "event_type", "event_ts"]),
        reviews=pd.DataFrame(columns=["customer_id", "rating", "review_ts"]),
    )
    for day, spend in SPEND.items():
        c = oracle.customer_features(shop, "c1", at(day) + pd.Timedelta(hours=5))
        assert c["spend_30d"] == spend, day
        assert c["orders_30d"] == (0 if day == "2025-03-21" else 1)
        assert c["last_order_ts"] == at("2025-03-01 10:00")  # placed, not cancelled then


# An order is its first version's customer's (pipelines.order_versions), whatever a later version
# says: orders o1..o6 placed by c1..c6 on 1-6 March, each re-sent on 10 March (refunded) naming
# the next customer.
MOVED_CUSTOMERS = [
    {"customer_id": f"c{i}", "signup_ts": "2025-02-01T00:00:00Z"} for i in range(1, 8)
]
MOVED_PLACED = [
    {**PLACED, "order_id": f"o{i}", "customer_id": f"c{i}", "order_ts": f"2025-03-0{i}T10:00:00Z"}
    for i in range(1, 7)
]
MOVED_LATER = [
    {
        **p,
        "customer_id": f"c{i + 2}",
        "updated_at": "2025-03-10T00:00:00Z",
        "status": "partially_refunded",
        "refunded_amount": "30",
        "refund_ts": "2025-03-10T00:00:00Z",
    }
    for i, p in enumerate(MOVED_PLACED)
]


def write_moved(root: Path) -> Path:
    """The shop above, ingested in two batches (placed; re-sent naming the next customer)."""
    data = root / "data"
    items = [{**ITEMS[0], "order_id": p["order_id"]} for p in MOVED_PLACED]
    first = _write(
        root / "m1",
        customers=MOVED_CUSTOMERS,
        products=PRODUCTS,
        orders=MOVED_PLACED,
        order_items=items,
    )
    assert ingest(first, data, NOW) is not None
    assert ingest(_write(root / "m2", orders=MOVED_LATER), data, NOW) is not None
    return data


def test_a_later_version_naming_another_customer_stays_the_first_ones_in_shards_too(tmp_path):
    from pipelines.families import customer_activity as ca
    from pipelines.windows import Snapshots

    data = write_moved(tmp_path)
    files = {t: pipeline_run._clean_files(data, t) for t in pipeline_run.TABLES}
    snapshots = Snapshots(*pipeline_run._data_span(data, files), True)
    tables = {i.table: pipeline_run._read_input(data, i, snapshots) for i in ca.INPUTS}
    key = ["customer_id", "event_timestamp"]
    whole = pipeline_run.compute_rows(ca, tables, snapshots).sort_values(key, ignore_index=True)
    split = pipeline_run.compute_rows(ca, tables, snapshots, shard_rows=3)  # many shards
    pd.testing.assert_frame_equal(split.sort_values(key, ignore_index=True), whole)
    rows = oracle.by_entity(whole, "customer_id")
    at = pd.Timestamp("2025-03-20", tz="UTC")
    for i in range(1, 8):  # by hand: each of c1..c6 placed one order (70 after its refund)
        row = oracle.lookup(rows, f"c{i}", at)
        assert (row["lifetime_orders"], row["spend_30d"]) == ((1, 70.0) if i < 7 else (0, 0.0))


def test_customer_rhythm_keeps_a_moved_order_with_its_first_customer_in_shards_too(tmp_path):
    """customer_rhythm's shards (pipelines.family.customer_parts, shared with customer_activity)
    give one run's rows on the shop whose later versions name another customer."""
    from pipelines.families import customer_rhythm
    from pipelines.windows import Snapshots

    data = write_moved(tmp_path)
    files = {t: pipeline_run._clean_files(data, t) for t in pipeline_run.TABLES}
    snapshots = Snapshots(*pipeline_run._data_span(data, files), True)
    tables = {i.table: pipeline_run._read_input(data, i, snapshots) for i in customer_rhythm.INPUTS}
    key = ["customer_id", "event_timestamp"]
    whole = pipeline_run.compute_rows(customer_rhythm, tables, snapshots)
    split = pipeline_run.compute_rows(customer_rhythm, tables, snapshots, shard_rows=3)
    pd.testing.assert_frame_equal(
        split.sort_values(key, ignore_index=True), whole.sort_values(key, ignore_index=True)
    )
    at = pd.Timestamp("2025-03-20", tz="UTC")
    rows = oracle.by_entity(whole, "customer_id")
    assert [oracle.lookup(rows, f"c{i}", at)["orders_180d"] for i in range(1, 8)] == [1] * 6 + [0]


def test_most_bought_products_follow_a_later_cancellation(tmp_path):
    """frequent_product_ids by hand: o1 (1 March) and o3 (5 March) hold p1, o2 (3 March) p2; o3
    is cancelled on 10 March by a later batch. The incremental run after that batch equals a
    historical one."""
    products = PRODUCTS + [{**PRODUCTS[0], "product_id": "p2", "name": "two"}]
    o2 = {**PLACED, "order_id": "o2", "order_ts": "2025-03-03T09:00:00Z"}
    o3 = {**PLACED, "order_id": "o3", "order_ts": "2025-03-05T09:00:00Z"}
    o3_cancelled = {**o3, "updated_at": "2025-03-10T08:00:00Z", "status": "cancelled"}
    items = ITEMS + [
        {**ITEMS[0], "order_id": "o2", "product_id": "p2"},
        {**ITEMS[0], "order_id": "o3", "product_id": "p1"},
    ]
    data = tmp_path / "data"
    raw = _write(
        tmp_path / "b1",
        customers=CUSTOMERS,
        products=products,
        orders=[PLACED, o2, o3],
        order_items=items,
    )
    assert ingest(raw, data, NOW) is not None
    pipeline_run.run(data, mode="historical", only=["customer_activity"], echo=False)
    ingest(_write(tmp_path / "b2", orders=[o3_cancelled]), data, NOW)
    pipeline_run.run(data, mode="incremental", only=["customer_activity"], echo=False)
    incremental = oracle.read_source(data, "customer_activity")
    pipeline_run.run(data, mode="historical", only=["customer_activity"], echo=False)
    historical = oracle.read_source(data, "customer_activity")
    key = ["customer_id", "event_timestamp"]
    cols = [*key, "frequent_product_ids"]
    pd.testing.assert_frame_equal(
        incremental[cols].sort_values(key).reset_index(drop=True),
        historical[cols].sort_values(key).reset_index(drop=True),
    )
    rows = oracle.by_entity(historical, "customer_id")
    want = {
        "2025-03-01": [],  # o1 is seen from the 2nd
        "2025-03-02": ["p1"],
        "2025-03-04": ["p2", "p1"],  # one order each: the latest (o2) first
        "2025-03-06": ["p1", "p2"],  # o1 and o3 hold p1
        "2025-03-10": ["p1", "p2"],  # cancelled on the 10th at 08:00: seen from the 11th
        "2025-03-11": ["p2", "p1"],
    }
    got = {
        d: list(oracle.lookup(rows, "c1", pd.Timestamp(d, tz="UTC"))["frequent_product_ids"])
        for d in want
    }
    assert got == want
