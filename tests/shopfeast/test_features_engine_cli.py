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
