"""`make demo`'s streaming stage: a burst of live events for one customer, through a Redis Stream
and the real stream worker (streaming.worker.Worker, what `shopfeast stream` runs) into the demo's
online store, with the customer's recommendations (the API's own Scorer) before and after.

The demo runs on the embedded profile (SQLite online store, nothing to install); the stream needs a
Redis. The configured one (`SHOPFEAST_STREAM_REDIS_URL`, else `REDIS_URL`, else 127.0.0.1:6379)
when it answers, else a private `redis-server` on a free port (started and stopped here), else the
stage is skipped with one line that says why. On a shared Redis everything lives under a stream key
of its own (`shopfeast:demo:<token>:events`) and is deleted afterwards.

The worker writes the SQLite store through Feast's push API (featurestore.realtime.FeastPush), lands
the accepted events in DIR/landing/events (the next `shopfeast daily` ingests them) and quarantines
the bad one with its rule, as it does in production.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from feast import FeatureStore

from featurestore.online import OnlineFeatures
from featurestore.realtime import FeastPush
from pipelines.realtime import LOOKBACK_US, SOURCES
from pipelines.storage import read_clean
from pipelines.validate import upper_bounds
from serving.catalog import CatalogKeeper
from serving.scoring import Scorer
from shopconfig.settings import get_settings
from streaming import landing
from streaming.log import GROUP, RedisStreamLog
from streaming.worker import Counters, Worker, WorkerConfig
from training.artifacts import load
from training.candidates import PRODUCT_SERVICE

UNKNOWN_PRODUCT = "P-NOT-IN-CATALOG"  # the burst's one bad event: quarantined as unknown_product
SECONDS_APART = 15  # between the burst's events
K = 5  # recommendations shown
VIEW = "customer_session"


@dataclass
class StreamRedis:
    """The Redis the stage streams through, and how to let it go."""

    url: str
    what: str  # for the summary line
    close: Callable[[], None] = lambda: None


@dataclass
class BurstResult:
    sent: int
    counters: Counters
    online_ms: float  # from the first XADD until the worker had committed every entry
    landed: list[Path] = field(default_factory=list)


def reach_redis(url: str | None = None, start: bool = True) -> StreamRedis | str:
    """The configured Redis if it answers, else a private redis-server (if `start` and the binary
    exists); else why neither, as one sentence."""
    url = url or get_settings().resolved_stream_redis_url()
    if _answers(url):
        return StreamRedis(url, f"Redis at {url}")
    binary = shutil.which("redis-server") if start else None
    if binary is None:
        return (
            f"no Redis answers at {url} and no redis-server is installed to start one "
            "(set REDIS_URL, or install redis-server)"
        )
    folder = Path(tempfile.mkdtemp(prefix="shopfeast-demo-redis-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def close() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)

    local = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(local):
            what = f"a private redis-server on :{port} (stopped afterwards)"
            return StreamRedis(local, what, close)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    close()
    return f"no Redis answers at {url} and a private redis-server did not start"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def burst_events(data_dir: Path, customer: str, at: pd.Timestamp, seed: int) -> list[dict]:
    """One live session of the customer from `at`: a look around a category they have not
    bought from (its best sellers, viewed and two carted), and one event naming a product the
    shop does not have (quarantined by the ingest's rule)."""
    products = read_clean(data_dir, "products", ["product_id", "category", "is_active"])
    products = products.drop_duplicates("product_id", keep="last")  # one row per version
    products = products[products["is_active"].fillna(True).astype(bool)]
    items = read_clean(data_dir, "order_items", ["order_id", "product_id", "quantity"])
    orders = read_clean(data_dir, "orders", ["order_id", "customer_id"])
    sold = items.groupby(items["product_id"].astype(str))["quantity"].sum()
    theirs = items["order_id"].isin(orders.loc[orders["customer_id"] == customer, "order_id"])
    bought = set(items.loc[theirs, "product_id"].astype(str))
    pool = products[~products["product_id"].astype(str).isin(bought)].copy()
    pool["product_id"] = pool["product_id"].astype(str)
    pool["sold"] = pool["product_id"].map(sold).fillna(0)
    bought_categories = set(products.loc[products["product_id"].isin(bought), "category"])
    fresh = pool[~pool["category"].isin(bought_categories)]
    pool = fresh if len(fresh) >= 3 else pool
    # the category the customer has not bought from that sells most; ties by name
    by_category = pool.groupby("category")["sold"].sum().sort_values(ascending=False, kind="stable")
    category = by_category.index[0]
    picks = (
        pool[pool["category"] == category]
        .sort_values(["sold", "product_id"], ascending=[False, True])["product_id"]
        .tolist()
    )
    picks += [p for p in pool.sort_values("sold", ascending=False)["product_id"] if p not in picks]
    a, b, c = picks[:3]
    session = f"demo-live-{seed}"
    steps: list[tuple[str, str | None, dict]] = [
        ("page_view", None, {"page_context": "home"}),
        ("search", None, {"search_query": str(category)}),
        ("product_view", a, {}),
        ("product_view", b, {}),
        ("product_view", a, {}),
        ("add_to_cart", a, {}),
        ("product_view", c, {}),
        ("add_to_cart", b, {}),
        ("product_view", UNKNOWN_PRODUCT, {}),
    ]
    return [
        {
            "event_id": f"{session}-{i}",
            "customer_id": customer,
            "session_id": session,
            "event_type": kind,
            "event_ts": (at + pd.Timedelta(seconds=SECONDS_APART * i)).isoformat(),
            "product_id": product,
            "device_type": "mobile",
            **extra,
        }
        for i, (kind, product, extra) in enumerate(steps)
    ]


def stream_burst(
    data_dir: Path, store: FeatureStore, events: list[dict], url: str, timeout_s: float = 60.0
) -> BurstResult:
    """XADD the events to a stream of their own and run the worker until it has committed them
    all; the stream and the worker's state keys are deleted afterwards."""
    stream = f"shopfeast:demo:{uuid.uuid4().hex[:12]}:events"
    settings = get_settings()
    config = WorkerConfig(
        data_dir=Path(data_dir),
        stream=stream,
        group=GROUP,
        block_ms=50,
        bounds=upper_bounds(settings.value_bounds),
    )
    client = redis.Redis.from_url(url)
    log = RedisStreamLog(client, stream, GROUP)
    before = set(landing.landing_dir(data_dir).glob("part-*.parquet"))
    try:
        worker = Worker(config, lambda: redis.Redis.from_url(url), None, {}, push=FeastPush(store))
        start = time.perf_counter()
        log.send(events)
        deadline = time.monotonic() + timeout_s

        def done() -> bool:
            b = log.backlog()
            return b["lag"] + b["pending"] == 0 or time.monotonic() > deadline

        counters = worker.run(done)
        online_ms = (time.perf_counter() - start) * 1000
    finally:
        keys = list(client.scan_iter(match=f"{stream}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    landed = sorted(set(landing.landing_dir(data_dir).glob("part-*.parquet")) - before)
    return BurstResult(len(events), counters, online_ms, landed)


class _ShopCatalog(CatalogKeeper):
    """The catalog over the shop's clean products: the API lists Redis keys (SCAN), which the
    embedded profile's SQLite store has no equivalent of."""

    def __init__(self, online: OnlineFeatures, services: list[str], ids: list[str]) -> None:
        super().__init__(online, services)
        self._ids = ids

    async def product_ids(self) -> list[str]:
        return self._ids


def recommend(store: FeatureStore, data_dir: Path, customer: str, k: int = K) -> dict[str, Any]:
    """The API's answer to POST /recommendations (exclude_purchased) on the demo's store: the
    same Scorer, models and candidate services, read from the embedded online store."""
    settings = get_settings()
    models = Path(data_dir) / "models"
    churn, ranking = load(models, settings.churn_model), load(models, settings.ranking_model)
    ids = read_clean(data_dir, "products", ["product_id"])["product_id"].astype(str)

    async def ask() -> dict[str, Any]:
        online = OnlineFeatures(store, deadline_s=30.0)
        services = [PRODUCT_SERVICE, ranking.feature_service, settings.product_service]
        catalog = _ShopCatalog(online, services, sorted(ids.unique()))
        return await Scorer(online, churn, ranking, catalog).recommend(customer, k, True)

    return asyncio.run(ask())


def session_row(store: FeatureStore, customer: str) -> dict[str, Any]:
    """The customer's customer_session row online, as plain `get_online_features` reads it."""
    features = [f"{VIEW}:{f.name}" for f in SOURCES[VIEW].features]
    row = store.get_online_features(features, [{"customer_id": customer}]).to_dict()
    return {k: v[0] for k, v in row.items()}


def side_by_side(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Rank, product and candidate source, before and after, one line per rank."""

    def cells(answer: dict[str, Any]) -> list[str]:
        return [f"{i['product_id']} ({i['source']}, {i['score']:.3f})" for i in answer["items"]]

    left, right = cells(before), cells(after)
    width = max([len(x) for x in left] + [len("before (batch features)")])
    lines = [f"{'':4}{'before (batch features)':<{width}}   after the burst"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        lines.append(f"{i + 1:>2}. {a:<{width}}   {b}")
    return lines


def rules_text(counters: Counters) -> str:
    return ", ".join(f"{n} {rule}" for rule, n in sorted(counters.by_rule.items())) or "none"


def burst_clock(data_dir: Path, customer: str, clock: pd.Timestamp) -> pd.Timestamp:
    """When the burst starts: the demo's clock (the morning after the export), and at least a
    session lookback after the customer's last batch event, so their live session is the
    burst's alone (the worker's buffers hold only what was streamed); never after the wall
    clock (the stream quarantines events from the future)."""
    events = read_clean(data_dir, "events", ["customer_id", "event_ts"])
    theirs = events.loc[events["customer_id"] == customer, "event_ts"]
    at = clock
    if len(theirs):
        at = max(at, theirs.max().ceil("min") + pd.Timedelta(microseconds=LOOKBACK_US[VIEW]))
    now = pd.Timestamp.now(tz="UTC").floor("s")
    return min(at, now - pd.Timedelta(minutes=5))
