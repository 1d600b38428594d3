"""Helpers of the stream tests: a generated shop whose events have not been ingested, workers on a
claimed Redis database, and the online values read back with plain `get_online_features`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import redis
from feast import FeatureStore
from feast.repo_config import RepoConfig

from featurestore.realtime import layouts, online_client, realtime_views
from featurestore.schema import entity
from pipelines.ingest import ingest
from pipelines.realtime import SOURCES, as_of, compute
from shopconfig.settings import redis_connection_string as feast_redis_connection_string
from streaming.log import EventLog, EventProducer, RedisStreamLog
from streaming.worker import Worker, WorkerConfig

NOW = pd.Timestamp("2025-03-01", tz="UTC")
TABLES = ("customers", "products", "orders", "order_items")


def make_shop(
    root: Path, customers: int = 400, products: int = 80, days: int = 10
) -> tuple[Path, pd.DataFrame]:
    """A data directory holding a generated shop without its events, and those events."""
    from shopfeast.generator import run as generate

    raw = root / "raw"
    generate(
        out=raw,
        customers=customers,
        products=products,
        days=days,
        seed=5,
        corrupt_fraction=0.0,
        start="2025-01-01",
        fmt="parquet",
    )
    batch = root / "batch"
    batch.mkdir()
    for t in TABLES:
        shutil.copy(raw / f"{t}.parquet", batch / f"{t}.parquet")
    data_dir = root / "data"
    ingest(batch, data_dir, NOW)
    events = pd.read_parquet(raw / "events.parquet")
    events["event_ts"] = pd.to_datetime(events["event_ts"], utc=True)
    return data_dir, events.sort_values("event_ts", kind="stable").reset_index(drop=True)


def repo_config(redis_url: str, registry: Path) -> RepoConfig:
    return RepoConfig(
        project="shopfeast",
        provider="local",
        registry={"registry_type": "file", "path": str(registry)},
        online_store={
            "type": "redis",
            "connection_string": feast_redis_connection_string(redis_url),
            "key_ttl_seconds": 259200,
        },
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=str(registry.parent),
    )


def make_worker(config: RepoConfig, redis_url: str, data_dir: Path, stream: str, **kw) -> Worker:
    encoders = layouts(config, realtime_views(data_dir).values())
    return Worker(
        WorkerConfig(data_dir=data_dir, stream=stream, block_ms=50, **kw),
        lambda: redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=1),
        lambda: online_client(config),
        encoders,
        lambda client: ProtocolOnly(RedisStreamLog(client, stream)),
    )


class ProtocolOnly:
    """The Redis Stream log behind a door that opens only for EventLog's methods: every worker
    test then shows the worker needs nothing else of its log, i.e. what a Kafka adapter would
    have to fill."""

    NAMES = frozenset(n for c in (EventLog, EventProducer) for n in vars(c) if n[0] != "_")

    def __init__(self, log: RedisStreamLog) -> None:
        self._log = log

    def __getattr__(self, name: str):
        if name not in ProtocolOnly.NAMES:
            raise AttributeError(f"the worker used log.{name}, which EventLog does not declare")
        return getattr(self._log, name)


def send(redis_url: str, stream: str, events: pd.DataFrame | list[dict]) -> list[str]:
    records = events.to_dict("records") if isinstance(events, pd.DataFrame) else events
    log = RedisStreamLog(redis.Redis.from_url(redis_url), stream)
    ids = []
    for i in range(0, len(records), 500):
        ids += log.send(records[i : i + 500])
    return ids


def drained(redis_url: str, stream: str, settle_s: float = 0.0):
    """A stop condition: nothing left to deliver nor pending."""
    log = RedisStreamLog(redis.Redis.from_url(redis_url), stream)
    started = time.monotonic()

    def stop() -> bool:
        b = log.backlog()
        return b["lag"] == 0 and b["pending"] == 0 and time.monotonic() - started > settle_s

    return stop


def online_values(config: RepoConfig, data_dir: Path, name: str, ids: list[str]) -> pd.DataFrame:
    """What plain `get_online_features` serves for these entities (views applied to a file
    registry)."""
    os.environ["SHOPFEAST_DATA_DIR"] = str(data_dir)
    store = FeatureStore(config=config)
    views = realtime_views(data_dir)
    store.apply(
        [
            entity("customer"),
            entity("product"),
            *views.values(),
            *(v.stream_source for v in views.values()),
        ]
    )
    source = SOURCES[name]
    refs = [f"{name}:{f.name}" for f in source.features]
    frame = store.get_online_features(refs, [{source.join_key: i} for i in ids]).to_df()
    return frame


def offline_values(
    config: RepoConfig, data_dir: Path, name: str, ids: list[str], at: pd.Timestamp
) -> pd.DataFrame:
    """What plain `get_historical_features` gives for these entities at `at`, from the offline
    rows `shopfeast features` wrote (views as `online_values` applied them)."""
    os.environ["SHOPFEAST_DATA_DIR"] = str(data_dir)
    store = FeatureStore(config=config)
    source = SOURCES[name]
    refs = [f"{name}:{f.name}" for f in source.features]
    rows = pd.DataFrame({source.join_key: ids, "event_timestamp": at})
    return store.get_historical_features(entity_df=rows, features=refs).to_df()


def expected_values(events: pd.DataFrame, name: str, at: pd.Timestamp) -> pd.DataFrame:
    """The batch recomputation at `at`: every row of the events, then the latest per entity."""
    source = SOURCES[name]
    return as_of(compute(name, events), source.join_key, at).reset_index(drop=True)


def comparable(frame: pd.DataFrame, name: str) -> list[tuple]:
    """Rows as plain tuples (lists as tuples, timestamps as UTC seconds) for equality."""
    source = SOURCES[name]
    out = []
    for _, row in frame.iterrows():
        values = [row[source.join_key]]
        for f in source.features:
            v = row[f.name]
            if f.dtype == "string_list":
                v = tuple(v) if v is not None else None
            elif f.dtype == "unix_timestamp":
                v = int(pd.Timestamp(v).timestamp()) if v is not None and not pd.isna(v) else None
            elif isinstance(v, (np.integer,)):
                v = int(v)
            values.append(v)
        out.append(tuple(values))
    return sorted(out)


def landed_event_ids(data_dir: Path) -> list[str]:
    folder = data_dir / "landing" / "events"
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return []
    return pd.concat([pd.read_parquet(p, columns=["event_id"]) for p in parts])["event_id"].tolist()


def quarantined(redis_url: str, stream: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return [fields for _, fields in client.xrange(f"{stream}:quarantine")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own (append-only file, so a restart keeps the stream)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: Redis fsyncs its append-only file and exits
        self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
