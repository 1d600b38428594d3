"""`shopfeast registry` serves Feast's REST registry API: what a data team browses for discovery.

The server is started as a user starts it (its own process, the embedded profile over a small
applied store) and read over HTTP; what it says about a feature is compared with the declaration
in pipelines/ (the one place a feature's description and window are written).
"""

from __future__ import annotations

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
from tests.support.training_shop import small_store

pytestmark = pytest.mark.slow  # a server process that imports Feast: about 10 s


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


@pytest.fixture(scope="module")
def registry_api(tmp_path_factory, repo_root: Path):
    data = small_store(tmp_path_factory.mktemp)
    port = _free_port()
    cmd = [sys.executable, "-m", "shopfeast.cli", "registry", "--data-dir", str(data)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(f"{base}/projects")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"the registry server did not start:\n{proc.stdout.read()}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


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
