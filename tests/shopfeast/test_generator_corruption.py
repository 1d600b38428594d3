"""`--corrupt-fraction`: bad rows for every rule, each really breaking its rule, recorded exactly,
and nothing else touched (drop the manifest's rows and the uncorrupted shop remains)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contract import EVENT_TYPES, INGEST_ORDER, ORDER_STATUSES, RULES, TABLES
from shopfeast import generator
from shopfeast.generator.corruption import TABLE_RULES

SHOP = {"customers": 500, "products": 80, "days": 60, "seed": 21}
F = 0.03


@pytest.fixture(scope="module")
def shops(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("corrupt")
    bad = generator.run(out=root / "bad", fmt="csv", corrupt_fraction=F, quiet=True, **SHOP)
    generator.run(out=root / "good", fmt="csv", quiet=True, **SHOP)
    manifest = pd.read_parquet(root / "bad" / "_meta" / "corruptions.parquet")
    pd.testing.assert_frame_equal(manifest, bad.manifest.astype(manifest.dtypes.to_dict()))
    return root / "bad", root / "good", manifest


def _text(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False, na_values=[""])


def test_every_rule_is_injected_in_proportion(shops):
    bad, good, manifest = shops
    assert set(manifest["rule"]) == set(RULES)
    for table, rules in TABLE_RULES.items():
        rows = manifest[manifest["table"] == table]
        assert set(rows["rule"]) == set(rules), table
        n_good = len(_text(good, table))
        # about F of the rows: one share per rule, bots in whole sessions of 40
        assert 0.5 * F * n_good <= len(rows) <= 1.6 * F * n_good + 40 + len(rules), table
        assert rows["row"].is_unique


def test_dropping_the_manifest_rows_gives_back_the_clean_shop(shops):
    bad, good, manifest = shops
    for table in INGEST_ORDER:
        rows = manifest.loc[manifest["table"] == table, "row"]
        kept = _text(bad, table).drop(index=rows.to_numpy()).reset_index(drop=True)
        pd.testing.assert_frame_equal(kept, _text(good, table), check_dtype=False, obj=table)


def test_each_bad_row_breaks_its_rule(shops):
    bad, good, manifest = shops
    tables = {t: _text(bad, t) for t in INGEST_ORDER}
    clean = {t: _text(good, t) for t in INGEST_ORDER}
    now_plus_year = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=366)
    signup = clean["customers"].groupby("customer_id")["signup_ts"].first().map(pd.Timestamp)

    def ts(v) -> pd.Timestamp:
        return pd.Timestamp(v)

    for (table, rule), group in manifest.groupby(["table", "rule"]):
        df = tables[table]
        spec = TABLES[table]
        rows = df.loc[group["row"].to_numpy()]
        before = {i: df.iloc[:i] for i in group["row"]} if rule.startswith("duplicate") else {}
        for i, row in rows.iterrows():
            where = f"{table} row {i} ({rule})"
            if rule == "missing_required":
                assert row[spec.required_columns].isna().any(), where
            elif rule == "unparseable":
                assert any(v in ("not a date", "twelve", "two", "five") for v in row.dropna()), (
                    where
                )
            elif rule == "invalid_value":
                col = "status" if table == "orders" else "event_type"
                assert row[col] not in (ORDER_STATUSES + EVENT_TYPES), where
            elif rule == "negative_value":
                nums = [float(row[c]) for c in ("price", "total_amount", "unit_price") if c in row]
                assert min(nums) < 0 or (table == "order_items" and int(row["quantity"]) <= 0)
            elif rule == "rating_out_of_range":
                assert not 1 <= float(row["rating"]) <= 5, where
            elif rule == "refund_exceeds_total":
                assert float(row["refunded_amount"]) > float(row["total_amount"]), where
            elif rule == "future_timestamp":
                assert ts(row[spec.time_column or "signup_ts"]) > now_plus_year, where
            elif rule == "duplicate_row":
                assert (before[i] == row).all(axis=1).any() or (
                    before[i].fillna("∅") == row.fillna("∅")
                ).all(axis=1).any(), where
            elif rule == "duplicate_id":
                earlier = before[i]
                same = (_keys(earlier, table) == _keys(row.to_frame().T, table).iloc[0]).all(axis=1)
                assert same.any(), where
                assert not (earlier[same].fillna("∅") == row.fillna("∅")).all(axis=1).any()
            elif rule == "unknown_order":
                assert row["order_id"] not in set(clean["orders"]["order_id"]), where
            elif rule == "unknown_product":
                assert row["product_id"] not in set(clean["products"]["product_id"]), where
            elif rule == "unknown_customer":
                assert row["customer_id"] not in set(clean["customers"]["customer_id"]), where
            elif rule == "before_signup":
                assert ts(row["order_ts"]) < signup[row["customer_id"]], where
        if rule == "bot_session":
            for _, s in rows.groupby("session_id"):
                span = pd.to_datetime(s["event_ts"]).agg(["min", "max"])
                assert len(s) >= 30 and (span["max"] - span["min"]).total_seconds() < 60
                assert s["session_id"].iloc[0] not in set(clean["events"]["session_id"])


def _keys(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """The table key's raw values, with the contract's default (an order's `updated_at` is its
    `order_ts` when the raw file leaves it empty)."""
    keys = df[list(TABLES[table].key)].copy()
    if table == "orders":
        keys["updated_at"] = keys["updated_at"].where(keys["updated_at"].notna(), df["order_ts"])
    return keys


def test_copies_follow_their_original(shops):
    bad, _, manifest = shops
    for table in ("orders", "events", "customers"):
        df = _text(bad, table)
        keys = _keys(df, table)
        for rule in ("duplicate_row", "duplicate_id"):
            for i in manifest.loc[(manifest["table"] == table) & (manifest["rule"] == rule), "row"]:
                first = df.index[(keys == keys.loc[i]).all(axis=1)][0]
                assert first < i, (table, rule, i)


def test_parquet_turns_only_unparseable_columns_into_text(tmp_path):
    shop = generator.run(out=tmp_path, corrupt_fraction=F, quiet=True, **SHOP)
    texty = {
        "customers": {"signup_ts"},
        "products": {"price", "created_at"},
        "orders": {"order_ts", "total_amount"},
        "order_items": {"quantity", "unit_price"},
        "events": {"event_ts"},
        "reviews": {"rating", "review_ts"},
    }
    for table in texty:  # product_collections is never corrupted
        schema = pq.read_schema(tmp_path / f"{table}.parquet")
        text = {
            c.name
            for c in TABLES[table].columns
            if c.kind != "string" and schema.field(c.name).type == pa.string()
        }
        assert text and text <= texty[table], (table, text)
        for col in TABLES[table].columns:
            if col.name not in text and col.kind == "timestamp":
                assert schema.field(col.name).type == pa.timestamp("us", tz="UTC")
        assert (
            shop.tables[table].num_rows
            == pq.ParquetFile(tmp_path / f"{table}.parquet").metadata.num_rows
        )
