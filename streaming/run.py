"""`shopfeast stream`: start N consumer processes of the group and stop them cleanly.

Each process is one consumer (`<host>-<pid>`) of the group. SIGTERM or SIGINT: every process
finishes its batch in hand, acknowledges it and exits 0; the parent forwards the signal and waits.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import redis
from feast import FeatureStore

from featurestore.realtime import FeastPush, is_redis, layouts, online_client, realtime_views
from featurestore.store import serving_config
from pipelines.validate import upper_bounds
from shopconfig.settings import Settings, get_settings
from streaming.worker import Worker, WorkerConfig

log = logging.getLogger("shopfeast.stream")


def worker_config(settings: Settings, data_dir: Path, **overrides) -> WorkerConfig:
    values = dict(
        data_dir=Path(data_dir),
        stream=settings.stream_key,
        group=settings.stream_group,
        batch_size=settings.stream_batch_size,
        claim_idle_ms=int(settings.stream_claim_idle_s * 1000),
        bounds=upper_bounds(settings.value_bounds),
    )
    values.update(overrides)
    return WorkerConfig(**values)


def build_worker(settings: Settings, config: WorkerConfig) -> Worker:
    """A worker on the settings' stream Redis and the Feast profile's online store: a Redis
    store written directly (no registry needed), any other through Feast's push API."""
    repo_config = serving_config(settings)
    url = settings.resolved_stream_redis_url()

    def stream_client() -> redis.Redis:
        return redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=1, health_check_interval=10
        )

    if not is_redis(repo_config):
        push = FeastPush(FeatureStore(repo_path=str(repo_config.repo_path), config=repo_config))
        return Worker(config, stream_client, None, {}, push=push)
    encoders = layouts(repo_config, realtime_views(config.data_dir).values())
    return Worker(config, stream_client, lambda: online_client(repo_config), encoders)


def serve_one(settings: Settings, config: WorkerConfig) -> int:
    """Run one consumer in this process until SIGTERM / SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = build_worker(settings, config)
    # What start-up loaded (Feast, pandas, the ingest state: ~250k objects) lives as long as the
    # worker; out of the collector's sight, a collection no longer scans it in the middle of a
    # batch (as the API does after its start-up, serving/app.py).
    gc.collect()
    gc.freeze()
    counters = worker.run(stop.is_set)
    log.info("stopped: %s", counters)
    print(
        f"stream worker {config.consumer}: {counters.entries:,} entries, "
        f"{counters.accepted:,} accepted, {counters.quarantined:,} quarantined "
        f"{counters.by_rule or ''}",
        flush=True,
    )
    return 0


def _child(settings: Settings, data_dir: Path) -> None:
    sys.exit(serve_one(settings, worker_config(settings, data_dir)))


def run(data_dir: Path, consumers: int = 1) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    if consumers > 1 and not is_redis(serving_config(settings)):
        print(
            "shopfeast stream: --consumers > 1 needs a Redis online store (another store is "
            "written through Feast's push API, without the version check concurrent consumers "
            "need; docs/streaming.md)",
            file=sys.stderr,
        )
        return 2
    if consumers <= 1:
        return serve_one(settings, worker_config(settings, data_dir))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(settings, data_dir)) for _ in range(consumers)]
    for p in procs:
        p.start()

    def forward(signum, _frame) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)
