"""featurestore/__init__.py turns Feast's typeguard checks off in shopfeast's processes (they cost
3 s of `import feast`), unless SHOPFEAST_FEAST_TYPECHECKS=1, which `feast apply` runs with."""

from __future__ import annotations

import os
import subprocess
import sys

from featurestore import TYPECHECKS

# an Entity whose description is not a str: Feast's @typechecked constructor rejects it
BAD_ENTITY = (
    "import featurestore\n"
    "from feast import Entity\n"
    "Entity(name='customer', join_keys=['customer_id'], description=5)\n"
    "print('constructed')\n"
)


def _run(typechecks: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != TYPECHECKS}
    if typechecks is not None:
        env[TYPECHECKS] = typechecks
    return subprocess.run(
        [sys.executable, "-c", BAD_ENTITY], env=env, capture_output=True, text=True, check=False
    )


def test_feast_constructors_are_not_type_checked_after_importing_featurestore() -> None:
    done = _run(None)
    assert done.returncode == 0, done.stderr
    assert "constructed" in done.stdout


def test_the_variable_keeps_feasts_type_checks() -> None:
    done = _run("1")
    assert done.returncode != 0
    assert "TypeCheckError" in done.stderr


def test_feast_apply_and_plan_run_with_the_checks(monkeypatch, tmp_path) -> None:
    from featurestore import store

    seen = []

    def run(cmd, **kwargs):
        seen.append(kwargs["env"].get(TYPECHECKS))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(store.subprocess, "run", run)
    store.feast_cli("embedded", ["apply"], tmp_path)
    store.feast_plan("embedded", tmp_path)
    assert seen == ["1", "1"]
