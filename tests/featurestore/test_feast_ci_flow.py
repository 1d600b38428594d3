"""The CI flow on the real Redis and PostgreSQL, with the repo's redis profile as committed:

`feast plan`, `feast apply`, `feast materialize-incremental` on a small generated store; then for
a sample of customers and products every feature of every service read online equals the latest
value read offline; a second `feast apply` changes nothing; a second process reading the
PostgreSQL registry sees the same definitions and values; a customer whose data stopped long ago
is served what the point-in-time contract says.

Each run has its own PostgreSQL database and Redis database (tests/support/feast_support.py).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import redis

from featurestore import store as feast_store
from featurestore.odfv import AFFINITY_OUTPUTS
from pipelines.sources import sources
from shopconfig.settings import FEATURE_REPO, profile_env, redis_connection_string
from tests.support.feast_support import (
    claimed_redis_db,
    generate_store,
    purge_repo_modules,
    run_feast_cli,
    scratch_postgres_db,
    write_source,
)
from tests.support.serving_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROFILE = feast_store.PROFILES["redis"]
END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
READ_AT = END + timedelta(hours=9, minutes=30, seconds=15, microseconds=250_000)
STALE = "c00000"  # generated with history ~400 days old
STALE_LAST_ORDER = END - timedelta(days=401, hours=-10, minutes=-17, seconds=-3)
SERVICES = [  # every service the repo defines (a test checks none is missing)
    "churn_model_v1",
    "churn_model_v2",
    "customer_360_v1",
    "ranking_model_v1",
    "ranking_model_v2",
    "ranking_model_v3",
    "ranking_model_v4",
    "product_360_v1",
    "candidate_customer_v1",
    "candidate_product_v1",
    "candidate_session_v1",
    "customer_product_history_v1",
    "collection_360_v1",
    "product_collections_v1",
]


def stale_customer_history(frame: pd.DataFrame, source) -> tuple[pd.DataFrame, pd.DataFrame]:
    """c00000's activity as the contract has it: one order 401 days ago, then nothing.

    Returns (the other customers' rows, c00000's rows)."""
    mine = frame[frame["customer_id"] == STALE].iloc[:1]
    rows = []
    for day, in_30, in_90 in ((-400, 1, 1), (-370, 0, 1), (-310, 0, 0)):
        row = mine.copy()
        for f in source.features:
            if f.fill is not None:
                row[f.name] = [list(f.fill) if isinstance(f.fill, tuple) else f.fill]
            elif f.dtype != "string_list":
                row[f.name] = [None]
        ts = END + timedelta(days=day)
        row["event_timestamp"] = [ts]
        row["created_timestamp"] = [ts]
        row["orders_30d"], row["orders_90d"] = [in_30], [in_90]
        row["lifetime_orders"] = [1]
        row["last_order_ts"] = [STALE_LAST_ORDER]
        row["recent_product_ids"] = [["p00003"]]
        rows.append(row)
    rest = frame[frame["customer_id"] != STALE]
    return rest, pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def ci(tmp_path_factory, redis_url, postgres_dsn):
    data_dir = tmp_path_factory.mktemp("ci_store")
    declared = sources(strict=True)
    frames = generate_store(declared, data_dir, END, customers=40, products=25, days=90)
    activity, stale = stale_customer_history(
        frames["customer_activity"], declared["customer_activity"]
    )
    for f in declared["customer_activity"].path(data_dir).glob("*.parquet"):
        f.unlink()
    write_source(activity, declared["customer_activity"], data_dir)
    write_source(stale, declared["customer_activity"], data_dir, suffix="-stale")
    with claimed_redis_db(redis_url) as db_url, scratch_postgres_db(postgres_dsn) as pg_url:
        env = profile_env(
            "redis",
            data_dir,
            base={
                "REDIS_CONNECTION_STRING": redis_connection_string(db_url),
                "SHOPFEAST_REGISTRY_URL": pg_url,
            },
        )
        outputs = {}
        for step, args in (
            ("plan", ["plan"]),
            ("apply", ["apply"]),
            ("materialize", ["materialize-incremental", END.isoformat()]),
        ):
            code, out = run_feast_cli(PROFILE, args, env)
            assert code == 0, f"feast {step} failed:\n{out}"
            outputs[step] = out
        with pytest.MonkeyPatch.context() as mp:
            for k in ("SHOPFEAST_DATA_DIR", "REDIS_CONNECTION_STRING", "SHOPFEAST_REGISTRY_URL"):
                mp.setenv(k, env[k])
            store = feast_store.open_store("redis", data_dir)
            yield {"env": env, "store": store, "outputs": outputs, "redis": db_url}


def sample_entities() -> tuple[list[str], list[str]]:
    customers = [STALE, "c00001", "c00007", "c00013", "c00021", "c00039", "nobody"]
    products = ["p00000", "p00004", "p00011", "p00024", "unknown-product"]
    return customers, products


COLLECTIONS = ["k00000", "k00003", "k00024", "unknown-collection"]


def entity_frame(store, service, customers: list[str], products: list[str]) -> pd.DataFrame:
    keys = set().union(*(join_keys(store, p.name) for p in service.feature_view_projections))
    if keys == {"collection_id"}:
        rows = [{"collection_id": k} for k in COLLECTIONS]
    elif keys == {"customer_id"}:
        rows = [{"customer_id": c} for c in customers]
    elif keys == {"product_id"}:
        rows = [{"product_id": p} for p in products]
    else:
        rows = [{"customer_id": c, "product_id": p} for c in customers for p in products]
    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = READ_AT
    for name in request_fields(store, service) - {"event_timestamp"}:  # one value per row
        frame[name] = [0.125 * (i % 7) for i in range(len(frame))]
    return frame


def request_fields(store, service) -> set[str]:
    """The request-source fields a service's on-demand views read."""
    names = set()
    for p in service.feature_view_projections:
        if p.name in {v.name for v in store.list_on_demand_feature_views()}:
            odfv = store.get_on_demand_feature_view(p.name)
            for source in odfv.source_request_sources.values():
                names.update(f.name for f in source.schema)
    return names


