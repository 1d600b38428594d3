"""Writers of one data directory, run at the same time as separate processes (before the lock:
two ingests both wrote batch b000001 and double-counted rows; `features` during an ingest said
"up to date"). Now the second run waits its turn (--wait) or stops naming the holder, and what
ends up on disk is exactly what one run after the other gives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines import ingest, storage
from pipelines import run as pipeline_run
from pipelines.contract import INGEST_ORDER
from pipelines.lock import BUSY_EXIT
from shopfeast.cli import app
from tests.support.ingest_support import shop, write_raw

pytestmark = pytest.mark.slow

NOW = "2025-06-01T00:00:00Z"
HOLD = """
import sys, time
from pipelines.lock import data_dir_lock
with data_dir_lock(sys.argv[1], "ingest raw/2025-03-15"):
    print("held", flush=True)
    time.sleep(60)
"""
SHOPFEAST = [sys.executable, "-m", "shopfeast.cli"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return write_raw(tmp_path_factory.mktemp("concurrent") / "raw", shop())


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*SHOPFEAST, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_two_ingests_at_once_ingest_once(raw, tmp_path) -> None:
    data = tmp_path / "data"
    procs = [
        start("ingest", str(raw), "--data-dir", str(data), "--now", NOW, "--wait", "120")
        for _ in range(2)
    ]
    results = [finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], results
    assert sum("already ingested" in out for _, out, _ in results) == 1, results
    manifest = json.loads((data / "state" / "ingest" / "manifest.json").read_text())
    assert [b["batch"] for b in manifest["batches"]] == ["b000001"]
    report = json.loads((data / "reports" / "validation_report.json").read_text())
    for table in INGEST_ORDER:  # exact accounting: rows in = clean on disk + quarantined on disk
        if table not in report["tables"]:  # an optional table the shop has no file for
            continue
        t = report["tables"][table]
        clean = len(storage.read_clean(data, table))
        qdir = storage.quarantine_dir(data, table)
        quarantined = len(pd.read_parquet(qdir)) if qdir.exists() else 0
        assert (clean, quarantined) == (t["clean"], t["quarantined"]), table
        assert t["rows_in"] == clean + quarantined, table


def test_a_second_writer_stops_naming_the_holder(raw, tmp_path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(app, ["features", "--data-dir", str(data)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == BUSY_EXIT
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "`ingest raw/2025-03-15`" in line
    assert f"pid {holder.pid}" in line and "Traceback" not in result.output


def test_ingest_and_features_at_once_equal_one_after_the_other(raw, tmp_path) -> None:
    data = tmp_path / "data"
    features = start("features", "--data-dir", str(data), "--wait", "120")
    assert ingest.run(raw, data, now=NOW, wait=120) == 0  # this process, meanwhile
    assert finish(features)[0] == 0
    pipeline_run.run(data, mode="incremental", echo=False)  # whatever features missed, now
    reference = tmp_path / "reference"
    shutil.copytree(data / "clean", reference / "clean")
    shutil.copytree(data / "state" / "ingest", reference / "state" / "ingest")
    pipeline_run.run(reference, mode="historical", echo=False)
    for source in sorted(p.name for p in (reference / "features").iterdir()):
        ours = pd.read_parquet(data / "features" / source)
        theirs = pd.read_parquet(reference / "features" / source)
        pd.testing.assert_frame_equal(ours, theirs, obj=source)
