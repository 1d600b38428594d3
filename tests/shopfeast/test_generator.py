"""The generator writes the raw contract: every column, right types, valid references, and the
same bytes for the same seed, in parquet, CSV and JSON lines."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.contract import (
    ARROW_TYPES,
    EVENT_TYPES,
    EVENTS_NEEDING_PRODUCT,
    INGEST_ORDER,
    ORDER_STATUSES,
    TABLES,
)
from shopfeast import generator

SMALL = {"customers": 400, "products": 80, "days": 90, "seed": 5}


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "raw"
    generator.run(out=out, quiet=True, **SMALL)
    return out


@pytest.fixture(scope="module")
def frames(raw) -> dict[str, pd.DataFrame]:
    return {t: pd.read_parquet(raw / f"{t}.parquet") for t in INGEST_ORDER}


def test_every_contract_table_and_column_with_its_type(raw):
    for name in INGEST_ORDER:
        schema = pq.read_schema(raw / f"{name}.parquet")
        spec = TABLES[name]
        assert schema.names == spec.column_names, name
        for col in spec.columns:
            assert schema.field(col.name).type == ARROW_TYPES[col.kind], (name, col.name)
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [f"{t}.parquet" for t in INGEST_ORDER] + ["_meta"]
    )


def test_same_seed_same_bytes_other_seed_other_shop(tmp_path):
    for fmt in ("parquet", "csv"):
        a, b = tmp_path / f"a_{fmt}", tmp_path / f"b_{fmt}"
        generator.run(out=a, fmt=fmt, quiet=True, corrupt_fraction=0.02, **SMALL)
        generator.run(out=b, fmt=fmt, quiet=True, corrupt_fraction=0.02, **SMALL)
        assert _digest(a) == _digest(b), fmt
    other = tmp_path / "other"
    generator.run(out=other, quiet=True, **{**SMALL, "seed": 6})
    assert (other / "orders.parquet").read_bytes() != (
        a.parent / "a_parquet" / "orders.parquet"
    ).read_bytes()


def test_csv_and_jsonl_hold_the_same_shop_as_iso_text(tmp_path, frames):
    for fmt in ("csv", "jsonl"):
        out = tmp_path / fmt
        generator.run(out=out, fmt=fmt, quiet=True, **SMALL)
        for name in ("orders", "reviews"):
            path = out / f"{name}.{fmt}"
            text = (
                pd.read_csv(path, dtype=str, keep_default_na=False)
                if fmt == "csv"
                else pd.read_json(path, lines=True, dtype=False, convert_dates=False)
            )
            ref = frames[name]
            assert len(text) == len(ref), (fmt, name)
            ts_col = TABLES[name].time_column
            assert text[ts_col].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").all()
            parsed = pd.to_datetime(text[ts_col], utc=True)
            assert (parsed.to_numpy() == ref[ts_col].dt.tz_convert("UTC").to_numpy()).all()
            assert list(text[TABLES[name].key[0]]) == list(ref[TABLES[name].key[0]])


def test_keys_are_unique_and_references_resolve(frames):
    c, p, _, o, i, e, r = (frames[t] for t in INGEST_ORDER)
    for name, df in frames.items():
        key = TABLES[name].key
        if key:
            assert not df.duplicated(list(key)).any(), name
        assert not df.duplicated().any(), f"{name} has exact duplicate rows"
    assert set(i["order_id"]) == set(o["order_id"])  # every order has lines, every line an order
    assert set(i["product_id"]) <= set(p["product_id"])
    known = set(c["customer_id"])
    for df in (o, e, r):
        assert set(df["customer_id"].dropna()) <= known
    assert set(e["product_id"].dropna()) <= set(p["product_id"])
    assert set(r["product_id"]) <= set(p["product_id"])


def test_values_are_in_range_and_in_time(frames):
    c, p, _, o, i, e, r = (frames[t] for t in INGEST_ORDER)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    end = start + pd.Timedelta(days=SMALL["days"])
    assert set(o["status"]) == set(ORDER_STATUSES)
    assert set(e["event_type"]) == set(EVENT_TYPES)
    assert e.loc[e["event_type"].isin(EVENTS_NEEDING_PRODUCT), "product_id"].notna().all()
    assert (p["price"] >= 0).all() and (i["unit_price"] >= 0).all() and (i["quantity"] > 0).all()
    assert (o["total_amount"] >= 0).all() and (o["refunded_amount"] <= o["total_amount"]).all()
    assert r["rating"].between(1, 5).all()
    for df, col in ((o, "order_ts"), (e, "event_ts"), (r, "review_ts"), (o, "refund_ts")):
        ts = df[col].dropna()
        assert (ts < end).all(), col
    assert ((o["order_ts"] >= start) & (e["event_ts"].min() >= start)).all()
    # orders after their customer's signup; change-log rows never before signup
    signup = c.groupby("customer_id")["signup_ts"].first()
    placed = o.dropna(subset=["customer_id"])
    assert (placed["order_ts"].to_numpy() > signup.reindex(placed["customer_id"]).to_numpy()).all()
    assert (c["updated_at"] >= c["signup_ts"]).all()
    first = c.sort_values("updated_at").groupby("customer_id").first()
    assert (first["updated_at"] == first["signup_ts"]).all()
    assert (p["updated_at"] >= p["created_at"]).all()


def test_totals_add_up_from_lines(frames):
    o, i = frames["orders"], frames["order_items"]
    line = i["quantity"] * i["unit_price"] - i["discount"]
    total = line.groupby(i["order_id"]).sum().reindex(o["order_id"]).to_numpy()
    assert np.allclose(total, o["total_amount"].to_numpy(), atol=0.011)
    discount = i.groupby("order_id")["discount"].sum().reindex(o["order_id"]).to_numpy()
    assert np.allclose(discount, o["discount_amount"].to_numpy(), atol=0.011)


def test_unit_price_is_the_price_as_of_the_order(frames):
    p, o, i = frames["products"], frames["orders"], frames["order_items"]
    lines = i.merge(o[["order_id", "order_ts"]], on="order_id").sort_values("order_ts")
    log = p[["product_id", "updated_at", "price"]].sort_values("updated_at")
    asof = pd.merge_asof(lines, log, left_on="order_ts", right_on="updated_at", by="product_id")
    assert np.allclose(asof["unit_price"], asof["price"])
    # and prices do change over time
    assert (p.groupby("product_id")["price"].nunique() > 1).sum() > 10


def test_profiles_change_over_time(frames):
    c = frames["customers"].sort_values(["customer_id", "updated_at"])
    versions = c.groupby("customer_id").size()
    assert (versions > 1).mean() > 0.1
    tiers = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}
    rank = c["loyalty_status"].map(tiers)
    # loyalty only goes up, and some customers are upgraded inside the window
    assert (rank.groupby(c["customer_id"]).diff().dropna() >= 0).all()
    assert (rank.groupby(c["customer_id"]).diff() > 0).sum() > 5
    assert c.groupby("customer_id")["preferred_device"].nunique().max() > 1
    assert set(c["gender"].dropna()) >= {"female", "male"}


def test_cli_generate_writes_the_shop(tmp_path):
    from shopfeast.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--out",
            str(out),
            "--customers",
            "50",
            "--products",
            "20",
            "--days",
            "30",
            "--seed",
            "1",
            "--format",
            "csv",
            "--corrupt-fraction",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.glob("*.csv")} == {f"{t}.csv" for t in INGEST_ORDER}
    assert (out / "_meta" / "corruptions.parquet").exists()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="format"):
        generator.run(out=tmp_path, customers=10, products=5, days=5, seed=1, fmt="xml")
    with pytest.raises(ValueError):
        generator.generate(customers=0, products=5, days=5, seed=1)


def test_a_tiny_shop_still_works():
    shop = generator.generate(customers=5, products=3, days=3, seed=2, corrupt_fraction=0.1)
    assert shop.tables["customers"].num_rows >= 5
    assert shop.tables["products"].num_rows >= 3
