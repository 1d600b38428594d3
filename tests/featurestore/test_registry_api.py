"""`shopfeast registry` serves Feast's REST registry API, what a data team browses for discovery;
`shopfeast ui` Feast's web UI over the same registry.

The server is started as a user starts it (its own process, the embedded profile over a small
applied store) and read over HTTP; what it says about a feature is compared with the declaration
in pipelines/ (the one place a feature's description and window are written).
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.sources import sources
from shopconfig.settings import FEATURE_REPO
from tests.support.training_shop import small_store

pytestmark = pytest.mark.slow  # server processes that import Feast: about 10 s each


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.load(e)


def _serve(command: str, data: Path, ready_path: str, repo_root: Path):
    """`shopfeast <command> --data-dir DATA --port P` as a user starts it; yields its base URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "shopfeast.cli", command, "--data-dir", str(data)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{base}{ready_path}")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"shopfeast {command} did not start:\n{proc.stdout.read()}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return small_store(tmp_path_factory.mktemp)


@pytest.fixture(scope="module")
def registry_api(store_dir: Path, repo_root: Path):
    for base in _serve("registry", store_dir, "/api/v1/projects", repo_root):
        yield f"{base}/api/v1"


def test_a_features_metadata_is_its_declaration(registry_api: str) -> None:
    declared = {f.name: f for f in sources(strict=True)["customer_activity"].features}
    f = declared["orders_30d"]
    status, headers, body = _get(
        f"{registry_api}/features/customer_activity/orders_30d?project=shopfeast"
    )
    assert status == 200, body
    assert body["featureView"] == "customer_activity"
    assert body["description"] == f.description
    assert body["tags"] == {"window": "30d", "dtype": "int64"}
    assert body["type"] == "Int64"
    # Feast's server's security headers survive the compatibility shim
    assert headers.get("x-content-type-options") == "nosniff"


def test_every_declared_feature_is_listed_with_its_description(registry_api: str) -> None:
    listed, page, pages = {}, 1, 1
    while page <= pages:  # the API pages its lists, 100 at most
        status, _, body = _get(f"{registry_api}/features?project=shopfeast&limit=100&page={page}")
        assert status == 200, body
        listed |= {(f["featureView"], f["name"]): f.get("description") for f in body["features"]}
        pages, page = body["pagination"]["totalPages"], page + 1
    for source in sources(strict=True).values():
        for f in source.features:
            assert listed.get((source.name, f.name)) == f.description, (source.name, f.name)


def test_an_unknown_feature_is_a_404(registry_api: str) -> None:
    status, _, body = _get(f"{registry_api}/features/customer_activity/no_such?project=shopfeast")
    assert status == 404, body


def test_the_ui_shows_the_project_s_objects(store_dir: Path, repo_root: Path) -> None:
    """`shopfeast ui` (Feast's UI, README's `make ui`): the page, the project, and the objects it
    lists (served to the page by the UI's own /api/v1) are the repo's."""
    tree = ast.parse((FEATURE_REPO / "feature_services.py").read_text())
    declared = {
        k.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "FeatureService"
        for k in node.keywords
        if k.arg == "name"
    }
    assert len(declared) >= 7
    for base in _serve("ui", store_dir, "/projects-list.json", repo_root):
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            assert r.status == 200 and "<title>Feast" in r.read().decode()
        _, _, projects = _get(f"{base}/projects-list.json")
        assert [p["id"] for p in projects["projects"]] == ["shopfeast"]
        status, _, body = _get(f"{base}/api/v1/feature_services?project=shopfeast")
        assert status == 200, body
        listed = {s["spec"]["name"]: s["spec"] for s in body["featureServices"]}
        assert set(listed) == declared
        assert all(spec.get("description") for spec in listed.values())
