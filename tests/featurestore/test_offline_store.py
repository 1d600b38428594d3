"""shopfeast's offline store (featurestore.offline) on Feast's edge cases, against hand-worked
values and against Feast's own DuckDB store on the same registry: the latest row with
`event_timestamp <= t` (inclusive), ties on event_timestamp to the latest created_timestamp (a
missing one losing), a view's TTL (inclusive), full feature names, aliases, join key maps, source
field mappings, unknown and null keys, duplicate and unordered entity rows, naive and string
timestamps; one row per entity row, in order. Every test runs twice: with the sources read whole
and gathered from (a small source's plan), and streamed through the join (a big one's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    RepoConfig,
)
from feast.data_format import ParquetFormat
from feast.types import Array, Float64, Int64, String
from feast.value_type import ValueType

from featurestore import offline
from tests.support.feast_support import ASOF_STORE

D = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
ISO = "%Y-%m-%dT%H:%M:%S.%f+00:00"

# customer, event_timestamp, created, amount, label, tags, raw_score
ROWS = [
    ("c1", D, D, 1, "a", ["x"], 0.5),
    ("c1", D + DAY, D + DAY, 2, "b", ["x", "y"], 1.5),
    ("c1", D + DAY, D + 2 * DAY, 3, "c", [], 2.5),  # the tie's winner: latest created
    ("c1", D + DAY, None, 4, "d", ["z"], 3.5),  # a missing created loses
    ("c1", D + 5 * DAY, D + 5 * DAY, 5, "e", ["w"], 4.5),
    ("c2", D, D, 10, "f", ["x"], 5.5),
    ("c2", D + 3 * DAY, D + DAY, 11, "g", None, 6.5),
    ("c3", D + DAY, D + DAY, 20, None, None, None),
]

# (customer, t, amount served, amount served by the 2-day TTL view)
CASES = [
    ("c1", D - US, None, None),  # before the first row
    ("c1", D, 1, 1),  # at a row's event_timestamp: served (inclusive)
    ("c1", D + DAY - US, 1, 1),
    ("c1", D + DAY, 3, 3),  # three rows at D+1: the latest created
    ("c1", D + 3 * DAY, 3, 3),  # exactly TTL old: still served
    ("c1", D + 3 * DAY + US, 3, None),  # older than the TTL
    ("c2", D + 3 * DAY, 11, 11),
    ("c9", D + 2 * DAY, None, None),  # unknown key
    (None, D + 2 * DAY, None, None),  # null key
    ("c1", D + DAY, 3, 3),  # a duplicate entity row
    ("c3", D + 2 * DAY, 20, 20),  # a row of nulls
    ("c1", D + 9 * DAY, 5, None),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same registry opened with shopfeast's store and with Feast's DuckDB store."""
    root = tmp_path_factory.mktemp("offline_store")
    (root / "stats").mkdir()
    columns = list(zip(*ROWS, strict=True))
    table = pa.table(
        {
            "customer_id": pa.array(columns[0], pa.string()),
            "event_timestamp": pa.array(columns[1], pa.timestamp("us", tz="UTC")),
            "created": pa.array(columns[2], pa.timestamp("us", tz="UTC")),
            "amount": pa.array(columns[3], pa.int64()),
            "label": pa.array(columns[4], pa.string()),
            "tags": pa.array(columns[5], pa.list_(pa.string())),
            "raw_score": pa.array(columns[6], pa.float64()),
        }
    )
    pq.write_table(table.slice(0, 4), root / "stats" / "a.parquet")
    pq.write_table(table.slice(4), root / "stats" / "b.parquet")
    (root / "untied").mkdir()  # the same rows but the tie: one row per key and instant
    pq.write_table(table.take([0, 2, 4, 5, 6, 7]), root / "untied" / "rows.parquet")
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    source = FileSource(
        name="stats_source",
        path=str(root / "stats" / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        field_mapping={"raw_score": "score"},
    )
    schema = [
        Field(name="amount", dtype=Int64),
        Field(name="label", dtype=String),
        Field(name="tags", dtype=Array(String)),
        Field(name="score", dtype=Float64),
    ]
    stats = FeatureView(name="stats", entities=[customer], schema=schema, source=source)
    untied_source = FileSource(
        name="untied_source",
        path=str(root / "untied" / "rows.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        field_mapping={"raw_score": "score"},
    )
    untied = FeatureView(
        name="untied", entities=[customer], schema=schema, source=untied_source, ttl=2 * DAY
    )
    fresh = FeatureView(
        name="fresh", entities=[customer], schema=schema, source=source, ttl=2 * DAY
    )
    aliased = FeatureService(
        name="aliased",
        features=[
            stats[["amount", "score"]]
            .with_name("bought")
            .with_join_key_map({"customer_id": "buyer"})
        ],
    )

    def open_with(offline: str) -> FeatureStore:
        config = RepoConfig(
            project="offline_test",
            provider="local",
            registry=str(root / "registry.db"),
            online_store={"type": "sqlite", "path": str(root / "online.db")},
            offline_store={"type": offline},
            entity_key_serialization_version=3,
            repo_path=root,
        )
        return FeatureStore(config=config)

    ours = open_with(ASOF_STORE)
    ours.apply([customer, source, stats, fresh, aliased, untied_source, untied])
    return ours, open_with("duckdb")


@pytest.fixture(
    autouse=True,
    params=["gathered", "streamed", "gathered_by_key", "streamed_by_key", "gathered_by_rank"],
)
def plan(request, monkeypatch) -> str:
    """Sources read whole and gathered from, or (GATHER_* at nothing) streamed through the
    join with their columns; each with every source row read, or (`_by_key`, KEY_FILTER_RATIO at
    nothing) only the rows of the entity frame's keys; `_by_rank`: a gathered source ordered by
    the ranks of its instants (_SPAN_LIMIT at nothing), as when microseconds do not fit."""
    if request.param.endswith("_by_rank"):
        monkeypatch.setattr(offline, "_SPAN_LIMIT", 0)
    if request.param.startswith("streamed"):
        monkeypatch.setattr(offline, "GATHER_MIN_ROWS", -1)
        monkeypatch.setattr(offline, "GATHER_RATIO", 0.0)
    by_key = request.param.endswith("_by_key")
    monkeypatch.setattr(offline, "KEY_FILTER_RATIO", 0 if by_key else float("inf"))
    return request.param


def _entity(rows=CASES) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [c for c, *_ in rows],
            "event_timestamp": pd.to_datetime([t for _, t, *_ in rows], utc=True),
            "row": range(len(rows)),
        }
    )


