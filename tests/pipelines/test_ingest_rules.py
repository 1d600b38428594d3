"""One test per quarantine rule: hand-written bad rows land in the quarantine under their rule.

All bad rows ride in one small shop, ingested once per format; each rule's test then checks its own
rows (exact `_row`, rule and detail) and the accounting test checks that nothing else moved.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera
import pyarrow as pa
import pytest

from pipelines.contract import INGEST_ORDER, RULES, TABLES
from pipelines.readers import RawFile, RawTable
from pipelines.validate import (
    BOT_MIN_EVENTS,
    PANDAS_DTYPES,
    VALUE_CHECKS,
    Known,
    Seen,
    _pandas_type,
    check_failures,
    schema,
    validate,
)
from tests.support.ingest_support import BASE, NOW, clean, quarantine, run, shop, write_raw


def _order(oid: str, **kw: str) -> dict[str, str]:
    row = {
        "order_id": oid,
        "customer_id": "c1",
        "order_ts": "2025-03-01T10:00:00Z",
        "status": "completed",
        "total_amount": "5",
        "refunded_amount": "",
    }
    return {**row, **kw}


def _event(eid: str, **kw: str) -> dict[str, str]:
    row = {
        "event_id": eid,
        "customer_id": "c2",
        "session_id": f"s-{eid}",
        "event_type": "page_view",
        "event_ts": "2025-03-01T10:00:00Z",
        "product_id": "",
    }
    return {**row, **kw}


def _review(rid: str, **kw: str) -> dict[str, str]:
    row = {
        "review_id": rid,
        "customer_id": "c2",
        "product_id": "p2",
        "rating": "4",
        "title": "",
        "body": "fine",
        "review_ts": "2025-03-02T10:00:00Z",
    }
    return {**row, **kw}


def _item(**kw: str) -> dict[str, str]:
    return {**{"order_id": "o3", "product_id": "p1", "quantity": "2", "unit_price": "3.5"}, **kw}


def _bot(n: int, session: str, step_ms: int) -> list[dict[str, str]]:
    t0 = pd.Timestamp("2025-03-05T12:00:00Z")
    return [
        _event(
            f"{session}-{i}",
            session_id=session,
            event_type="product_view",
            product_id="p1",
            event_ts=(t0 + pd.Timedelta(milliseconds=i * step_ms)).isoformat(),
        )
        for i in range(n)
    ]


# (rule, table, row, text the detail must contain). Rows are appended to the base shop in order.
BAD: list[tuple[str, str, dict[str, str], str]] = [
    ("missing_required", "orders", _order("o-miss", order_ts=""), "order_ts"),
    ("missing_required", "events", _event("e-miss", event_type="add_to_cart"), "product_id"),
    (
        "missing_required",
        "customers",
        {"customer_id": "", "signup_ts": "2025-01-01"},
        "customer_id",
    ),
    ("unparseable", "orders", _order("o-unp", total_amount="12,50"), "'12,50'"),
    (
        "unparseable",
        "customers",
        {"customer_id": "c-unp", "signup_ts": "2025-01-01", "is_premium": "maybe"},
        "is_premium",
    ),
    ("unparseable", "reviews", _review("r-unp", review_ts="yesterday"), "'yesterday'"),
    ("invalid_value", "orders", _order("o-inv", status="shipped"), "status='shipped'"),
    ("invalid_value", "events", _event("e-inv", event_type="hover"), "event_type='hover'"),
    (
        "negative_value",
        "products",
        {"product_id": "p-neg", "name": "x", "price": "-1", "created_at": "2024-12-01"},
        "price=-1.0",
    ),
    ("negative_value", "order_items", _item(quantity="0"), "quantity=0"),
    ("negative_value", "orders", _order("o-neg", discount_amount="-2"), "discount_amount"),
    ("out_of_range", "orders", _order("o-big", total_amount="1.7e308"), "total_amount=1.7e+308"),
    ("out_of_range", "order_items", _item(quantity=str(2**63 - 1)), "must be <= 1e+06"),
    ("rating_out_of_range", "reviews", _review("r-six", rating="6"), "rating=6.0"),
    ("rating_out_of_range", "reviews", _review("r-half", rating="0.5"), "rating=0.5"),
    (
        "refund_exceeds_total",
        "orders",
        _order("o-ref", total_amount="5", refunded_amount="6"),
        "refunded_amount=6.0 > total_amount=5.0",
    ),
    (
        "future_timestamp",
        "reviews",
        _review("r-fut", review_ts="2025-06-02T00:00:01Z"),
        "review_ts",
    ),
    ("future_timestamp", "orders", _order("o-fut", refund_ts="2031-01-01"), "refund_ts"),
    ("duplicate_row", "orders", dict(BASE["orders"][0]), "exact copy of row 0"),
    ("duplicate_row", "order_items", dict(BASE["order_items"][1]), "exact copy of row 1"),
    (
        "duplicate_id",
        "orders",
        {**BASE["orders"][1], "total_amount": "99"},
        "order_id='o2', updated_at=2025-02-02T11:00:00+00:00 already used by row 1",
    ),
    ("duplicate_id", "customers", {**BASE["customers"][0], "gender": "other"}, "customer_id='c1'"),
    ("unknown_order", "order_items", _item(order_id="o-nope"), "order_id='o-nope'"),
    ("unknown_product", "order_items", _item(product_id="p-nope"), "product_id='p-nope'"),
    (
        "unknown_product",
        "events",
        _event("e-up", event_type="product_view", product_id="p-nope"),
        "p-nope",
    ),
    ("unknown_product", "reviews", _review("r-up", product_id="p-nope"), "p-nope"),
    ("unknown_customer", "orders", _order("o-uc", customer_id="c-nope"), "customer_id='c-nope'"),
    ("unknown_customer", "events", _event("e-uc", customer_id="c-nope"), "c-nope"),
    ("unknown_customer", "reviews", _review("r-uc", customer_id="c-nope"), "c-nope"),
    (
        "before_signup",
        "orders",
        _order("o-early", customer_id="c2", order_ts="2025-01-04T23:59:59Z"),
        "signup_ts=2025-01-05",
    ),
    # Breaks invalid_value and future_timestamp: the first rule in RULES order wins.
    ("invalid_value", "orders", _order("o-two", status="lost", order_ts="2030-01-01"), "status"),
]
BOT_SESSION = _bot(BOT_MIN_EVENTS + 10, "s-bot", step_ms=500)  # 2 events/s: inhuman
# Not bots: many events at a human pace, and a quick burst too short to judge.
HUMAN_SESSIONS = _bot(BOT_MIN_EVENTS + 10, "s-slow", step_ms=60_000) + _bot(
    BOT_MIN_EVENTS - 1, "s-burst", step_ms=10
)
# Good rows that look odd but follow the contract (and must stay clean).
GOOD = {
    "reviews": [_review("r-edge", review_ts="2025-06-01T23:59:00Z", rating="1", body="")],
    "orders": [_order("o-guest", customer_id="", refunded_amount="5")],
    "customers": [
        {
            "customer_id": "c3",
            "signup_ts": "1735862400",
            "birth_year": "1850",
            "gender": "prefer not to say",
        }
    ],
}


def _layout() -> tuple[dict[str, list[dict[str, str]]], dict[str, dict[int, str]]]:
    extra: dict[str, list[dict[str, str]]] = {}
    expected: dict[str, dict[int, str]] = {t: {} for t in BASE}
    for rule, table, row, _ in BAD:
        expected[table][len(BASE[table]) + len(extra.get(table, []))] = rule
        extra.setdefault(table, []).append(row)
    for row in BOT_SESSION:
        expected["events"][len(BASE["events"]) + len(extra["events"])] = "bot_session"
        extra["events"].append(row)
    extra["events"] += HUMAN_SESSIONS
    for table, rows in GOOD.items():
        extra[table] += rows
    return shop(**extra), expected


SHOP, EXPECTED = _layout()


@pytest.fixture(scope="module", params=["csv"])
def ingested(request, tmp_path_factory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp(f"rules-{request.param}")
    raw = write_raw(base / "raw", SHOP, request.param)
    report = run(raw, base / "data")
    return base / "data", report


@pytest.mark.parametrize("rule", list(RULES))
def test_rule_quarantines_its_rows(rule: str, ingested: tuple[Path, dict]) -> None:
    data, report = ingested
    cases = [(t, row) for t, rows in EXPECTED.items() for row, r in rows.items() if r == rule]
    assert cases, f"no hand-written case for rule {rule}"
    for table, row in cases:
        q = quarantine(data, table).set_index("_row")
        assert row in q.index, f"{table} row {row} not quarantined (expected {rule})"
        assert q.loc[row, "_rule"] == rule, (table, row, q.loc[row, "_detail"])
        assert q.loc[row, "_source_file"] == f"{table}.csv"
    for rule_, table, _, detail in BAD:
        if rule_ == rule:
            details = quarantine(data, table)["_detail"].tolist()
            assert any(detail in d for d in details), (detail, details)
    n = {t: sum(1 for r in rows.values() if r == rule) for t, rows in EXPECTED.items()}
    for table, count in n.items():
        if count:
            assert report["tables"][table]["by_rule"][rule] == count


def test_every_row_in_exactly_one_place(ingested: tuple[Path, dict]) -> None:
    data, report = ingested
    for table in (t for t in INGEST_ORDER if t in SHOP):
        stats = report["tables"][table]
        q = quarantine(data, table)
        c = clean(data, table)
        assert stats["rows_in"] == len(SHOP[table])
        assert stats["rows_in"] == stats["clean"] + stats["quarantined"]
        assert (len(c), len(q)) == (stats["clean"], stats["quarantined"])
        assert dict(zip(q["_row"], q["_rule"], strict=True)) == EXPECTED[table]
        assert sum(stats["by_rule"].values()) == stats["quarantined"]


def test_quarantine_keeps_original_text(ingested: tuple[Path, dict]) -> None:
    data, _ = ingested
    q = quarantine(data, "orders").set_index("_row")
    row = next(r for r, rule in EXPECTED["orders"].items() if rule == "unparseable")
    assert q.loc[row, "total_amount"] == "12,50"
    assert q.loc[row, "order_ts"] == "2025-03-01T10:00:00Z"  # as written, not re-rendered
    assert set(q.columns) == set(TABLES["orders"].column_names) | {
        "_rule",
        "_detail",
        "_source_file",
        "_batch",
    }
    assert q["_batch"].unique().tolist() == ["b000001"]


def test_normalisation_and_defaults(ingested: tuple[Path, dict]) -> None:
    data, _ = ingested
    cust = clean(data, "customers").set_index("customer_id")
    assert cust.loc["c1", "gender"] == "female" and cust.loc["c2", "gender"] == "male"
    assert cust.loc["c3", "gender"] == "unknown"
    assert pd.isna(cust.loc["c3", "birth_year"])  # 1850: treated as missing, row kept
    assert cust.loc["c3", "signup_ts"] == pd.Timestamp("2025-01-03", tz="UTC")  # epoch seconds
    assert (cust["updated_at"] == cust["signup_ts"]).all()
    assert bool(cust.loc["c1", "is_premium"]) and not bool(cust.loc["c2", "is_premium"])
    prod = clean(data, "products").set_index("product_id")
    assert prod.loc["p2", "category"] == "unknown"
    assert prod["is_active"].all() and (prod["updated_at"] == prod["created_at"]).all()
    orders = clean(data, "orders").set_index("order_id")
    assert orders.loc["o1", "refunded_amount"] == 0.0 and orders.loc["o1", "discount_amount"] == 0
    assert pd.isna(orders.loc["o-guest", "customer_id"])
    items = clean(data, "order_items")
    assert (
        items.set_index("order_id")["order_ts"].groupby(level=0).first()
        == orders["order_ts"].reindex(items["order_id"].unique())
    ).all()


def test_clean_layout_is_partitioned_by_day(ingested: tuple[Path, dict]) -> None:
    data, _ = ingested
    days = sorted(p.name for p in (data / "clean" / "order_items").iterdir())
    assert days == ["day=2025-02-01", "day=2025-02-02", "day=2025-02-03"]
    assert (data / "clean" / "customers" / "part-b000001.parquet").exists()
    events = clean(data, "events")
    assert set(events["session_id"]) >= {"s-slow", "s-burst"}
    assert "s-bot" not in set(events["session_id"])


def test_checks_are_built_from_the_contract() -> None:
    for check in VALUE_CHECKS:
        spec = TABLES[check.table]
        assert check.column in spec.column_names and check.rule in RULES
    for name, spec in TABLES.items():
        s = schema(spec, pd.Timestamp(NOW))
        assert list(s.columns) == spec.column_names, name
        stamps = [c.name for c in spec.columns if c.kind == "timestamp"]
        assert all(any(ch.name == "future_timestamp" for ch in s.columns[c].checks) for c in stamps)


def _typed(table: str, rows: list[dict[str, str]], now: pd.Timestamp) -> pd.DataFrame:
    """A table's rows typed and normalised as `validate` judges them."""
    text = pa.Table.from_pandas(pd.DataFrame(rows, dtype="string"), preserve_index=False)
    raw = RawTable(RawFile(table, Path(f"{table}.csv"), "test"), text)
    typed = validate(raw, now, Known(), Seen(), rows_only=True).typed
    return typed.to_pandas(types_mapper=_pandas_type).astype(
        {c.name: PANDAS_DTYPES[c.kind] for c in TABLES[table].columns}
    )


@pytest.mark.parametrize("table", [t for t in TABLES if t in SHOP])
def test_the_checks_fail_where_pandera_says_they_fail(table: str) -> None:
    """`validate` evaluates `rule_checks` itself (pandera costs ~10 ms a call, too much for the
    stream's small batches); pandera's lazy validation of the same checks is the reference."""
    now = pd.Timestamp(NOW)
    df = _typed(table, SHOP[table], now)
    ours = {
        (rule, col, int(i))
        for rule, col, rows in check_failures(TABLES[table], df, now)
        for i in rows
    }
    try:
        schema(TABLES[table], now).validate(df, lazy=True)
        cases = pd.DataFrame(columns=["schema_context", "check", "column", "index"])
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
    frame = (cases["schema_context"] == "DataFrameSchema").to_numpy(bool)
    theirs = {
        (check, None if f else col, int(i))
        for check, col, i, f in zip(
            cases["check"], cases["column"], cases["index"], frame, strict=True
        )
        if pd.notna(i)
    }
    assert ours == theirs
    assert ours or table == "customers", f"{table}: the shop breaks no check here"
