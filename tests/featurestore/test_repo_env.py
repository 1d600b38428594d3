"""Plain `feast` from feature_repo/ with only the variables `make` uses: one line saying what to
export (values derived from REDIS_URL, POSTGRES_DSN and the data-directory rule, passwords
masked), never a SQLAlchemy traceback or a `feature_repo/${SHOPFEAST_DATA_DIR}/` directory; and
exporting that line is enough for the command to work (featurestore/repo_env.py).

Feast's own click command runs in this process (a Feast start costs ~10 s of CPU): the check
happens while Feast reads the yaml, inside its CLI, as for the `feast` script.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from feast import FeatureStore
from feast.cli.cli import cli

from featurestore import store as feast_store
from featurestore.repo_env import MissingVariables
from shopconfig.settings import FEATURE_REPO, resolve_data_dir
from tests.support.feast_support import purge_repo_modules, scratch_postgres_db

PROFILE_VARS = (
    "SHOPFEAST_DATA_DIR",
    "REDIS_CONNECTION_STRING",
    "SHOPFEAST_REGISTRY_URL",
    "SHOPFEAST_SPARK_MASTER",
    "SHOPFEAST_SOURCE_FORMAT",
)
CHECKED_STORES = {  # the profiles' offline stores: each takes the `requires:` line
    "featurestore.offline.AsofOfflineStore",
    "featurestore.spark_offline.SparkOfflineStore",  # Feast's Spark store, with the check
}
REFERENCE = re.compile(r"\$\{(\w+)\}")


def feast(args: list[str], **env: str | None) -> tuple[int, str]:
    """`feast <args>` from feature_repo/, the profile variables unset unless given."""
    purge_repo_modules()
    full = {k: None for k in (*PROFILE_VARS, "REDIS_URL", "POSTGRES_DSN")} | env
    cwd = os.getcwd()
    os.chdir(FEATURE_REPO)  # `cd feature_repo`, as a person would
    try:
        result = CliRunner().invoke(cli, args, env=full)
    finally:
        os.chdir(cwd)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def one_error_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("Error: "), out
    return lines[0]


def exports(line: str) -> dict[str, str]:
    """The `export A=1 B=2` of the error line, as the shell would read it."""
    words = shlex.split(line.split("export ", 1)[1].split(" (", 1)[0])
    return dict(w.split("=", 1) for w in words)


@pytest.mark.parametrize("profile", sorted(feast_store.PROFILES))
def test_requires_lists_every_variable_the_profile_reads(profile) -> None:
    path = feast_store.PROFILES[profile]
    raw = yaml.safe_load(path.read_text())
    offline = raw["offline_store"]
    assert offline["type"] in CHECKED_STORES
    required = REFERENCE.findall(offline.pop("requires"))
    assert set(required) == set(REFERENCE.findall(yaml.safe_dump(raw))), path
    assert len(required) == len(set(required))


def test_embedded_without_the_data_dir_says_what_to_export(monkeypatch) -> None:
    monkeypatch.delenv("SHOPFEAST_DATA_DIR", raising=False)  # a store opened earlier sets it
    before = sorted(p.name for p in FEATURE_REPO.iterdir())
    code, out = feast(["feature-views", "list"])
    assert code == 2, out
    line = one_error_line(out)
    assert "feature_store.yaml reads SHOPFEAST_DATA_DIR, not set" in line
    assert exports(line) == {"SHOPFEAST_DATA_DIR": str(resolve_data_dir())}
    assert sorted(p.name for p in FEATURE_REPO.iterdir()) == before  # no `${...}` directory


def test_redis_profile_derives_the_values_from_make_s_variables() -> None:
    code, out = feast(
        ["-f", "profiles/redis.yaml", "feature-views", "list"],
        REDIS_URL="redis://shop:s3cret@10.1.2.3:6390/4",
        POSTGRES_DSN="postgresql://feast:pw0rd@db.internal:5433/registry",
    )
    assert code == 2, out
    line = one_error_line(out)
    assert "ArgumentError" not in line and "s3cret" not in line and "pw0rd" not in line
    assert exports(line) == {
        "REDIS_CONNECTION_STRING": "10.1.2.3:6390,db=4,username=shop,password=...",
        "SHOPFEAST_REGISTRY_URL": "postgresql+psycopg://feast:...@db.internal:5433/registry",
    }


def test_spark_profile_says_what_to_export() -> None:
    """Feast's Spark offline store, behind featurestore.spark_offline's config class: the same
    one line (with the Spark master's default) before anything is opened."""
    code, out = feast(
        ["-f", "profiles/spark.yaml", "feature-views", "list"],
        REDIS_URL="redis://10.1.2.3:6390/4",
        POSTGRES_DSN="postgresql://feast:pw0rd@db.internal:5433/registry",
    )
    assert code == 2, out
    line = one_error_line(out)
    assert "spark.yaml reads" in line and "pw0rd" not in line
    assert exports(line) == {
        "REDIS_CONNECTION_STRING": "10.1.2.3:6390,db=4",
        "SHOPFEAST_REGISTRY_URL": "postgresql+psycopg://feast:...@db.internal:5433/registry",
        "SHOPFEAST_SPARK_MASTER": "local[2]",
    }


def test_spark_profile_needs_spark_sources() -> None:
    """Every variable set, but the definitions would build file sources (SOURCE_FORMAT unset, as
    a shell set up for the redis profile has it): one line saying what to export."""
    code, out = feast(
        ["-f", "profiles/spark.yaml", "feature-views", "list"],
        REDIS_CONNECTION_STRING="10.1.2.3:6390,db=4",
        SHOPFEAST_REGISTRY_URL="postgresql+psycopg://feast@db.internal:5433/registry",
        SHOPFEAST_SPARK_MASTER="local[2]",
    )
    assert code == 2, out
    line = one_error_line(out)
    assert "needs SHOPFEAST_SOURCE_FORMAT=spark, not unset" in line
    assert line.endswith("export SHOPFEAST_SOURCE_FORMAT=spark")


def test_from_python_an_exception_not_an_exit(monkeypatch) -> None:
    monkeypatch.delenv("SHOPFEAST_DATA_DIR", raising=False)
    with pytest.raises(MissingVariables, match=r"os\.environ\['SHOPFEAST_DATA_DIR'\] = "):
        FeatureStore(repo_path=str(FEATURE_REPO))


@pytest.mark.integration
def test_exporting_the_line_is_enough(redis_url, postgres_dsn) -> None:
    """REDIS_URL and POSTGRES_DSN as `make` exports them -> one line -> export it -> it works."""
    with scratch_postgres_db(postgres_dsn) as registry:
        dsn = registry.replace("postgresql+psycopg://", "postgresql://")
        args = ["-f", "profiles/redis.yaml", "feature-views", "list"]
        made = {"REDIS_URL": redis_url, "POSTGRES_DSN": dsn}
        code, out = feast(args, **made)
        assert code == 2, out
        told = exports(one_error_line(out))
        assert told["SHOPFEAST_REGISTRY_URL"] == registry
        code, out = feast(args, **made, **told)
        assert code == 0, out
        assert out.split()[:2] == ["NAME", "ENTITIES"], out  # an empty registry, listed
    assert not (Path(FEATURE_REPO) / "${SHOPFEAST_DATA_DIR}").exists()