def join_keys(store, view: str) -> set[str]:
    """The join keys a view (or an on-demand view, through its sources) needs."""
    declared = sources(strict=True)
    if view in declared:
        return set(declared[view].join_keys)
    odfv = store.get_on_demand_feature_view(view)
    return set().union(*(join_keys(store, p) for p in odfv.source_feature_view_projections))


def same(a, b) -> bool:
    """Equal as served values: nulls alike, timestamps at Feast's online precision (seconds)."""
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _norm(v):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, datetime)):
        return int(pd.Timestamp(v).timestamp() // 1)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer, float, np.floating)):
        return float(v)
    return v


@pytest.mark.parametrize("service_name", SERVICES)
def test_online_equals_offline(ci, service_name: str) -> None:
    store = ci["store"]
    service = store.get_feature_service(service_name)
    customers, products = sample_entities()
    entities = entity_frame(store, service, customers, products)
    offline = store.get_historical_features(entity_df=entities, features=service).to_df()
    assert len(offline) == len(entities)  # one row per entity row
    keys = [c for c in ("customer_id", "product_id", "collection_id") if c in entities.columns]
    offline = offline.sort_values(keys).reset_index(drop=True)
    entities = entities.sort_values(keys).reset_index(drop=True)
    rows = entities.to_dict("records")
    online = store.get_online_features(features=service, entity_rows=rows).to_dict()
    features = [f.name for p in service.feature_view_projections for f in p.features]
    assert features
    compared = 0
    for name in features:
        for i in range(len(rows)):
            assert same(online[name][i], offline[name][i]), (
                f"{service_name} {name} {rows[i]}: online {online[name][i]!r} "
                f"!= offline {offline[name][i]!r}"
            )
            compared += _norm(offline[name][i]) is not None
    assert compared > len(features)  # real values were compared, not only nulls


def test_collection_match_is_compared_on_shared_and_unshared_pairs(ci) -> None:
    """test_online_equals_offline's sample for ranking_model_v4 holds candidates that share a
    collection with the customer's recent purchases and candidates that do not, so the equality
    it checks covers both answers of collection_match (its values are the same both ways)."""
    store = ci["store"]
    service = store.get_feature_service("ranking_model_v4")
    customers, products = sample_entities()
    entities = entity_frame(store, service, customers, products)
    offline = store.get_historical_features(entity_df=entities, features=service).to_df()
    online = store.get_online_features(
        features=service, entity_rows=offline[list(entities.columns)].to_dict("records")
    ).to_dict()
    assert set(offline["shares_collection"]) == {0, 1}
    for name in ("shares_collection", "shared_collections", "shared_collection_share"):
        for i in range(len(offline)):
            assert same(online[name][i], offline[name].iloc[i]), (name, i)


def test_every_service_is_compared(ci) -> None:
    assert sorted(s.name for s in ci["store"].list_feature_services()) == sorted(SERVICES)


def test_plan_showed_the_changes_and_materialize_loaded_redis(ci) -> None:
    assert "customer_activity" in ci["outputs"]["plan"]
    client = redis.Redis.from_url(ci["redis"])
    pairs = sources()["customer_product_history"]
    happened = pd.read_parquet(
        pairs.path(ci["env"]["SHOPFEAST_DATA_DIR"]), columns=list(pairs.join_keys)
    )
    # every generated customer, product and collection, and only the (customer, product) pairs
    # that happened
    assert client.dbsize() == 40 + 25 + 25 + len(happened.drop_duplicates())


def test_second_apply_is_a_noop(ci) -> None:
    """Re-applying unchanged definitions changes no definition, no infra, no watermark.

    Feast 0.67 compares a stored view (which has materialization intervals) with the repo's
    (which has none), finds them unequal and then reports the only field that differs, the
    creation timestamps Feast stamps on the embedded batch source, as an update. That is checked
    to be the only "change" plan sees, and apply keeps every definition and interval.
    """
    store = ci["store"]
    before = registry_snapshot(store)
    intervals = {v.name: v.materialization_intervals for v in store.list_feature_views()}
    assert all(intervals.values())
    diff = repo_plan(store, ci["env"])
    for obj in diff.feast_object_diffs:
        if obj.transition_type.name == "UNCHANGED":
            continue
        assert obj.transition_type.name == "UPDATE", (obj.name, obj.transition_type)
        # a real-time view's push source embeds its batch source, so it shows the same stamps
        names = [p.property_name for p in obj.feast_object_property_diffs]
        assert names in (["batch_source"], ["batch_source", "stream_source"]), names
        for p in obj.feast_object_property_diffs:
            old, new = type(p.val_existing)(), type(p.val_declared)()
            old.CopyFrom(p.val_existing), new.CopyFrom(p.val_declared)
            old.ClearField("meta"), new.ClearField("meta")
            if old.HasField("batch_source"):  # a push source: its batch source's stamps too
                old.batch_source.ClearField("meta"), new.batch_source.ClearField("meta")
            assert old == new, obj.name
    code, out = run_feast_cli(PROFILE, ["apply"], ci["env"])
    assert code == 0, out
    assert "No changes to infrastructure" in out or "Created" not in out, out
    store.refresh_registry()
    assert registry_snapshot(store) == before
    after = {v.name: v.materialization_intervals for v in store.list_feature_views()}
    assert after == intervals


def repo_plan(store, env):
    """Feast's own plan of the repo against the registry (the diff `feast plan` prints)."""
    from feast.repo_operations import _get_repo_contents

    from shopconfig.settings import FEATURE_REPO

    purge_repo_modules()
    with pytest.MonkeyPatch.context() as mp:
        # As `feast plan` does: module names are relative to the repo, the working directory.
        mp.syspath_prepend(str(FEATURE_REPO))
        mp.chdir(FEATURE_REPO)
        mp.setenv("SHOPFEAST_DATA_DIR", env["SHOPFEAST_DATA_DIR"])
        repo = _get_repo_contents(FEATURE_REPO, store.project, store.config)
    registry_diff, infra_diff, _ = store.plan(repo)
    assert not infra_diff.infra_object_diffs or all(
        d.transition_type.name == "UNCHANGED" for d in infra_diff.infra_object_diffs
    )
    return registry_diff


def registry_snapshot(store) -> dict[str, str]:
    """Every definition as a replica loads it, minus what differs by who loaded it when: `meta`
    blocks (Feast stamps `now` on sources it rebuilds from the registry) and the pickled UDF
    bytes (dill output differs between processes; the UDF's source text is compared)."""
    from google.protobuf.json_format import MessageToDict

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("meta", "body")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    objects = [
        *store.list_entities(),
        *store.list_data_sources(),
        *store.list_feature_views(),
        *store.list_on_demand_feature_views(),
        *store.list_feature_services(),
    ]
    out = {}
    for o in objects:
        proto = o.to_proto()
        spec = proto.spec if "spec" in proto.DESCRIPTOR.fields_by_name else proto
        out[f"{type(o).__name__}:{o.name}"] = json.dumps(strip(MessageToDict(spec)), sort_keys=True)
    return out


def test_second_process_sees_the_same_registry(ci) -> None:
    store = ci["store"]
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(FEATURE_REPO.parent)!r})
        from featurestore import store as feast_store
        from tests.featurestore.test_feast_ci_flow import registry_snapshot
        store = feast_store.open_store("redis", {ci["env"]["SHOPFEAST_DATA_DIR"]!r})
        online = store.get_online_features(
            features=store.get_feature_service("customer_360_v1"),
            entity_rows=[{{"customer_id": "c00001", "event_timestamp": {READ_AT.isoformat()!r}}}],
        ).to_dict()
        print(json.dumps({{"registry": registry_snapshot(store), "online": online}}, default=str))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=ci["env"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert theirs["registry"] == registry_snapshot(store)
    mine = store.get_online_features(
        features=store.get_feature_service("customer_360_v1"),
        entity_rows=[{"customer_id": "c00001", "event_timestamp": READ_AT}],
    ).to_dict()
    assert json.loads(json.dumps(mine, default=str)) == theirs["online"]


def test_the_monitor_reads_the_key_expiry_of_pairs_too(ci) -> None:
    """`shopfeast monitor`'s freshness samples customers, products and the (customer, product)
    pairs that happened, and finds each one's Redis key alive; a pair that never happened has
    no key (it reads as zeros through customer_product_affinity)."""
    from pathlib import Path

    from featurestore import observe
    from monitoring import run as monitor_run

    opts = monitor_run.Options(
        data_dir=Path(ci["env"]["SHOPFEAST_DATA_DIR"]),
        profile="redis",
        checks=("freshness",),
        now=pd.Timestamp(END),
        skew_entities=50,
    )
    _, out, _ = monitor_run.monitor(opts)
    expiry = {r["entity"]: r for r in out["freshness"]["results"] if r["check"] == "key_expiry"}
    assert set(expiry) == {"customer", "product", "collection", "customer_product"}
    pairs = expiry["customer_product"]
    assert pairs["sampled"] == 50 and pairs["missing"] == 0 and pairs["min_ttl_hours"] > 24
    keys = ("customer_id", "product_id")
    assert observe.redis_ttls(ci["store"], keys, [("c00001", "unknown-product")]) == [-2]


def test_stale_customer_is_served_what_the_contract_says(ci) -> None:
    """Last order 401 days ago: counts 0 (not null), last_order_ts kept, recency from t."""
    store = ci["store"]
    out = store.get_online_features(
        features=store.get_feature_service("customer_360_v1"),
        entity_rows=[{"customer_id": STALE, "event_timestamp": READ_AT}],
    ).to_dict()
    assert out["orders_7d"] == [0] and out["orders_30d"] == [0] and out["orders_90d"] == [0]
    assert out["lifetime_orders"] == [1]
    served = out["last_order_ts"][0]
    assert int(served.timestamp()) == int(STALE_LAST_ORDER.timestamp())
    expected_days = (READ_AT.replace(microsecond=0) - STALE_LAST_ORDER).total_seconds() / 86400
    assert out["days_since_last_order"][0] == pytest.approx(expected_days, abs=1e-9)
    # The key is alive and its expiry re-armed by the last run, though the rows are old.
    client = redis.Redis.from_url(ci["redis"])
    keys = [k for k in client.scan_iter() if STALE.encode() in k and b"product_id" not in k]
    assert len(keys) == 1
    ttl = client.ttl(keys[0])
    assert 259_200 - 600 < ttl <= 259_200


def test_incremental_day_brings_new_values_online(ci) -> None:
    """The next day's change points reach Redis through a second materialize-incremental."""
    store = ci["store"]
    declared = sources(strict=True)["customer_activity"]
    data_dir = ci["env"]["SHOPFEAST_DATA_DIR"]
    frame = pd.concat(
        [pd.read_parquet(f) for f in declared.path(data_dir).glob("*.parquet")],
        ignore_index=True,
    )
    row = frame[frame["customer_id"] == "c00001"].sort_values("event_timestamp").iloc[[-1]].copy()
    next_day = END + timedelta(days=1)
    row["event_timestamp"] = row["created_timestamp"] = [next_day]
    row["orders_30d"] = [int(row["orders_30d"].iloc[0]) + 5]
    write_source(row, declared, data_dir, suffix="-late")
    code, out = run_feast_cli(PROFILE, ["materialize-incremental", next_day.isoformat()], ci["env"])
    assert code == 0, out
    served = store.get_online_features(
        features=["customer_activity:orders_30d"], entity_rows=[{"customer_id": "c00001"}]
    ).to_dict()
    assert served["orders_30d"] == [int(row["orders_30d"].iloc[0])]


def test_materialize_on_a_dead_redis_says_one_line(ci, monkeypatch) -> None:
    """`shopfeast materialize` with Redis gone: one line naming it and the view, exit 1."""
    from typer.testing import CliRunner

    from shopfeast.cli import app

    for key, value in ci["env"].items():
        if key.startswith(("SHOPFEAST_", "REDIS_")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("REDIS_CONNECTION_STRING", f"127.0.0.1:{free_port()},db=0")
    result = CliRunner().invoke(app, ["materialize", "--profile", "redis", "--full"])
    assert result.exit_code == 1, result.output
    lines = [x for x in result.stderr.splitlines() if not x.startswith("[materialize]")]
    assert "Traceback" not in result.output and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: Redis at 127.0.0.1:") and "materializing view" in lines[0]


def test_a_requests_candidate_pairs_are_one_round_trip_and_unseen_pairs_read_zeros(
    ci, monkeypatch
) -> None:
    """One customer and all 25 products as candidates: the batched reader asks Redis once
    (one write of HMGETs: a key per pair and the customer's key), the result equals Feast's
    `get_online_features` and `get_historical_features` as of the request, and a pair that
    never happened (no key in Redis) reads as zeros."""
    import asyncio

    from redis.asyncio.connection import AbstractConnection

    from featurestore.online import OnlineFeatures

    store = ci["store"]
    customer, products = "c00002", [f"p{i:05d}" for i in range(25)]
    rows = [
        {"customer_id": customer, "product_id": p, "event_timestamp": READ_AT} for p in products
    ]
    sent: list[int] = []  # HMGETs per write to a Redis connection
    send = AbstractConnection.send_packed_command

    async def counted(self, command, *args, **kwargs):
        packed = command if isinstance(command, bytes) else b"".join(command)
        sent.append(packed.count(b"\r\nHMGET\r\n"))
        return await send(self, command, *args, **kwargs)

    async def read():
        online = OnlineFeatures(store, cached_entities=())
        ids = {"customer_id": [customer] * 25, "product_id": products}
        return await online.read(
            "customer_product_history_v1", ids, request={"event_timestamp": READ_AT}
        )

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    batched = asyncio.run(read()).columns
    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    # one round trip: the 25 pairs and the customer (other writes: the connection handshake)
    assert [n for n in sent if n] == [25 + 1]
    service = store.get_feature_service("customer_product_history_v1")
    online = store.get_online_features(features=service, entity_rows=rows).to_dict()
    offline = store.get_historical_features(entity_df=pd.DataFrame(rows), features=service).to_df()
    offline = offline.sort_values("product_id").reset_index(drop=True)
    outputs = list(AFFINITY_OUTPUTS)
    for name in outputs:
        for i in range(25):
            assert same(batched[name][i], online[name][i]), (name, products[i])
            assert same(online[name][i], offline[name][i]), (name, products[i])
    pairs = sources()["customer_product_history"]
    stored = pd.read_parquet(pairs.path(ci["env"]["SHOPFEAST_DATA_DIR"]))
    seen = set(stored.loc[stored["customer_id"] == customer, "product_id"])
    assert 0 < len(seen) < 25
    for i, p in enumerate(products):
        if p not in seen:
            counts = ("bought_orders_90d", "bought_orders_lifetime", "viewed_30d", "carted_30d")
            assert [online[n][i] for n in counts] == [0, 0, 0, 0], p
