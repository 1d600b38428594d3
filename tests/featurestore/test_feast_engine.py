"""ChunkedRedisEngine against Feast's own engine, on a real Redis: same keys, same bytes, read back
by Feast's get_online_features; interrupted runs resume; missing keys heal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from feast import FeatureStore, RepoConfig

from featurestore import schema as feast_schema
from featurestore.materialize import writer as writer_module
from featurestore.materialize.engine import ChunkedRedisEngine, RedisUnavailable
from pipelines.specs import Feature, FeatureSource
from shopconfig.settings import redis_connection_string
from tests.support.feast_support import (
    claimed_redis_db,
    generate_source,
)
from tests.support.feast_support import write_source as write_parquet
from tests.support.serving_support import PrivateRedis

pytestmark = pytest.mark.integration

END = datetime.now(UTC).replace(microsecond=0)
START = datetime(2000, 1, 1, tzinfo=UTC)
ENGINE = "featurestore.materialize.engine.ChunkedRedisEngine"

# Every dtype the declarations know, nullable and filled.
ALL_TYPES = FeatureSource(
    name="all_types",
    entity="customer",
    description="every dtype",
    features=(
        Feature("n", "int64", "count", "30d", 0),
        Feature("n_or_null", "int64", "nullable count"),
        Feature("x", "float64", "amount", "30d", 0.0),
        Feature("x_or_null", "float64", "ratio"),
        Feature("s", "string", "category"),
        Feature("t", "unix_timestamp", "instant"),
        Feature("b", "bool", "flag"),
        Feature("ids", "string_list", "products", None, ()),
        Feature("scores", "float_list", "scores", None, ()),
    ),
)


def make_store(
    root: Path,
    redis_url: str,
    engine: str | dict,
    project: str = "enginetest",
    key_ttl: int | None = None,
) -> FeatureStore:
    root.mkdir(parents=True, exist_ok=True)
    online = {"type": "redis", "connection_string": redis_connection_string(redis_url)}
    if key_ttl:
        online["key_ttl_seconds"] = key_ttl
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(root / "registry.db"),
        online_store=online,
        offline_store={"type": "duckdb"},
        batch_engine=engine,
        entity_key_serialization_version=3,
        repo_path=root,
    )
    return FeatureStore(config=config)


def apply_view(store: FeatureStore, data_dir: Path):
    entity = feast_schema.entity("customer")
    source = feast_schema.file_source(ALL_TYPES, data_dir)
    view = feast_schema.feature_view(ALL_TYPES, {"customer": entity}, source)
    store.apply([entity, source, view])
    return view


def dump(url: str) -> dict[bytes, dict[bytes, bytes]]:
    client = redis.Redis.from_url(url)
    return {k: client.hgetall(k) for k in client.scan_iter(count=1000)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("engine_data")
    frame = generate_source(ALL_TYPES, n_entities=300, days=60, end=END, seed=3, n_products=40)
    write_parquet(frame, ALL_TYPES, root)
    return root


@pytest.fixture(scope="module")
def feast_written(data_dir, tmp_path_factory, redis_url):
    """What Feast's default engine writes for the whole window (the reference)."""
    with claimed_redis_db(redis_url) as url:
        store = make_store(tmp_path_factory.mktemp("feast_engine"), url, "local")
        apply_view(store, data_dir)
        store.materialize(START, END)
        yield url, dump(url)


def engine_config(state: Path, chunk_rows: int = 64, write_rows: int = 24) -> dict:
    # Parts of 24 rows cut each 64-row chunk unevenly (24, 24, 16).
    return {
        "type": ENGINE,
        "chunk_rows": chunk_rows,
        "write_rows": write_rows,
        "pipeline_commands": 50,
        "state_dir": str(state),
        "progress": False,
    }


def test_bytes_identical_to_feast_engine(feast_written, data_dir, tmp_path, redis_url) -> None:
    _, reference = feast_written
    assert len(reference) == 300
    with claimed_redis_db(redis_url) as url:
        store = make_store(tmp_path, url, engine_config(tmp_path / "state"))
        apply_view(store, data_dir)
        store.materialize(START, END)
        ours = dump(url)
    assert ours.keys() == reference.keys()
    for key, fields in reference.items():
        assert ours[key] == fields, key


