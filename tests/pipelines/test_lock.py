"""The data directory's writer lock: one holder, a clear refusal naming it, a bounded wait,
and the lock of a killed holder recovered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.lock import LOCK_FILE, DataDirBusy, data_dir_lock, holder

HOLD = """
import sys, time
from pipelines.lock import data_dir_lock
with data_dir_lock(sys.argv[1], "ingest raw"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(data_dir: Path, seconds: float = 60) -> subprocess.Popen:
    """Another process holding the lock (returns once it does)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_with_the_first_named(tmp_path) -> None:
    proc = hold(tmp_path)
    try:
        info = holder(tmp_path)
        assert info["pid"] == proc.pid and info["command"] == "ingest raw"
        with pytest.raises(DataDirBusy) as err, data_dir_lock(tmp_path, "features"):
            pytest.fail("took a held lock")
        text = str(err.value)
        assert f"pid {proc.pid}" in text and "`ingest raw`" in text and "--wait" in text
        assert info["host"] in text and info["since"] in text
    finally:
        proc.kill()
        proc.wait()


def test_wait_returns_when_the_holder_finishes(tmp_path) -> None:
    proc = hold(tmp_path, seconds=1.0)
    started = time.monotonic()
    with data_dir_lock(tmp_path, "features", wait=30):
        assert proc.wait(timeout=5) == 0  # the holder had finished
        assert holder(tmp_path)["pid"] == os.getpid()
    assert time.monotonic() - started < 30
    assert holder(tmp_path) is None


def test_wait_runs_out(tmp_path) -> None:
    proc = hold(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(DataDirBusy, match="waited"), data_dir_lock(tmp_path, "x", wait=1.0):
            pass
        assert time.monotonic() - started >= 1.0
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_lock_that_is_recovered(tmp_path, capfd) -> None:
    proc = hold(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == proc.pid  # left behind
    with data_dir_lock(tmp_path, "features"):
        pass
    err = capfd.readouterr().err
    assert f"pid {proc.pid}" in err and "recovered" in err
    assert not (tmp_path / LOCK_FILE).exists()  # a clean release leaves nothing to recover


def test_nested_use_in_one_process_does_not_wait(tmp_path) -> None:
    with data_dir_lock(tmp_path, "demo"), data_dir_lock(tmp_path, "ingest"):
        assert holder(tmp_path)["command"] == "demo"
    assert holder(tmp_path) is None
