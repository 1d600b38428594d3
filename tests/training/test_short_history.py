"""`shopfeast train churn` on a shop too short for its horizon says what span it needs, in one
line (before: a traceback ending in "no labellable cutoffs")."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from pipelines.storage import read_clean
from shopfeast.cli import app
from tests.support.ingest_support import run, shop, write_raw
from training.labels import required_span


def test_train_churn_on_a_short_shop_says_what_span_it_needs(tmp_path) -> None:
    data = tmp_path / "data"
    run(write_raw(tmp_path / "raw", shop()), data)
    result = CliRunner().invoke(app, ["train", "churn", "--data-dir", str(data)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    orders = read_clean(data, "orders", ["customer_id", "order_ts", "status"])
    first = orders["order_ts"].min().floor("D")
    # Three monthly cutoffs from the day after the first order, then a 90-day horizon.
    third = pd.date_range(first + pd.Timedelta(days=1), periods=3, freq="MS")[-1]
    need = (third + pd.Timedelta(days=90) - first).days
    assert lines[0].startswith("error: too few labellable cutoffs (0 of the 3")
    assert f"a span of {need} days" in lines[0] and "ingest" in lines[0]
    assert lines[0].endswith(required_span(orders, pd.Timedelta(days=90)))
