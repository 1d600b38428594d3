"""Values the contract refuses at ingest: numbers above their column's upper bound
(`out_of_range`, configurable), ids that differ only by Unicode normalisation (one id, NFC), ids
with control or invisible characters or longer than the API's limit (`invalid_value`), the
optional order_items.variant_id among them."""

from __future__ import annotations

import unicodedata

import pytest

from pipelines.contract import UPPER_BOUNDS
from pipelines.ingest import ingest, parse_now
from shopconfig.settings import ID_MAX_LENGTH
from tests.support.ingest_support import BASE, clean, quarantine, run, shop, write_raw

EMAIL = "jane.doe@example.com"


def _csv_lines(raw, table: str) -> list[str]:
    return (raw / f"{table}.csv").read_text().splitlines()


def test_ids_are_nfc_and_invisible_characters_are_refused(tmp_path) -> None:
    nfc = unicodedata.normalize("NFC", "cé")
    nfd = unicodedata.normalize("NFD", "cé")
    assert nfc != nfd
    customer = dict(BASE["customers"][0])
    raw = write_raw(
        tmp_path / "raw",
        shop(
            customers=[
                {**customer, "customer_id": nfc},
                {**customer, "customer_id": nfd},  # the same customer: a duplicate_row
                {**customer, "customer_id": "c\u200b1"},  # zero-width space
                {**customer, "customer_id": "c\u00071"},  # BEL
                {**customer, "customer_id": "c" * (ID_MAX_LENGTH + 1)},
                {**customer, "customer_id": "c" * ID_MAX_LENGTH},  # at the limit: fine
            ]
        ),
    )
    run(raw, tmp_path / "data")
    ids = set(clean(tmp_path / "data", "customers")["customer_id"])
    assert nfc in ids and nfd not in ids and "c" * ID_MAX_LENGTH in ids
    q = quarantine(tmp_path / "data", "customers")
    n = len(BASE["customers"])
    assert dict(zip(q["_row"], q["_rule"], strict=True)) == {
        n + 1: "duplicate_row",
        n + 2: "invalid_value",
        n + 3: "invalid_value",
        n + 4: "invalid_value",
    }


def test_variant_ids_are_ids_like_the_others(tmp_path) -> None:
    """order_items.variant_id (v1.2, optional): NFC, at most ID_MAX_LENGTH, no invisible
    characters; missing is fine (the base shop's lines have none)."""
    nfc = unicodedata.normalize("NFC", "vé")
    nfd = unicodedata.normalize("NFD", "vé")
    line = {"order_id": "o1", "product_id": "p1", "quantity": "2", "unit_price": "3.5"}
    raw = write_raw(
        tmp_path / "raw",
        shop(
            order_items=[
                {**line, "variant_id": nfc},
                {**line, "order_id": "o2", "variant_id": nfd},  # stored as NFC
                {**line, "variant_id": "v\u200b1"},  # zero-width space
                {**line, "variant_id": "v" * (ID_MAX_LENGTH + 1)},
                {**line, "order_id": "o3", "variant_id": "v" * ID_MAX_LENGTH},  # at the limit
            ]
        ),
    )
    run(raw, tmp_path / "data")
    items = clean(tmp_path / "data", "order_items")
    n = len(BASE["order_items"])
    assert items["variant_id"].isna().sum() == n
    assert sorted(items["variant_id"].dropna()) == sorted([nfc, nfc, "v" * ID_MAX_LENGTH])
    q = quarantine(tmp_path / "data", "order_items")
    assert dict(zip(q["_row"], q["_rule"], strict=True)) == {
        n + 2: "invalid_value",
        n + 3: "invalid_value",
    }
    assert all("variant_id" in d for d in q["_detail"])


def test_upper_bounds_quarantine_at_the_bound_plus_one(tmp_path) -> None:
    order = dict(BASE["orders"][0])
    item = dict(BASE["order_items"][0])
    limit = UPPER_BOUNDS["orders.total_amount"]
    qmax = int(UPPER_BOUNDS["order_items.quantity"])
    raw = write_raw(
        tmp_path / "raw",
        shop(
            orders=[
                {**order, "order_id": "big", "total_amount": repr(limit)},
                {**order, "order_id": "huge", "total_amount": repr(limit * (1 + 1e-9))},
                {**order, "order_id": "max", "total_amount": "1.7e308"},
            ],
            order_items=[
                {**item, "order_id": "big", "quantity": str(qmax)},
                {**item, "order_id": "big", "quantity": str(qmax + 1)},
                {**item, "order_id": "big", "quantity": str(2**63 - 1)},
            ],
        ),
    )
    run(raw, tmp_path / "data")
    q = quarantine(tmp_path / "data", "orders")
    assert set(q["order_id"]) == {"huge", "max"} and set(q["_rule"]) == {"out_of_range"}
    qi = quarantine(tmp_path / "data", "order_items")
    assert list(qi["quantity"]) == [str(qmax + 1), str(2**63 - 1)]
    assert set(qi["_rule"]) == {"out_of_range"}
    assert "big" in set(clean(tmp_path / "data", "orders")["order_id"])


def test_bounds_are_configurable(tmp_path) -> None:
    order = dict(BASE["orders"][0])
    raw = write_raw(
        tmp_path / "raw", shop(orders=[{**order, "order_id": "o9", "total_amount": "50"}])
    )
    ingest(raw, tmp_path / "data", parse_now("2025-06-01"), bounds={"orders.total_amount": 40})
    q = quarantine(tmp_path / "data", "orders")
    assert list(q["order_id"]) == ["o9"] and q["_detail"].iat[0].endswith("must be <= 40")
    with pytest.raises(ValueError, match="orders.nope"):
        ingest(raw, tmp_path / "d2", parse_now("2025-06-01"), bounds={"orders.nope": 1})
