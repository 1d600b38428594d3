"""The collection families' historical build on a bench shop, each source alone in its own process.

    python -m scripts.bench_collections --bench /work/bench100k --work data/bench-collections
                                        [--sources collection_stats,product_membership,...]

`--bench` is a data directory `make bench-pipelines` prepared (clean tables ingested; it is only
read): `--work` gets links to its clean tables and ingest state, and the feature sources are
written there, so a shared bench store is never modified. Each source is built historically (all
days) in a fresh interpreter (`scripts.bench_pipelines --stage historical --only SOURCE`); printed
per source: rows written, wall and CPU seconds, peak RSS, rows/s, the clean input rows it reads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipelines import sources

DEFAULT = ("collection_stats", "product_membership", "customer_collections")


def _link(bench: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "state").mkdir(exist_ok=True)
    for link, target in (
        (work / "clean", bench / "clean"),
        (work / "state" / "ingest", bench / "state" / "ingest"),
    ):
        if not link.is_symlink():
            link.symlink_to(target.resolve(), target_is_directory=True)


def _input_rows(bench: Path, name: str) -> dict[str, int]:
    out = {}
    for spec in sources.families()[name].INPUTS:
        files = (bench / "clean" / spec.table).rglob("*.parquet")
        out[spec.table] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return out


def _measure(work: Path, name: str) -> dict:
    for sub in (work / "features" / name, work / "state" / "features" / f"{name}.json"):
        if sub.is_dir():
            shutil.rmtree(sub)
        elif sub.exists():
            sub.unlink()
    cmd = [sys.executable, "-m", "scripts.bench_pipelines", "--stage", "historical"]
    cmd += ["--data-dir", str(work), "--only", name]
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-4000:]}")
    body = json.loads(out.strip().splitlines()[-1])
    (family,) = body["families"]
    return {
        "rows": family["rows"],
        "compute_s": round(family["seconds"], 1),
        "wall_s": round(time.perf_counter() - began, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, default=Path("data/bench"))
    p.add_argument("--work", type=Path, default=Path("data/bench-collections"))
    p.add_argument("--sources", default=",".join(DEFAULT))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    bench, work = args.bench.resolve(), args.work.resolve()
    if not (bench / "clean").is_dir():
        raise SystemExit(f"{bench} has no clean tables: run `make bench-pipelines` first")
    _link(bench, work)
    results = {}
    for name in [s.strip() for s in args.sources.split(",") if s.strip()]:
        r = _measure(work, name) | {"inputs": _input_rows(bench, name)}
        results[name] = r
        rate = r["rows"] / r["compute_s"] if r["compute_s"] else 0.0
        print(
            f"{name:<22} {r['rows']:>11,} rows  compute {r['compute_s']:7.1f}s  wall "
            f"{r['wall_s']:7.1f}s  CPU {r['cpu_s']:7.1f}s  peak RSS {r['peak_rss_mib']:>6,} MiB  "
            f"{rate:>9,.0f} rows/s",
            flush=True,
        )
        print("    inputs: " + ", ".join(f"{t} {n:,}" for t, n in r["inputs"].items()))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
