"""The data scientist's notebooks run top to bottom on a small store (embedded profile)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.training_shop import SMALL_HORIZON_DAYS, small_store

NOTEBOOKS = ("01_training_dataset.ipynb", "02_churn_model.ipynb")

pytestmark = pytest.mark.slow  # builds a store and starts two kernels: about a minute


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, repo_root: Path, tmp_path_factory, monkeypatch) -> None:
    data = small_store(tmp_path_factory.mktemp)
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(data))
    monkeypatch.setenv("SHOPFEAST_HORIZON_DAYS", str(SMALL_HORIZON_DAYS))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook produced no output"
