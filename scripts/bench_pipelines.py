"""`make bench-pipelines`: the full historical feature store for the generator's big shop, then one
incremental day. Prints rows/s per family, wall time and peak RSS. Not a test: run it once, on a
machine as quiet as you can get.

    python -m scripts.bench_pipelines [--customers 100000 --products 10000 --days 365]
                                      [--data-dir data/bench]

The shop is generated and ingested once (kept under --data-dir for reruns): every day but the last
as one batch, the last day as a second batch. The historical build runs on the first batch, the
incremental day on the second. Each measured step runs in its own process (its own peak RSS).
After the historical build, its sources and watermarks are kept under `--data-dir/snapshot/`;
`--incremental-only` restores them and measures only the incremental day and the rerun (what to
run while working on the incremental path: no 5-minute historical build each time).
`--incremental-only --monday` measures instead product_copurchase's incremental day on the last
Monday (its weekly grain makes every other day free): the family is rebuilt (not measured; the
sources and carried state a build leaves), then cut back to what the Sunday before left (rows,
latest rows, watermark), and the run from that Monday to the end is timed alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipelines.contract import TABLES

TIME_COLUMNS = {
    "customers": "updated_at",
    "products": "updated_at",
    "product_collections": "updated_at",
    "orders": "order_ts",
    "events": "event_ts",
    "reviews": "review_ts",
}


def _split_raw(raw: Path, history: Path, last: Path) -> pd.Timestamp:
    """Split a generated raw dir into everything before the last day and the last day itself."""
    orders = pq.read_table(raw / "orders.parquet").to_pandas()
    events_ts = pq.read_table(raw / "events.parquet", columns=["event_ts"]).column(0)
    end = max(pd.Timestamp(events_ts.to_pandas().max()), orders["order_ts"].max())
    cut = end.floor("D")
    for d in (history, last):
        d.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        f = raw / f"{name}.parquet"
        if not f.exists():
            continue
        df = pq.read_table(f).to_pandas()
        if name == "order_items":
            when = df["order_id"].map(orders.set_index("order_id")["order_ts"])
        else:
            col = TIME_COLUMNS[name]
            when = df[col]
            if name == "customers":
                when = when.fillna(df["signup_ts"])
            if name == "products":
                when = when.fillna(df["created_at"])
        early = (when < cut).fillna(True).to_numpy()
        df[early].to_parquet(history / f"{name}.parquet", index=False)
        df[~early].to_parquet(last / f"{name}.parquet", index=False)
    return cut


def _child(stage: str, data_dir: Path, extra: list[str]) -> dict:
    """Run one measured stage in a fresh interpreter; it prints one JSON line last."""
    cmd = [
        sys.executable,
        "-m",
        "scripts.bench_pipelines",
        "--stage",
        stage,
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    if out.returncode:
        raise SystemExit(f"stage {stage} failed (exit {out.returncode}); its output is above")
    for line in out.stdout.splitlines():
        if not line.startswith("{"):
            print(f"    {line}", flush=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - t0
    return result


def _stage(stage: str, data_dir: Path, args: argparse.Namespace) -> None:
    """Inside the child: do the stage, print a JSON line with figures and this process's RSS."""
    body: dict = {}
    if stage == "prepare":
        from pipelines import ingest
        from shopfeast import generator

        raw = data_dir / "raw"
        t = time.perf_counter()
        generator.run(
            out=raw / "full",
            customers=args.customers,
            products=args.products,
            days=args.days,
            seed=args.seed,
            start=args.start,
            quiet=True,
        )
        body["generate_s"] = time.perf_counter() - t
        cut = _split_raw(raw / "full", raw / "history", raw / "last_day")
        t = time.perf_counter()
        now = f"{cut:%Y-%m-%dT%H:%M:%S}Z"
        code = ingest.run(raw_dir=raw / "history", data_dir=data_dir, now=now)
        if code:
            raise SystemExit(f"ingest of the history failed with {code}")
        body["ingest_s"] = time.perf_counter() - t
        body["cut"] = str(cut)
    elif stage == "monday-setup":
        from pipelines.families import product_copurchase as cp
        from pipelines.run import _save_latest, _state_path, _stored_as_of, _write, run
        from pipelines.windows import day_ts

        source = cp.SOURCE
        run(data_dir, mode="historical", only=[source.name], echo=False)
        path = _state_path(data_dir, source)
        state = json.loads(path.read_text())
        monday = int(cp.grain_days(0, state["end_day"])[-1])
        # The store as Sunday's run leaves it: rows up to Sunday, Sunday's latest rows, watermark.
        start = day_ts(monday).iloc[0]
        prior = _stored_as_of(data_dir, source, start)
        _write(data_dir, source, source.empty_frame(), start)
        _save_latest(data_dir, source, prior, source.empty_frame(), monday - 1)
        state["end_day"] = monday - 1
        state["end"] = f"{pd.Timestamp(monday - 1, unit='D'):%Y-%m-%d}"
        path.write_text(json.dumps(state, indent=1, sort_keys=True))
        body["monday"] = f"{pd.Timestamp(monday, unit='D'):%Y-%m-%d}"
    elif stage == "ingest-last-day":
        from pipelines import ingest

        ingest.run(
            raw_dir=data_dir / "raw" / "last_day",
            data_dir=data_dir,
            now=f"{pd.Timestamp(args.cut) + pd.Timedelta(days=2):%Y-%m-%dT%H:%M:%S}Z",
        )
    else:
        from pipelines.run import run

        outcomes = run(data_dir, mode=stage, only=args.only, echo=True)
        body["families"] = [
            {"source": o.source, "rows": o.rows, "seconds": o.seconds} for o in outcomes
        ]
    body["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(body), flush=True)


def _report(title: str, result: dict) -> None:
    print(f"\n{title}: wall {result['wall']:.1f}s, peak RSS {result['peak_rss_mib']:,.0f} MiB")
    for f in result.get("families", []):
        rate = f["rows"] / f["seconds"] if f["seconds"] else 0.0
        print(
            f"  {f['source']:<20} {f['rows']:>11,} rows {f['seconds']:8.1f}s {rate:>11,.0f} rows/s"
        )


KEPT = ("features", "state/features")  # what the historical build writes


def _wipe(data_dir: Path) -> None:
    for sub in KEPT:
        target = data_dir / sub
        if target.exists():
            shutil.rmtree(target)


def _keep(data_dir: Path) -> None:
    """Keep the historical build's sources and watermarks for `--incremental-only`."""
    snap = data_dir / "snapshot"
    if snap.exists():
        shutil.rmtree(snap)
    for sub in KEPT:
        shutil.copytree(data_dir / sub, snap / sub)


def _restore(data_dir: Path) -> None:
    snap = data_dir / "snapshot"
    if not all((snap / sub).is_dir() for sub in KEPT):
        raise SystemExit(f"no historical build kept under {snap}: run the full benchmark first")
    _wipe(data_dir)
    for sub in KEPT:
        shutil.copytree(snap / sub, data_dir / sub)


def _batches(data_dir: Path) -> int:
    """Batches ingested so far (the last day is the second): ingesting it twice is skipped."""
    manifest = data_dir / "state" / "ingest" / "manifest.json"
    return len(json.loads(manifest.read_text())["batches"]) if manifest.exists() else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--products", type=int, default=10_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", default="2025-01-01")
    p.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    p.add_argument("--prepare-only", action="store_true", help="generate and ingest, then stop")
    p.add_argument(
        "--incremental-only",
        action="store_true",
        help="restore the sources kept after the last historical build; measure the incremental "
        "day and the rerun only",
    )
    p.add_argument(
        "--monday",
        action="store_true",
        help="with --incremental-only: measure product_copurchase's day on the last Monday alone",
    )
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--only", action="append", help=argparse.SUPPRESS)
    p.add_argument("--cut", help=argparse.SUPPRESS)
    args = p.parse_args()
    data_dir = args.data_dir.resolve()
    if args.stage:
        _stage(args.stage, data_dir, args)
        return
    marker = data_dir / "raw" / "bench.json"
    if not marker.exists():
        print(
            f"preparing {args.customers:,} customers, {args.products:,} products, "
            f"{args.days} days into {data_dir} (generate + ingest, not measured here)"
        )
        prep = _child(
            "prepare",
            data_dir,
            [
                "--customers",
                str(args.customers),
                "--products",
                str(args.products),
                "--days",
                str(args.days),
                "--seed",
                str(args.seed),
                "--start",
                args.start,
            ],
        )
        marker.write_text(json.dumps(prep))
    prep = json.loads(marker.read_text())
    if args.prepare_only:
        print(f"prepared: {prep}")
        return
    if args.incremental_only:
        _restore(data_dir)
    else:
        _wipe(data_dir)
        hist = _child("historical", data_dir, [])
        _report("historical build (every day but the last)", hist)
        rows = sum(f["rows"] for f in hist["families"])
        print(
            f"  {'total':<20} {rows:>11,} rows {hist['wall']:8.1f}s "
            f"{rows / hist['wall']:>11,.0f} rows/s"
        )
        _keep(data_dir)
    if _batches(data_dir) < 2:
        _child("ingest-last-day", data_dir, ["--cut", prep["cut"]])
    if args.monday:
        monday = _child("monday-setup", data_dir, [])["monday"]
        only = ["--only", "product_copurchase"]
        _report(
            f"product_copurchase, incremental from Monday {monday}",
            _child("incremental", data_dir, only),
        )
        _report("rerun (nothing new)", _child("incremental", data_dir, only))
        return
    inc = _child("incremental", data_dir, [])
    _report("incremental day (the last day's batch)", inc)
    rerun = _child("incremental", data_dir, [])
    _report("rerun (nothing new)", rerun)


if __name__ == "__main__":
    main()
