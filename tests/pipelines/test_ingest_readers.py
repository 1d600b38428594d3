"""Readers and coercion: every format gives the same verdicts; timestamps, ids, numbers, bools."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_ingest_rules import SHOP

from pipelines.coerce import coerce
from pipelines.contract import INGEST_ORDER
from pipelines.readers import IngestError
from tests.support.ingest_support import BASE, clean, quarantine, run, shop, write_raw

MIXES = [
    {
        "customers": "csv.gz",
        "products": "jsonl",
        "orders": "parquet",
        "order_items": "jsonl.gz",
        "events": "parquet",
        "reviews": "csv",
    },
    {
        "customers": "parquet",
        "products": "csv.gz",
        "orders": "jsonl.gz",
        "order_items": "csv",
        "events": "jsonl",
        "reviews": "jsonl.gz",
    },
]


def _verdicts(data: Path) -> dict[str, tuple[dict, pd.DataFrame]]:
    out = {}
    for t in INGEST_ORDER:
        q = quarantine(data, t)
        c = clean(data, t)
        key = [k for k in c.columns if k.endswith("_id")] + [c.columns[-1]]
        out[t] = (
            dict(zip(q["_row"], q["_rule"], strict=True)),
            c.sort_values(key).reset_index(drop=True),
        )
    return out


@pytest.fixture(scope="module")
def csv_verdicts(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("csv")
    run(write_raw(base / "raw", SHOP, "csv"), base / "data")
    return _verdicts(base / "data")


@pytest.mark.parametrize("mix", range(len(MIXES)))
def test_every_format_gives_the_same_verdicts(mix: int, tmp_path: Path, csv_verdicts) -> None:
    raw = tmp_path / "raw"
    for table, fmt in MIXES[mix].items():
        write_raw(raw, {table: SHOP[table]}, fmt)
    report = run(raw, tmp_path / "data")
    assert {t: f["format"] for t, f in report["source_files"].items()} == {
        t: f.split(".")[0] for t, f in MIXES[mix].items()
    }
    got = _verdicts(tmp_path / "data")
    for table in INGEST_ORDER:
        assert got[table][0] == csv_verdicts[table][0], table
        pd.testing.assert_frame_equal(got[table][1], csv_verdicts[table][1], obj=table)


def test_native_types_in_parquet_and_json(tmp_path: Path) -> None:
    """Writers that type their columns: float ids, naive and epoch timestamps, decimals."""
    raw = write_raw(tmp_path / "raw", shop(), "csv")
    (raw / "customers.csv").unlink()
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([12346.0, 2.0, None]),
                "signup_ts": pa.array(
                    pd.to_datetime(["2025-01-01 10:00", "2025-01-02 00:00", "2025-01-03 00:00"])
                ),
                "birth_year": pa.array([1980, 2200, None], pa.int64()),
                "email_opt_in": pa.array([1, 0, 1], pa.int8()),
            }
        ),
        raw / "customers.parquet",
    )
    (raw / "orders.csv").unlink()
    lines = [
        {
            "order_id": 7.0,
            "customer_id": 12346,
            "order_ts": 1738404000000,
            "status": "completed",
            "total_amount": 11.5,
        },
        {
            "order_id": "o2",
            "customer_id": "2.0",
            "order_ts": "2025-02-02T13:00:00+02:00",
            "status": "Refunded",
            "total_amount": "3.5",
            "refunded_amount": 3.5,
        },
        {"order_id": "o3", "order_ts": 1738584000, "status": "completed", "total_amount": 8},
    ]
    (raw / "orders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (raw / "order_items.csv").write_text(
        "order_id,product_id,quantity,unit_price\n7,p1,1,3.5\no2,p1,1.0,3.5\no3,p2,1,8\n"
    )
    report = run(raw, tmp_path / "data")
    assert report["tables"]["customers"]["by_rule"] == {"missing_required": 1}
    cust = clean(tmp_path / "data", "customers").set_index("customer_id")
    assert list(cust.index) == ["12346", "2"]
    assert cust.loc["12346", "signup_ts"] == pd.Timestamp("2025-01-01 10:00", tz="UTC")
    assert pd.isna(cust.loc["2", "birth_year"]) and cust.loc["12346", "birth_year"] == 1980
    assert cust["email_opt_in"].tolist() == [True, False]
    orders = clean(tmp_path / "data", "orders").set_index("order_id")
    assert report["tables"]["orders"]["quarantined"] == 0
    assert orders.loc["7", "customer_id"] == "12346"
    assert orders.loc["7", "order_ts"] == pd.Timestamp("2025-02-01T10:00:00Z")  # epoch ms
    assert orders.loc["o3", "order_ts"] == pd.Timestamp("2025-02-03T12:00:00Z")  # epoch s
    assert orders.loc["o2", "order_ts"] == pd.Timestamp("2025-02-02T11:00:00Z")  # offset
    assert orders.loc["o2", "status"] == "refunded" and orders.loc["o2", "customer_id"] == "2"
    assert report["tables"]["order_items"]["clean"] == 3


def _ts(values: list) -> tuple[list, list[bool], list[bool]]:
    c = coerce(pa.array(values, pa.string()), "timestamp", "t")
    return c.values.to_pylist(), c.missing.tolist(), c.unparseable.tolist()


def test_timestamp_readings() -> None:
    utc = pd.Timestamp("2025-03-01T10:00:00Z")
    values, missing, bad = _ts(
        [
            "2025-03-01T10:00:00Z",
            "2025-03-01T10:00:00",
            "2025-03-01 12:00:00+02:00",
            "2025-03-01T05:00:00-0500",
            "2025-03-01T10:00:00.000Z",
            "1740823200",
            "1740823200000",
            "1740823200.0",
            " 2025-03-01T10:00:00Z ",
            "2025-03-01T11:00+01:00",
            "2025-03-01",
            "",
            "NaN",
            None,
            "yesterday",
            "2025-02-30T10:00:00Z",
            "12/31/2025",
        ]
    )
    assert values[:10] == [utc] * 10
    assert values[10] == pd.Timestamp("2025-03-01", tz="UTC")
    assert missing == [False] * 11 + [True] * 3 + [False] * 3
    assert bad == [False] * 14 + [True, True, True]


def test_timestamp_slow_path_only_where_needed() -> None:
    """One impossible date among many good ones: only it is unparseable."""
    good = np.arange("2025-01-01", "2025-04-01", dtype="datetime64[m]")  # 129,600 minutes
    text = np.char.add(np.datetime_as_string(good, unit="s"), "Z").astype(object)
    text[100_000] = "2025-02-30T00:00:00Z"
    c = coerce(pa.array(text, pa.string()), "timestamp", "t")
    assert np.flatnonzero(c.unparseable).tolist() == [100_000]
    got = c.values.cast(pa.int64()).to_numpy(zero_copy_only=False)
    want = good.astype("datetime64[us]").astype(np.int64)
    assert (np.delete(got, 100_000) == np.delete(want, 100_000)).all()


@pytest.mark.parametrize(
    ("kind", "text", "expected", "unparseable"),
    [
        (
            "string",
            ["12346.0", " 42 ", "1e5", "007", "", "a.0"],
            ["12346", "42", "1e5", "007", None, "a.0"],
            [False] * 6,
        ),
        (
            "int",
            ["3", "3.0", "+4", "-1", "3.5", "x", "NaN"],
            [3, 3, 4, -1, None, None, None],
            [False] * 4 + [True, True, False],
        ),
        (
            "float",
            ["1.5", "-2", "1e3", ".5", "12,50", "$3", "inf", "null"],
            [1.5, -2.0, 1000.0, 0.5, None, None, None, None],
            [False] * 4 + [True] * 3 + [False],
        ),
        (
            "bool",
            ["true", "FALSE", "yes", "no", "1", "0", "Y", "n", "maybe", ""],
            [True, False, True, False, True, False, True, False, None, None],
            [False] * 8 + [True, False],
        ),
    ],
)
def test_value_readings(kind: str, text: list, expected: list, unparseable: list) -> None:
    c = coerce(pa.array(text, pa.string()), kind, "customer_id" if kind == "string" else "x")
    assert c.values.to_pylist() == expected
    assert c.unparseable.tolist() == unparseable


def test_csv_quirks_and_ignored_things(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", shop(), "csv")
    reviews = pd.DataFrame(
        BASE["reviews"]
        + [{**BASE["reviews"][0], "review_id": "r2", "body": 'two\nlines, "quoted"'}]
    )
    reviews["reviewer_email"] = "someone@example.com"  # not in the contract: never copied
    reviews.to_csv(raw / "reviews.csv", index=False)
    (raw / "_meta").mkdir()
    (raw / "_meta" / "corruption.json").write_text("{}")
    (raw / "README.txt").write_text("hello")
    report = run(raw, tmp_path / "data")
    assert report["tables"]["reviews"] == {
        **report["tables"]["reviews"],
        "rows_in": 2,
        "clean": 2,
        "ignored_columns": ["reviewer_email"],
    }
    r = clean(tmp_path / "data", "reviews").set_index("review_id")
    assert r.loc["r2", "body"] == 'two\nlines, "quoted"'
    assert "reviewer_email" not in r.columns
    assert any("_meta/" in n for n in report["notes"])
    assert any("README.txt" in n for n in report["notes"])


def test_irregular_jsonl_keeps_the_text(tmp_path: Path) -> None:
    """A column that is a number on one line and text on another still reads, as text."""
    raw = write_raw(tmp_path / "raw", shop(), "csv")
    (raw / "orders.csv").unlink()
    rows = [{**r, "total_amount": float(r["total_amount"])} for r in BASE["orders"]]
    rows.append({**BASE["orders"][0], "order_id": "o9", "total_amount": "about 5"})
    rows.append({**BASE["orders"][0], "order_id": "o10", "total_amount": {"value": 5}})
    with gzip.open(raw / "orders.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    report = run(raw, tmp_path / "data")
    assert report["tables"]["orders"]["by_rule"] == {"unparseable": 2}
    q = quarantine(tmp_path / "data", "orders")
    assert q["total_amount"].iloc[0] == "about 5"
    assert json.loads(q["total_amount"].iloc[1]) == {"value": 5}  # a nested value, as JSON text
    assert q["_row"].tolist() == [3, 4]


def test_empty_tables_are_tables(tmp_path: Path) -> None:
    """A header-only CSV and an empty JSON lines file are tables with no rows, not errors."""
    raw = write_raw(tmp_path / "raw", shop(), "csv")
    (raw / "orders.csv").write_text("order_id,customer_id,order_ts,status,total_amount\n")
    (raw / "events.csv").unlink()
    (raw / "events.jsonl").write_text("")
    report = run(raw, tmp_path / "data")
    assert report["tables"]["orders"]["rows_in"] == 0
    assert report["tables"]["events"]["rows_in"] == 0
    items = report["tables"]["order_items"]
    assert items["by_rule"] == {"unknown_order": items["rows_in"]}  # their orders never came
    assert clean(tmp_path / "data", "events").empty


def test_jsonl_numbers_keep_their_text(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", shop(), "csv")
    (raw / "orders.csv").unlink()
    rows = [{**r, "total_amount": float(r["total_amount"])} for r in BASE["orders"]]
    rows.append({**BASE["orders"][0], "order_id": "o9", "total_amount": -12.0})
    (raw / "orders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run(raw, tmp_path / "data")
    q = quarantine(tmp_path / "data", "orders")
    assert q["total_amount"].tolist() == ["-12.0"]  # the file's text, not a re-rendered float


def test_jsonl_with_a_byte_order_mark_and_a_broken_line(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", shop(), "csv")
    (raw / "products.csv").unlink()
    text = "".join(json.dumps(r) + "\n" for r in BASE["products"])
    (raw / "products.jsonl").write_text("\ufeff" + text)
    report = run(raw, tmp_path / "data")
    assert report["tables"]["products"]["clean"] == 2
    (raw / "products.jsonl").write_text(text + "[1, 2]\n")
    with pytest.raises(IngestError, match=r"products.jsonl: line 3: not a JSON object"):
        run(raw, tmp_path / "data2")
