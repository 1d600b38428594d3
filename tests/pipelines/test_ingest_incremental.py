"""Incremental ingest: the next day's export appends; the same export twice changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.contract import INGEST_ORDER
from pipelines.ingest_state import State, rebuild
from tests.support.ingest_support import BASE, clean, quarantine, run, shop, tree, write_raw

DAY2 = {
    "customers": [
        {**BASE["customers"][0], "updated_at": "2025-02-15T00:00:00Z", "gender": "other"},
        {"customer_id": "c4", "signup_ts": "2025-02-10T00:00:00Z", "gender": "f"},
        dict(BASE["customers"][1]),  # re-sent unchanged: duplicate_row
    ],
    "products": [
        {**BASE["products"][0], "price": "4.0", "updated_at": "2025-02-20T00:00:00Z"},
        {
            "product_id": "p3",
            "name": "Pot",
            "category": "kitchen",
            "price": "20",
            "created_at": "2025-02-01",
        },
    ],
    "orders": [
        {
            "order_id": "o4",
            "customer_id": "c4",
            "order_ts": "2025-02-11T10:00:00Z",
            "status": "completed",
            "total_amount": "20",
        },
        {
            "order_id": "o5",
            "customer_id": "c1",
            "order_ts": "2025-02-21T10:00:00Z",
            "status": "completed",
            "total_amount": "4",
        },
        {**BASE["orders"][0], "total_amount": "99"},  # o1 again, other values: duplicate_id
        {
            "order_id": "o6",
            "customer_id": "c4",
            "order_ts": "2025-02-09T10:00:00Z",
            "status": "completed",
            "total_amount": "4",
        },  # before c4 signed up
    ],
    "order_items": [
        {"order_id": "o4", "product_id": "p3", "quantity": "1", "unit_price": "20"},
        {"order_id": "o5", "product_id": "p1", "quantity": "1", "unit_price": "4"},
        {"order_id": "o1", "product_id": "p3", "quantity": "1", "unit_price": "20"},
        dict(BASE["order_items"][0]),  # duplicate_row of a batch-1 row
        {"order_id": "o6", "product_id": "p1", "quantity": "1", "unit_price": "4"},
    ],
    "events": [
        {
            "event_id": "e4",
            "customer_id": "c4",
            "session_id": "s4",
            "event_type": "search",
            "event_ts": "2025-02-11T09:00:00Z",
            "product_id": "",
        },
        dict(BASE["events"][0]),
        {**BASE["events"][1], "device_type": "mobile"},
    ],
    "reviews": [
        {
            "review_id": "r2",
            "customer_id": "c4",
            "product_id": "p3",
            "rating": "2",
            "body": "cracked",
            "review_ts": "2025-02-14T00:00:00Z",
        },
    ],
}
DAY2_RULES = {
    "customers": {2: "duplicate_row"},
    "products": {},
    "orders": {2: "duplicate_id", 3: "before_signup"},
    "order_items": {3: "duplicate_row", 4: "unknown_order"},
    "events": {1: "duplicate_row", 2: "duplicate_id"},
    "reviews": {},
}


@pytest.fixture(scope="module")
def two_days(tmp_path_factory) -> tuple[Path, Path, Path, dict, dict]:
    base = tmp_path_factory.mktemp("incremental")
    day1 = write_raw(base / "day1", shop(), "csv")
    day2 = write_raw(base / "day2", DAY2, "parquet")
    data = base / "data"
    r1 = run(day1, data)
    first = tree(data)
    r2 = run(day2, data)
    return data, day1, day2, {"r1": r1, "r2": r2}, first


def test_second_batch_is_judged_against_the_first(two_days) -> None:
    data, _, _, reports, _ = two_days
    r2 = reports["r2"]
    assert r2["batch"] == "b000002"
    for table in (t for t in INGEST_ORDER if t in DAY2_RULES):
        q = quarantine(data, table)
        got = dict(
            zip(
                q.loc[q["_batch"] == "b000002", "_row"],
                q.loc[q["_batch"] == "b000002", "_rule"],
                strict=True,
            )
        )
        assert got == DAY2_RULES[table], table
        stats = r2["tables"][table]
        assert stats["rows_in"] == len(DAY2[table]) == stats["clean"] + stats["quarantined"]


def test_clean_tables_grow_without_duplicates(two_days) -> None:
    data, _, _, reports, _ = two_days
    for table in (t for t in INGEST_ORDER if t in DAY2_RULES):
        total = sum(r["tables"][table]["clean"] for r in reports.values())
        assert len(clean(data, table)) == total, table
        assert len(quarantine(data, table)) == sum(
            r["tables"][table]["quarantined"] for r in reports.values()
        )
    customers = clean(data, "customers")
    c1 = customers[customers["customer_id"] == "c1"].sort_values("updated_at")
    assert c1["gender"].tolist() == ["female", "other"]  # a change-log row for an existing id
    orders = clean(data, "orders").set_index("order_id")
    assert orders.loc["o1", "total_amount"] == 11.5  # the first clean version wins
    items = clean(data, "order_items")
    late = items[(items["order_id"] == "o1") & (items["product_id"] == "p3")]
    assert late["order_ts"].tolist() == [orders.loc["o1", "order_ts"]]  # from batch-1 state
    assert (data / "clean" / "order_items" / "day=2025-02-01" / "part-b000002.parquet").exists()


def test_first_batch_files_untouched(two_days) -> None:
    data, _, _, _, first = two_days
    now = tree(data)
    for path, content in first.items():
        if "part-b000001" in path:
            assert now[path] == content, path
    history = sorted(p.name for p in (data / "reports" / "history").iterdir())
    assert history == ["validation_report-b000001.json", "validation_report-b000002.json"]
    latest = json.loads((data / "reports" / "validation_report.json").read_text())
    assert latest["batch"] == "b000002"


def test_same_batch_twice_changes_nothing(two_days) -> None:
    data, day1, day2, _, _ = two_days
    before = tree(data)
    assert run(day2, data) is None
    assert run(day1, data) is None
    assert tree(data) == before


def test_unchanged_file_in_a_new_batch_is_skipped(two_days, tmp_path: Path) -> None:
    data_src, _, day2, _, _ = two_days
    data = tmp_path / "data"
    shutil.copytree(data_src, data)
    day3 = write_raw(
        tmp_path / "day3",
        {
            "orders": [
                {
                    "order_id": "o7",
                    "customer_id": "c4",
                    "order_ts": "2025-02-22T10:00:00Z",
                    "status": "completed",
                    "total_amount": "3",
                }
            ]
        },
        "csv",
    )
    shutil.copy(day2 / "products.parquet", day3 / "products.parquet")
    report = run(day3, data)
    assert list(report["tables"]) == ["orders"]
    assert report["skipped_files"]["products"]["ingested_in"] == "b000002"
    assert any("products.parquet: already ingested in batch b000002" in n for n in report["notes"])
    assert "o7" in set(clean(data, "orders")["order_id"])


def test_state_rebuilds_from_clean_tables(two_days, tmp_path: Path) -> None:
    data_src, _, _, _, _ = two_days
    data = tmp_path / "data"
    shutil.copytree(data_src, data)
    stored = {t: State.load(data).seen(t) for t in INGEST_ORDER}
    known = State.load(data).known()
    rebuild(data)
    for table in INGEST_ORDER:
        again = State.load(data).seen(table)
        assert np.array_equal(np.sort(again.row_hashes), np.sort(stored[table].row_hashes))
        assert np.array_equal(np.sort(again.key_hashes), np.sort(stored[table].key_hashes))
    rebuilt = State.load(data).known()
    assert sorted(rebuilt.customer_ids.to_pylist()) == sorted(known.customer_ids.to_pylist())
    assert sorted(rebuilt.order_ids.to_pylist()) == sorted(known.order_ids.to_pylist())
    signup = dict(zip(rebuilt.customer_ids.to_pylist(), rebuilt.signup_us, strict=True))
    assert signup["c4"] == pd.Timestamp("2025-02-10", tz="UTC").value // 1000


def test_a_directory_ingested_under_v1_1_still_knows_its_order_lines(tmp_path: Path) -> None:
    """v1.2 added order_items.variant_id, so a line's row hash covers one more column. A data
    directory ingested under v1.1 (clean lines without the column, hashed over five columns) has
    its state recomputed on the next ingest (the contract version is part of the hash function's
    name): the same line sent again is still a duplicate_row, not a second clean line."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import storage
    from pipelines.ingest_state import HASH_FUNCTION, ingest_state_dir

    data = tmp_path / "data"
    run(write_raw(tmp_path / "day1", shop()), data)
    # make the directory what v1.1 left: clean lines without variant_id, five-column hashes
    v11 = ("order_id", "product_id", "quantity", "unit_price", "discount")
    for f in storage.clean_dir(data, "order_items").rglob("*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["variant_id"]), f)
    lines = pa.Table.from_pandas(clean(data, "order_items")[list(v11)], preserve_index=False)
    con = duckdb.connect()
    con.register("t", lines)
    old = con.execute(f"SELECT hash({', '.join(v11)}) AS r FROM t").fetchnumpy()["r"]
    state = ingest_state_dir(data) / "order_items"
    shutil.rmtree(state)
    state.mkdir()
    pq.write_table(pa.table({"_row_hash": pa.array(old, pa.uint64())}), state / "part-v11.parquet")
    manifest = ingest_state_dir(data) / "manifest.json"
    m = json.loads(manifest.read_text())
    m["hash_function"] = HASH_FUNCTION.replace("contract-1.2", "contract-1.1")
    manifest.write_text(json.dumps(m))

    resent = {"order_items": [dict(BASE["order_items"][0])]}
    report = run(write_raw(tmp_path / "day2", resent), data)
    assert report["tables"]["order_items"]["by_rule"] == {"duplicate_row": 1}
    assert len(clean(data, "order_items")) == len(BASE["order_items"])
    assert json.loads(manifest.read_text())["hash_function"] == HASH_FUNCTION
