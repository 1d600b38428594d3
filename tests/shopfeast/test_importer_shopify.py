"""`shopfeast import shopify`: the REST, GraphQL bulk and admin CSV exports of one small shop
(tests/shopfeast/fixtures/shopify, built from Shopify's documented payloads and export columns),
imported, ingested and turned into features, against values worked out by hand.

The shop (all times UTC, 2025):
- Bob (207119551, signed up 1 March, US, subscribed) orders #1001 on 5 March 10:00: one iPod at
  199.00 less a 10.00 line discount, two hoodies at 50.00: 289.00. Refunds: 40.00 on 8 March 12:00,
  then 25.00 on 15 March 12:00 (plus a failed 25.00 transaction that must not count): net 224.00.
- a guest orders #1002 (one hoodie, 50.00, POS) on 6 March;
- Bob's #1003 on 7 March is a test order (Bogus gateway): left out, counted;
- Alice (207119552, 2 March, CA) orders #1004 (one iPod, 199.00, iPhone) on 9 March 08:00 and
  cancels it on 10 March 09:00 (refunded in full);
- Alice orders #1005 on 12 March 15:00: three "Discontinued Mug" (12.00) whose product was deleted.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines import ingest
from pipelines import run as pipeline_run
from pipelines.storage import read_clean
from shopfeast.cli import app
from shopfeast.importers import shopify
from tests.support import oracle

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
EXPORTED = "2025-03-20T00:00:00Z"
NOW = "2025-03-21T00:00:00Z"
BOB, ALICE = "207119551", "207119552"
IPOD, HOODIE, MUG = "632910392", "921728736", "deleted:MUG-OLD"
PINK_IPOD, HOODIE_VARIANT = "808950810", "39072856"  # the line items' variants
PII = (
    "Norman",
    "bob.norman",
    "Liddell",
    "alice@example.org",
    "guest@example.net",
    "Chestnut",
    "Rabbit Hole",
    "555-0100",
    "5550100",
    "555-0199",
    "40202",
    "leave at the door",
    "likes hoodies",
    "216.191.105.146",
)


def at(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def _import(src: Path, out: Path, **kw) -> dict:
    return shopify.run(src, out, exported_at=EXPORTED, quiet=True, **kw)


def _ingest(raw: Path, data: Path, now: str = NOW) -> dict:
    assert ingest.run(raw_dir=raw, data_dir=data, now=now) == 0
    return json.loads((data / "reports" / "validation_report.json").read_text())


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("shopify")
    return {
        kind: (root / kind, _import(FIXTURES / kind, root / kind))
        for kind in ("rest", "bulk", "csv")
    }


def _orders(raw: Path) -> pd.DataFrame:
    df = pd.read_parquet(raw / "orders.parquet")
    return df.sort_values(["order_id", "updated_at"]).reset_index(drop=True)


@pytest.mark.parametrize("kind", ["rest", "bulk"])
def test_orders_become_versions_with_refunds_cancellations_and_guests(imported, kind):
    raw, report = imported[kind]
    o = _orders(raw)
    versions = {oid: g.to_dict("records") for oid, g in o.groupby("order_id")}
    assert set(versions) == {"450789469", "450789470", "450789472", "450789473"}  # not test #1003
    bob = versions["450789469"]
    assert [v["updated_at"] for v in bob] == [
        at("2025-03-05 10:00"),
        at("2025-03-08 12:00"),
        at("2025-03-15 12:00"),
    ]
    assert [v["refunded_amount"] for v in bob] == [0.0, 40.0, 65.0]  # the failed 25.00 is not in
    assert [v["status"] for v in bob] == ["completed", "partially_refunded", "partially_refunded"]
    assert pd.isna(bob[0]["refund_ts"]) and bob[2]["refund_ts"] == at("2025-03-15 12:00")
    assert {(v["total_amount"], v["discount_amount"], v["customer_id"]) for v in bob} == {
        (289.0, 10.0, BOB)
    }
    assert [v["channel"] for v in versions["450789470"]] == ["pos"]
    assert pd.isna(versions["450789470"][0]["customer_id"])  # the guest
    alice = versions["450789472"]
    assert [(v["status"], v["updated_at"]) for v in alice] == [
        ("completed", at("2025-03-09 08:00")),
        ("cancelled", at("2025-03-10 09:00")),
    ]
    assert alice[0]["channel"] == "mobile_app"
    assert set(o["currency"]) == {"USD"} and report["currencies"] == ["USD"]
    counts = report["counts"]
    assert counts["orders"] == {"read": 5, "test_excluded": 1, "unchanged": 0, "written": 7}
    assert counts["order_items"]["read"] == 6 and counts["order_items"]["test_excluded"] == 1
    assert report["guest_orders"] == 1 and report["deleted_products"] == 1

    items = pd.read_parquet(raw / "order_items.parquet")
    lines = sorted(
        zip(
            items["order_id"],
            items["product_id"],
            items["variant_id"].fillna("-"),
            items["quantity"],
            items["unit_price"],
            items["discount"],
            strict=True,
        )
    )
    # variants: the pink 8GB iPod, the one hoodie; the deleted mug's line has none (REST null,
    # bulk `variant: null`); the test order's red iPod (49148385) is left out with its order
    assert lines == [
        ("450789469", IPOD, PINK_IPOD, 1, 199.0, 10.0),
        ("450789469", HOODIE, HOODIE_VARIANT, 2, 50.0, 0.0),
        ("450789470", HOODIE, HOODIE_VARIANT, 1, 50.0, 0.0),
        ("450789472", IPOD, PINK_IPOD, 1, 199.0, 0.0),
        ("450789473", MUG, "-", 3, 12.0, 0.0),
    ]


def test_the_csv_export_has_no_variant_ids(imported):
    """Shopify's orders CSV names a line's variant only by `Lineitem sku` and `Lineitem name`
    (text the merchant typed, not an id): variant_id stays empty rather than made up."""
    items = pd.read_parquet(imported["csv"][0] / "order_items.parquet")
    assert len(items) == 5 and items["variant_id"].isna().all()


@pytest.mark.parametrize("kind", ["rest", "bulk", "csv"])
def test_products_and_customers(imported, kind):
    raw, _ = imported[kind]
    p = pd.read_parquet(raw / "products.parquet").set_index("product_id")
    ipod, hoodie = ("ipod-nano", "hoodie") if kind == "csv" else (IPOD, HOODIE)
    assert p.loc[ipod, ["name", "category", "brand", "price"]].tolist() == [
        "IPod Nano - 8GB",
        "Cult Products",
        "Apple",
        199.0,  # the lowest variant price (199.00, 209.00)
    ]
    assert p.loc[ipod, "tags"] == "Emotive, Flash Memory, MP3, Music"
    assert p.loc[ipod, "inventory_quantity"] == 30 and bool(p.loc[ipod, "is_active"])
    assert pd.isna(p.loc[hoodie, "category"]) and p.loc[hoodie, "brand"] == "Acme"
    assert not p.loc[hoodie, "is_active"]  # archived
    mug = p.loc[MUG]  # the deleted product of an old line: a placeholder, inactive
    assert (mug["name"], mug["price"], bool(mug["is_active"])) == ("Discontinued Mug", 12.0, False)
    assert mug["created_at"] == at("2025-03-12 15:00")
    c = pd.read_parquet(raw / "customers.parquet").set_index("customer_id")
    assert c.loc[BOB, ["country", "email_opt_in"]].tolist() == ["US", True]
    assert c.loc[ALICE, ["country", "email_opt_in"]].tolist() == ["CA", False]
    if kind == "csv":  # the CSV exports have no dates: sign-up = the first order
        assert c.loc[BOB, "signup_ts"] == at("2025-03-05 10:00")
    else:  # the first import takes each profile from its creation on
        assert c.loc[BOB, "signup_ts"] == c.loc[BOB, "updated_at"] == at("2025-03-01 14:00")
        assert p.loc[ipod, "created_at"] == at("2025-02-01 15:00")


def test_the_csv_export_knows_no_refund_time(imported):
    """The orders CSV has the refunded amount but not when: it counts from the export on (never
    before it happened). Customers are matched by e-mail in memory; the guest's e-mail matches
    nobody and stays a guest."""
    raw, report = imported["csv"]
    o = _orders(raw)
    bob = o[o["order_id"] == "450789469"]
    assert bob["refunded_amount"].tolist() == [0.0, 65.0]
    assert bob["refund_ts"].iloc[1] == at(EXPORTED)
    assert set(o["customer_id"].dropna()) == {BOB, ALICE}
    assert report["guest_orders"] == 1 and report["guest_orders_unmatched_email"] == 1
    assert report["counts"]["orders"]["test_excluded"] == 1  # the Bogus gateway


@pytest.mark.parametrize("kind", ["rest", "bulk", "csv"])
def test_no_personal_data_is_written(imported, kind):
    raw, _ = imported[kind]
    texts = []
    for path in raw.rglob("*"):
        if path.suffix == ".parquet":
            df = pq.read_table(path).to_pandas()
            texts += [str(v) for col in df for v in df[col].tolist()]
            texts += list(df.columns)
        elif path.is_file():
            texts.append(path.read_text())
    blob = "\n".join(texts)
    assert not [p for p in PII if p in blob]


@pytest.mark.parametrize(
    ("kind", "memberships", "variants"),
    [
        ("rest", 2, [PINK_IPOD, HOODIE_VARIANT, HOODIE_VARIANT, PINK_IPOD, "-"]),
        ("bulk", 3, [PINK_IPOD, HOODIE_VARIANT, HOODIE_VARIANT, PINK_IPOD, "-"]),
        ("csv", 0, ["-"] * 5),  # the CSV exports hold no collections and no variant ids
    ],
)
def test_rows_are_accounted_for_through_ingest(imported, tmp_path, kind, memberships, variants):
    """rows in = clean + quarantined + excluded test orders, per table, for each export kind."""
    raw, report = imported[kind]
    rep = _ingest(raw, tmp_path / "data")
    counts = report["counts"]
    for table in ("customers", "products", "product_collections", "orders", "order_items"):
        t = rep["tables"].get(table, {"rows_in": 0, "clean": 0, "quarantined": 0})
        written = report["written"].get(table, 0)
        assert t["rows_in"] == written == t["clean"] + t["quarantined"], table
    m = counts["product_collections"]  # every membership read is written or known unchanged
    assert m["read"] == m["joined"] + m["unchanged"] == memberships == m["written"]
    assert rep["totals"]["quarantined"] == 0
    orders = read_clean(tmp_path / "data", "orders")
    assert (
        counts["orders"]["read"] == orders["order_id"].nunique() + counts["orders"]["test_excluded"]
    )
    assert (
        counts["order_items"]["read"]
        == rep["tables"]["order_items"]["clean"] + counts["order_items"]["test_excluded"]
    )
    assert counts["products"]["read"] + report["deleted_products"] == report["written"]["products"]
    items = read_clean(tmp_path / "data", "order_items")  # ingest carries the variant through
    assert sorted(items["variant_id"].fillna("-")) == sorted(variants)


VIEWS = {
    "customer_activity": "customer_id",
    "product_stats": "product_id",
    "collection_stats": "collection_id",
    "product_membership": "product_id",
    "customer_collections": "customer_id",
}


def _features(data: Path) -> dict[str, dict]:
    pipeline_run.run(data, mode="historical", only=list(VIEWS), echo=False)
    return {v: oracle.by_entity(oracle.read_source(data, v), key) for v, key in VIEWS.items()}


@pytest.fixture(scope="module")
def features(imported, tmp_path_factory) -> dict[str, dict]:
    data = tmp_path_factory.mktemp("shopify-data") / "data"
    _ingest(imported["rest"][0], data)
    return _features(data)


@pytest.mark.parametrize(
    ("customer", "day", "orders_30d", "spend_30d"),
    [
        (BOB, "2025-03-06", 1, 289.0),  # placed on 5 March
        (BOB, "2025-03-08", 1, 289.0),  # the first refund is on 8 March at noon: not yet
        (BOB, "2025-03-09", 1, 249.0),  # 289 - 40
        (BOB, "2025-03-15", 1, 249.0),
        (BOB, "2025-03-16", 1, 224.0),  # 289 - 40 - 25 (the failed transaction does not count)
        (ALICE, "2025-03-10", 1, 199.0),  # placed on 9 March, cancelled on the 10th
        (ALICE, "2025-03-11", 0, 0.0),  # cancelled: no longer counts
        (ALICE, "2025-03-13", 1, 36.0),  # the mugs of a deleted product
    ],
)
def test_customer_features_match_hand_computed_values(
    features, customer, day, orders_30d, spend_30d
):
    row = oracle.lookup(features["customer_activity"], customer, at(day))
    assert (row["orders_30d"], row["spend_30d"]) == (orders_30d, pytest.approx(spend_30d, abs=1e-9))


@pytest.mark.parametrize(
    ("product", "day", "units_30d"),
    [
        (HOODIE, "2025-03-07", 3),  # Bob's two and the guest's one
        (IPOD, "2025-03-08", 1),  # Bob's; the test order's iPod is not there
        (IPOD, "2025-03-10", 2),  # and Alice's, not yet cancelled
        (IPOD, "2025-03-11", 1),  # cancelled
        (MUG, "2025-03-13", 3),
    ],
)
def test_product_features_match_hand_computed_values(features, product, day, units_30d):
    row = oracle.lookup(features["product_stats"], product, at(day))
    assert row["product_units_sold_30d"] == units_30d


@pytest.mark.parametrize(
    ("day", "units_7d", "revenue_7d", "share_30d"),
    [
        # Bob's iPod (199 - 10) and two hoodies (100), the guest's hoodie (50)
        ("2025-03-07", 4, 339.0, 1.0),
        ("2025-03-10", 5, 538.0, 1.0),  # and Alice's iPod, not yet cancelled
        ("2025-03-11", 4, 339.0, 1.0),  # cancelled
        # Bob's order left the 7 days; over 30 days the mugs (36) sell outside the collection
        ("2025-03-13", 1, 50.0, 339.0 / 375.0),
    ],
)
def test_collection_features_match_hand_computed_values(
    features, day, units_7d, revenue_7d, share_30d
):
    """The Summer collection (custom, via collects): the iPod and the hoodie."""
    row = oracle.lookup(features["collection_stats"], "841564295", at(day))
    assert row["collection_products"] == 2
    assert (row["collection_price_min"], row["collection_price_max"]) == (50.0, 199.0)
    assert row["collection_price_median"] == pytest.approx(124.5)
    assert row["collection_units_7d"] == units_7d
    assert row["collection_revenue_7d"] == pytest.approx(revenue_7d, abs=1e-9)
    assert row["collection_sales_share_30d"] == pytest.approx(share_30d, abs=1e-12)
    assert row["collection_views_30d"] == 0 and pd.isna(row["collection_conversion_rate_30d"])
    assert oracle.lookup(features["collection_stats"], "841564295", at("2025-02-05")) is None


def test_a_products_collections(features):
    rows = features["product_membership"]
    ipod = oracle.lookup(rows, IPOD, at("2025-03-01"))
    assert (list(ipod["collection_ids"]), ipod["collection_count"]) == (["841564295"], 1)
    assert list(oracle.lookup(rows, IPOD, at("2025-02-05"))["collection_ids"]) == []  # joined 5th
    assert oracle.lookup(rows, MUG, at("2025-03-13"))["collection_count"] == 0


def test_the_collections_of_recent_purchases_and_the_rankers_match(features):
    """customer_collections and collection_match (ranking_model_v4) on the REST shop, whose one
    collection with members is Summer (841564295: the iPod and the hoodie, since 5 February)."""
    from featurestore.odfv import collection_match

    rows = features["customer_collections"]

    def held(customer: str, day: str) -> tuple[list[str], int]:
        row = oracle.lookup(rows, customer, at(day))
        return list(row["collection_ids_90d"]), row["collection_count_90d"]

    assert held(BOB, "2025-03-05") == ([], 0)  # his order is at 10:00 that day
    assert held(BOB, "2025-03-06") == (["841564295"], 1)  # the iPod and the hoodies: Summer
    assert held(ALICE, "2025-03-09") == ([], 0)
    assert held(ALICE, "2025-03-10") == (["841564295"], 1)  # the iPod of #1004
    # #1004 was cancelled on the 10th but placed live (as the 90-day item features count it);
    # the deleted mug of #1005 is in no collection
    assert held(ALICE, "2025-03-13") == (["841564295"], 1)

    def match(customer: str, product: str, day: str) -> tuple:
        mine = oracle.lookup(features["product_membership"], product, at(day))
        theirs = oracle.lookup(rows, customer, at(day))
        out = collection_match(
            {
                "collection_ids": [list(mine["collection_ids"])],
                "collection_ids_90d": [list(theirs["collection_ids_90d"])],
            }
        )
        return tuple(out[k][0] for k in out)

    assert match(ALICE, HOODIE, "2025-03-13") == (1, 1, 1.0)  # shares Summer with her iPod
    assert match(BOB, HOODIE, "2025-03-05") == (0, 0, 0.0)  # nothing bought yet
    shares, shared, share = match(BOB, MUG, "2025-03-13")
    assert (shares, shared) == (0, 0) and math.isnan(share)  # the mug is in no collection


def test_collections_are_many_to_many(imported):
    raw, _ = imported["bulk"]
    m = pd.read_parquet(raw / "product_collections.parquet")
    got = sorted(zip(m["product_id"], m["collection"], m["updated_at"], strict=True))
    assert got == [
        (IPOD, "Smart iPods", at("2025-02-01 15:00")),  # no time in bulk: from the product's
        (IPOD, "Summer", at("2025-02-01 15:00")),
        (HOODIE, "Summer", at("2025-02-03 00:00")),
    ]
    rest = pd.read_parquet(imported["rest"][0] / "product_collections.parquet")
    assert set(rest["updated_at"]) == {at("2025-02-05")}  # the collects' created_at


def _bulk_collections(dst: Path, members: dict[str, list[str]]) -> Path:
    """The bulk fixtures with the collections' products replaced by `members` (collection gid
    number -> product gid numbers)."""
    shutil.copytree(FIXTURES / "bulk", dst)
    lines = []
    for line in (FIXTURES / "bulk" / "bulk-collections.jsonl").read_text().splitlines():
        obj = json.loads(line)
        if "__parentId" in obj:
            continue
        lines.append(line)
        cid = obj["id"].rsplit("/", 1)[1]
        lines += [
            json.dumps({"id": f"gid://shopify/Product/{p}", "__parentId": obj["id"]})
            for p in members.get(cid, [])
        ]
    (dst / "bulk-collections.jsonl").write_text("\n".join(lines) + "\n")
    return dst


SUMMER, SMART = "841564295", "482865238"


def test_collection_changes_become_a_change_log(tmp_path):
    """Shopify keeps only today's memberships: the daily import writes where one began or ended.
    Day 2 (exported 14 March) moves the hoodie from Summer to Smart iPods; the change counts from
    the export on, and the product's collections follow it."""
    raw = tmp_path / "raw"
    day1 = shopify.run(FIXTURES / "bulk", raw, exported_at="2025-03-10T00:00:00Z", quiet=True)
    assert day1["counts"]["product_collections"] == {
        "read": 3,
        "joined": 3,
        "left": 0,
        "unchanged": 0,
        "written": 3,
    }
    data = tmp_path / "data"
    _ingest(raw, data)
    moved = _bulk_collections(tmp_path / "export2", {SUMMER: [IPOD], SMART: [IPOD, HOODIE]})
    day2 = shopify.run(moved, raw, exported_at="2025-03-14T00:00:00Z", quiet=True)
    m = pd.read_parquet(raw / "product_collections.parquet")
    cols = ("product_id", "collection_id", "updated_at", "in_collection")
    got = sorted(zip(*(m[c] for c in cols), strict=True))
    assert got == [
        (HOODIE, SMART, at("2025-03-14"), True),
        (HOODIE, SUMMER, at("2025-03-14"), False),
    ]
    assert day2["counts"]["product_collections"] == {
        "read": 3,
        "joined": 1,
        "left": 1,
        "unchanged": 2,
        "written": 2,
    }
    rep = _ingest(raw, data)
    t = rep["tables"]["product_collections"]
    assert (t["rows_in"], t["clean"], t["quarantined"]) == (2, 2, 0)
    feats = _features(data)
    rows = feats["product_membership"]
    assert list(oracle.lookup(rows, HOODIE, at("2025-03-14"))["collection_ids"]) == [SUMMER]
    assert list(oracle.lookup(rows, HOODIE, at("2025-03-15"))["collection_ids"]) == [SMART]
    summer = feats["collection_stats"]
    assert oracle.lookup(summer, SUMMER, at("2025-03-14"))["collection_products"] == 2
    assert oracle.lookup(summer, SUMMER, at("2025-03-15"))["collection_products"] == 1
    # the same export again: nothing changed, nothing written
    again = shopify.run(moved, raw, exported_at="2025-03-15T00:00:00Z", quiet=True)
    assert again["written"]["product_collections"] == 0
    assert again["counts"]["product_collections"]["unchanged"] == 3


