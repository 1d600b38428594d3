"""What the serving tests stand on: a small materialized store, trained models, app settings,
and a private Redis server a test may stop, freeze and restart.

The store is the repo's own: feature sources generated from the declarations
(tests/support/feast_support.py), `feast apply` and `feast materialize-incremental` with the
committed
redis profile into a Redis database and a PostgreSQL database of this run's own. The models are
fitted on features read online through the very services serving uses and saved the way
`shopfeast train` saves them (training/artifacts.py); their quality does not matter here.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis

from featurestore import store as feast_store
from featurestore.odfv import CANDIDATE_COPURCHASE
from pipelines.sources import sources
from shopconfig.settings import FEATURE_REPO, profile_env, redis_connection_string
from tests.support.feast_support import (
    claimed_redis_db,
    generate_store,
    run_feast_cli,
    scratch_postgres_db,
)

PROFILE = feast_store.PROFILES["redis"]
END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
CUSTOMERS, PRODUCTS = 60, 40
API_KEY = "test-key-0123456789"
RANKING_SERVICE = "ranking_model_v3"  # the test ranker reads what `shopfeast train` uses
ENV_KEYS = ("SHOPFEAST_DATA_DIR", "REDIS_CONNECTION_STRING", "SHOPFEAST_REGISTRY_URL")


@dataclass
class ServingStore:
    data_dir: Path
    env: dict[str, str]
    redis_url: str
    customers: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)

    def apply_env(self, mp: pytest.MonkeyPatch, **overrides: str) -> None:
        """Point Feast's profile variables at this store (tests scope it to themselves: the
        variables must not leak into other areas' tests)."""
        for k in ENV_KEYS:
            mp.setenv(k, overrides.get(k, self.env[k]))

    def settings(self, **overrides):
        from shopconfig.settings import Settings

        values = dict(
            data_dir=self.data_dir,
            feature_repo=FEATURE_REPO,
            feast_profile=PROFILE,
            api_key=API_KEY,
            catalog_refresh_s=3600.0,
        )
        values.update(overrides)
        return Settings(**values)


@contextmanager
def serving_store(data_dir: Path, redis_url: str, postgres_dsn: str) -> Iterator[ServingStore]:
    """Generate, apply, materialize and train; the environment points at this store inside."""
    declared = sources(strict=True)
    frames = generate_store(
        declared, data_dir, END, customers=CUSTOMERS, products=PRODUCTS, days=90, seed=11
    )
    with claimed_redis_db(redis_url) as db_url, scratch_postgres_db(postgres_dsn) as pg_url:
        env = profile_env(
            "redis",
            data_dir,
            base={
                "REDIS_CONNECTION_STRING": redis_connection_string(db_url),
                "SHOPFEAST_REGISTRY_URL": pg_url,
            },
        )
        for args in (["apply"], ["materialize-incremental", END.isoformat()]):
            code, out = run_feast_cli(PROFILE, args, env)
            assert code == 0, f"feast {args[0]} failed:\n{out}"
        store = ServingStore(
            data_dir,
            env,
            db_url,
            customers=sorted(frames["customer_activity"]["customer_id"].unique()),
            products=sorted(frames["product_stats"]["product_id"].unique()),
        )
        with pytest.MonkeyPatch.context() as mp:
            store.apply_env(mp)
            train_models(data_dir, store)
        yield store


_SHARED: dict[str, ServingStore] = {}


def shared_store(request, tmp_path_factory, redis_url: str, postgres_dsn: str) -> ServingStore:
    """One store for every serving test module of the session (building it takes seconds)."""
    if "store" not in _SHARED:
        cm = serving_store(tmp_path_factory.mktemp("serving_store"), redis_url, postgres_dsn)
        _SHARED["store"] = cm.__enter__()

        def close() -> None:
            _SHARED.pop("store", None)
            cm.__exit__(None, None, None)

        request.addfinalizer(close)  # a session-scoped fixture's request: runs at session end
    return _SHARED["store"]


def train_models(data_dir: Path, store: ServingStore) -> None:
    """A churn classifier and a ranker on online features, saved as `shopfeast train` does."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBRanker

    from training import artifacts
    from training.matrix import model_matrix, usable_columns

    fs = feast_store.open_store("redis", data_dir)
    now = datetime.now(UTC)
    rng = np.random.default_rng(5)

    rows = {"customer_id": store.customers, "event_timestamp": [now] * len(store.customers)}
    churn = fs.get_online_features(fs.get_feature_service("churn_model_v1"), rows).to_df()
    cols = usable_columns(churn, exclude={"customer_id"})
    y = (rng.random(len(churn)) < 0.4).astype(int)
    y[:2] = [0, 1]
    est = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(model_matrix(churn, cols), y)
    artifacts.save(
        data_dir,
        "churn",
        artifacts.new_version(),
        est,
        {"feature_service": {"name": "churn_model_v1"}, "input_columns": cols, "threshold": 0.35},
    )

    # eight customers' candidate lists in one read (customer-major: one ranking group each)
    groups, n = store.customers[:8], len(store.products)
    rows = {
        "customer_id": [c for c in groups for _ in range(n)],
        "product_id": store.products * len(groups),
        "event_timestamp": [now] * (n * len(groups)),
        CANDIDATE_COPURCHASE: list(rng.random(n * len(groups))),  # the request field of v2
    }
    rank = fs.get_online_features(fs.get_feature_service(RANKING_SERVICE), rows).to_df()
    cols = usable_columns(rank, exclude={"customer_id", "product_id", CANDIDATE_COPURCHASE})
    y = (rng.random(len(rank)) < 0.15).astype(int)
    ranker = XGBRanker(n_estimators=30, max_depth=3, objective="rank:ndcg", random_state=0)
    ranker.fit(model_matrix(rank, cols), y, group=[n] * len(groups))
    artifacts.save(
        data_dir,
        "ranking",
        artifacts.new_version(),
        ranker,
        {"feature_service": {"name": RANKING_SERVICE}, "input_columns": cols},
    )


# --- a Redis server of the test's own -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server process this test owns: it may be frozen (SIGSTOP), stopped and started
    again on the same port, with the materialized keys copied in from the test store."""

    def __init__(self, workdir: Path, source_url: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.source_url = source_url
        self.proc: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return f"127.0.0.1:{self.port},db=0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self._copy_keys(client)

    def _copy_keys(self, target: redis.Redis) -> None:
        source = redis.Redis.from_url(self.source_url)
        for key in source.scan_iter(count=1000):
            target.restore(key, 0, source.dump(key), replace=True)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