def test_feast_reads_our_writes(feast_written, data_dir, tmp_path, redis_url) -> None:
    ref_url, _ = feast_written
    ids = [{"customer_id": f"c{i:05d}"} for i in range(0, 300, 7)] + [{"customer_id": "nobody"}]
    with claimed_redis_db(redis_url) as url:
        store = make_store(tmp_path, url, engine_config(tmp_path / "state"))
        view = apply_view(store, data_dir)
        store.materialize(START, END)
        refs = [f"all_types:{f.name}" for f in view.features]
        ours = store.get_online_features(features=refs, entity_rows=ids).to_dict()
    reference_store = make_store(tmp_path / "ref", ref_url, "local")
    apply_view(reference_store, data_dir)
    theirs = reference_store.get_online_features(features=refs, entity_rows=ids).to_dict()
    assert ours == theirs
    assert ours["n"][-1] is None  # an unknown entity reads as nulls, not an error
    assert sum(v is not None for v in ours["n"]) == len(ids) - 1


def test_interrupted_run_resumes(feast_written, data_dir, tmp_path, redis_url, monkeypatch) -> None:
    _, reference = feast_written
    state = tmp_path / "state"
    real_send = writer_module.RedisViewWriter.send
    calls = {"n": 0}

    def failing_send(self, prepared):
        calls["n"] += 1
        if calls["n"] == 5:
            raise ConnectionError("simulated crash after four parts (two chunks)")
        return real_send(self, prepared)

    with claimed_redis_db(redis_url) as url:
        # No retries inside the run: it stops, and the next run resumes.
        config = {**engine_config(state, chunk_rows=50, write_rows=25), "retries": 0}
        store = make_store(tmp_path, url, config)
        apply_view(store, data_dir)
        monkeypatch.setattr(writer_module.RedisViewWriter, "send", failing_send)
        with pytest.raises(RedisUnavailable, match="simulated crash"):
            store.materialize(START, END)
        checkpoint = list(state.glob("*.json"))
        assert len(checkpoint) == 1
        assert len(dump(url)) == 100  # four parts of 25 made it

        monkeypatch.setattr(writer_module.RedisViewWriter, "send", real_send)
        store = make_store(tmp_path, url, engine_config(state, chunk_rows=50, write_rows=25))
        store.materialize(START, END)
        engine = store._get_provider().batch_engine
        assert isinstance(engine, ChunkedRedisEngine)
        run = engine.runs[-1]
        assert run.resumed and run.rows_read == 200  # only the keys after the checkpoint
        assert not list(state.glob("*.json"))
        assert dump(url) == reference


def test_missing_keys_are_healed_and_expiry_rearmed(
    feast_written, data_dir, tmp_path, redis_url
) -> None:
    _, reference = feast_written
    with claimed_redis_db(redis_url) as url:
        store = make_store(tmp_path, url, engine_config(tmp_path / "state"), key_ttl=3600)
        apply_view(store, data_dir)
        store.materialize(START, END)
        client = redis.Redis.from_url(url)
        lost = sorted(reference)[:25]
        client.delete(*lost)
        client.expire(sorted(reference)[-1], 5)
        # A later window with no new rows still restores what Redis lost.
        store.materialize(END, END + timedelta(hours=1))
        assert dump(url) == reference
        assert all(3500 < client.ttl(k) <= 3600 for k in reference)


# --- a Redis that stops answering: a private redis-server on a free port, never the shared one --

FAST = {"socket_timeout_s": 0.3, "connect_timeout_s": 0.3, "retries": 1, "retry_backoff_s": 0.05}


