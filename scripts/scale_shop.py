"""A shop K times larger, built from an ingested shop's clean tables: K copies of its customers,
each copy with its own ids (customers, orders, order lines' orders, events, sessions, reviews),
sharing the one catalog (products, collections). For scale runs (`make bench-spark` at 1M
customers) where the generator would have to hold every table whole.

    python -m scripts.scale_shop --from data/bench --to data/bench1m --copies 10

Copy 0 keeps the source's ids; copy k prefixes every customer-side id with `k<k>-` (a null stays
null: a guest order or an anonymous visitor stays one). Each clean file is read and written on
its own, so memory is one file's (a day partition), whatever K. The result is a shop whose
customers behave like the source's, K times over: per-customer figures repeat, per-product and
per-collection figures are K times the source's, and the work per customer shard is the same,
which is what a scale run measures. Clean tables only: no ingest state, no quarantine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.contract import TABLES
from pipelines.storage import clean_dir

# The columns that name something a customer copy owns; product_id, variant_id and
# collection_id name the shared catalog
CUSTOMER_SIDE = ("customer_id", "order_id", "event_id", "session_id", "review_id")
CATALOG_TABLES = ("products", "product_collections")


def _prefixed(table: pa.Table, prefix: str) -> pa.Table:
    for name in CUSTOMER_SIDE:
        if name in table.column_names:
            i = table.column_names.index(name)
            col = pc.binary_join_element_wise(pa.scalar(prefix), table[name], "")
            table = table.set_column(i, name, col.cast(table.schema.field(name).type))
    return table


def scale(source: Path, target: Path, copies: int, echo=print) -> dict:
    """Write `copies` copies of `source`'s clean tables under `target`; returns rows per table."""
    rows: dict[str, int] = {}
    for name in TABLES:
        src = clean_dir(source, name)
        if not src.exists():
            continue
        dst = clean_dir(target, name)
        if dst.exists():
            shutil.rmtree(dst)
        t0 = time.perf_counter()
        n = 0
        for f in sorted(src.rglob("*.parquet")):
            out = dst / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            if name in CATALOG_TABLES:
                os.link(f, out)
                n += pq.ParquetFile(f).metadata.num_rows
                continue
            table = pq.read_table(f)
            os.link(f, out)  # copy 0: the source's ids
            for k in range(1, copies):
                pq.write_table(
                    _prefixed(table, f"k{k}-"), out.with_name(f"{out.stem}-k{k}.parquet")
                )
            n += table.num_rows * copies
        rows[name] = n
        echo(f"  {name:<20} {n:>13,} rows  {time.perf_counter() - t0:6.1f}s")
    (target / "scale.json").write_text(
        json.dumps({"from": str(source), "copies": copies, "rows": rows}, indent=1)
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", type=Path, required=True)
    p.add_argument("--to", dest="target", type=Path, required=True)
    p.add_argument("--copies", type=int, default=10)
    args = p.parse_args()
    if not clean_dir(args.source, "customers").exists():
        raise SystemExit(f"{args.source}: no clean tables (ingest the shop first)")
    if args.copies < 1:
        raise SystemExit("--copies: at least 1")
    args.target.mkdir(parents=True, exist_ok=True)
    print(f"{args.copies} copies of {args.source}'s clean tables into {args.target}")
    scale(args.source, args.target, args.copies)


if __name__ == "__main__":
    main()
