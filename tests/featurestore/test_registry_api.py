"""`shopfeast registry` serves Feast's REST registry API, what a data team browses for discovery;
`shopfeast ui` Feast's web UI over the same registry.

The server is started as a user starts it (its own process, the embedded profile over a small
applied store) and read over HTTP; what it says about a feature is compared with the declaration
in pipelines/ (the one place a feature's description and window are written).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.sources import sources
from tests.support.server_support import assert_ui_lists_the_repo, get_json, serve
from tests.support.training_shop import small_store

pytestmark = pytest.mark.slow  # server processes that import Feast: about 10 s each


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return small_store(tmp_path_factory.mktemp)


@pytest.fixture(scope="module")
def registry_api(store_dir: Path, repo_root: Path):
    for base in serve(["registry"], store_dir, "/api/v1/projects", repo_root):
        yield f"{base}/api/v1"


def test_a_features_metadata_is_its_declaration(registry_api: str) -> None:
    declared = {f.name: f for f in sources(strict=True)["customer_activity"].features}
    f = declared["orders_30d"]
    status, headers, body = get_json(
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
        status, _, body = get_json(
            f"{registry_api}/features?project=shopfeast&limit=100&page={page}"
        )
        assert status == 200, body
        listed |= {(f["featureView"], f["name"]): f.get("description") for f in body["features"]}
        pages, page = body["pagination"]["totalPages"], page + 1
    for source in sources(strict=True).values():
        for f in source.features:
            assert listed.get((source.name, f.name)) == f.description, (source.name, f.name)


def test_an_unknown_feature_is_a_404(registry_api: str) -> None:
    status, _, body = get_json(
        f"{registry_api}/features/customer_activity/no_such?project=shopfeast"
    )
    assert status == 404, body


def test_the_ui_shows_the_project_s_objects(store_dir: Path, repo_root: Path) -> None:
    """`shopfeast ui` (README's `make ui`) on the embedded profile; test_ci_recipe.py starts it
    on the redis profile's deployed registry."""
    for base in serve(["ui"], store_dir, "/projects-list.json", repo_root):
        assert_ui_lists_the_repo(base)
