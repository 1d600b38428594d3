"""`make bench-declared`: declared aggregations against the hand-written customer_activity family.

    python -m scripts.bench_declared [--data-dir data/bench]

Builds, historically and each in its own process (its own peak RSS), the customer_activity family
and a declared view holding every customer_activity feature a declaration can express (order
counts over 7/30/90 days and lifetime, last order, discount share, distinct products, events,
sessions, carts, views and searches over 30 days: 12 of its 24 features, same windows), on the
store `make bench-pipelines` leaves in --data-dir (the 100k-customer shop). Prints wall time, CPU
time, rows and peak RSS side by side. Not a test: run it on a machine as quiet as you can get.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIVE = "status != 'cancelled'"
DECLARATIONS = f"""
views:
  - name: bench_declared_activity
    entity: customer
    source: orders
    filter: {LIVE}
    description: customer_activity's expressible features, declared (benchmark only).
    features:
      - {{name: b_orders_7d, function: count, window: 7d, description: x}}
      - {{name: b_orders_30d, function: count, window: 30d, description: x}}
      - {{name: b_orders_90d, function: count, window: 90d, description: x}}
      - {{name: b_lifetime_orders, function: count, window: lifetime, description: x}}
      - {{name: b_last_order_ts, function: max, column: order_ts, window: lifetime,
         description: x}}
      - {{name: b_discount_share_90d, function: share, where: discount_amount > 0, window: 90d,
         description: x}}
      - {{name: b_distinct_products_90d, source: order_items, filter: "{LIVE}",
         function: count_distinct, column: product_id, window: 90d, description: x}}
      - {{name: b_events_30d, source: events, function: count, window: 30d, description: x}}
      - {{name: b_sessions_30d, source: events, function: count_distinct, column: session_id,
         window: 30d, description: x}}
      - {{name: b_add_to_cart_30d, source: events, function: count, window: 30d,
         filter: event_type == 'add_to_cart', description: x}}
      - {{name: b_product_views_30d, source: events, function: count, window: 30d,
         filter: event_type == 'product_view', description: x}}
      - {{name: b_searches_30d, source: events, function: count, window: 30d,
         filter: event_type == 'search', description: x}}
"""


def _one(data_dir: Path, source: str) -> None:
    """Child process: one historical build of one source; prints a JSON line."""
    from pipelines import run

    wall, cpu = time.perf_counter(), time.process_time()
    (outcome,) = run.run(data_dir, "historical", only=[source], echo=False)
    print(
        json.dumps(
            {
                "source": source,
                "rows": outcome.rows,
                "wall_s": round(time.perf_counter() - wall, 1),
                "cpu_s": round(time.process_time() - cpu, 1),
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.data_dir, args.one)
        return
    if not (args.data_dir / "clean").is_dir():
        sys.exit(f"{args.data_dir} holds no clean tables: run `make bench-pipelines` first")
    # A copy of the store's clean tables only, so the sources it holds are not touched.
    work = Path(tempfile.mkdtemp(prefix="bench_declared_", dir=args.data_dir.parent))
    repo = work / "repo"
    repo.mkdir()
    (repo / "aggregations.yaml").write_text(DECLARATIONS)
    (work / "clean").symlink_to((args.data_dir / "clean").resolve())
    env = {**os.environ, "SHOPFEAST_FEATURE_REPO": str(repo)}
    results = []
    try:
        for source in ("customer_activity", "bench_declared_activity"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "scripts.bench_declared",
                    "--data-dir",
                    str(work),
                    "--one",
                    source,
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'source':<26} {'features':>8} {'rows':>11} {'wall s':>7} {'cpu s':>7} {'peak MiB':>9}")
    for r, n in zip(results, (24, 12), strict=True):
        print(
            f"{r['source']:<26} {n:>8} {r['rows']:>11,} {r['wall_s']:>7} {r['cpu_s']:>7} "
            f"{r['peak_mib']:>9,}"
        )


if __name__ == "__main__":
    main()
