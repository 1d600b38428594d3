"""`make bench-spark`: the bench shop's historical feature build on the local engine and on Spark,
wall time and peak memory of each, the Spark engine's per-shard costs, and whether the two
outputs are equal. Not a test: run it on a machine as quiet as you can get (under
`flock /tmp/heavy.lock` on a shared one).

    python -m scripts.bench_spark [--data-dir data/bench] [--customers 100000 --products 10000
                                  --days 365] [--master local[2]] [--executor-memory 2g]
                                  [--engines local,spark] [--shard-rows N] [--max-rss-gib 20]
                                  [--scale-from data/bench --copies 10]

The shop is generated and ingested once by scripts.bench_pipelines (`--prepare-only`) and kept
under --data-dir. Each engine builds into its own folder under DIR/spark-bench/<engine>/ (the
clean tables linked, not copied), in a child process; this process samples the RSS of the child's
whole process tree every 0.2 s: the driver (the child itself), the JVMs, and Spark's Python
workers (where the families' pandas code runs), each peak and the peak of their sum. An engine
whose tree passes --max-rss-gib is stopped there and reported as failed, with the last progress
line it printed (how far it got), and the next engine runs.

With --scale-from, --data-dir is built as --copies copies of that shop's customers
(scripts.scale_shop): `make bench-spark` runs the 100k bench shop, then a 1M-customer one
(data/bench1m, ten copies of data/bench).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

SAMPLE_S = 0.2


def _kind(p: psutil.Process, root: int) -> str:
    if p.pid == root:
        return "driver"
    try:
        exe = Path(p.cmdline()[0]).name
    except (psutil.Error, IndexError):
        return "other"
    if exe == "java":
        return "jvm"
    return "python_workers" if "python" in exe else "other"


def _sample(
    proc: subprocess.Popen,
    peaks: dict[str, float],
    cpu: dict[int, tuple],
    stop: threading.Event,
    limit_mib: float = float("inf"),
) -> None:
    """Every SAMPLE_S: the RSS of each kind of process in the tree (peaks of the sums), and each
    process's CPU seconds so far (`cpu[pid] = (kind, seconds)`, the last value seen: a process
    that exits loses at most one interval). Past `limit_mib` in all, the whole tree is killed and
    `peaks["stopped_at"]` says where (the machine is kept, the run is reported as failed)."""
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        now: dict[str, float] = {}
        for p in tree:
            try:
                rss = p.memory_info().rss / 2**20
                t = p.cpu_times()
            except psutil.Error:
                continue
            kind = _kind(p, root.pid)
            now[kind] = now.get(kind, 0.0) + rss
            cpu[p.pid] = (kind, t.user + t.system)
        now["total"] = sum(now.values())
        for k, v in now.items():
            peaks[k] = max(peaks.get(k, 0.0), v)
        if now["total"] > limit_mib:
            peaks["stopped_at"] = now["total"]
            for p in reversed(tree):
                with contextlib.suppress(psutil.Error):
                    p.kill()
            break
        stop.wait(SAMPLE_S)


def _cpu_by_kind(cpu: dict[int, tuple]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, seconds in cpu.values():
        out[kind] = out.get(kind, 0.0) + seconds
    out["total"] = sum(out.values())
    return out


def _child(engine: str, data_dir: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, "-m", "scripts.bench_spark", "--stage", engine,
        "--data-dir", str(data_dir), "--master", args.master,
        "--executor-memory", args.executor_memory, "--shard-rows", str(args.shard_rows),
    ]  # fmt: skip
    peaks: dict[str, float] = {}
    cpu: dict[int, tuple] = {}
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    limit = args.max_rss_gib * 1024
    sampler = threading.Thread(target=_sample, args=(proc, peaks, cpu, stop, limit), daemon=True)
    sampler.start()
    lines = []
    for line in proc.stdout:  # the build's progress as it goes; the last line is its figures
        lines.append(line.rstrip("\n"))
        if not line.startswith("{"):
            print(f"    {line}", end="", flush=True)
    proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if "stopped_at" in peaks:
        last = next((x.strip() for x in reversed(lines) if x.strip()), "nothing printed")
        body = {
            "families": [],
            "failed": f"stopped at {peaks['stopped_at'] / 1024:,.1f} GiB RSS (--max-rss-gib "
            f"{args.max_rss_gib:g}) after {wall:,.0f}s; last progress line: {last}",
        }
    elif proc.returncode:
        raise SystemExit(f"the {engine} build failed ({proc.returncode})")
    else:
        body = json.loads(lines[-1])
    body.update(wall=wall, peaks=peaks, cpu=_cpu_by_kind(cpu), processes=_processes(cpu))
    return body


def _processes(cpu: dict[int, tuple]) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, _ in cpu.values():
        out[kind] = out.get(kind, 0) + 1
    return out


def _stage(engine: str, data_dir: Path, args: argparse.Namespace) -> None:
    body: dict = {}
    if engine == "local":
        from pipelines.run import run

        outcomes = run(data_dir, mode="historical", echo=True)
    else:
        from pipelines.spark import features
        from pipelines.spark.session import session

        t = time.perf_counter()
        spark = session(
            args.master,
            app="shopfeast-bench",
            conf={"spark.executor.memory": args.executor_memory, "spark.driver.memory": "1g"},
        )
        body["session_s"] = time.perf_counter() - t
        stats: dict = {}
        outcomes = features.run(data_dir, spark, shard_rows=args.shard_rows, stats=stats)
        body.update(stats)
        spark.stop()
    body["families"] = [
        {"source": o.source, "rows": o.rows, "seconds": o.seconds} for o in outcomes
    ]
    print(json.dumps(body), flush=True)


def _same(a: Path, b: Path) -> list[str]:
    import pandas as pd

    from pipelines.run import read_source
    from pipelines.sources import sources

    differ = []
    for name, source in sources().items():
        try:
            pd.testing.assert_frame_equal(
                read_source(a, source), read_source(b, source), check_exact=True
            )
        except AssertionError:
            differ.append(name)
    return differ


def _prepare(args: argparse.Namespace) -> None:
    if (args.data_dir / "clean").is_dir():
        return
    base = args.scale_from.resolve() if args.scale_from else args.data_dir
    if not (base / "clean").is_dir():
        cmd = [
            sys.executable, "-m", "scripts.bench_pipelines", "--prepare-only",
            "--data-dir", str(base), "--customers", str(args.customers),
            "--products", str(args.products), "--days", str(args.days),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
    if args.scale_from:
        from scripts.scale_shop import scale

        print(f"{args.copies} copies of {base}'s customers into {args.data_dir}", flush=True)
        scale(base, args.data_dir, args.copies)


def _report(engine: str, r: dict) -> None:
    p = r["peaks"]
    parts = ", ".join(
        f"{k} {v:,.0f}" for k, v in sorted(p.items()) if k not in ("total", "stopped_at")
    )
    print(f"\n{engine}: wall {r['wall']:.1f}s, peak RSS {p.get('total', 0):,.0f} MiB ({parts})")
    if "failed" in r:
        print(f"  FAILED: {r['failed']}")
    c, n = r.get("cpu", {}), r.get("processes", {})
    kinds = ", ".join(
        f"{k} {v:,.1f}s ({n.get(k, 0)} processes)" for k, v in sorted(c.items()) if k != "total"
    )
    print(f"  CPU {c.get('total', 0):,.1f}s ({kinds})")
    if "session_s" in r:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in r.get("stages", {}).items())
        print(f"  Spark session start {r['session_s']:.1f}s; stages: {stages}")
    for f in r["families"]:
        print(f"  {f['source']:<20} {f['rows']:>11,} rows {f['seconds']:8.1f}s")
    shards = r.get("shards") or []
    if shards:
        rows = [s["input_rows"] for s in shards]
        secs = [s["seconds"] for s in shards]
        rss = [s["worker_peak_rss_mib"] for s in shards]
        print(
            f"  {len(shards)} (shard, family) tasks: input rows "
            f"{min(rows):,}..{max(rows):,}, compute {min(secs):.1f}..{max(secs):.1f}s "
            f"(sum {sum(secs):.1f}s), Python worker peak RSS up to {max(rss):,.0f} MiB"
        )
        for s in shards:
            print(
                f"    shard {s['shard']} {s['family']:<18} {s['input_rows']:>11,} input rows "
                f"{s['seconds']:7.1f}s  worker peak {s['worker_peak_rss_mib']:,.0f} MiB"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--products", type=int, default=10_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--executor-memory", default="2g")
    p.add_argument("--engines", default="local,spark")
    p.add_argument("--shard-rows", type=int, default=3_000_000)
    p.add_argument(
        "--scale-from",
        type=Path,
        help="build --data-dir as --copies copies of this prepared shop's customers "
        "(scripts.scale_shop; the shop is prepared first with --customers etc. if needed)",
    )
    p.add_argument("--copies", type=int, default=10)
    p.add_argument(
        "--max-rss-gib",
        type=float,
        default=20.0,
        help="stop an engine's build past this RSS (its whole process tree) and report where",
    )
    p.add_argument("--stage", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        _stage(args.stage, args.data_dir, args)
        return
    args.data_dir = args.data_dir.resolve()
    _prepare(args)
    results, dirs = {}, {}
    for engine in args.engines.split(","):
        out = args.data_dir / "spark-bench" / engine
        for sub in ("features", "state"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "clean").exists():
            (out / "clean").symlink_to(args.data_dir / "clean")
        print(f"{engine} engine ...", flush=True)
        results[engine] = _child(engine, out, args)
        _report(engine, results[engine])
        if "failed" not in results[engine]:
            dirs[engine] = out
    if len(dirs) == 2:
        differ = _same(*dirs.values())
        print(f"\noutputs equal, value for value: {'yes' if not differ else 'NO: ' + str(differ)}")


if __name__ == "__main__":
    main()
