"""Ingest throughput on a synthetic shop: `python scripts/bench_ingest.py --events 1000000`.

Writes a raw directory (small customers/products/orders/order_items, N events in the chosen format,
0.1% of event rows broken), ingests it into a fresh data directory and prints rows/s per table,
wall time and peak RSS. Not a test: run it by hand, once, on a quiet machine.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.contract import EVENT_TYPES
from pipelines.ingest import ingest, parse_now


def synthetic_shop(out: Path, events: int, fmt: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_cust, n_prod, n_orders = 100_000, 10_000, 200_000
    start = pd.Timestamp("2025-01-01", tz="UTC")
    customers = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n_cust)],
            "signup_ts": start - pd.to_timedelta(rng.integers(1, 400, n_cust), unit="D"),
            "gender": rng.choice(["F", "M", "other", ""], n_cust),
        }
    )
    products = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(n_prod)],
            "name": [f"product {i}" for i in range(n_prod)],
            "category": rng.choice(["a", "b", "c"], n_prod),
            "price": rng.uniform(1, 100, n_prod).round(2),
            "created_at": start - pd.Timedelta(days=500),
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n_orders)],
            "customer_id": [f"c{i}" for i in rng.integers(0, n_cust, n_orders)],
            "order_ts": start + pd.to_timedelta(rng.integers(0, 365 * 86400, n_orders), unit="s"),
            "status": "completed",
            "total_amount": rng.uniform(5, 300, n_orders).round(2),
        }
    )
    items = pd.DataFrame(
        {
            "order_id": np.repeat(orders["order_id"].to_numpy(), 2),
            "product_id": [f"p{i}" for i in rng.integers(0, n_prod, 2 * n_orders)],
            "quantity": rng.integers(1, 4, 2 * n_orders),
            "unit_price": rng.uniform(1, 100, 2 * n_orders).round(2),
        }
    )
    sessions = events // 8
    session = np.sort(rng.integers(0, sessions, events))
    session_start = rng.integers(0, 365 * 86400, sessions)
    ts = start + pd.to_timedelta(session_start[session] + rng.integers(0, 1800, events), unit="s")
    ev = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(events)],
            "customer_id": np.array([f"c{i}" for i in range(n_cust)])[session % n_cust],
            "session_id": np.char.add("s", session.astype(str)),
            "event_type": rng.choice(EVENT_TYPES, events),
            "event_ts": ts,
            "product_id": np.array([f"p{i}" for i in range(n_prod)])[
                rng.integers(0, n_prod, events)
            ],
            "device_type": rng.choice(["mobile", "desktop", "tablet"], events),
            "page_context": rng.choice(["homepage", "search", "product_page"], events),
        }
    )
    bad = rng.choice(events, events // 1000, replace=False)
    ev = ev.astype({"event_ts": object})
    ev.loc[bad[: len(bad) // 2], "event_ts"] = "not a time"
    ev.loc[bad[len(bad) // 2 :], "product_id"] = "p-unknown"
    ev["event_ts"] = ev["event_ts"].astype(str)
    out.mkdir(parents=True, exist_ok=True)
    for name, df in {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": items,
    }.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
    if fmt == "parquet":
        ev.to_parquet(out / "events.parquet", index=False)
    elif fmt == "csv":
        ev.to_csv(out / "events.csv", index=False)
    else:
        ev.to_json(out / "events.jsonl", orient="records", lines=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, data = Path(tmp) / "raw", Path(tmp) / "data"
        t = time.perf_counter()
        synthetic_shop(raw, args.events, args.format)
        print(
            f"wrote synthetic shop ({args.events:,} events, {args.format}) "
            f"in {time.perf_counter() - t:.1f}s"
        )
        t = time.perf_counter()
        report = ingest(raw, data, parse_now("2026-06-01"))
        wall = time.perf_counter() - t
        for name, s in report["tables"].items():
            print(
                f"{name:12s} {s['rows_in']:>11,} rows  {s['seconds']['total']:7.1f}s  "
                f"{s['rows_per_second']:>10,} rows/s  "
                f"(read {s['seconds']['read']}s, validate {s['seconds']['validate']}s, "
                f"write {s['seconds']['write']}s)  quarantined {s['quarantined']:,}"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        print(f"ingest wall time {wall:.1f}s, peak RSS {peak:.2f} GiB (generation included)")


if __name__ == "__main__":
    main()
