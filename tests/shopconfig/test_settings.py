"""One settings object: every entry point resolves the data directory and profiles the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopconfig.settings import (
    DEFAULT_DATA_DIR,
    FEATURE_REPO,
    REPO_ROOT,
    Settings,
    profile_env,
    redis_connection_string,
    registry_url,
    resolve_data_dir,
)


def test_data_dir_explicit_then_environment_then_project_default(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SHOPFEAST_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here, and the working directory must not matter
    assert resolve_data_dir() == DEFAULT_DATA_DIR == REPO_ROOT / "data"
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    assert Settings().data_dir == tmp_path / "env"  # serving reads the same field


@pytest.mark.parametrize("cwd", [REPO_ROOT, REPO_ROOT / "notebooks", FEATURE_REPO])
def test_every_working_directory_sees_the_same_data_dir(cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHOPFEAST_DATA_DIR"}
    code = "from shopconfig.settings import resolve_data_dir; print(resolve_data_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(out) == DEFAULT_DATA_DIR


def test_profiles_and_their_environment(tmp_path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert s.profile_path("embedded") == FEATURE_REPO / "feature_store.yaml"
    assert s.profile_path("redis") == FEATURE_REPO / "profiles" / "redis.yaml"
    with pytest.raises(ValueError, match="unknown profile"):
        s.profile_path("spark-on-mars")  # type: ignore[arg-type]
    env = profile_env("redis", tmp_path, base={"REDIS_URL": "rediss://:pw@cache:6380/2"})
    assert env["SHOPFEAST_DATA_DIR"] == str(tmp_path.resolve())
    assert env["REDIS_CONNECTION_STRING"] == "cache:6380,db=2,password=pw,ssl=true"
    assert env["SHOPFEAST_REGISTRY_URL"].startswith("postgresql+psycopg://")
    given = profile_env("redis", tmp_path, base={"REDIS_CONNECTION_STRING": "h:1,db=3"})
    assert given["REDIS_CONNECTION_STRING"] == "h:1,db=3"  # an explicit value wins
    assert "REDIS_CONNECTION_STRING" not in profile_env("embedded", tmp_path, base={})


def test_url_translations() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/0") == "127.0.0.1:6379,db=0"
    assert registry_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