def test_frozen_redis_fails_in_bounded_time_then_resumes(
    feast_written, data_dir, tmp_path, redis_url
) -> None:
    """SIGSTOP: connections are accepted and nothing answers. Before, materialize hung forever."""
    _, reference = feast_written
    with claimed_redis_db(redis_url) as empty, PrivateRedis(tmp_path, empty) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        config = {**engine_config(tmp_path / "state"), **FAST}
        store = make_store(tmp_path / "repo", url, config)
        apply_view(store, data_dir)
        server.freeze()
        try:
            with pytest.raises(RedisUnavailable) as err:
                store.materialize(START, END)
        finally:
            server.thaw()
        message = str(err.value)
        assert "\n" not in message and "resume" in message
        assert f"Redis at 127.0.0.1:{server.port}/0" in message and "'all_types'" in message
        store = make_store(tmp_path / "repo", url, config)
        store.materialize(START, END)  # thawed: the next run completes
        assert dump(url) == reference


def test_stopped_redis_is_one_line(feast_written, data_dir, tmp_path, redis_url) -> None:
    with claimed_redis_db(redis_url) as empty, PrivateRedis(tmp_path, empty) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        store = make_store(tmp_path / "repo", url, {**engine_config(tmp_path / "state"), **FAST})
        apply_view(store, data_dir)
        server.stop()
        with pytest.raises(RedisUnavailable) as err:
            store.materialize(START, END)
    assert "\n" not in str(err.value) and "refused" in str(err.value)


# A view keyed by two entities (customer x product), as declared aggregations make them.
PAIRS = FeatureSource(
    name="pair_types",
    entity="customer_product",
    description="pairs",
    features=(
        Feature("n", "int64", "count", "30d", 0),
        Feature("t", "unix_timestamp", "instant"),
    ),
)


def test_a_view_keyed_by_two_entities_same_bytes_and_heals(tmp_path, redis_url) -> None:
    """Same keys and bytes as Feast's engine for a customer x product view, and a pair whose key
    vanished (a Redis restart) is written again by the next window, as for one key."""
    data = tmp_path / "data"
    frame = generate_source(PAIRS, n_entities=150, days=60, end=END, seed=5, n_products=12)
    write_parquet(frame, PAIRS, data)

    def apply(store: FeatureStore) -> None:
        entities = {e: feast_schema.entity(e) for e in ("customer", "product")}
        source = feast_schema.file_source(PAIRS, data)
        store.apply(
            [*entities.values(), source, feast_schema.feature_view(PAIRS, entities, source)]
        )

    with claimed_redis_db(redis_url) as reference, claimed_redis_db(redis_url) as ours:
        feast = make_store(tmp_path / "feast", reference, "local")
        apply(feast)
        feast.materialize(START, END)
        store = make_store(tmp_path / "ours", ours, engine_config(tmp_path / "state"))
        apply(store)
        store.materialize(START, END)
        expected = dump(reference)
        assert len(expected) == len(frame[["customer_id", "product_id"]].drop_duplicates())
        assert dump(ours) == expected
        client = redis.Redis.from_url(ours)
        lost = sorted(client.scan_iter())[:3]
        client.delete(*lost)
        store.materialize(END, END + timedelta(seconds=1))  # a window without new rows
        assert dump(ours) == expected


@pytest.mark.parametrize("join_keys", [("customer_id", "product_id"), ("b_id", "a_id", "c_id")])
def test_composite_keys_are_feasts_serialized_entity_keys(join_keys) -> None:
    """The composite keys written without a proto per row equal Feast's serialize_entity_key
    (v3: join keys sorted by name, their values in that order) + the project, for ids with
    non-ASCII characters, empty ids, and a value that does not split into one id per key."""
    import pyarrow as pa
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from featurestore.materialize.source import KEY_SEP

    ids = [["c1", "p9", "x"], ["", "p", "y"], ["kund€", "продукт", "z"], ["c" * 300, "p2", ""]]
    joined = [KEY_SEP.join(row[: len(join_keys)]) for row in ids] + ["no-separator"]
    got = writer_module.composite_keys(pa.array(joined), join_keys, "shop")
    for value, key in zip(joined, got, strict=True):
        values = [Value(string_val=v) for v in value.split(KEY_SEP)]
        proto = EntityKey(join_keys=list(join_keys), entity_values=values)
        assert key == serialize_entity_key(proto, 3) + b"shop", value


