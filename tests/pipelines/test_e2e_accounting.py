"""End to end: generate a shop with corruption, ingest it, and account for every row.

Per table, rows in = clean + quarantined in the validation report; every row the generator injected
is in the quarantine under the rule the manifest recorded; no other row is quarantined; and the
clean tables hold exactly the good rows (counted against the files on disk, not the report).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.contract import INGEST_ORDER, RULES
from pipelines.storage import clean_dir, quarantine_dir, reports_dir
from shopfeast import generator

SHOP = {"customers": 300, "products": 60, "days": 60, "seed": 11, "corrupt_fraction": 0.02}
NOW = "2026-01-01T00:00:00Z"  # after the shop's end; the future rows are decades later


def _rows_on_disk(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in path.rglob("*.parquet"))


def _quarantine(data: Path, table: str) -> pd.DataFrame:
    parts = [pd.read_parquet(p) for p in sorted(quarantine_dir(data, table).rglob("*.parquet"))]
    if not parts:
        return pd.DataFrame({"_row": pd.Series(dtype="int64"), "_rule": pd.Series(dtype=str)})
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module", params=["csv", "parquet"])
def ingested(request, tmp_path_factory):
    from pipelines import ingest

    root = tmp_path_factory.mktemp(f"acct_{request.param}")
    shop = generator.run(out=root / "raw", fmt=request.param, quiet=True, **SHOP)
    code = ingest.run(raw_dir=root / "raw", data_dir=root / "data", now=NOW)
    assert code == 0
    report = json.loads((reports_dir(root / "data") / "validation_report.json").read_text())
    return shop, root / "data", report


def test_the_manifest_covers_every_rule(ingested):
    shop, _, _ = ingested
    assert set(shop.manifest["rule"]) == set(RULES)


def test_rows_in_equal_clean_plus_quarantined(ingested):
    shop, data, report = ingested
    for table in INGEST_ORDER:
        r = report["tables"][table]
        assert r["rows_in"] == shop.tables[table].num_rows, table
        assert r["rows_in"] == r["clean"] + r["quarantined"], table
        assert sum(r["by_rule"].values()) == r["quarantined"], table
        # the files agree with the report
        assert _rows_on_disk(clean_dir(data, table)) == r["clean"], table
        assert len(_quarantine(data, table)) == r["quarantined"], table


def test_exactly_the_injected_rows_are_quarantined_under_their_rule(ingested):
    shop, data, report = ingested
    for table in INGEST_ORDER:
        expected = shop.manifest[shop.manifest["table"] == table]
        got = _quarantine(data, table)
        want = set(zip(expected["row"].astype(int), expected["rule"], strict=True))
        have = set(zip(got["_row"].astype(int), got["_rule"], strict=True))
        assert have - want == set(), f"{table}: good rows quarantined: {sorted(have - want)[:5]}"
        assert want - have == set(), f"{table}: bad rows let through: {sorted(want - have)[:5]}"
        by_rule = expected["rule"].value_counts().to_dict()
        assert report["tables"][table]["by_rule"] == by_rule, table


def test_quarantine_rows_carry_their_origin(ingested):
    _, data, _ = ingested
    q = _quarantine(data, "orders")
    assert {"_rule", "_source_file", "_row", "_batch"} <= set(q.columns)
    assert q["_source_file"].str.contains("orders").all()
    assert q["_batch"].notna().all()