def test_a_deleted_collect_ends_the_membership(tmp_path):
    """REST: `collects` list every custom collection's products; a collect gone since the last
    import (the product was taken out) ends the membership at the export."""
    raw = tmp_path / "raw"
    _import(FIXTURES / "rest", raw)
    export = tmp_path / "export2"
    shutil.copytree(FIXTURES / "rest", export)
    collects = json.loads((export / "collects.json").read_text())
    collects["collects"] = [c for c in collects["collects"] if str(c["product_id"]) != HOODIE]
    (export / "collects.json").write_text(json.dumps(collects))
    report = shopify.run(export, raw, exported_at="2025-03-22T00:00:00Z", quiet=True)
    m = pd.read_parquet(raw / "product_collections.parquet")
    assert list(zip(m["product_id"], m["updated_at"], m["in_collection"], strict=True)) == [
        (HOODIE, at("2025-03-22"), False)
    ]
    assert report["counts"]["product_collections"]["left"] == 1
    # without a collects file, nothing is known to have ended
    bare = tmp_path / "export3"
    shutil.copytree(export, bare)
    (bare / "collects.json").unlink()
    report = shopify.run(bare, raw, exported_at="2025-03-23T00:00:00Z", quiet=True)
    assert report["written"]["product_collections"] == 0


