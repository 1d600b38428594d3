"""`make bench-retrieval`: point-in-time retrieval, Feast's DuckDB offline store against
shopfeast's ASOF store (featurestore.offline) and a plain DuckDB ASOF join, side by side on the
same entity rows. Prints wall time, CPU time and peak RSS of each, the on-demand share of
shopfeast's, and whether the values agree. Not a test: run it once, on a machine as quiet as you
can get.

    python -m scripts.bench_retrieval [--data-dir data/bench_retrieval] [--build]
        [--rows 100000,500000]
        [--services churn_model_v1,ranking_model_v2] [--stores feast,shopfeast,raw]
        [--before-tree DIR] [--repeat N]

The store is the demo shop (2,000 customers, 300 products, 365 days, seed 7); `--build` makes it
under --data-dir first when it has no feature sources (generate, ingest, features, as
`shopfeast demo` does, without training). Entity rows: random known customers (1% unknown ones)
at random microsecond instants over the sources' span, plus for the ranking service a random
product and a request value `candidate_copurchase_score` per row.

The on-demand column is the wall time of shopfeast's on-demand views (the store's
`timings["on_demand"]`: every view's work, after the join) over the whole call's wall time, and
their CPU time over the call's CPU time (both every thread's) where the store reports it.

Each measurement runs in its own process, which opens the store, builds the entity frame and warms
the store up on 50 rows before the clock starts; peak RSS is the process's peak during the call
(VmHWM reset just before it; it includes what the process held before, the same for all three):
- `feast`: Feast 0.67's DuckDB store (`offline_store: type: duckdb`, with the memory limit and
  spill directory training gives it), `get_historical_features(...).to_arrow()`, on-demand
  views through Feast's python mode;
- `shopfeast`: the profile's store (`featurestore.offline.AsofOfflineStore`), the same call;
- `raw`: one SQL statement, the entity frame ASOF LEFT JOINed to each feature view's parquet
  source (the same columns), no tie-break, no row order, no on-demand views: the lower bound.
- `before` (with `--before-tree DIR`, e.g. a worktree of an older commit): shopfeast's store as
  that tree's code has it, run from DIR on the same data, for before/after in one run.
With `--repeat N` each store runs N times per size, the order reversed every other time, and the
row shown is each store's median run (its wall times' range in brackets): on a quiet 2-core machine
one 100,000-row ranking retrieval of shopfeast's store took 0.29 to 0.89 s from run to run.
Values: shopfeast's rows against Feast's (every column, after putting Feast's rows back in entity
order) and against the raw join's (its columns).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROW = "_bench_row"
WARMUP_ROWS = 50
TARGET_RATIO = 1.3  # shopfeast's wall time within 1.3x the raw join's
TARGET_MEMORY = 1.2  # and its peak RSS within the raw join's + 20%
DEMO = {"customers": 2000, "products": 300, "days": 365, "seed": 7}


# --- entity rows --------------------------------------------------------------------------------


def _ids(con, data_dir: Path, view: str, key: str) -> np.ndarray:
    path = data_dir / "features" / view / "*.parquet"
    q = f"SELECT DISTINCT {key} FROM read_parquet('{path}') WHERE {key} IS NOT NULL ORDER BY 1"
    return np.array([r[0] for r in con.sql(q).fetchall()], dtype=object)


def entity_frame(data_dir: Path, service: str, rows: int, seed: int) -> pd.DataFrame:
    """Random entity rows over the sources' span, the same for every store (a given seed)."""
    import duckdb

    con = duckdb.connect()
    span = con.sql(
        "SELECT min(epoch_us(event_timestamp)), max(epoch_us(event_timestamp)) "
        f"FROM read_parquet('{data_dir / 'features' / 'customer_activity' / '*.parquet'}')"
    ).fetchall()[0]
    rng = np.random.default_rng(seed)
    customers = _ids(con, data_dir, "customer_profile", "customer_id")
    unknown = np.array([f"UNKNOWN{i:04d}" for i in range(max(1, len(customers) // 100))])
    pool = np.concatenate([customers, unknown])
    frame = pd.DataFrame(
        {
            "customer_id": pool[rng.integers(0, len(pool), rows)],
            "event_timestamp": pd.to_datetime(
                rng.integers(span[0], span[1] + 7 * 86_400_000_000, rows), unit="us", utc=True
            ),
        }
    )
    if service.startswith("ranking"):
        products = _ids(con, data_dir, "product_stats", "product_id")
        frame["product_id"] = products[rng.integers(0, len(products), rows)]
        score = rng.gamma(1.0, 0.2, rows)
        score[rng.random(rows) < 0.5] = 0.0
        frame["candidate_copurchase_score"] = score
    frame[ROW] = np.arange(rows, dtype=np.int64)
    return frame


# --- the child: one store, one service, one size ------------------------------------------------


def open_store(kind: str, data_dir: Path):
    """The embedded profile's store; for `feast` with Feast's own DuckDB offline store."""
    from featurestore import store as feast_ops

    return feast_ops.open_store(
        "embedded", data_dir, offline_store="duckdb" if kind == "feast" else None
    )


def stored_columns(store, service: str) -> dict[str, list[str]]:
    """Per feature view, the stored features a service reads (its own and its on-demand views'
    inputs), in first-seen order."""
    fs = store.get_feature_service(service)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    wanted: dict[str, list[str]] = {}

    def add(view: str, names) -> None:
        have = wanted.setdefault(view, [])
        have += [n for n in names if n not in have]

    for projection in fs.feature_view_projections:
        if projection.name in odfvs:
            for src in odfvs[projection.name].source_feature_view_projections.values():
                add(src.name, [f.name for f in src.features])
        else:
            add(projection.name, [f.name for f in projection.features])
    return wanted


def raw_asof(store, service: str, entity: pd.DataFrame) -> pa.Table:
    """The lower bound: one DuckDB statement, ASOF LEFT JOIN per view, nothing else."""
    import duckdb

    from featurestore.store import DUCKDB_MEMORY_LIMIT

    limit = os.environ.get("SHOPFEAST_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT)
    con = duckdb.connect(config={"memory_limit": limit})
    con.register("entity_rows", entity)
    joins, columns = [], []
    for i, (name, features) in enumerate(stored_columns(store, service).items()):
        view = store.get_feature_view(name)
        keys = [e.name for e in view.entity_columns]
        ts = view.batch_source.timestamp_field
        cols = ", ".join(f'"{c}"' for c in [*keys, ts, *features])
        on = " AND ".join(f'e."{k}" = v{i}."{k}"' for k in keys)
        joins.append(
            f"ASOF LEFT JOIN (SELECT {cols} FROM read_parquet('{view.batch_source.path}')) v{i} "
            f'ON {on} AND e."event_timestamp" >= v{i}."{ts}"'
        )
        columns += [f'v{i}."{f}"' for f in features]
    sql = f"SELECT e.*, {', '.join(columns)} FROM entity_rows e {' '.join(joins)}"
    return con.sql(sql).to_arrow_table()


def reset_peak() -> bool:
    """Linux: reset this process's peak RSS (VmHWM), so the peak is the measured call's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """VmHWM (peak resident set since the last reset), else ru_maxrss (since the start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args: argparse.Namespace) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    data_dir = args.data_dir
    store = open_store(args.store, data_dir)
    entity = entity_frame(data_dir, args.service, args.child_rows, args.seed)
    timings = None
    if args.store != "raw":
        service = store.get_feature_service(args.service)
        store.get_historical_features(entity.head(WARMUP_ROWS), features=service).to_arrow()
    baseline = rss_now()
    reset = reset_peak()
    began, cpu = time.perf_counter(), time.process_time()
    if args.store == "raw":
        table = raw_asof(store, args.service, entity)
    else:
        job = store.get_historical_features(entity, features=service)
        table = job.to_arrow()
        timings = getattr(job, "timings", None)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = peak_rss()
    if args.store != "shopfeast":
        table = table.sort_by(ROW)
    pq.write_table(table, args.out)
    result = {
        "wall": wall,
        "cpu": cpu,
        "peak_rss": peak,
        "baseline_rss": baseline,
        "peak_since": "the call" if reset else "the process start",
        "rows": table.num_rows,
        "in_order": bool(np.array_equal(table.column(ROW).to_numpy(), np.arange(table.num_rows))),
        "timings": timings,
    }
    print(json.dumps(result))


# --- the parent: runs, comparison, report -------------------------------------------------------


def _normal(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as microseconds in UTC (Feast returns 'UTC', DuckDB 'Etc/UTC')."""
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz="UTC" if column.type.tz else None))
    return column


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Row-wise equality, nulls equal nulls and NaN equals NaN; lists element by element."""
    a, b = _normal(a).combine_chunks(), _normal(b).combine_chunks()
    if pa.types.is_list(a.type) or pa.types.is_large_list(a.type):
        la = pc.list_value_length(a).fill_null(-1).to_numpy(zero_copy_only=False)
        lb = pc.list_value_length(b).fill_null(-1).to_numpy(zero_copy_only=False)
        ok = la == lb
        fa, fb = pc.list_flatten(a), pc.list_flatten(b)
        if ok.all() and len(fa) == len(fb):
            flat = _same(pa.chunked_array([fa]), pa.chunked_array([fb]))
            parent = pc.list_parent_indices(a).to_numpy(zero_copy_only=False)
            ok[parent[~flat]] = False
        return ok
    x = a.to_pandas(types_mapper=None)
    y = b.to_pandas(types_mapper=None)
    both_missing = x.isna().to_numpy() & y.isna().to_numpy()
    with np.errstate(invalid="ignore"):
        eq = (x.to_numpy() == y.to_numpy()) if len(x) else np.zeros(0, dtype=bool)
    return np.asarray(eq, dtype=bool) | both_missing


def compare(ours: Path, other: Path) -> str:
    a, b = pq.read_table(ours), pq.read_table(other)
    if a.num_rows != b.num_rows:
        return f"{a.num_rows:,} rows vs {b.num_rows:,}"
    common = [c for c in b.column_names if c in a.column_names]
    missing = [c for c in b.column_names if c not in a.column_names]
    differ = {}
    for name in common:
        bad = int((~_same(a.column(name), b.column(name))).sum())
        if bad:
            differ[name] = bad
    if missing or differ:
        return f"DIFFER: missing {missing}, unequal {differ}"
    return f"equal ({len(common)} columns)"


def run_child(args, store: str, service: str, rows: int, out: Path) -> dict:
    cwd = None
    if store == "before":  # shopfeast's store as another tree's code has it
        cwd, store = str(args.before_tree), "shopfeast"
    cmd = [
        sys.executable,
        "-m",
        "scripts.bench_retrieval",
        "--data-dir",
        str(args.data_dir),
        "--seed",
        str(args.seed),
        "--store",
        store,
        "--service",
        service,
        "--child-rows",
        str(rows),
        "--out",
        str(out),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, check=False, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no answer in {args.timeout:.0f} s"}
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        return {"error": f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """Of one store's repeats, the run of the median wall time (the lower of the two middle ones
    for an even count), with every run's wall time sorted under "walls"; an error when none ran."""
    done = sorted((r for r in runs if "wall" in r), key=lambda r: r["wall"])
    if not done:
        return runs[0]
    return {**done[(len(done) - 1) // 2], "walls": [r["wall"] for r in done]}


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def build_demo(data_dir: Path) -> None:
    """The demo shop's feature sources and registry (what `shopfeast demo` builds before it
    trains), when --data-dir has none."""
    from featurestore import store as feast_ops
    from pipelines import ingest
    from pipelines import run as features
    from shopfeast import generator

    raw = data_dir / "raw"
    generator.run(
        out=raw,
        customers=DEMO["customers"],
        products=DEMO["products"],
        days=DEMO["days"],
        seed=DEMO["seed"],
        corrupt_fraction=0.01,
        start="2025-01-01",
        fmt="parquet",
    )
    if ingest.run(raw_dir=raw, data_dir=data_dir, now=None):
        raise SystemExit("ingest failed")
    features.run(data_dir=data_dir, mode="incremental", echo=False)
    feast_ops.open_store("embedded", data_dir)  # applies the registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data/bench_retrieval"))
    p.add_argument("--rows", default="100000,500000")
    p.add_argument("--services", default="churn_model_v1,ranking_model_v2")
    p.add_argument("--stores", default="feast,shopfeast,raw")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each store this many times, alternating the order; report the median run",
    )
    p.add_argument("--build", action="store_true", help="build the demo shop when missing")
    p.add_argument(
        "--before-tree",
        type=Path,
        help="a source tree (e.g. a worktree of an older commit) whose store runs as `before`",
    )
    for hidden in ("--store", "--service", "--child-rows", "--out"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.data_dir = args.data_dir.resolve()
    if args.store:
        args.child_rows = int(args.child_rows)
        child(args)
        return
    if not list((args.data_dir / "features" / "customer_activity").glob("*.parquet")):
        if not args.build:
            raise SystemExit(
                f"no feature sources under {args.data_dir}/features: pass --build to make the "
                "demo shop there, or point --data-dir at one"
            )
        build_demo(args.data_dir)

    stores = args.stores.split(",")
    if "before" in stores and not args.before_tree:
        raise SystemExit("--stores before needs --before-tree DIR")
    names = {"feast": "Feast DuckDB", "shopfeast": "shopfeast ASOF", "raw": "raw DuckDB ASOF"}
    if args.before_tree:
        stores = [s for s in stores if s != "before"] + ["before"]
        names["before"] = f"shopfeast ASOF, {args.before_tree.name}"
        args.before_tree = args.before_tree.resolve()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores, shared)", flush=True)
    lines = [
        "| service | entity rows | store | wall | CPU | peak RSS | on-demand | values |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts, results = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_retrieval_") as tmp:
        for service in args.services.split(","):
            for rows in [int(r) for r in args.rows.split(",")]:
                runs: dict[str, list[dict]] = {store: [] for store in stores}
                for rep in range(args.repeat):
                    # every other repeat in reverse order: the first process of a size runs slower
                    for store in stores if rep % 2 == 0 else stores[::-1]:
                        out = Path(tmp) / f"{store}_{service}_{rows}_{rep}.parquet"
                        print(f"{names[store]}: {service}, {rows:,} rows ...", flush=True)
                        runs[store].append(run_child(args, store, service, rows, out))
                        runs[store][-1]["out"] = str(out)
                got = {store: median_run(runs[store]) for store in stores}
                for store in stores:
                    r = got[store]
                    if "error" in r:
                        lines.append(f"| {service} | {rows:,} | {names[store]} | {r['error']} |")
                        continue
                    values = ""
                    if store != "shopfeast" and "error" not in got.get("shopfeast", {"error": 1}):
                        values = compare(Path(got["shopfeast"]["out"]), Path(r["out"]))
                        values = f"vs shopfeast: {values}"
                    elif store == "shopfeast":
                        values = "in entity order" if r["in_order"] else "NOT in entity order"
                    t = r.get("timings") or {}
                    share = (
                        f"{t['on_demand'] / r['wall']:.0%} ({t['on_demand']:.2f} s)"
                        if "on_demand" in t
                        else ""
                    )
                    if "on_demand_cpu" in t:  # of the call's CPU time (all its threads)
                        share += f", CPU {t['on_demand_cpu'] / r['cpu']:.0%}"
                    walls = r.get("walls", [])
                    spread = f" ({walls[0]:.2f}-{walls[-1]:.2f})" if len(walls) > 1 else ""
                    lines.append(
                        f"| {service} | {rows:,} | {names[store]} | {r['wall']:.2f} s{spread} | "
                        f"{r['cpu']:.2f} s | {gib(r['peak_rss'])} | {share} | {values} |"
                    )
                    print(lines[-1], flush=True)
                ours, raw = got.get("shopfeast", {}), got.get("raw", {})
                if "wall" in ours and "wall" in raw:
                    ratio = ours["wall"] / raw["wall"]
                    memory = ours["peak_rss"] / raw["peak_rss"]
                    verdicts.append(
                        f"{service} {rows:,}: {ratio:.2f}x the raw join's wall time "
                        f"({'met' if ratio <= TARGET_RATIO else 'missed'}: <= {TARGET_RATIO}x), "
                        f"peak RSS {memory:.2f}x ({'met' if memory <= TARGET_MEMORY else 'missed'}"
                        f": <= {TARGET_MEMORY}x), CPU {ours['cpu'] / raw['cpu']:.2f}x"
                        + (
                            f", {got['feast']['wall'] / ours['wall']:.1f}x faster than Feast's "
                            f"(CPU {got['feast']['cpu'] / ours['cpu']:.1f}x)"
                            if "wall" in got.get("feast", {})
                            else ""
                        )
                    )
                before = got.get("before", {})
                if "wall" in before and "wall" in raw:
                    verdicts.append(
                        f"{service} {rows:,}, before ({args.before_tree.name}): "
                        f"{before['wall'] / raw['wall']:.2f}x the raw join's wall time, peak RSS "
                        f"{before['peak_rss'] / raw['peak_rss']:.2f}x, CPU "
                        f"{before['cpu'] / raw['cpu']:.2f}x"
                    )
                results[f"{service}/{rows}"] = {
                    k: {kk: vv for kk, vv in v.items() if kk != "out"} for k, v in got.items()
                }
    lines += [
        "",
        *verdicts,
        f"Load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared).",
    ]
    print("\n".join(lines))
    print(json.dumps({"results": results, "at": datetime.now(UTC).isoformat()}))


if __name__ == "__main__":
    main()
