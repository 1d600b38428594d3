"""`make bench-serving`: load the API on loopback and print RPS and latency percentiles.

Starts one uvicorn worker on the app (the settings of the environment: by default the redis
profile over $SHOPFEAST_DATA_DIR, with its trained models), waits until /ready, then drives each
endpoint with an async httpx load generator at concurrency 1, 8 and 32 (closed loop: each of the
C clients sends its next request when the previous one answered). Ids are real ones, read off the
online store; /recommendations asks for k=10 out of the full candidate pool (200 by default) and
the script checks that 200 candidates were scored.

    python -m scripts.bench_serving [--seconds 8] [--concurrency 1,8,32] [--port 8765]

`--against DIR` compares this tree with another checkout (`git worktree add --detach DIR REV`) on
a busy machine: both servers run side by side (DIR's code, this venv), requests alternate between
them in blocks (the same requests for both, one at a time), and each block's server CPU per
request is read; the medians of the blocks, before (DIR) and after (this tree), are printed.

    python -m scripts.bench_serving --against /tmp/before [--blocks 16] [--per-block 120]

Then, at each `--concurrency`, both servers' latency percentiles from closed-loop blocks of
`--seconds / 2` that alternate between them (`--latency-blocks` a side, pooled), with the server
CPU per request over those blocks:

    python -m scripts.bench_serving --against /tmp/before --only recommendations \
        --concurrency 1,8 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json as _json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
ROUTES = {  # the endpoint label of the server's own histogram
    "GET /health": "/health",
    "GET /features/customers/{id}": "/features/customers/{customer_id}",
    "GET /features/products/{id}": "/features/products/{product_id}",
    "POST /features/batch (20 customers)": "/features/batch",
    "POST /predict/churn": "/predict/churn",
    "POST /recommendations": "/recommendations",
}
TARGETS = {  # issue 6: both at concurrency 8, one worker, zero errors
    "POST /predict/churn": ("p99 < 20 ms at c=8", 20.0),
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
    server_ms: tuple[float, float] = (float("nan"), float("nan"))  # its own p50, p99
    client_cpu_s: float = float("nan")  # CPU of this load generator over the window
    reasons: Counter = field(default_factory=Counter)  # what the errors were

    def row(self) -> str:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        n = len(self.latencies_ms) + self.errors
        cpu = self.server_cpu_s / n * 1000 if n else float("nan")
        return (
            f"| {self.endpoint} | {self.concurrency} | {n} | {n / self.seconds:,.0f} | "
            f"{p50:.1f} | {p95:.1f} | {p99:.1f} | {self.errors} | {cpu:.2f} | "
            f"{self.server_ms[0]:.1f} / {self.server_ms[1]:.1f} | "
            f"{self.client_cpu_s / n * 1000 if n else float('nan'):.2f} |"
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


class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the load generator's client.

    httpx costs 2 to 8 ms of CPU per request on this machine (more than the server spends on
    most endpoints), so at concurrency 8 and 32 it measured itself. This client writes the
    request bytes and reads the status line, headers and Content-Length body: about a tenth of
    that. httpx remains the client for the probe and for `--client httpx`.
    """

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, json: dict | None = None) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = b"" if json is None else _json.dumps(json).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + body)
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            length = 0
            for line in raw.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await self.reader.readexactly(length)
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.writer.close()
            self.writer = None
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _drive(
    client: httpx.AsyncClient,
    make,
    route: str,
    concurrency: int,
    seconds: float,
    warmup: float,
    server: psutil.Process | None = None,
    raw: bool = True,
) -> Result:
    res = Result("", concurrency)
    url = httpx.URL(str(client.base_url))
    headers = {k: v for k, v in client.headers.items() if k.lower() == "x-api-key"}
    rng = random.Random(7)
    stop_warm = time.perf_counter() + warmup
    stop = stop_warm + seconds

    async def worker() -> None:
        conn = RawConnection(url.host, url.port, headers) if raw else None
        try:
            await run(conn)
        finally:
            if conn is not None:
                conn.close()

    async def run(conn: RawConnection | None) -> None:
        while True:
            method, path, body = make(rng)
            start = time.perf_counter()
            if start >= stop:
                return
            try:
                if conn is not None:
                    status = await conn.request(method, path, json=body)
                else:
                    status = (await client.request(method, path, json=body)).status_code
                ok, reason = status == 200, str(status)
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                ok, reason = False, type(exc).__name__
            end = time.perf_counter()
            if start < stop_warm:
                continue
            if ok:
                res.latencies_ms.append((end - start) * 1000)
            else:
                res.errors += 1
                res.reasons[reason] += 1

    async def meter() -> None:
        """The server's CPU and its own latency histogram over the measured window."""
        await asyncio.sleep(max(0.0, stop_warm - time.perf_counter()))
        cpu, hist = _cpu(server), await _histogram(client, route)
        own = time.process_time()
        await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        res.client_cpu_s = time.process_time() - own
        res.server_cpu_s = _cpu(server) - cpu
        res.server_ms = _quantiles(hist, await _histogram(client, route), (0.5, 0.99))

    await asyncio.gather(meter(), *(worker() for _ in range(concurrency)))
    res.seconds = seconds
    return res


