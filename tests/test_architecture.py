"""The layers hold (.importlinter), a violation is caught, Feast's private names stay in one
package.

Feast's private names (`_get_online_request_context`, `_mmh3`, ...) change without notice between
releases. They are used only in `featurestore/`, and the list below is every one of them: a Feast
upgrade starts by checking each still exists and means the same (docs/architecture.md).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = (
    "shopfeast",
    "serving",
    "monitoring",
    "training",
    "streaming",
    "featurestore",
    "pipelines",
    "shopconfig",
)
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# Every private Feast name featurestore/ uses (module attributes and attributes of Feast objects).
FEAST_PRIVATE_NAMES = {
    "_generate_hset_keys_for_features",  # RedisOnlineStore: mmh3 field names of features
    "_generate_redis_keys_for_entities",  # RedisOnlineStore: entity keys -> Redis keys
    "_get_client",  # RedisOnlineStore: the sync client (the engine's writes, the monitor's TTLs)
    "_get_client_async",  # RedisOnlineStore: the async client (serving's reads, key scans)
    "_get_online_request_context",  # feast.utils: a service's views, features, request fields
    "_get_provider",  # FeatureStore: its provider, whose online store holds the Redis client
    "_get_repo_contents",  # feast.repo_operations: the repo's objects, as `feast plan` reads them
    "_get_store_and_registry",  # feast.repo_operations: the store `feast plan` diffs against
    "_mmh3",  # feast.infra.online_stores.helpers: the hash of hash-field names
    "_parse_connection_string",  # RedisOnlineStore: the engine's own client, with timeouts
    # redis-py's (pinned), not Feast's: _AsyncHiredisParser's hiredis reader, which
    # featurestore.online reads replies from directly (without hiredis: read_response)
    "_reader",
    "_versioned_fv_name",  # feast.infra.online_stores.redis: a view's name in its hash fields
}


def _lint(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(cwd / ".importlinter"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layers_contract_holds() -> None:
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    for pkg in LAYERS:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    probe = tmp_path / "pipelines" / "storage.py"
    # hidden inside a function, as a cycle would be dodged: still an import of a higher layer
    probe.write_text(probe.read_text() + "\n\ndef _probe():\n    import serving.app  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = _lint(tmp_path, env)
    assert proc.returncode != 0
    assert "pipelines.storage -> serving.app" in proc.stdout


def _python_files(*packages: str) -> list[Path]:
    return [
        p for pkg in packages for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts
    ]


def _private_names(files: list[Path]) -> set[str]:
    """`_name`s imported from feast, or used as attributes but defined nowhere in our code."""
    ours: set[str] = set()
    used: set[str] = set()
    for path in _python_files(*LAYERS, "feature_repo", "scripts"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.arg):
                ours.add(node.arg)
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("feast"):
                used |= {a.name for a in node.names if a.name.startswith("_")}
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in ours
            ):
                used.add(node.attr)
    # namedtuple's public API; pandas' arrow-backed array (pipelines.windows, zero-copy strings)
    return used - {"_replace", "_asdict", "_fields", "_pa_array"}


def test_feast_private_names_are_listed_and_only_in_featurestore() -> None:
    assert _private_names(_python_files("featurestore")) == FEAST_PRIVATE_NAMES
    outside = _private_names(
        _python_files("shopfeast", "serving", "monitoring", "training", "pipelines")
    )
    assert outside == set(), f"private names outside featurestore/: {sorted(outside)}"


@pytest.mark.parametrize(
    "package", ["serving", "monitoring", "training", "pipelines", "shopconfig"]
)
def test_feast_internals_are_imported_only_by_featurestore(package: str) -> None:
    for path in _python_files(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("feast."):
                pytest.fail(f"{path.relative_to(REPO)} imports {node.module}")
