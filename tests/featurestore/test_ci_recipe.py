"""docs/ci.md's pipeline, run as written: every `run:` step of its workflow but `make install`, in
order, on a small generated store against the real Redis and PostgreSQL, with only the variables
the recipe sets (REDIS_URL, POSTGRES_DSN, SHOPFEAST_DATA_DIR).

The `deploy` job's steps pass: apply, materialize, then the `plan` job's own step, which reports
nothing after the materialization (plain `feast plan` reports every view "Updated" there).
tests/featurestore/test_plan.py shows the same plan keeps real changes.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.sources import sources
from shopfeast.cli import app
from tests.support.feast_support import claimed_redis_db, generate_store, scratch_postgres_db
from tests.support.progress_support import assert_progress
from tests.support.server_support import assert_ui_lists_the_repo, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def workflow() -> dict:
    block = re.search(r"```yaml\n(name: features\n.*?)```", DOC.read_text(), re.S)
    assert block, "docs/ci.md has no workflow block"
    return yaml.safe_load(block.group(1))


def steps(flow: dict, job: str) -> list[list[str]]:
    """The job's `run:` commands as argv, `.venv/bin/X` as this interpreter's X."""
    out = []
    for step in flow["jobs"][job]["steps"]:
        if "run" not in step or step["run"].strip() == "make install":
            continue
        argv = shlex.split(step["run"])
        argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
        out.append(argv)
    return out


def test_the_recipe_reads_the_variables_make_uses() -> None:
    flow = workflow()
    assert set(flow["env"]) == {"REDIS_URL", "POSTGRES_DSN", "SHOPFEAST_DATA_DIR"}
    assert [s[1:] for s in steps(flow, "plan")] == [["plan", "--profile", "redis", "--check"]]
    assert steps(flow, "deploy")[-1] == steps(flow, "plan")[0]


def test_the_recipe_runs(tmp_path, redis_url, postgres_dsn, monkeypatch) -> None:
    """The deploy job's steps, through the `shopfeast` app in this process (each still runs
    Feast's CLI and the plan in their own processes, as they do in CI)."""
    flow = workflow()
    generate_store(sources(strict=True), tmp_path, END, customers=20, products=10, days=30)
    saved = dict(os.environ)
    with claimed_redis_db(redis_url) as db_url, scratch_postgres_db(postgres_dsn) as pg_url:
        for name in ("REDIS_CONNECTION_STRING", "SHOPFEAST_REGISTRY_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("REDIS_URL", db_url)
        monkeypatch.setenv("POSTGRES_DSN", pg_url)
        monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SHOPFEAST_PROGRESS", "plain")  # a CI log: a line per step
        monkeypatch.setenv("SHOPFEAST_PROGRESS_INTERVAL_S", "0")
        try:
            for argv in steps(flow, "deploy"):
                done = CliRunner().invoke(app, argv[1:])
                assert done.exit_code == 0, f"{argv[1:]}:\n{done.output}"
                if argv[1] == "apply":  # the plan, then feast apply
                    assert assert_progress(done.stderr, "apply redis", "steps") == 2
                if argv[1] == "materialize":  # one view at a time
                    views = assert_progress(done.stderr, "materialize redis", "views")
                    assert views >= len(sources(strict=True))  # + declared views
            # Feast's UI over the deployed registry (PostgreSQL): the redis profile's `make ui`
            args = ["ui", "--profile", "redis"]
            for base in serve(args, tmp_path, "/projects-list.json", Path(__file__).parents[2]):
                assert_ui_lists_the_repo(base)
        finally:  # the commands export the profile's variables into this process
            os.environ.clear()
            os.environ.update(saved)
    # the last step is `plan --check`: its exit 0 says nothing is left to apply after materialize
