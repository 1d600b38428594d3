"""Helpers of the Feast tests: isolated Redis databases and PostgreSQL databases per run, Feast
connection strings, and small feature stores generated from the declarations.

Every run claims its own Redis database (1-15, a lock key in database 0) and creates its own
PostgreSQL database, so parallel runs and other helpers' tests never see each other's keys or
registry rows.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.specs import Feature, FeatureSource

LOCK_PREFIX = "shopfeast:test-db-lock:"


# --- services -----------------------------------------------------------------------------------


def with_redis_db(url: str, db: int) -> str:
    u = urlparse(url)
    return urlunparse(u._replace(path=f"/{db}"))


@contextmanager
def claimed_redis_db(url: str, ttl_seconds: int = 60) -> Iterator[str]:
    """A Redis URL on a database no other run holds, flushed before and after.

    The claim is a key with a short TTL that a daemon thread renews while the run holds it, so a
    run killed before its `finally` frees the database within `ttl_seconds`, not hours later.
    """
    import redis

    admin = redis.Redis.from_url(with_redis_db(url, 0))
    token = secrets.token_hex(8)
    for db in range(15, 0, -1):
        if admin.set(f"{LOCK_PREFIX}{db}", token, nx=True, ex=ttl_seconds):
            break
    else:
        raise RuntimeError("no free Redis database (1-15) for this test run")
    key = f"{LOCK_PREFIX}{db}"
    released = threading.Event()

    def renew() -> None:
        renewer = redis.Redis.from_url(with_redis_db(url, 0))
        while not released.wait(ttl_seconds / 3):
            try:
                if renewer.get(key) != token.encode() or not renewer.expire(key, ttl_seconds):
                    return  # lost (expired while Redis was stopped by a test): nothing to renew
            except redis.ConnectionError:
                continue  # a test restarting Redis: try again on the next round

    threading.Thread(target=renew, name=f"redis-db-claim-{db}", daemon=True).start()
    db_url = with_redis_db(url, db)
    client = redis.Redis.from_url(db_url)
    client.flushdb()
    try:
        yield db_url
    finally:
        released.set()
        client.flushdb()
        if admin.get(key) == token.encode():
            admin.delete(key)


@contextmanager
def scratch_postgres_db(dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one run; yields its SQLAlchemy (psycopg 3) URL."""
    import psycopg

    name = f"shopfeast_ci_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    u = urlparse(dsn)
    url = urlunparse(u._replace(scheme="postgresql+psycopg", path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- generated feature sources -------------------------------------------------------------------


def entity_ids(source: FeatureSource, n: int) -> list[str]:
    prefix = {"customer": "c", "product": "p", "collection": "k"}[source.entity]
    return [f"{prefix}{i:05d}" for i in range(n)]


def _values(feature: Feature, rng: np.random.Generator, n: int, products: list[str]) -> list:
    """Plausible values of one feature for `n` rows (nulls where the declaration allows them)."""
    nullable = feature.fill is None
    null = rng.random(n) < (0.15 if nullable else 0.0)
    if feature.dtype == "int64":
        out = rng.integers(0, 20, n).tolist()
    elif feature.dtype == "float64":
        out = np.round(rng.gamma(2.0, 20.0, n), 6).tolist()
    elif feature.dtype == "bool":
        out = (rng.random(n) < 0.5).tolist()
    elif feature.dtype == "string":
        out = [f"cat_{k}" for k in rng.integers(0, 6, n)]
    elif feature.dtype == "unix_timestamp":
        base = datetime(2024, 1, 1, tzinfo=UTC)
        out = [
            base + timedelta(seconds=int(s), microseconds=int(us))
            for s, us in zip(
                rng.integers(0, 600 * 86_400, n), rng.integers(0, 10**6, n), strict=True
            )
        ]
    elif feature.dtype == "string_list":
        out = [
            list(rng.choice(products, size=int(k), replace=False)) for k in rng.integers(0, 6, n)
        ]
    elif feature.dtype == "float_list":
        out = [np.round(rng.random(int(k)), 6).tolist() for k in rng.integers(0, 6, n)]
    else:
        raise ValueError(feature.dtype)
    return [None if z else v for v, z in zip(out, null, strict=True)]


def generate_source(
    source: FeatureSource,
    n_entities: int,
    days: int,
    end: datetime,
    seed: int,
    n_products: int,
    stale_days: int = 400,
) -> pd.DataFrame:
    """Change-point rows of a source: a first row per entity, then changes on random days.

    Snapshots are daily at 00:00 UTC and end on `end`'s day; entity 0 has two rows about
    `stale_days` before the end and nothing since (the customer "whose data stopped long ago").
    """
    rng = np.random.default_rng(seed)
    products = [f"p{i:05d}" for i in range(n_products)]
    if len(source.join_keys) > 1:  # customer x product: pairs of even customers, every 2nd
        # product (so a sample of both holds pairs that never happened)
        ids = [
            (f"c{2 * i // n_products:05d}", f"p{(2 * i) % n_products:05d}")
            for i in range(n_entities)
        ]
    else:
        ids = [(e,) for e in entity_ids(source, n_entities)]
    last_day = pd.Timestamp(end).tz_convert("UTC").floor("D")
    rows_ids, rows_days = [], []
    for i, eid in enumerate(ids):
        first = int(rng.integers(0, days))
        n_changes = int(rng.integers(1, 6))
        offsets = sorted({first, *rng.integers(first, days, n_changes).tolist()})
        stale = i == 0
        if stale:
            offsets = [0, 1]
        for off in offsets:
            rows_ids.append(eid)
            back = stale_days if stale else days
            rows_days.append(last_day - pd.Timedelta(days=back - off))
    frame = pd.DataFrame(rows_ids, columns=list(source.join_keys))
    frame[source.timestamp_field] = rows_days
    frame[source.created_timestamp_column] = frame[source.timestamp_field]
    for f in source.features:
        frame[f.name] = _values(f, rng, len(frame), products)
    return frame


def write_source(
    frame: pd.DataFrame, source: FeatureSource, data_dir: Path, suffix: str = ""
) -> Path:
    """Write rows in the pipelines' layout: DIR/features/<source>/<YYYY-MM><suffix>.parquet."""
    path = source.path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    month = pd.to_datetime(frame[source.timestamp_field], utc=True).dt.strftime("%Y-%m")
    for m, part in frame.groupby(month):
        table = pa.Table.from_pandas(
            part.reset_index(drop=True), schema=source.arrow_schema(), preserve_index=False
        )
        pq.write_table(table, path / f"{m}{suffix}.parquet")
    return path


def generate_store(
    sources: dict[str, FeatureSource],
    data_dir: Path,
    end: datetime,
    customers: int = 40,
    products: int = 25,
    days: int = 90,
    seed: int = 7,
) -> dict[str, pd.DataFrame]:
    """A small feature store for every declared source; returns the rows written."""
    out = {}
    for k, (name, source) in enumerate(sorted(sources.items())):
        n = {"customer": customers, "product": products, "collection": products}.get(
            source.entity, 3 * customers
        )
        frame = generate_source(source, n, days, end, seed + k, products)
        write_source(frame, source, data_dir)
        out[name] = frame
    return out


def wait_until(check, seconds: float = 10.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def purge_repo_modules() -> None:
    """Forget feature_repo's modules (they read SHOPFEAST_DATA_DIR at import)."""
    from shopconfig.settings import FEATURE_REPO

    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(str(FEATURE_REPO)):
            del sys.modules[name]


def run_feast_cli(yaml: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`feast -c feature_repo -f <yaml> <args>` in this process (Feast's own click command).

    In-process saves a Python start with Feast's imports per step; the repo's modules are
    dropped from `sys.modules` first (they read SHOPFEAST_DATA_DIR when imported) and the working
    directory, which `feast apply` changes, is restored.
    """
    from click.testing import CliRunner
    from feast.cli.cli import cli

    from shopconfig.settings import FEATURE_REPO

    purge_repo_modules()
    keep = {
        k: env[k]
        for k in ("SHOPFEAST_DATA_DIR", "REDIS_CONNECTION_STRING", "SHOPFEAST_REGISTRY_URL")
        if k in env
    }
    cwd = os.getcwd()
    try:
        result = CliRunner().invoke(
            cli,
            ["-c", str(FEATURE_REPO), "-f", str(yaml), *args],
            env=keep,
            catch_exceptions=True,
        )
    finally:
        os.chdir(cwd)
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        out += "".join(traceback.format_exception(result.exception))
    return result.exit_code, out


# --- a store of the declared views over any data directory ---------------------------------------

ASOF_STORE = "featurestore.offline.AsofOfflineStore"


def declared_store(data_dir: Path, work: Path, offline_store: str = ASOF_STORE):
    """A FeatureStore of the declared feature views (no on-demand views, no services) over
    `data_dir`'s sources, applied in this process into a file registry under `work`: the offline
    store reads any store the pipelines built, without `feast apply` over the feature repo."""
    from feast import FeatureStore, RepoConfig

    from featurestore import schema as feast_schema
    from pipelines.sources import sources

    work.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project="shopfeast",
        provider="local",
        registry=str(work / "registry.db"),
        online_store={"type": "sqlite", "path": str(work / "online.db")},
        offline_store={"type": offline_store},
        entity_key_serialization_version=3,
        repo_path=work,
    )
    store = FeatureStore(config=config)
    entities = {name: feast_schema.entity(name) for name in ("customer", "product", "collection")}
    objects: list = list(entities.values())
    for source in sources(strict=True).values():
        if not list(source.path(data_dir).glob("*.parquet")):
            continue
        src = feast_schema.file_source(source, data_dir)
        objects += [src, feast_schema.feature_view(source, entities, src)]
    store.apply(objects)
    return store