# --- incremental: the daily import ------------------------------------------------------------


def export_as_of(t: str, dst: Path) -> Path:
    """The REST dump the shop would have given at `t`: orders and refunds created before it,
    cancellations before it, `updated_at` no later than it."""
    t = at(t)
    dst.mkdir(parents=True)
    for path in (FIXTURES / "rest").iterdir():
        if path.name not in ("orders.jsonl", "customers.json"):
            shutil.copy(path, dst / path.name)
    customers = json.loads((FIXTURES / "rest" / "customers.json").read_text())["customers"]
    for c in customers:  # their later updates had not happened yet
        if at(c["updated_at"]) >= t:
            c["updated_at"] = c["created_at"]
    (dst / "customers.json").write_text(json.dumps({"customers": customers}))
    lines = []
    for line in (FIXTURES / "rest" / "orders.jsonl").read_text().splitlines():
        page = json.loads(line)
        kept = []
        for o in page["orders"]:
            if at(o["created_at"]) >= t:
                continue
            o["refunds"] = [r for r in o["refunds"] if at(r["created_at"]) < t]
            if o["cancelled_at"] and at(o["cancelled_at"]) >= t:
                o["cancelled_at"] = None
            stamps = [at(o["created_at"])] + [at(r["created_at"]) for r in o["refunds"]]
            o["updated_at"] = max(stamps).isoformat()
            kept.append(o)
        lines.append(json.dumps({"orders": kept}))
    (dst / "orders.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def test_the_daily_import_pulls_only_what_changed(tmp_path):
    """Day 1 exports the shop as of 9 March; day 2 the whole shop again. The watermark kept in the
    raw directory makes day 2's batch hold only the new versions (Bob's second refund, Alice's
    orders), and ingesting both batches gives what one import of everything gives."""
    raw = tmp_path / "raw"
    day1 = _import(export_as_of("2025-03-09", tmp_path / "export1"), raw)
    assert day1["watermark"] == at("2025-03-08 12:00").isoformat()
    data = tmp_path / "data"
    _ingest(raw, data)
    day2 = _import(FIXTURES / "rest", raw)
    assert day2["since"] == day1["watermark"]
    o = _orders(raw)
    assert list(zip(o["order_id"], o["updated_at"], strict=True)) == [
        ("450789469", at("2025-03-15 12:00")),  # the second refund: a new version
        ("450789472", at("2025-03-09 08:00")),
        ("450789472", at("2025-03-10 09:00")),
        ("450789473", at("2025-03-12 15:00")),
    ]
    assert set(pd.read_parquet(raw / "order_items.parquet")["order_id"]) == {
        "450789472",
        "450789473",
    }
    assert day2["counts"]["orders"]["unchanged"] == 1  # the guest's order
    rep = _ingest(raw, data)
    assert rep["totals"]["quarantined"] == 0

    whole = tmp_path / "whole"
    _import(FIXTURES / "rest", whole)
    _ingest(whole, tmp_path / "data-whole")
    for table in ("orders", "order_items"):
        a, b = (read_clean(d, table) for d in (data, tmp_path / "data-whole"))
        key = list(a.columns)
        pd.testing.assert_frame_equal(
            a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
        )
    # the profiles updated since day 1 got a change-log row each; features are the same
    c = read_clean(data, "customers")
    assert sorted(c.loc[c["updated_at"] > c["signup_ts"], "customer_id"]) == [BOB, ALICE]
    daily, once = _features(data), _features(tmp_path / "data-whole")
    for view in daily:
        assert _rows(daily[view]) == _rows(once[view]), view
    # importing the same export again changes nothing: no new rows, ingest says so
    again = _import(FIXTURES / "rest", raw)
    assert again["written"]["orders"] == 0


def _rows(split: dict[str, list[dict]]) -> list:
    return sorted(
        (k, r["event_timestamp"], *(str(r[f]) for f in sorted(r) if not f.endswith("timestamp")))
        for k, rows in split.items()
        for r in rows
    )


def test_cli_imports_and_reports_bad_files(tmp_path):
    runner = CliRunner()
    out = tmp_path / "raw"
    result = runner.invoke(
        app,
        ["import", "shopify", str(FIXTURES / "bulk"), "--out", str(out), "--exported-at", EXPORTED],
    )
    assert result.exit_code == 0, result.output
    assert "test orders left out: 1" in result.output
    assert (out / "orders.parquet").exists() and (out / "_meta" / "shopify_state.json").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "orders.jsonl").write_text('{"orders": []}\n{"orders": [\n')
    result = runner.invoke(app, ["import", "shopify", str(bad), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 2
    assert "orders.jsonl: line 2: not valid JSON" in result.output
