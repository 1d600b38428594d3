"""`make bench-online`: online reads in process, Feast's `get_online_features` beside shopfeast's.

One process on the redis profile (the settings of the environment, as `make bench-serving`): for
each case, the same random entity rows go through Feast's `FeatureStore.get_online_features` and
through `featurestore.online.OnlineFeatures.read` (the API's read path), alternately, after a
warm-up; wall and CPU time per call, p50 / p95 / p99 / max. The two answers are compared value
for value on the first rows of each case. Cases: `churn_model_v1` for 100 customers (the issue's
online row), `customer_360_v1` for 20 customers (what `/features/batch` reads), `churn_model_v1`
for one customer.

    python -m scripts.bench_online [--calls 300] [--warmup 30]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import random
import sys
import time
from datetime import UTC, datetime

import numpy as np

CASES = (("churn_model_v1", 100), ("customer_360_v1", 20), ("churn_model_v1", 1))


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        a = None
    if isinstance(b, float) and math.isnan(b):
        b = None
    return type(a) is type(b) and a == b


def _stats(wall: list[float], cpu: list[float]) -> str:
    p50, p95, p99 = np.percentile(wall, [50, 95, 99]) * 1000
    return (
        f"{p50:.2f} | {p95:.2f} | {p99:.2f} | {max(wall) * 1000:.2f} | {p99 / p50:.1f}x | "
        f"{np.mean(cpu) * 1000:.2f}"
    )


async def bench(calls: int, warmup: int, seed: int) -> None:
    from featurestore.online import OnlineFeatures, entity_ids
    from featurestore.store import open_serving_store
    from shopconfig.settings import Settings

    store = open_serving_store(Settings())
    online = OnlineFeatures(store)
    customers = await entity_ids(online, "customer_id", limit=5000)
    if len(customers) < 100:
        sys.exit("bench-online: fewer than 100 customers online (make apply materialize)")
    rng = random.Random(seed)
    print(
        "| case | path | calls | p50 ms | p95 ms | p99 ms | max ms | p99/p50 | CPU ms/call |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for service, n in CASES:
        fs = store.get_feature_service(service)
        times: dict[str, tuple[list[float], list[float]]] = {"feast": ([], []), "ours": ([], [])}
        for i in range(warmup + calls):
            ids = rng.sample(customers, n)
            now = datetime.now(UTC)
            for path in ("feast", "ours") if i % 2 else ("ours", "feast"):
                w0, c0 = time.perf_counter(), time.process_time()
                if path == "feast":
                    theirs = (
                        fs
                        and store.get_online_features(
                            fs, {"customer_id": ids, "event_timestamp": [now] * n}
                        ).to_dict()
                    )
                else:
                    mine = await online.read(
                        service, {"customer_id": ids}, {"event_timestamp": now}
                    )
                w1, c1 = time.perf_counter(), time.process_time()
                if i >= warmup:
                    times[path][0].append(w1 - w0)
                    times[path][1].append(c1 - c0)
            if i == 0:
                theirs.pop("event_timestamp", None)
                bad = [
                    (k, j)
                    for k, col in theirs.items()
                    for j, v in enumerate(col)
                    if not _same(mine.columns[k][j], v)
                ]
                assert not bad, f"{service}: values differ from Feast's at {bad[:5]}"
        for path, label in (("feast", "Feast get_online_features"), ("ours", "shopfeast read")):
            print(f"| {service}, {n} customers | {label} | {calls} | {_stats(*times[path])} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, gc frozen: {gc.get_freeze_count()}")
    asyncio.run(bench(args.calls, args.warmup, args.seed))
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
