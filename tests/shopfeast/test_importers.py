"""Real-data importers: the mapping on tiny frames, then real files imported and ingested with every
row accounted for. Expected counts are computed here from the source data, not by the importer."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from shopfeast.importers import amazon_reviews, completejourney

NOW = "2030-01-01T00:00:00+00:00"
AMAZON = "reviews/amazon_all_beauty_5core.json.gz"
HOUSEHOLDS = 200


def _ingest(raw: Path, data: Path) -> dict:
    ingest = pytest.importorskip("pipelines.ingest", reason="pipelines/ingest.py not there yet")
    assert ingest.run(raw_dir=raw, data_dir=data, now=NOW) == 0
    return json.loads((data / "reports" / "validation_report.json").read_text())["tables"]


def _assert_accounted(report: dict, written: dict[str, int]) -> None:
    for table, n in written.items():
        stats = report[table]
        assert stats["rows_in"] == n, table
        assert stats["clean"] + stats["quarantined"] == n, table
        assert sum(stats.get("by_rule", {}).values()) == stats["quarantined"], table


def _rules(report: dict, table: str) -> dict[str, int]:
    return {k: v for k, v in report[table].get("by_rule", {}).items() if v}


# --- Complete Journey ---------------------------------------------------------------------------


def test_completejourney_mapping_on_a_tiny_basket():
    ts = pd.Timestamp("2017-03-01 10:00:00")
    tx = pd.DataFrame(
        {
            "household_id": [7, 7, 7, 9],
            "basket_id": [100, 100, 101, 200],
            "product_id": [1, 2, 1, 2],
            "quantity": [2, 0, 1, 3],
            "sales_value": [3.0, 0.0, 1.4, 6.0],
            "retail_disc": [0.5, 0.0, 0.0, 0.3],
            "coupon_disc": [0.25, 0.0, 0.0, 0.0],
            "coupon_match_disc": [0.0, 0.0, 0.0, 0.1],
            "transaction_timestamp": [ts, ts, ts + pd.Timedelta(days=2), ts - pd.Timedelta(days=1)],
        }
    )
    demo = pd.DataFrame({"household_id": [7, 8], "age": ["25-34", "65+"]})
    cat = pd.DataFrame(
        {
            "product_id": [1, 2, 3],
            "department": ["PRODUCE", "GROCERY", "DELI"],
            "brand": ["National", "Private", "National"],
            "product_category": ["APPLES", None, "CHEESE"],
            "product_type": ["APPLES GALA", None, None],
            "package_size": ["3 LB", None, None],
        }
    )
    out = completejourney.convert(tx, demo, cat)

    customers = out["customers"].set_index("customer_id")
    assert list(customers.index) == ["7", "9"]  # household 8 never bought: not a customer
    assert customers.loc["7", "signup_ts"] == pd.Timestamp("2017-03-01 10:00", tz="UTC")
    assert customers.loc["7", "birth_year"] == 2017 - 30
    assert pd.isna(customers.loc["9", "birth_year"])

    orders = out["orders"].set_index("order_id")
    assert orders.loc["100", "total_amount"] == pytest.approx(3.0)
    assert orders.loc["100", "discount_amount"] == pytest.approx(0.75)
    assert orders.loc["200", "discount_amount"] == pytest.approx(0.4)
    assert set(orders["status"]) == {"completed"}

    items = out["order_items"]
    assert items["unit_price"].tolist() == pytest.approx([1.5, 0.0, 1.4, 2.0])
    assert items["quantity"].tolist() == [2, 0, 1, 3]  # the zero line is kept for ingest to reject

    products = out["products"].set_index("product_id")
    assert list(products.index) == ["1", "2"]  # product 3 never sold
    assert products.loc["1", "name"] == "APPLES GALA, 3 LB"
    assert products.loc["2", "name"] == "GROCERY"  # no type nor category: the department
    assert products.loc["1", "price"] == pytest.approx(1.45)  # median of 1.5 and 1.4
    assert products.loc["2", "created_at"] == pd.Timestamp("2017-02-28 10:00", tz="UTC")


def test_completejourney_imports_and_ingests_with_every_row_accounted_for(tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    result = completejourney.run(out=raw, households=HOUSEHOLDS)
    written = result["rows"]

    # Expectations straight from the wheel's data, independent of the importer.
    base = completejourney.data_path()
    tx = pd.read_parquet(base / "transactions.parquet")
    tx = tx[tx["household_id"].isin(sorted(tx["household_id"].unique())[:HOUSEHOLDS])]
    catalog = set(pd.read_parquet(base / "products.parquet", columns=["product_id"])["product_id"])
    sold = tx[tx["quantity"] > 0]
    priced = set(sold["product_id"]) & catalog
    assert written["customers"] == tx["household_id"].nunique() == HOUSEHOLDS
    assert written["orders"] == tx["basket_id"].nunique()
    assert written["order_items"] == len(tx)
    assert written["products"] == len(set(tx["product_id"]) & catalog)

    report = _ingest(raw, data)
    _assert_accounted(report, written)
    assert _rules(report, "customers") == {}
    assert _rules(report, "orders") == {}
    priceless = written["products"] - len(priced)
    assert _rules(report, "products") == ({"missing_required": priceless} if priceless else {})
    zero_qty = int((tx["quantity"] == 0).sum())
    unknown = int((~sold["product_id"].isin(priced)).sum())
    expected_items = {"negative_value": zero_qty, "unknown_product": unknown}
    assert _rules(report, "order_items") == {k: v for k, v in expected_items.items() if v}

    from pipelines.storage import read_clean

    orders = read_clean(data, "orders")
    assert orders["total_amount"].sum() == pytest.approx(tx["sales_value"].sum(), abs=0.01)
    items = read_clean(data, "order_items")
    assert int(items["quantity"].sum()) == int(
        sold[sold["product_id"].isin(priced)]["quantity"].sum()
    )


# --- Amazon reviews -----------------------------------------------------------------------------


def _amazon_records(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return pd.DataFrame([json.loads(line) for line in fh])


def test_amazon_review_ids_are_content_hashes():
    raw = pd.DataFrame(
        {
            "reviewerID": ["A", "A", "A"],
            "asin": ["P", "P", "P"],
            "overall": [5, 5, 4],
            "summary": ["nice", "nice", "meh"],
            "reviewText": ["good soap", "good soap", "too big"],
            "unixReviewTime": [1391212800] * 3,
            "style": [{"Color:": " Verbena"}, {"Color:": " Lavender"}, None],
        }
    )
    reviews = amazon_reviews.convert(raw)["reviews"]
    ids = reviews["review_id"].tolist()
    assert ids[0] == ids[1] != ids[2]  # the same review shown on two variants; a different review
    assert reviews.duplicated().tolist() == [False, True, False]
    again = amazon_reviews.convert(raw)["reviews"]["review_id"].tolist()
    assert again == ids


def test_amazon_reviews_import_and_ingest_quarantine_the_duplicates(shared_data, tmp_path):
    path = shared_data / AMAZON
    if not path.exists():
        pytest.skip(f"{path} is absent")
    raw, data = tmp_path / "raw", tmp_path / "data"
    written = amazon_reviews.run(file=path, out=raw)["rows"]

    src = _amazon_records(path)
    content = ["reviewerID", "asin", "overall", "summary", "reviewText", "unixReviewTime"]
    copies = int(src[content].astype(str).duplicated().sum())
    assert written == {
        "customers": src["reviewerID"].nunique(),
        "products": src["asin"].nunique(),
        "orders": 0,
        "order_items": 0,
        "reviews": len(src),
    }

    report = _ingest(raw, data)
    _assert_accounted(report, written)
    for table in ("customers", "products", "orders", "order_items"):
        assert _rules(report, table) == {}, table
    # Each copy of a review across variants ends in quarantine; nothing else does.
    assert _rules(report, "reviews") in ({"duplicate_row": copies}, {"duplicate_id": copies})
    assert report["reviews"]["clean"] == len(src) - copies