def _cpu(proc) -> float:
    if proc is None:
        return float("nan")
    t = proc.cpu_times()
    return t.user + t.system


async def _histogram(client: httpx.AsyncClient, route: str) -> dict[float, float]:
    """Cumulative bucket counts of the server's latency histogram for one route."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get("/metrics")).text
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "shopfeast_http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("endpoint") == route:
                out[float(sample.labels["le"])] = sample.value
    return out


def _quantiles(before: dict, after: dict, qs) -> tuple[float, ...]:
    """Prometheus-style histogram_quantile over the window, in ms (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out = []
    for q in qs:
        if total <= 0:
            out.append(float("nan"))
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for bound, cum in zip(bounds, counts, strict=True):
            if cum >= rank:
                upper = bound if bound != float("inf") else lower
                share = (rank - below) / (cum - below) if cum > below else 1.0
                out.append((lower + (upper - lower) * share) * 1000)
                break
            lower, below = bound, cum
    return tuple(out)


async def _ids() -> dict[str, list[str]]:
    """Real ids, read off the online store the server uses (same settings, same profile)."""
    from featurestore.online import OnlineFeatures, entity_ids
    from featurestore.store import open_serving_store as open_store
    from shopconfig.settings import Settings

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
                r = await _drive(
                    client,
                    make,
                    ROUTES[name],
                    c,
                    args.seconds,
                    args.warmup,
                    server,
                    raw=args.client == "raw",
                )
                r.endpoint = name
                print(r.row(), flush=True)
                if r.errors:
                    print(f"  errors of {name} at c={c}: {dict(r.reasons)}", file=sys.stderr)
                results.append(r)
    return results


def start_server(port: int, cwd: Path = ROOT) -> subprocess.Popen:
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
    return subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True)


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


