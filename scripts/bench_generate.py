"""`make bench-generate`: time the generator on the big shop (100k customers, 10k products, 1 year).

Prints seconds per stage, rows per table, rows/s, the output's size and the peak RSS of this
process (psutil, sampled every 50 ms, cross-checked with the kernel's high-water mark). Run it
alone: it wants both cores for a minute or two.

    python -m scripts.bench_generate [--customers N --products M --days D --seed S
                                      --format parquet|csv|jsonl --out DIR --keep --json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from shopfeast import generator


class PeakRss:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, every_s: float = 0.05):
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        self.peak = max(self.peak, kernel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--corrupt-fraction", type=float, default=0.0)
    ap.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    ap.add_argument("--out", type=Path, default=None, help="keep the shop here (default: temp)")
    ap.add_argument("--keep", action="store_true", help="do not delete the temporary output")
    ap.add_argument("--json", action="store_true", help="also print one JSON line of figures")
    args = ap.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="shopfeast-bench-")) / "raw"
    print(
        f"generating {args.customers:,} customers, {args.products:,} products, {args.days} days "
        f"(seed {args.seed}, {args.format}) into {out}",
        flush=True,
    )
    with PeakRss() as rss:
        t0 = time.perf_counter()
        shop = generator.run(
            out=out,
            customers=args.customers,
            products=args.products,
            days=args.days,
            seed=args.seed,
            corrupt_fraction=args.corrupt_fraction,
            fmt=args.format,
        )
        wall = time.perf_counter() - t0
    rows = shop.info["rows"]
    total = sum(rows.values())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print()
    print(f"{'table':<12} {'rows':>12}")
    for name, n in rows.items():
        print(f"{name:<12} {n:>12,}")
    print(f"{'total':<12} {total:>12,}")
    print()
    print(f"sessions        {shop.info['sessions']:,}")
    print(f"wall time       {wall:.1f} s")
    print(f"rows/s          {total / wall:,.0f} (events/s {rows['events'] / wall:,.0f})")
    print(f"peak RSS        {rss.peak / 2**30:.2f} GiB")
    print(f"output size     {size / 2**20:,.0f} MiB ({args.format})")
    print(f"cpu cores       {psutil.cpu_count()} (load average {psutil.getloadavg()[0]:.1f})")
    if args.json:
        figures = {
            "wall_s": round(wall, 2),
            "stages_s": {k: round(v, 2) for k, v in shop.seconds.items()},
            "rows": rows,
            "rows_per_s": round(total / wall),
            "peak_rss_gib": round(rss.peak / 2**30, 3),
            "output_mib": round(size / 2**20, 1),
        }
        print(json.dumps(figures))
    if args.out is None and not args.keep:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
