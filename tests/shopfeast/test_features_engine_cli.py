"""`shopfeast features --engine ...`: the options that do not go together are refused before any
Spark JVM starts (exit 2, the option named), and the local engine stays the default."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shopfeast.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args,option",
    [
        (["--engine", "spark", "--mode", "incremental"], "--mode"),
        (["--spark-master", "local[2]"], "--spark-master"),  # the local engine has no master
        (["--engine", "dask"], "--engine"),
    ],
)
def test_refused_before_spark_starts(tmp_path, args, option):
    result = runner.invoke(app, ["features", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "tmp" / "spark").exists()


def test_the_local_engine_is_the_default(tmp_path, monkeypatch):
    """Without --engine the pandas engine runs (here on a directory without clean tables: every
    source is up to date) and the Spark engine is never called."""
    from pipelines.spark import features as spark_features

    def refuse(*args, **kwargs):
        raise AssertionError("the spark engine ran without --engine spark")

    monkeypatch.setattr(spark_features, "run", refuse)
    result = runner.invoke(app, ["features", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("customer_activity", "customer_profile", "product_stats"):
        assert f"{name}" in result.output and "up to date" in result.output


HOLD = """
import sys, time
from pipelines.lock import data_dir_lock
with data_dir_lock(sys.argv[1], "ingest raw/2025-03-15"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_busy_directory_answers_before_spark_starts(tmp_path, monkeypatch):
    """The data directory's lock is taken before the JVM: a busy directory gets its one-line
    message and exit 75 without a Spark session being asked for."""
    import subprocess
    import sys

    from pipelines.lock import BUSY_EXIT
    from pipelines.spark import session as spark_session

    def refuse(*args, **kwargs):
        raise AssertionError("a Spark session was started for a busy data directory")

    monkeypatch.setattr(spark_session, "session", refuse)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = runner.invoke(app, ["features", "--engine", "spark", "--data-dir", str(tmp_path)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == BUSY_EXIT, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "`ingest raw/2025-03-15`" in line
    assert "Traceback" not in result.output