def _values(column: pd.Series) -> list:
    out = []
    for v in column.tolist():
        if isinstance(v, (list, np.ndarray)):
            v = tuple(v)
        elif v is None or (not isinstance(v, tuple) and pd.isna(v)):
            v = None
        elif isinstance(v, pd.Timestamp):
            v = v.value
        out.append(v)
    return out


def _assert_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    ours = ours.sort_values("row").reset_index(drop=True)
    theirs = theirs.sort_values("row").reset_index(drop=True)
    assert sorted(ours.columns) == sorted(theirs.columns)
    for name in ours.columns:
        assert _values(ours[name]) == _values(theirs[name]), name


FEATURES = [f"{v}:{f}" for v in ("stats", "fresh") for f in ("amount", "label", "tags", "score")]


def test_hand_worked_values_in_entity_order(stores) -> None:
    ours, _ = stores
    entity = _entity()
    out = ours.get_historical_features(entity_df=entity, features=FEATURES[:4]).to_df()
    assert len(out) == len(entity)
    assert out["row"].tolist() == list(range(len(entity)))
    assert out["customer_id"].tolist() == entity["customer_id"].tolist()
    assert list(out.columns) == [*entity.columns, "amount", "label", "tags", "score"]
    assert _values(out["amount"]) == [a for *_, a, _ in CASES]


def test_full_feature_names_and_the_ttl(stores) -> None:
    ours, theirs = stores
    entity = _entity()
    kwargs = {"entity_df": entity, "features": FEATURES, "full_feature_names": True}
    out = ours.get_historical_features(**kwargs).to_df()
    assert _values(out["stats__amount"]) == [a for *_, a, _ in CASES]
    assert _values(out["fresh__amount"]) == [f for *_, f in CASES]
    c3 = out[out.customer_id == "c3"].iloc[0]
    assert c3["stats__label"] is None and pd.isna(c3["stats__score"])
    assert out.loc[3, "stats__tags"].tolist() == [] and out.loc[3, "stats__score"] == 2.5
    _assert_same(out, theirs.get_historical_features(**kwargs).to_df())


def test_aliases_join_key_maps_and_field_mappings_as_feast(stores) -> None:
    ours, theirs = stores
    entity = _entity().rename(columns={"customer_id": "buyer"})
    service = ours.get_feature_service("aliased")
    for full in (False, True):
        kwargs = {"entity_df": entity, "features": service, "full_feature_names": full}
        out = ours.get_historical_features(**kwargs).to_df()
        assert _values(out["bought__amount" if full else "amount"]) == [a for *_, a, _ in CASES]
        _assert_same(out, theirs.get_historical_features(**kwargs).to_df())


