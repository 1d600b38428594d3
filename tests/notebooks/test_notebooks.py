"""The data scientist's notebooks run top to bottom on a small store (embedded profile), with
the kernel's own matplotlib backend (inline, as in JupyterLab): their plot cells show images.
Without a store they stop at once with one line, and write nothing."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.support.training_shop import SMALL_HORIZON_DAYS, small_store

NOTEBOOKS = ("01_training_dataset.ipynb", "02_churn_model.ipynb", "03_monitoring.ipynb")

pytestmark = pytest.mark.slow  # builds a store and starts two kernels: about a minute


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, repo_root: Path, tmp_path_factory, monkeypatch) -> None:
    data = small_store(tmp_path_factory.mktemp)
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(data))
    monkeypatch.setenv("SHOPFEAST_HORIZON_DAYS", str(SMALL_HORIZON_DAYS))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline) backend
    run_id = _monitor_run(data) if name == "03_monitoring.ipynb" else None
    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook produced no output"
    plot_cells = [c for c in nb.cells if c.cell_type == "code" and "plt.subplots" in c.source]
    for cell in plot_cells:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"a plot cell showed no image:\n{cell.source[:200]}"
    if name == "02_churn_model.ipynb":
        assert plot_cells, "the churn notebook's ROC/calibration cell is gone"
    if run_id:  # the monitoring notebook shows the last run's report, and plots its drift
        text = "".join(o.get("text", "") for o in outputs)
        assert run_id in text, text[:500]
        assert plot_cells


def _monitor_run(data: Path) -> str:
    """A monitor run on the store (quality and drift: no online store needed) whose latest.json
    the notebook must read rather than run the checks again."""
    from monitoring import run

    code, report, _ = run.monitor(run.Options(data_dir=data, checks=("quality", "drift")))
    assert report["drift"].get("results"), report["summary"]
    return report["run_id"]


@pytest.fixture(scope="module")
def kernel_without_a_store(repo_root: Path, tmp_path_factory):
    """One kernel for the three no-store runs (each notebook stops in its first cell, so a kernel
    per notebook would mostly pay for its start and Feast's import): started with
    SHOPFEAST_DATA_DIR on an empty directory, from the project root as JupyterLab would."""
    empty = tmp_path_factory.mktemp("no_store") / "nothing_here"
    empty.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPFEAST_DATA_DIR", str(empty))  # the kernel inherits it at its start
    client = NotebookClient(
        nbformat.v4.new_notebook(),
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(repo_root)}},
    )
    try:
        with client.setup_kernel():
            yield client, empty
    finally:
        mp.undo()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_without_a_store_a_notebook_stops_with_one_line(
    name: str, repo_root: Path, kernel_without_a_store
) -> None:
    client, empty = kernel_without_a_store
    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    client.nb = nb
    ran = []
    with pytest.raises(CellExecutionError) as stopped:
        for index, cell in enumerate(nb.cells):
            ran.append(index)
            client.execute_cell(cell, index)
    assert stopped.value.ename == "SystemExit"
    assert "SHOPFEAST_DATA_DIR" in stopped.value.evalue and str(empty) in stopped.value.evalue
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert ran[-1] == first_code, "the notebook did not stop in its first code cell"
    assert list(empty.iterdir()) == []  # nothing opened, nothing written
