"""Ingest throughput on a synthetic shop: `python scripts/bench_ingest.py --events 1000000`.

Writes a raw directory (small customers/products/orders/order_items, N events in the chosen format,
0.1% of event rows broken), ingests it into a fresh data directory and prints rows/s per table,
wall time and peak RSS. Not a test: run it by hand, once, on a quiet machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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
    ev = _events(rng, events, n_cust, n_prod, start)
    out.mkdir(parents=True, exist_ok=True)
    for name, df in {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": items,
    }.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
    if fmt == "parquet":
        pq.write_table(ev, out / "events.parquet")
    elif fmt == "csv":
        pacsv.write_csv(ev, out / "events.csv")
    else:
        ev.to_pandas().to_json(out / "events.jsonl", orient="records", lines=True)


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pa.array(np.char.add(prefix, values.astype(str)).astype(object), pa.string())


def _events(
    rng: np.random.Generator, n: int, n_cust: int, n_prod: int, start: pd.Timestamp
) -> pa.Table:
    """Sessions of ~8 events a few minutes apart, in time order as exports come; 0.1% broken."""
    sessions = max(n // 8, 1)
    session = np.sort(rng.integers(0, sessions, n))
    t0 = int(start.timestamp()) + rng.integers(0, 365 * 86400, sessions)
    ts = t0[session] + rng.integers(0, 1800, n)
    order = np.argsort(ts, kind="stable")
    session, ts = session[order], ts[order]
    text = np.char.add(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s"), "Z")
    text = text.astype(object)
    bad = rng.choice(n, max(n // 1000, 2), replace=False)
    text[bad[: len(bad) // 2]] = "not a time"
    product = np.char.add("p", rng.integers(0, n_prod, n).astype(str)).astype(object)
    product[bad[len(bad) // 2 :]] = "p-unknown"
    return pa.table(
        {
            "event_id": _ids("e", np.arange(n)),
            "customer_id": _ids("c", session % n_cust),
            "session_id": _ids("s", session),
            "event_type": pa.array(rng.choice(EVENT_TYPES, n).astype(object), pa.string()),
            "event_ts": pa.array(text, pa.string()),
            "product_id": pa.array(product, pa.string()),
            "device_type": pa.array(rng.choice(["mobile", "desktop", "tablet"], n).astype(object)),
            "page_context": pa.array(
                rng.choice(["homepage", "search", "product_page"], n).astype(object)
            ),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, data = Path(tmp) / "raw", Path(tmp) / "data"
        t = time.perf_counter()
        # Generate in a child process so that the peak RSS below is the ingest's alone.
        child = multiprocessing.get_context("spawn").Process(
            target=synthetic_shop, args=(raw, args.events, args.format)
        )
        child.start()
        child.join()
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
                f"write {s['seconds']['write']}s; cpu {s['seconds']['cpu']}s)  "
                f"quarantined {s['quarantined']:,}"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        cpu = sum(t["seconds"]["cpu"] for t in report["tables"].values())
        events = report["tables"]["events"]
        print(f"ingest wall time {wall:.1f}s, cpu {cpu:.1f}s, peak RSS {peak:.2f} GiB")
        print(
            f"events: {events['rows_in'] / events['seconds']['total']:,.0f} rows/s wall, "
            f"{events['rows_in'] / events['seconds']['cpu']:,.0f} rows/s per CPU second"
        )


if __name__ == "__main__":
    main()
