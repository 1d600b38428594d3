"""The README's "For data scientists" block runs as written on a small built store and gives, for
every feature service the repo defines, one row per entity row with the service's features."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.training_shop import small_store

pytestmark = pytest.mark.slow  # seven point-in-time reads on the small store


def snippet(repo_root: Path) -> str:
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## For data scientists", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_snippet_runs_for_every_service(tmp_path_factory, repo_root, monkeypatch):
    data = small_store(tmp_path_factory.mktemp)
    saved = dict(os.environ)
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(data))
    scope: dict = {}
    try:
        exec(compile(snippet(repo_root), "README.md", "exec"), scope)
    finally:  # open_store exports the profile's variables into this process
        os.environ.clear()
        os.environ.update(saved)
    store, entity_rows, sets = scope["store"], scope["entity_rows"], scope["training_sets"]
    assert set(sets) == {s.name for s in store.list_feature_services()}  # none left out
    for name, df in sets.items():
        rows = entity_rows[name]
        assert len(df) == len(rows), name
        service = store.get_feature_service(name)
        wanted = {f.name for p in service.feature_view_projections for f in p.features}
        assert wanted <= set(df.columns), (name, wanted - set(df.columns))
    churn = sets["churn_model_v1"].set_index("customer_id")
    assert churn["lifetime_orders"].notna().any()  # known customers have values as of the date