async def against(args: argparse.Namespace, servers: list[tuple[str, int, psutil.Process]]):
    """Server CPU per request, before (`servers[0]`) and after, in alternating blocks."""
    import statistics

    ids = await _ids()
    make = _requests(ids, args.k)
    conns = [RawConnection("127.0.0.1", port, {}) for _, port, _ in servers]

    async def send(i: int, rng: random.Random, fn) -> None:
        method, path, body = fn(rng)
        for attempt in (1, 2):  # a keep-alive the server closed while the other one ran
            try:
                status = await conns[i].request(method, path, json=body)
                break
            except (OSError, asyncio.IncompleteReadError):
                if attempt == 2:
                    raise
        if status != 200:
            sys.exit(f"bench-serving: {path} answered {status} ({servers[i][0]})")

    print(
        "| endpoint (c=1) | before CPU ms/req | after CPU ms/req "
        "| before / after (median over the blocks) | blocks |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, fn in make.items():
        if args.only and args.only not in name or not name.startswith("POST"):
            continue
        for i in (0, 1):
            rng = random.Random(99)
            for _ in range(args.per_block * 2):
                await send(i, rng, fn)
        cpu: dict[int, list[float]] = {0: [], 1: []}
        for block in range(args.blocks):
            for i in (0, 1) if block % 2 == 0 else (1, 0):
                rng = random.Random(block)  # the same requests for both
                start = _cpu(servers[i][2])
                for _ in range(args.per_block):
                    await send(i, rng, fn)
                cpu[i].append((_cpu(servers[i][2]) - start) / args.per_block * 1000)
        before, after = (statistics.median(cpu[i]) for i in (0, 1))
        ratio = statistics.median(a / b for a, b in zip(cpu[0], cpu[1], strict=True))
        print(f"| {name} | {before:.2f} | {after:.2f} | {ratio:.2f}x | {args.blocks} |", flush=True)
    for conn in conns:
        conn.close()
    if args.latency_blocks:
        await against_latency(args, servers, make)


async def against_latency(args: argparse.Namespace, servers, make) -> None:
    """Latency percentiles of both servers at each concurrency, in alternating closed-loop
    blocks of `--seconds / 2` (A B B A ...), the blocks of each side pooled."""
    print(
        "\n| endpoint | c | side | requests | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU ms/req |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    seconds = args.seconds / 2
    for name, fn in make.items():
        if args.only and args.only not in name or not name.startswith("POST"):
            continue
        for c in args.concurrency:
            pooled = {0: Result(name, c), 1: Result(name, c)}
            for block in range(2 * args.latency_blocks):
                for i in (0, 1) if block % 2 == 0 else (1, 0):
                    _, port, proc = servers[i]
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                        r = await _drive(
                            client, lambda rng, fn=fn: fn(rng), ROUTES[name], c, seconds,
                            args.warmup, proc, raw=args.client == "raw",
                        )  # fmt: skip
                    into = pooled[i]
                    into.latencies_ms += r.latencies_ms
                    into.errors += r.errors
                    into.server_cpu_s = (
                        r.server_cpu_s if block == 0 else into.server_cpu_s + r.server_cpu_s
                    )
            for i, side in ((0, "before"), (1, "after")):
                r = pooled[i]
                p50, p95, p99 = np.percentile(r.latencies_ms, [50, 95, 99])
                n = len(r.latencies_ms) + r.errors
                print(
                    f"| {name} | {c} | {side} | {n} | {p50:.1f} | {p95:.1f} | {p99:.1f} "
                    f"| {r.errors} | {r.server_cpu_s / n * 1000:.2f} |",
                    flush=True,
                )


def _when() -> str:
    """The time (UTC) and the load average, for the record."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"{time.strftime('%H:%M', time.gmtime())} UTC, load {' '.join(load)}"


def run_against(args: argparse.Namespace) -> int:
    trees = [(Path(args.against).resolve(), args.port), (ROOT, args.port + 1)]
    procs = [start_server(port, cwd=tree) for tree, port in trees]
    try:
        for (_, port), proc in zip(trees, procs, strict=True):
            wait_ready(f"http://127.0.0.1:{port}", proc)
        print(f"before: {trees[0][0]}, after: {ROOT}; {_when()}")
        servers = [
            (str(tree), port, psutil.Process(proc.pid))
            for (tree, port), proc in zip(trees, procs, strict=True)
        ]
        asyncio.run(against(args, servers))
        print(f"end {_when()}")
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    return 0


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
    ap.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="Load generator client: raw asyncio streams (default) or httpx.",
    )
    ap.add_argument("--url", default="", help="Bench a running server instead of starting one.")
    ap.add_argument("--against", default="", help="Compare with the checkout in this folder.")
    ap.add_argument("--blocks", type=int, default=16, help="--against: alternating blocks.")
    ap.add_argument("--per-block", type=int, default=120, help="--against: requests a block.")
    ap.add_argument(
        "--latency-blocks",
        type=int,
        default=4,
        help="--against: then p50/p99 at each --concurrency, this many blocks a side (0: none).",
    )
    args = ap.parse_args()
    if args.against:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        return run_against(args)
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
            "| server CPU ms/req | in-server p50 / p99 ms | client CPU ms/req |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        results = asyncio.run(bench(args, base, proc.pid if proc else None))
    finally:
        if proc:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    for r in results:
        if r.endpoint in TARGETS and r.concurrency == 8:
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
