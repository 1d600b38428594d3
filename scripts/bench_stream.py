"""`make bench-stream`: event-to-online latency of `shopfeast stream` at fixed event rates.

Sets up a shop (generated customers and products, batch-ingested; no events), its own redis-server
on a free port (append-only file, fsync every second: what a durable stream runs with) holding the
stream and the online store, and one `shopfeast stream` worker process (the real command). Then for
each rate: a generator XADDs events at that rate for `--seconds` (stamped with the wall clock: a
live shop), and a poller follows every `--sample`-th event until its effect is readable online (the
customer's `customer_session` row in Redis stamped at or after the event), which gives its
event-to-online latency. The group's backlog (undelivered + unacknowledged entries) is sampled
every second; "no growth" means the backlog at the end is not above what it was after the first
10 seconds (plus one batch).

Side by side (`--paths shopfeast,raw`), the raw lower bound: a consumer of its own group that does
nothing but XREADGROUP, write each event's time into the customer's Feast hash (the field the
poller reads) and XACK; no validation, no buffers, no features, no landing. The gap between the two
rows is what the worker's exactly-once processing costs; the raw row is what Redis Streams and this
machine allow at all.

`--consumers 1,2` runs the shopfeast path once per count (`shopfeast stream --consumers N`: N
processes in the group), each on its own stream.

Prints per path and rate: events sent, the achieved rate, latency p50 / p95 / p99 / max, the
backlog, the consumer's CPU per event (all its processes), the redis-server's CPU per event, this
process's own (the generator, the poller and the backlog watcher: they share the machine's cores
with the consumer), and whether the target (p99 < 500 ms, no backlog growth) holds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import redis
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from featurestore.redis_encoding import entity_keys, timestamp_field
from pipelines.ingest import ingest
from streaming.log import GROUP, RedisStreamLog

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 500.0
TYPES = ["page_view", "product_view", "search", "add_to_cart", "checkout_start", "purchase"]
WEIGHTS = [0.25, 0.45, 0.1, 0.12, 0.04, 0.04]
PRODUCT_TYPES = ("product_view", "add_to_cart", "purchase")
POLL_S = 0.02


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="500,1000,2000,3000", help="events/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--products", type=int, default=2_000)
    ap.add_argument("--sample", type=int, default=10, help="follow one event in N")
    ap.add_argument("--paths", default="shopfeast,raw", help="shopfeast (the worker), raw")
    ap.add_argument(
        "--consumers",
        default="1",
        help="consumer processes of the shopfeast path, comma-separated: one row set each",
    )
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "bench-stream")
    ap.add_argument("--raw-consumer", nargs=2, metavar=("URL", "STREAM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_consumer:
        raw_consumer(*args.raw_consumer)
        return

    data_dir = args.data_dir.resolve()
    customers, products = shop(data_dir, args.customers, args.products)
    folder = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    server = start_redis(folder)
    port = server.args[2]
    url = f"redis://127.0.0.1:{port}/0"
    profile = write_profile(folder, port)
    env = {
        **os.environ,
        "SHOPFEAST_DATA_DIR": str(data_dir),
        "SHOPFEAST_FEAST_PROFILE": str(profile),
        "SHOPFEAST_STREAM_REDIS_URL": url,
        "SHOPFEAST_PROGRESS": "off",
    }
    try:
        print(
            f"shop: {len(customers):,} customers, {len(products):,} products; redis :{port}; "
            f"{args.seconds:.0f} s per rate; load average {os.getloadavg()[0]:.1f} at the start"
        )
        print(
            "| path | rate (ev/s) | sent | achieved | p50 ms | p95 ms | p99 ms | max ms "
            "| backlog 10s -> end | consumer CPU ms/event | redis CPU ms/event "
            "| bench CPU ms/event | load avg | target |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
        rng = np.random.default_rng(1)
        runs = [
            (f"{path} x{n}" if path == "shopfeast" and "," in args.consumers else path, path, n)
            for path in args.paths.split(",")
            for n in ([int(c) for c in args.consumers.split(",")] if path == "shopfeast" else [1])
        ]
        for label, path, n in runs:
            stream = f"bench:{path}-{n}:events"
            group = GROUP if path == "shopfeast" else "bench-raw"
            if path == "shopfeast":
                cmd = [sys.executable, "-m", "shopfeast.cli", "stream", "--data-dir", str(data_dir)]
                cmd += ["--consumers", str(n)]
            elif path == "raw":
                cmd = [sys.executable, "-m", "scripts.bench_stream", "--raw-consumer", url, stream]
            else:
                raise SystemExit(f"unknown path {path!r}: shopfeast or raw")
            consumer = subprocess.Popen(cmd, env={**env, "SHOPFEAST_STREAM_KEY": stream}, cwd=ROOT)
            try:
                warm_up(url, stream, group, customers[0])
                for rate in [int(r) for r in args.rates.split(",")]:
                    cpu0 = cpu_seconds(consumer.pid)
                    redis0 = cpu_seconds(server.pid)
                    own0 = time.process_time()
                    r = run_rate(
                        url,
                        stream,
                        group,
                        rate,
                        args.seconds,
                        args.sample,
                        customers,
                        products,
                        rng,
                    )
                    own_ms = (time.process_time() - own0) * 1000 / max(r["sent"], 1)
                    drain(url, stream, group)
                    cpu_ms = (cpu_seconds(consumer.pid) - cpu0) * 1000 / max(r["sent"], 1)
                    redis_ms = (cpu_seconds(server.pid) - redis0) * 1000 / max(r["sent"], 1)
                    print(
                        f"| {label} | {rate:,} | {r['sent']:,} | {r['achieved']:,.0f} "
                        f"| {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['max']:.0f} "
                        f"| {r['backlog_start']} -> {r['backlog_end']} "
                        f"| {cpu_ms:.2f} | {redis_ms:.2f} | {own_ms:.2f} "
                        f"| {os.getloadavg()[0]:.1f} | {'holds' if r['ok'] else 'misses'} |",
                        flush=True,
                    )
            finally:
                stop(consumer)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def raw_consumer(url: str, stream: str) -> None:
    """The lower bound: read, write the event time where the poller looks, acknowledge."""
    import pyarrow as pa

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    client = redis.Redis.from_url(url)
    log = RedisStreamLog(client, stream, "bench-raw")
    field = timestamp_field("customer_session")
    while not done.is_set():
        entries = log.read_new("raw", 500, 200)
        if not entries:
            continue
        keys = entity_keys(
            pa.array([e.fields["customer_id"] for e in entries]),
            "customer_id",
            ValueType.STRING,
            "shopfeast",
        )
        pipe = client.pipeline(transaction=True)
        for key, e in zip(keys, entries, strict=True):
            t = Timestamp()
            t.FromDatetime(pd.Timestamp(e.fields["event_ts"]).to_pydatetime())
            pipe.hset(key, field, t.SerializeToString())
        pipe.xack(stream, "bench-raw", *[e.id for e in entries])
        pipe.execute()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (`--consumers N` runs N of them)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def shop(data_dir: Path, customers: int, products: int) -> tuple[list[str], list[str]]:
    """Generated customers and products, ingested (the worker checks references against them)."""
    from shopfeast.generator import run as generate

    marker = data_dir / "state" / "ingest" / "manifest.json"
    if not marker.exists():
        raw = data_dir.parent / (data_dir.name + "-raw")
        generate(
            out=raw,
            customers=customers,
            products=products,
            days=30,
            seed=11,
            corrupt_fraction=0.0,
            start="2025-01-01",
            fmt="parquet",
        )
        batch = raw / "batch"
        batch.mkdir(exist_ok=True)
        for t in ("customers", "products", "orders", "order_items"):
            shutil.copy(raw / f"{t}.parquet", batch / f"{t}.parquet")
        ingest(batch, data_dir, pd.Timestamp.now(tz="UTC"))
    from pipelines.storage import read_clean

    c = read_clean(data_dir, "customers", ["customer_id"])["customer_id"].unique().tolist()
    p = read_clean(data_dir, "products", ["product_id"])["product_id"].unique().tolist()
    return c, p


def start_redis(folder: Path) -> subprocess.Popen:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=int(port))
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def write_profile(folder: Path, port: str) -> Path:
    """The redis profile with this server as the online store and a file registry."""
    text = (ROOT / "feature_repo" / "profiles" / "redis.yaml").read_text()
    text = text.replace("${REDIS_CONNECTION_STRING}", f"127.0.0.1:{port},db=0")
    import yaml

    raw = yaml.safe_load(text)
    raw["registry"] = {"registry_type": "file", "path": str(folder / "registry.db")}
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_rate(url, stream, group, rate, seconds, sample, customers, products, rng) -> dict:
    client = redis.Redis.from_url(url)
    log = RedisStreamLog(client, stream, group)
    pending: deque = deque()
    latencies: list[float] = []
    backlog: list[tuple[float, int]] = []
    stop = threading.Event()
    ts_field = timestamp_field("customer_session")

    def poll() -> None:
        reader = redis.Redis.from_url(url)
        while not stop.is_set() or pending:
            batch = list(pending)
            if batch:
                pipe = reader.pipeline(transaction=False)
                for key, _, _ in batch:
                    pipe.hget(key, ts_field)
                now = time.perf_counter()
                for item, raw in zip(batch, pipe.execute(), strict=True):
                    if raw is None:
                        continue
                    t = Timestamp()
                    t.ParseFromString(raw)
                    if t.seconds * 1_000_000 + t.nanos // 1000 >= item[1]:
                        latencies.append((now - item[2]) * 1000)
                        pending.remove(item)
            if stop.is_set() and time.perf_counter() - stopped[0] > 10:
                break
            time.sleep(POLL_S)

    def watch() -> None:
        watcher = RedisStreamLog(redis.Redis.from_url(url), stream, group)
        while not stop.is_set():
            b = watcher.backlog()
            backlog.append((time.perf_counter(), b["lag"] + b["pending"]))
            time.sleep(1.0)

    stopped = [0.0]
    threads = [threading.Thread(target=poll), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    keys = entity_keys_for(customers)
    session: dict[int, str] = {}
    tick = 0.01
    sent, carry, n = 0, 0.0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        due = start + (n + 1) * tick
        carry += rate * tick
        k = int(carry)
        carry -= k
        who = rng.integers(len(customers), size=k).tolist()
        kinds = rng.choice(len(TYPES), size=k, p=WEIGHTS).tolist()
        picks = np.minimum(rng.zipf(1.3, size=k), len(products)).tolist()
        renew = (rng.random(k) < 0.05).tolist()
        now_us = time.time_ns() // 1000
        stamp = pd.Timestamp(now_us, unit="us", tz="UTC").isoformat()
        events = []
        for c, kind, p, new in zip(who, kinds, picks, renew, strict=True):
            if new or c not in session:
                session[c] = f"bs-{rate}-{c}-{sent}"
            etype = TYPES[kind]
            events.append(
                {
                    "event_id": f"bench-{rate}-{sent}",
                    "customer_id": customers[c],
                    "session_id": session[c],
                    "event_type": etype,
                    "event_ts": stamp,
                    "product_id": products[p - 1] if etype in PRODUCT_TYPES else None,
                }
            )
            if sent % sample == 0:
                pending.append((keys[c], now_us, time.perf_counter()))
            sent += 1
        if events:
            log.send(events)
        n += 1
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - start
    stopped[0] = time.perf_counter()
    stop.set()
    for t in threads:
        t.join()
    lat = np.array(latencies) if latencies else np.array([np.inf])
    lost = len(pending)
    after = [b for t, b in backlog if t - start >= 10]
    b0 = after[0] if after else 0
    b1 = backlog[-1][1] if backlog else 0
    ok = bool(np.percentile(lat, 99) < TARGET_P99_MS and lost == 0 and b1 <= b0 + 500)
    return {
        "sent": sent,
        "achieved": sent / elapsed,
        "p50": np.percentile(lat, 50),
        "p95": np.percentile(lat, 95),
        "p99": np.percentile(lat, 99),
        "max": lat.max(),
        "backlog_start": b0,
        "backlog_end": b1,
        "ok": ok,
    }


def entity_keys_for(customers: list[str]) -> list[bytes]:
    import pyarrow as pa

    return entity_keys(pa.array(customers), "customer_id", ValueType.STRING, "shopfeast")


def warm_up(url: str, stream: str, group: str, customer: str) -> None:
    """One event through the consumer: it has started (imports, state) before the clock runs."""
    log = RedisStreamLog(redis.Redis.from_url(url), stream, group)
    log.send(
        [
            {
                "event_id": "bench-warm-up",
                "customer_id": customer,
                "session_id": "warm-up",
                "event_type": "page_view",
                "event_ts": pd.Timestamp.now(tz="UTC").isoformat(),
            }
        ]
    )
    time.sleep(1.0)
    drain(url, stream, group, 300.0)


def drain(url: str, stream: str, group: str, limit_s: float = 120.0) -> None:
    log = RedisStreamLog(redis.Redis.from_url(url), stream, group)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        b = log.backlog()
        if b["lag"] + b["pending"] == 0:
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main()
