"""The feature repo with the embedded profile, nothing running: definitions agree with the
declarations, every object carries its metadata, and the DuckDB offline store returns one row per
entity row (nulls or zeros where due) where Feast's `file` store would drop rows."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from featurestore import schema as feast_schema
from featurestore import store as feast_store
from pipelines.sources import sources
from pipelines.specs import FEAST_TYPE_NAMES
from shopconfig.settings import FEATURE_REPO, profile_env
from tests.support.feast_support import generate_store, purge_repo_modules, run_feast_cli

END = datetime(2025, 6, 30, tzinfo=UTC)  # an old store: far outside Feast's 1-year default
PROFILE = feast_store.PROFILES["embedded"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("embedded")
    frames = generate_store(sources(strict=True), data_dir, END, customers=30, products=20)
    env = profile_env("embedded", data_dir)
    code, out = run_feast_cli(PROFILE, ["apply"], env)
    assert code == 0, out
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPFEAST_DATA_DIR", str(data_dir))
        result = feast_store.materialize("embedded", data_dir, end=END + timedelta(days=1))
        store = feast_store.open_store("embedded", data_dir)
        yield {"store": store, "frames": frames, "data_dir": data_dir, "materialized": result}
    purge_repo_modules()


def test_feast_types_cover_every_declared_dtype() -> None:
    assert set(FEAST_TYPE_NAMES.values()) == set(feast_schema.FEAST_TYPES)


def test_view_schemas_are_the_declarations(embedded) -> None:
    store = embedded["store"]
    declared = sources(strict=True)
    views = {v.name: v for v in store.list_feature_views()}
    assert set(views) == set(declared)
    for name, source in declared.items():
        view = views[name]
        assert [(f.name, f.dtype) for f in view.features] == [
            (f.name, feast_schema.feast_type(f.dtype)) for f in source.features
        ]
        assert [c.name for c in view.entity_columns] == list(source.join_keys)
        assert view.batch_source.path == feast_schema.source_glob(source, embedded["data_dir"])
        assert not view.ttl  # change-point rows: a TTL would hide current values


def test_every_object_has_description_owner_and_tags(embedded) -> None:
    store = embedded["store"]
    objects = [
        *store.list_entities(),
        *store.list_data_sources(),
        *store.list_feature_views(),
        *store.list_on_demand_feature_views(),
        *store.list_feature_services(),
    ]
    assert len(objects) >= 2 + 6 + 5 + 3 + 5
    for o in objects:
        assert o.description and o.owner and o.tags, f"{type(o).__name__} {o.name}"


def test_one_row_per_entity_row_with_nulls_and_zeros_where_due(embedded) -> None:
    """A known customer asked for before its first row, an unknown one and duplicates all
    come back; counts are zeros once a customer exists, nulls before."""
    store = embedded["store"]
    activity = embedded["frames"]["customer_activity"]
    first = activity.groupby("customer_id")["event_timestamp"].min()
    known = first.index[1]
    before, after = first[known] - timedelta(days=1), first[known] + timedelta(hours=5)
    entities = pd.DataFrame(
        {
            "customer_id": [known, known, "never-seen", known, known],
            "event_timestamp": [before, after, after, after, END],
        }
    )
    service = store.get_feature_service("churn_model_v1")
    out = store.get_historical_features(entity_df=entities, features=service).to_df()
    assert len(out) == len(entities)
    out = out.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    early = out[(out.customer_id == known) & (out.event_timestamp == before)].iloc[0]
    assert pd.isna(early["orders_30d"]) and pd.isna(early["days_since_last_order"])
    stranger = out[out.customer_id == "never-seen"].iloc[0]
    assert pd.isna(stranger["orders_30d"]) and pd.isna(stranger["signup_ts"])
    rows = out[(out.customer_id == known) & (out.event_timestamp == after)]
    assert len(rows) == 2  # the duplicate entity row is kept
    expected = activity[(activity.customer_id == known) & (activity.event_timestamp <= after)]
    expected = expected.sort_values("event_timestamp").iloc[-1]
    assert (rows["orders_30d"] == expected["orders_30d"]).all()  # a count: never null here


def test_embedded_materialize_from_epoch_then_online(embedded) -> None:
    """The first materialize loads every view from the epoch (Feast's incremental default
    would start one year back and miss this old store); the SQLite store serves it."""
    result = embedded["materialized"]
    assert sorted(result.full) == sorted(sources(strict=True)) and not result.incremental
    store = embedded["store"]
    activity = embedded["frames"]["customer_activity"]
    latest = activity.sort_values("event_timestamp").groupby("customer_id").tail(1)
    sample = latest.head(5)
    out = store.get_online_features(
        features=["customer_activity:orders_30d", "customer_activity:spend_90d"],
        entity_rows=[{"customer_id": c} for c in sample["customer_id"]],
    ).to_dict()
    assert out["orders_30d"] == sample["orders_30d"].tolist()
    assert out["spend_90d"] == pytest.approx(sample["spend_90d"].tolist())


def _comparable(column: pd.Series) -> list:
    """Values as plain comparable objects: lists as tuples, every missing value as None."""
    out = []
    for v in column.tolist():
        if isinstance(v, (list, np.ndarray)):
            v = tuple(None if pd.isna(x) else x for x in v)
        elif v is None or pd.isna(v):
            v = None
        elif isinstance(v, pd.Timestamp):
            v = v.value // 1000  # microseconds, whatever the unit
        out.append(v)
    return out


def test_every_service_equals_feasts_duckdb_store(embedded) -> None:
    """The profile's offline store (featurestore.offline: DuckDB ASOF joins, on-demand views
    over whole columns) against Feast's own DuckDB store on every feature service, value for
    value, in entity row order: random known and unknown keys at random instants, instants
    exactly on change points and just before them, a missing request value."""
    store = embedded["store"]
    assert type(store._get_provider().offline_store).__name__ == "AsofOfflineStore"
    feast = feast_store.open_store("embedded", embedded["data_dir"], offline_store="duckdb")
    assert type(feast._get_provider().offline_store).__name__ == "DuckDBOfflineStore"
    frames = embedded["frames"]
    rng = np.random.default_rng(17)
    customers = [*sorted(frames["customer_activity"].customer_id.unique()), "never-seen"]
    products = [*sorted(frames["product_stats"].product_id.unique()), "never-sold"]
    collections = [*sorted(frames["collection_stats"].collection_id.unique()), "never-made"]
    n = 300
    start = frames["customer_activity"].event_timestamp.min() - timedelta(days=5)
    offsets = rng.integers(0, int((END - start) / timedelta(microseconds=1)), n)
    times = pd.Series(pd.to_datetime(start) + pd.to_timedelta(offsets, unit="us"))
    edges = frames["customer_activity"].sample(40, random_state=1)
    entity = pd.DataFrame(
        {
            "customer_id": rng.choice(customers, n),
            "product_id": rng.choice(products, n),
            "collection_id": rng.choice(collections, n),
            "event_timestamp": times,
        }
    )
    entity.loc[: len(edges) - 1, "customer_id"] = edges.customer_id.to_numpy()
    at = edges.event_timestamp.reset_index(drop=True)
    entity.loc[: len(edges) - 1, "event_timestamp"] = at.where(
        np.arange(len(at)) % 2 == 0, at - timedelta(microseconds=1)
    ).to_numpy()
    score = rng.gamma(1.0, 0.3, n)
    score[::7] = np.nan
    entity["candidate_copurchase_score"] = score
    entity["row"] = range(n)
    services = store.list_feature_services()
    assert len(services) >= 6
    for service in services:
        for full in (False, True) if service.name == "ranking_model_v2" else (False,):
            kwargs = {"entity_df": entity, "features": service, "full_feature_names": full}
            ours = store.get_historical_features(**kwargs).to_df()
            theirs = feast.get_historical_features(**kwargs).to_df()
            assert ours["row"].tolist() == list(range(n)), service.name
            theirs = theirs.sort_values("row").reset_index(drop=True)
            assert sorted(ours.columns) == sorted(theirs.columns), service.name
            for column in ours.columns:
                assert _comparable(ours[column]) == _comparable(theirs[column]), (
                    f"{service.name}: {column}"
                )


def test_a_bad_declaration_stops_feast_plan_with_one_line(tmp_path, monkeypatch) -> None:
    """`feast plan` imports the declarations (found through SHOPFEAST_FEATURE_REPO) and stops on
    a bad one with a single line naming the file and line, the view, the feature and the field."""
    repo = tmp_path / "repo"
    repo.mkdir()
    text = (FEATURE_REPO / "aggregations.yaml").read_text()
    assert "window: 90d" in text
    (repo / "aggregations.yaml").write_text(text.replace("window: 90d", "window: fortnight", 1))
    line = text[: text.index("window: 90d")].count("\n") - 1  # the feature's first line
    monkeypatch.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
    code, out = run_feast_cli(PROFILE, ["plan"], profile_env("embedded", tmp_path / "data"))
    assert code == 1 and "Traceback" not in out, out
    errors = [x for x in out.splitlines() if x.startswith("Error")]
    assert errors == [
        f"Error: repo/aggregations.yaml:{line}: view customer_product_history, feature "
        "pair_orders_90d: window: 'fortnight' is not a whole number of days ('14d') or 'lifetime'"
    ], out


def test_plain_feast_from_the_repo_is_quiet(embedded) -> None:
    """Plain Feast from feature_repo/ in a fresh process (the `feast` script's entry point):
    `plan` and `materialize-incremental` print none of Feast's false warnings (the FileSource
    glob, on-demand views "experimental", ibis's DeprecationWarnings: five per run before)."""
    env = profile_env("embedded", embedded["data_dir"])
    env.pop("PYTHONWARNINGS", None)
    end = (END + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    script = (
        "from feast.cli.cli import cli\n"
        f"for args in (['plan'], ['materialize-incremental', {end!r}]):\n"
        "    cli(args, standalone_mode=False)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=FEATURE_REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "customer_activity" in run.stdout  # it did materialize the views
    for noise in ("Warning", "Could not validate", "experimental"):
        assert noise not in run.stderr, run.stderr
