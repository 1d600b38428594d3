"""Progress outside a terminal: plain periodic lines on stderr, never wrapped; results unwrapped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import sources
from shopconfig.progress import progress
from tests.support.progress_support import LINE, assert_progress


def test_plain_lines_count_and_estimate(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SHOPFEAST_PROGRESS", "plain")
    monkeypatch.setenv("SHOPFEAST_PROGRESS_INTERVAL_S", "0")
    note = "a long note " * 15  # 180 characters: a line far over 80 columns
    with progress("work", total=4, unit="things") as bar:
        for _ in range(3):
            bar.step(note)
        bar.grow(1)
        bar.step(note)
        bar.step(note)
    out, err = capsys.readouterr()
    assert out == ""  # progress never mixes into the results on stdout
    lines = err.splitlines()
    assert [LINE.match(x)["done"] for x in lines[:3]] == ["1", "2", "3"]
    assert all("ETA" in x and x.endswith(note) for x in lines[:3])
    assert lines[3].startswith("[work] 3/5 things (60%)")  # grown
    assert lines[-1].startswith("[work] done: 5 things in ")
    assert len(lines) == 7  # one line per update: nothing wrapped


def test_plain_lines_are_periodic_and_off_is_silent(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SHOPFEAST_PROGRESS", "plain")
    monkeypatch.setenv("SHOPFEAST_PROGRESS_INTERVAL_S", "3600")
    with progress("quick", total=100) as bar:
        for _ in range(100):
            bar.step("x")
    assert capsys.readouterr().err.splitlines() == ["[quick] done: 100 steps in 0s"]
    monkeypatch.setenv("SHOPFEAST_PROGRESS", "off")
    with progress("quiet", total=3) as bar:
        bar.step("x")
    assert capsys.readouterr() == ("", "")


def test_commands_outside_a_terminal(tmp_path: Path) -> None:
    """generate, ingest and features through pipes: progress lines with an ETA on stderr, and
    results whose long lines (a report path over 100 characters) stay whole."""
    data = tmp_path / ("a-data-directory-with-a-long-name-" * 3)
    env = {
        **os.environ,
        "SHOPFEAST_DATA_DIR": str(data),
        "SHOPFEAST_PROGRESS_INTERVAL_S": "0",
        "COLUMNS": "80",
    }
    env.pop("SHOPFEAST_PROGRESS", None)
    cli = [sys.executable, "-m", "shopfeast.cli"]
    gen = subprocess.run(
        [*cli, "generate", "--out", str(tmp_path / "raw"), "--customers", "40", "--products",
         "15", "--days", "30", "--corrupt-fraction", "0.05"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    ing = subprocess.run(
        [*cli, "ingest", str(tmp_path / "raw")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ing.returncode == 0, ing.stderr
    tables = len(list((tmp_path / "raw").glob("*.parquet")))  # each a step of both commands
    for result, label, at_least in ((gen, "generate", tables), (ing, "ingest", 6)):
        lines = [x for x in result.stderr.splitlines() if x.startswith(f"[{label}]")]
        total = int(re.match(rf"\[{label}\] done: (\d+) ", lines[-1])[1])
        assert total >= at_least, lines[-1]
        counted = [LINE.match(x) for x in lines[:-1]]
        assert all(counted), lines
        assert [int(m["done"]) for m in counted] == list(range(1, total + 1))
        assert {int(m["total"]) for m in counted} == {total}
        assert any("ETA" in x for x in lines)
        assert lines[-1].startswith(f"[{label}] done: {total} ")
        assert "\x1b[" not in result.stderr + result.stdout  # no terminal codes in a log
    feat = subprocess.run(
        [*cli, "features"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert feat.returncode == 0, feat.stderr
    families = assert_progress(feat.stderr, "features incremental", "families")
    assert families == len(sources.families())
    assert "\x1b[" not in feat.stderr + feat.stdout
    report = [x for x in ing.stdout.splitlines() if "validation_report.json" in x]
    assert len(report) == 1 and report[0].startswith("report: ") and len(report[0]) > 100
    assert re.search(r"validation_report\.json \(\d+\.\d+s\)$", report[0])


@pytest.mark.parametrize("stderr", [False, True])
def test_results_console_never_wraps_off_a_terminal(stderr: bool) -> None:
    code = (
        "from shopconfig.progress import console\n"
        f"console(stderr={stderr}).print('a sentence of many words ' * 12)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    text = done.stderr if stderr else done.stdout
    assert text.count("\n") == 1 and len(text) > 250
