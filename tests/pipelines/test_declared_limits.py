"""Declared aggregations keep the feature arithmetic's limits: a sum beyond the exact range stops
`shopfeast features` with one line naming the feature (never a wrapped value), as the families do
(before the check, a quantity of 2**62 summed twice came out negative)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipelines import run as pipeline_run
from pipelines.ingest import ingest, parse_now
from pipelines.windows import FeatureOverflow
from shopfeast.cli import app
from tests.support.ingest_support import shop, write_raw

DECLARED = """views:
  - name: big_units
    entity: product
    source: order_items
    description: Units sold, declared.
    features:
      - {name: units_lifetime, function: sum, column: quantity, window: lifetime,
         description: units}
"""


def test_a_declared_sum_beyond_the_exact_range_is_refused(tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "aggregations.yaml").write_text(DECLARED)
    monkeypatch.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
    huge = {"order_id": "o2", "product_id": "p2", "quantity": str(2**62), "unit_price": "1"}
    raw = write_raw(tmp_path / "raw", shop(order_items=[huge]))
    data = tmp_path / "data"
    ingest(raw, data, parse_now("2025-06-01"), bounds={"order_items.quantity": 2**63})
    with pytest.raises(FeatureOverflow, match="'units_lifetime'"):
        pipeline_run.run(data, mode="historical", only=["big_units"], echo=False)
    result = CliRunner().invoke(app, ["features", "--data-dir", str(data), "--mode", "historical"])
    # the CLI: one line (the product_stats family meets the same quantity first), exit 1
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "exact range" in line]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
