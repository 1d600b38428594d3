"""Hostile files at ingest: messages that name file, line and column but never a value (a CSV row
may hold e-mail addresses), other encodings, header-only tables, FIFOs."""

from __future__ import annotations

import os

import pytest

from pipelines.ingest import ingest, parse_now
from pipelines.readers import IngestError
from tests.support.ingest_support import clean, run, shop, write_raw

EMAIL = "jane.doe@example.com"


def _csv_lines(raw, table: str) -> list[str]:
    return (raw / f"{table}.csv").read_text().splitlines()


@pytest.mark.parametrize("fields", [2, 14])
def test_a_short_or_long_csv_row_names_the_line_never_its_values(tmp_path, fields) -> None:
    raw = write_raw(tmp_path / "raw", shop())
    lines = _csv_lines(raw, "customers")
    width = len(lines[0].split(","))
    row = ["c9", EMAIL] + ["x"] * (fields - 2)
    lines.insert(2, ",".join(row))  # physical line 3
    (raw / "customers.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError) as err:
        run(raw, tmp_path / "data")
    text = str(err.value)
    assert text == f"customers.csv: line 3: {fields} fields where the header has {width}"
    assert EMAIL not in text and "c9" not in text


def test_a_latin1_byte_names_line_and_column_and_encoding_reads_it(tmp_path) -> None:
    tables = shop()
    tables["customers"][1]["gender"] = "Frau"
    raw = write_raw(tmp_path / "raw", tables)
    path = raw / "customers.csv"
    path.write_bytes(path.read_bytes().replace(b"Frau", "Fräu".encode("latin-1")))
    with pytest.raises(IngestError) as err:
        run(raw, tmp_path / "data")
    assert str(err.value).startswith("customers.csv: line 3, column 'gender': not valid utf-8")
    assert "--encoding" in str(err.value)
    ingest(raw, tmp_path / "data", parse_now("2025-06-01"), encoding="latin-1")
    assert (clean(tmp_path / "data", "customers")["gender"] == "other").sum() == 1


def test_header_only_orders_is_noted(tmp_path) -> None:
    tables = shop()
    raw = write_raw(tmp_path / "raw", tables)
    header = _csv_lines(raw, "orders")[0]
    (raw / "orders.csv").write_text(header + "\n")
    report = run(raw, tmp_path / "data")
    n_items = len(tables["order_items"])
    assert "orders.csv: no data rows (a header only, or empty)" in report["notes"]
    assert (
        f"order_items.csv: {n_items:,} rows quarantined as unknown_order: orders.csv of this "
        "batch has no clean rows"
    ) in report["notes"]


def test_a_fifo_is_refused_not_read(tmp_path) -> None:
    raw = write_raw(tmp_path / "raw", shop())
    (raw / "reviews.csv").unlink()
    os.mkfifo(raw / "reviews.csv")  # opening it to read would block forever
    with pytest.raises(IngestError, match="reviews.csv: not a regular file"):
        run(raw, tmp_path / "data")
