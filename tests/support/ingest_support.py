"""A tiny hand-written shop in the raw contract, and helpers to write it and read results back.

Used by tests/test_ingest_*.py: each test copies the base shop, adds the rows it wants judged,
writes the files in some format, ingests, and looks at the clean tables, quarantine and report.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.ingest import ingest, parse_now

NOW = "2025-06-01T00:00:00Z"

BASE: dict[str, list[dict[str, str]]] = {
    "customers": [
        {
            "customer_id": "c1",
            "signup_ts": "2025-01-01T00:00:00Z",
            "gender": "F",
            "birth_year": "1980",
            "is_premium": "yes",
        },
        {
            "customer_id": "c2",
            "signup_ts": "2025-01-05T00:00:00Z",
            "gender": "male",
            "birth_year": "1990",
            "is_premium": "no",
        },
    ],
    "products": [
        {
            "product_id": "p1",
            "name": "Tea",
            "category": "drinks",
            "price": "3.5",
            "created_at": "2024-12-01",
        },
        {
            "product_id": "p2",
            "name": "Cup",
            "category": "",
            "price": "8",
            "created_at": "2024-12-01",
        },
    ],
    "orders": [
        {
            "order_id": "o1",
            "customer_id": "c1",
            "order_ts": "2025-02-01T10:00:00Z",
            "status": "completed",
            "total_amount": "11.5",
            "refunded_amount": "",
        },
        {
            "order_id": "o2",
            "customer_id": "c2",
            "order_ts": "2025-02-02T11:00:00Z",
            "status": "refunded",
            "total_amount": "3.5",
            "refunded_amount": "3.5",
        },
        {
            "order_id": "o3",
            "customer_id": "",
            "order_ts": "2025-02-03T12:00:00Z",
            "status": "completed",
            "total_amount": "8",
            "refunded_amount": "",
        },
    ],
    "order_items": [
        {"order_id": "o1", "product_id": "p1", "quantity": "1", "unit_price": "3.5"},
        {"order_id": "o1", "product_id": "p2", "quantity": "1", "unit_price": "8"},
        {"order_id": "o2", "product_id": "p1", "quantity": "1", "unit_price": "3.5"},
        {"order_id": "o3", "product_id": "p2", "quantity": "1", "unit_price": "8"},
    ],
    "events": [
        {
            "event_id": "e1",
            "customer_id": "c1",
            "session_id": "s1",
            "event_type": "page_view",
            "event_ts": "2025-02-01T09:50:00Z",
            "product_id": "",
        },
        {
            "event_id": "e2",
            "customer_id": "c1",
            "session_id": "s1",
            "event_type": "product_view",
            "event_ts": "2025-02-01T09:52:00Z",
            "product_id": "p1",
        },
        {
            "event_id": "e3",
            "customer_id": "",
            "session_id": "s2",
            "event_type": "search",
            "event_ts": "2025-02-03T08:00:00Z",
            "product_id": "",
        },
    ],
    "reviews": [
        {
            "review_id": "r1",
            "customer_id": "c1",
            "product_id": "p1",
            "rating": "5",
            "title": "Great",
            "body": "Lovely tea, <b>really</b> 🍵",
            "review_ts": "2025-02-10",
        },
    ],
}


def shop(**extra: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """The base shop with extra rows appended per table (their _row is len(BASE[table]) + i)."""
    tables = copy.deepcopy(BASE)
    for table, rows in extra.items():
        tables.setdefault(table, []).extend(rows)
    return tables


def write_raw(raw: Path, tables: dict[str, list[dict[str, str]]], fmt: str = "csv") -> Path:
    """Write each table as `<table>.<fmt>`; every value is text, as a CSV export would be."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        df = pd.DataFrame(rows, dtype=object)
        path = raw / f"{name}.{fmt}"
        if fmt in ("csv", "csv.gz"):
            df.to_csv(path, index=False, compression="gzip" if fmt.endswith("gz") else None)
        elif fmt in ("jsonl", "jsonl.gz"):
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            if fmt.endswith("gz"):
                path.write_bytes(gzip.compress(text.encode()))
            else:
                path.write_text(text)
        elif fmt == "parquet":
            pq.write_table(pa.Table.from_pandas(df.astype("string"), preserve_index=False), path)
        else:
            raise ValueError(fmt)
    return raw


def run(raw: Path, data: Path, now: str = NOW) -> dict | None:
    return ingest(raw, data, parse_now(now))


def quarantine(data: Path, table: str) -> pd.DataFrame:
    path = storage.quarantine_dir(data, table)
    if not path.exists():
        return pd.DataFrame(columns=["_rule", "_row", "_detail", "_source_file", "_batch"])
    return pd.read_parquet(path).sort_values(["_batch", "_row"]).reset_index(drop=True)


def clean(data: Path, table: str) -> pd.DataFrame:
    return storage.read_clean(data, table)


def tree(data: Path) -> dict[str, bytes]:
    """Every file under data (but the staging area) with its bytes: to prove nothing changed."""
    return {
        str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()
    }
