"""`make bench-serving`: load the API on loopback and print RPS and latency percentiles.

Starts one uvicorn worker on the app (the settings of the environment: by default the redis
profile over $SHOPFEAST_DATA_DIR, with its trained models), waits until /ready, then drives each
endpoint with an async httpx load generator at concurrency 1, 8 and 32 (closed loop: each of the
C clients sends its next request when the previous one answered). Ids are real ones, read off the
online store; /recommendations asks for k=10 out of the full candidate pool (200 by default) and
the script checks that 200 candidates were scored.

    python -m scripts.bench_serving [--seconds 8] [--concurrency 1,8,32] [--port 8765]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "POST /predict/churn": ("p99 < 20 ms", 20.0),
    "POST /recommendations": ("p99 < 60 ms at c=8", 60.0),
}


@dataclass
class Result:
    endpoint: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    server_cpu_s: float = float("nan")  # CPU the server process used over the measured window

    def row(self) -> str:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        n = len(self.latencies_ms) + self.errors
        cpu = self.server_cpu_s / n * 1000 if n else float("nan")
        return (
            f"| {self.endpoint} | {self.concurrency} | {n} | {n / self.seconds:,.0f} | "
            f"{p50:.1f} | {p95:.1f} | {p99:.1f} | {self.errors} | {cpu:.2f} |"
        )


def _requests(ids: dict[str, list[str]], k: int):
    """Per endpoint, a function giving the next request (method, path, json)."""
    cust, prod = ids["customer_id"], ids["product_id"]
    return {
        "GET /health": lambda r: ("GET", "/health", None),
        "GET /features/customers/{id}": lambda r: (
            "GET",
            f"/features/customers/{r.choice(cust)}",
            None,
        ),
        "GET /features/products/{id}": lambda r: (
            "GET",
            f"/features/products/{r.choice(prod)}",
            None,
        ),
        "POST /features/batch (20 customers)": lambda r: (
            "POST",
            "/features/batch",
            {"entity": "customer", "ids": r.sample(cust, 20)},
        ),
        "POST /predict/churn": lambda r: (
            "POST",
            "/predict/churn",
            {"customer_id": r.choice(cust)},
        ),
        "POST /recommendations": lambda r: (
            "POST",
            "/recommendations",
            {"customer_id": r.choice(cust), "k": k, "exclude_purchased": True},
        ),
    }


async def _drive(
    client: httpx.AsyncClient,
    make,
    concurrency: int,
    seconds: float,
    warmup: float,
    server: psutil.Process | None = None,
) -> Result:
    res = Result("", concurrency)
    rng = random.Random(7)
    stop_warm = time.perf_counter() + warmup
    stop = stop_warm + seconds

    async def worker() -> None:
        while True:
            method, path, body = make(rng)
            start = time.perf_counter()
            if start >= stop:
                return
            try:
                r = await client.request(method, path, json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            end = time.perf_counter()
            if start < stop_warm:
                continue
            if ok:
                res.latencies_ms.append((end - start) * 1000)
            else:
                res.errors += 1

    async def cpu_meter() -> None:
        if server is None:
            return
        await asyncio.sleep(max(0.0, stop_warm - time.perf_counter()))
        before = _cpu(server)
        await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        res.server_cpu_s = _cpu(server) - before

    await asyncio.gather(cpu_meter(), *(worker() for _ in range(concurrency)))
    res.seconds = seconds
    return res


def _cpu(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def _ids() -> dict[str, list[str]]:
    """Real ids, read off the online store the server uses (same settings, same profile)."""
    from serving.catalog import entity_ids
    from serving.feast_store import open_store
    from serving.online import OnlineFeatures
    from serving.settings import Settings

    online = OnlineFeatures(open_store(Settings()))
    customers = await entity_ids(online, "customer_id", limit=5000)
    products = await entity_ids(online, "product_id", limit=5000)
    if not customers or not products:
        sys.exit(
            "bench-serving: the online store holds no customers or products "
            "(run `make apply materialize train` first)"
        )
    return {"customer_id": customers, "product_id": products}


async def bench(args: argparse.Namespace, base: str, server_pid: int | None) -> list[Result]:
    headers = (
        {"X-API-Key": os.environ["SHOPFEAST_API_KEY"]}
        if os.environ.get("SHOPFEAST_API_KEY")
        else {}
    )
    ids = await _ids()
    server = psutil.Process(server_pid) if server_pid else None
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=10.0
    ) as client:
        probe = await client.post(
            "/recommendations", json={"customer_id": ids["customer_id"][0], "k": args.k}
        )
        print(
            f"recommendations probe: {probe.status_code}, candidates scored "
            f"{probe.json().get('candidates_scored')}",
            file=sys.stderr,
        )
        results = []
        for name, make in _requests(ids, args.k).items():
            if args.only and args.only not in name:
                continue
            for c in args.concurrency:
                r = await _drive(client, make, c, args.seconds, args.warmup, server)
                r.endpoint = name
                print(r.row(), flush=True)
                results.append(r)
    return results


def start_server(port: int) -> subprocess.Popen:
    env = {**os.environ, "SHOPFEAST_LOG_LEVEL": "warning"}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "serving.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench-serving: the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit("bench-serving: the server did not become ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="Measured seconds per level.")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32]
    )
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--only", default="", help="Only endpoints whose name contains this.")
    ap.add_argument("--url", default="", help="Bench a running server instead of starting one.")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    base = args.url or f"http://127.0.0.1:{args.port}"
    proc = None if args.url else start_server(args.port)
    try:
        if proc:
            wait_ready(base, proc)
        print(
            "| endpoint | concurrency | requests | RPS | p50 ms | p95 ms | p99 ms | errors "
            "| server CPU ms/req |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        results = asyncio.run(bench(args, base, proc.pid if proc else None))
    finally:
        if proc:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    for r in results:
        if r.endpoint in TARGETS and (r.concurrency == 8 or r.endpoint == "POST /predict/churn"):
            target, limit = TARGETS[r.endpoint]
            p99 = float(np.percentile(r.latencies_ms, 99)) if r.latencies_ms else float("nan")
            verdict = "met" if p99 < limit and r.errors == 0 else "MISSED"
            print(
                f"target {r.endpoint} {target}, zero errors: c={r.concurrency} p99 "
                f"{p99:.1f} ms, errors {r.errors} -> {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