def test_a_source_without_ties_as_feast(stores) -> None:
    """No two rows of a key at one instant: the plan skips the created-timestamp key, and
    serves what Feast's store does (the TTL included), at the rows' instants and around them."""
    ours, theirs = stores
    instants = sorted({t for _, t, *_ in ROWS})
    rows = [
        (c, t + d) for c in ("c1", "c2", "c3", "c9") for t in instants for d in (-US, 0 * US, US)
    ]
    rows += [(c, t + 2 * DAY + d) for c, t in rows[::3] for d in (0 * US, US)]
    entity = _entity([(c, t, None, None) for c, t in rows])
    features = [f"untied:{f}" for f in ("amount", "label", "tags", "score")]
    kwargs = {"entity_df": entity, "features": features, "full_feature_names": True}
    out = ours.get_historical_features(**kwargs).to_df()
    assert out["row"].tolist() == list(range(len(entity)))
    assert out["untied__amount"].notna().sum() > 10 and out["untied__amount"].isna().sum() > 10
    _assert_same(out, theirs.get_historical_features(**kwargs).to_df())


def test_unordered_naive_and_string_timestamps_as_feast(stores) -> None:
    ours, theirs = stores
    shuffled = _entity().sample(frac=1.0, random_state=3).reset_index(drop=True)
    naive = shuffled.assign(event_timestamp=shuffled.event_timestamp.dt.tz_localize(None))
    text = shuffled.assign(event_timestamp=shuffled.event_timestamp.dt.strftime(ISO))
    for entity in (shuffled, naive, text):
        kwargs = {"entity_df": entity, "features": FEATURES, "full_feature_names": True}
        out = ours.get_historical_features(**kwargs).to_df()
        assert out["row"].tolist() == shuffled["row"].tolist()  # the frame's own order
        _assert_same(out, theirs.get_historical_features(**kwargs).to_df())


def test_what_it_does_not_plan_goes_to_feasts_duckdb_store(stores) -> None:
    """filter_by_created_timestamp (Feast's DuckDB option) is answered by Feast's store."""
    ours, theirs = stores
    kwargs = {
        "entity_df": _entity(),
        "features": FEATURES,
        "full_feature_names": True,
        "filter_by_created_timestamp": True,
    }
    out = ours.get_historical_features(**kwargs).to_df()
    assert len(out) == len(CASES)
    _assert_same(
        out.sort_values("row").reset_index(drop=True),
        theirs.get_historical_features(**kwargs).to_df(),
    )


@pytest.mark.parametrize(
    "kind",
    [pa.int64(), pa.int32(), pa.uint8(), pa.float64(), pa.float32(), pa.timestamp("us", "UTC"),
     pa.date32(), pa.bool_(), pa.string(), pa.list_(pa.string())],
)  # fmt: skip
@pytest.mark.parametrize("rows", [0, 1, 40, 1000])
def test_gathering_columns_equals_arrows_take_with_null_indices(kind, rows) -> None:
    """_take_all (a numpy gather of the bytes for fixed-width columns, on two threads) gives
    what Arrow's take gives: values, nulls from the column and from null indices, any offset."""
    rng = np.random.default_rng(rows)
    ints = [None if rng.random() < 0.2 else int(rng.integers(0, 100)) for _ in range(rows)]
    if pa.types.is_string(kind):
        values = pa.array([None if v is None else f"s{v}" for v in ints], kind)
    elif pa.types.is_list(kind):
        values = pa.array([None if v is None else [f"s{v}"] * (v % 3) for v in ints], kind)
    elif pa.types.is_boolean(kind):
        values = pa.array([None if v is None else v % 2 == 0 for v in ints], kind)
    elif pa.types.is_temporal(kind):
        width = pa.int64() if kind.bit_width == 64 else pa.int32()
        values = pa.array(ints, width).cast(kind)
    else:
        values = pa.array(ints, pa.int64()).cast(kind)
    half = rows // 2
    column = pa.chunked_array([values[:half], values[half:]], kind)
    shifted = column.slice(1) if rows > 1 else column  # a column with an offset
    jobs = []
    for i, source in enumerate((column, shifted)):
        n = len(source)
        at = [None if n == 0 or rng.random() < 0.3 else int(rng.integers(0, n)) for _ in range(700)]
        jobs.append((f"c{i}", source, pa.array(at, pa.int64())))
    for threads in (1, 2):
        got = offline._take_all(jobs, threads)
        for name, source, at in jobs:
            expected = source.take(at).combine_chunks()
            out = got[name]
            out = out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
            out.validate(full=True)
            assert out.type == expected.type
            assert out.null_count == expected.null_count
            assert out.to_pylist() == expected.to_pylist()