# --- several views in one run: Feast hands them to the engine at once (supports_batch) ---------


def _two_views(tmp_path: Path):
    """ALL_TYPES (one key) and PAIRS (two keys) over their own data, and an apply for a store."""
    data = tmp_path / "data"
    write_parquet(
        generate_source(ALL_TYPES, n_entities=120, days=40, end=END, seed=11, n_products=20),
        ALL_TYPES,
        data,
    )
    write_parquet(
        generate_source(PAIRS, n_entities=90, days=40, end=END, seed=12, n_products=9),
        PAIRS,
        data,
    )

    def apply(store: FeatureStore) -> None:
        entities = {e: feast_schema.entity(e) for e in ("customer", "product")}
        objects: list = list(entities.values())
        for spec in (ALL_TYPES, PAIRS):
            source = feast_schema.file_source(spec, data)
            objects += [source, feast_schema.feature_view(spec, entities, source)]
        store.apply(objects)

    return apply


def test_views_run_side_by_side_write_feasts_bytes(tmp_path, redis_url) -> None:
    """Two views materialized at the same time (parallel_views 2, one DuckDB database) write
    what Feast's engine writes, key for key and byte for byte; then Redis loses everything and
    a later window still ends with Feast's contents (the entities it reads are written, the
    others healed from their latest rows)."""
    apply = _two_views(tmp_path)
    with claimed_redis_db(redis_url) as reference, claimed_redis_db(redis_url) as ours:
        feast = make_store(tmp_path / "feast", reference, "local")
        apply(feast)
        store = make_store(
            tmp_path / "ours", ours, {**engine_config(tmp_path / "state"), "parallel_views": 2}
        )
        apply(store)
        middle = END - timedelta(days=10)
        for a, b in ((START, middle), (middle, END)):
            feast.materialize(a, b)
            store.materialize(a, b)
            expected = dump(reference)
            assert {k.endswith(b"enginetest") for k in expected} == {True}
            assert dump(ours) == expected
            redis.Redis.from_url(ours).flushdb()
        engine = store._get_provider().batch_engine
        runs = {r.view: r for r in engine.runs[-2:]}
        assert sorted(runs) == ["all_types", "pair_types"]
        # the later window read some entities and healed the rest: both paths were taken
        assert all(r.rows_read > 0 and r.healed > 0 for r in runs.values())


def test_a_failing_view_does_not_stop_the_other(tmp_path, redis_url, monkeypatch) -> None:
    """One view's Redis writes fail: the run raises for that view, the other view is written
    whole and recorded as materialized; the failed one is not, and a next run completes it."""
    apply = _two_views(tmp_path)
    real_send = writer_module.RedisViewWriter.send

    def send(self, prepared):
        if self.layout.view_name == "pair_types":
            raise ConnectionError("simulated: pair_types cannot write")
        return real_send(self, prepared)

    with claimed_redis_db(redis_url) as reference, claimed_redis_db(redis_url) as ours:
        feast = make_store(tmp_path / "feast", reference, "local")
        apply(feast)
        feast.materialize(START, END)
        expected = dump(reference)
        config = {**engine_config(tmp_path / "state"), "parallel_views": 2, "retries": 0}
        store = make_store(tmp_path / "ours", ours, config)
        apply(store)
        monkeypatch.setattr(writer_module.RedisViewWriter, "send", send)
        with pytest.raises(RedisUnavailable, match="'pair_types'"):
            store.materialize(START, END)
        single = {k: v for k, v in expected.items() if b"_ts:all_types" in v}
        written = dump(ours)
        assert {k: written[k] for k in single} == single
        assert not any(b"_ts:pair_types" in f for v in written.values() for f in v)
        intervals = {v.name: v.materialization_intervals for v in store.list_feature_views()}
        assert len(intervals["all_types"]) == 1 and intervals["pair_types"] == []
        monkeypatch.setattr(writer_module.RedisViewWriter, "send", real_send)
        store.materialize(START, END)
        assert dump(ours) == expected
