"""`shopfeast features list` lists every feature, and a bad declaration stops `shopfeast features`
(and the listing) with one line naming the file and line, the view, the feature and the field."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.sources import families
from shopconfig.settings import FEATURE_REPO
from shopfeast.cli import app


def test_features_list_prints_every_feature_with_its_origin() -> None:
    result = CliRunner().invoke(app, ["features", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["view", "feature", "origin", "window", "owner", "description"]
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    expected = set()
    for name, module in families().items():
        origin = "family" if hasattr(module, "__file__") else "declared"
        expected |= {(name, f.name, origin) for f in module.SOURCE.features}
    assert rows == expected
    assert ("customer_product_history", "pair_orders_90d", "declared") in rows
    table = CliRunner().invoke(app, ["features", "list", "--markdown"])
    assert table.exit_code == 0 and table.output.count("\n") == len(expected) + 2


def test_a_bad_declaration_stops_features_with_one_line(tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    text = (FEATURE_REPO / "aggregations.yaml").read_text()
    old = "filter: event_type == 'product_view'"
    assert old in text
    (repo / "aggregations.yaml").write_text(text.replace(old, "filter: event_typ == 'x'", 1))
    line = text[: text.index("- name: pair_views_30d")].count("\n") + 1  # the feature's line
    monkeypatch.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
    want = (
        f"repo/aggregations.yaml:{line}: view customer_product_history, feature pair_views_30d: "
        "filter: unknown column 'event_typ' in events"
    )
    for args in (["features", "--data-dir", str(tmp_path / "data")], ["features", "list"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and want in lines[0] and "Traceback" not in result.output, lines
    assert not (tmp_path / "data" / "features").exists()  # nothing built
