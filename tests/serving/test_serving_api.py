"""Every endpoint against a materialized Redis store (the repo's redis profile), with the API key.

Expected values are never taken from the code under test: features are compared with what
Feast's own `get_online_features` serves, model outputs with the saved model applied to that
matrix through training's `model_matrix`.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime

import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurestore.online import OnlineFeatures
from featurestore.store import open_store
from pipelines.realtime import SOURCES
from serving.app import create_app
from tests.support.serving_support import API_KEY, shared_store
from training.matrix import model_matrix, to_matrix, usable_columns

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = {"X-API-Key": API_KEY}
SERVICES = [
    "churn_model_v1",
    "customer_360_v1",
    "ranking_model_v1",
    "ranking_model_v2",
    "ranking_model_v3",
    "product_360_v1",
    "candidate_customer_v1",
    "candidate_product_v1",
    "candidate_session_v1",
]


@pytest.fixture(scope="session")
def store(request, tmp_path_factory, redis_url, postgres_dsn):
    return shared_store(request, tmp_path_factory, redis_url, postgres_dsn)


@pytest.fixture
def env(store, monkeypatch):
    store.apply_env(monkeypatch)
    return store


@pytest.fixture(scope="module")
def client(store):
    """One app for the module: the environment matters only while it starts."""
    with pytest.MonkeyPatch.context() as mp:
        store.apply_env(mp)
        with TestClient(create_app(store.settings())) as c:
            yield c


@pytest.fixture
def feast_store(env):
    return open_store("redis", env.data_dir)


def latest(store, name: str) -> tuple[dict, object]:
    pointer = json.loads((store.data_dir / "models" / name / "latest.json").read_text())
    return pointer, joblib.load(pointer["model_path"])


def same(a, b) -> bool:
    """Equal as served values: None and NaN alike, floats to 1e-9."""
    if isinstance(a, float) and math.isnan(a):
        a = None
    if isinstance(b, float) and math.isnan(b):
        b = None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


# --- the batched read path equals Feast's get_online_features ----------------------------------


def entity_rows(online: OnlineFeatures, service: str, customers, products) -> dict[str, list]:
    keys = set(online.plan(service).join_keys)
    if keys == {"customer_id"}:
        return {"customer_id": list(customers)}
    if keys == {"product_id"}:
        return {"product_id": list(products)}
    pairs = [(c, p) for c in customers for p in products]
    return {"customer_id": [c for c, _ in pairs], "product_id": [p for _, p in pairs]}


@pytest.mark.parametrize("service", SERVICES)
def test_batched_reads_equal_get_online_features(env, feast_store, service) -> None:
    customers = [*env.customers[:4], "nobody"]
    products = [*env.products[:6], "no-such-product"]
    now = datetime.now(UTC)

    async def read():
        online = OnlineFeatures(feast_store)
        rows = entity_rows(online, service, customers, products)
        n = len(next(iter(rows.values())))
        # request fields: the time for all rows, anything else one value per row
        request = {
            name: now if name == "event_timestamp" else [0.25 * (i % 5) for i in range(n)]
            for name in online.plan(service).request_fields
        }
        # twice: the second read of product views comes from the in-memory cache
        first = await online.read(service, rows, request)
        second = await online.read(service, rows, request)
        return online, rows, request, first, second

    online, rows, request, first, second = asyncio.run(read())
    n = len(next(iter(rows.values())))
    extra = {k: v if isinstance(v, list) else [v] * n for k, v in request.items()}
    theirs = feast_store.get_online_features(
        feast_store.get_feature_service(service), {**rows, **extra}
    ).to_dict()
    for name in extra:  # Feast echoes request fields back; the service's features are compared
        theirs.pop(name, None)
    assert set(first.columns) == set(theirs)
    compared = 0
    for mine in (first, second):
        for name, values in theirs.items():
            for i, v in enumerate(values):
                assert same(mine.columns[name][i], v), (service, name, i, mine.columns[name][i], v)
                compared += v is not None
    assert compared > 0
    # a view's row is found exactly when its entity is a known one; a view keyed by several
    # entities (the customer x product history) is sparse: found only for known entities, and
    # not for every pair of them (pairs that never happened have no row)
    unknown = ("nobody", "no-such-product")
    for vp in online.plan(service).views:
        known = [all(rows[k][i] not in unknown for k in vp.join_keys) for i in range(n)]
        if len(vp.join_keys) == 1:
            assert first.found[vp.view.name] == known
        else:
            assert all(k or not f for f, k in zip(first.found[vp.view.name], known, strict=True))


def test_prefetch_reads_several_services_in_one_round_trip(env, feast_store, monkeypatch) -> None:
    """A recommendation's customer views (candidates, session, the ranker's) come from one
    prefetch: the reads after it send nothing to Redis and equal reads without it."""
    import featurestore.online as online_module

    services = ["candidate_customer_v1", "candidate_session_v1", "ranking_model_v3"]
    customers = [env.customers[3]]
    now = datetime.now(UTC)
    sent: list[int] = []
    real = online_module._send_and_read

    async def counting(client, commands):
        sent.append(len(commands))
        return await real(client, commands)

    async def read(prefetch: bool):
        online = OnlineFeatures(feast_store)
        memo: dict = {}
        if prefetch:
            await online.prefetch(services, {"customer_id": customers}, memo)
        before = len(sent)
        out = [
            (await online.read(s, {"customer_id": customers}, {"event_timestamp": now}, memo=memo))
            for s in services
        ]
        return out, len(sent) - before

    monkeypatch.setattr(online_module, "_send_and_read", counting)
    with_prefetch, trips = asyncio.run(read(True))
    assert sent[0] == 1  # one key: the views of one hash in one HMGET
    assert trips == 0
    without, trips = asyncio.run(read(False))
    assert trips == 3
    for a, b in zip(with_prefetch, without, strict=True):
        assert a.columns.keys() == b.columns.keys() and a.found == b.found
        for name, values in b.columns.items():
            assert all(same(x, y) for x, y in zip(a.columns[name], values, strict=True)), name


def test_fast_matrix_equals_training_matrix(env, feast_store) -> None:
    now = datetime.now(UTC)
    for service in ("churn_model_v1", "ranking_model_v1"):
        rows = entity_rows(
            OnlineFeatures(feast_store), service, env.customers[:5], env.products[:8]
        )
        n = len(next(iter(rows.values())))
        frame = feast_store.get_online_features(
            feast_store.get_feature_service(service), {**rows, "event_timestamp": [now] * n}
        ).to_dict()
        cols = usable_columns(pd.DataFrame(frame), exclude={"customer_id", "product_id"})
        expected = model_matrix(pd.DataFrame(frame), cols).to_numpy()
        got = to_matrix(frame, [*cols, "not_a_feature"], n)
        np.testing.assert_array_equal(got[:, :-1], expected)
        assert np.isnan(got[:, -1]).all()


# --- health, readiness, key ---------------------------------------------------------------------


def test_health_and_ready_need_no_key(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert all(c["ok"] for c in checks.values())
    assert checks["catalog"]["products"] == len(
        client.app.state.resources.catalog.state.catalog.product_ids
    )


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/features/customers/c00001", None),
        ("GET", "/features/products/p00001", None),
        ("POST", "/features/batch", {"entity": "customer", "ids": ["c00001"]}),
        ("POST", "/predict/churn", {"customer_id": "c00001"}),
        ("POST", "/recommendations", {"customer_id": "c00001", "k": 3}),
        ("GET", "/metrics", None),
    ],
)
def test_api_key_guards_every_data_endpoint(client, method, path, body) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert client.request(method, path, json=body, headers=KEY).status_code == 200


def test_no_key_configured_means_open(env) -> None:
    with TestClient(create_app(env.settings(api_key=None))) as c:
        assert c.post("/predict/churn", json={"customer_id": env.customers[1]}).status_code == 200


# --- features -----------------------------------------------------------------------------------


def test_customer_features_are_what_feast_serves(client, env, feast_store) -> None:
    cid = env.customers[3]
    r = client.get(f"/features/customers/{cid}", headers=KEY)
    assert r.status_code == 200
    body = r.json()
    assert body["feature_service"] == "customer_360_v1"
    theirs = feast_store.get_online_features(
        feast_store.get_feature_service("customer_360_v1"),
        {"customer_id": [cid], "event_timestamp": [datetime.now(UTC)]},
    ).to_dict()
    stored = [
        f.name
        for v in ("customer_activity", "customer_profile", "customer_reviews")
        for f in feast_store.get_feature_view(v).features
    ]
    for name in stored:
        value = theirs[name][0]
        if isinstance(value, datetime):
            value = value.isoformat()
        assert same(body["features"][name], value), name
    assert body["feature_age_seconds"] > 0
    assert "birth_year" not in body["features"]


@pytest.mark.parametrize("path", ["/features/customers/nobody", "/features/products/nothing"])
def test_unknown_ids_are_404(client, path) -> None:
    r = client.get(path, headers=KEY)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_the_catalog_holds_the_online_prices(client, feast_store) -> None:
    """The category_fit source's price levels come from the prices Feast serves online
    (candidate_product_v1 reads product_price): every product's, none made up."""
    catalog = client.app.state.resources.catalog.state.catalog
    ids = catalog.product_ids.tolist()
    theirs = feast_store.get_online_features(
        ["product_stats:product_price"], [{"product_id": p} for p in ids]
    ).to_dict()["product_price"]
    got = dict(zip(ids, catalog.price.tolist(), strict=True))
    assert all(same(got[p], v) for p, v in zip(ids, theirs, strict=True))
    assert any(v is not None for v in theirs) and set(catalog.levels) == set(ids)


def test_product_features(client, env, feast_store) -> None:
    pid = env.products[2]
    body = client.get(f"/features/products/{pid}", headers=KEY).json()
    theirs = feast_store.get_online_features(
        feast_store.get_feature_service("product_360_v1"),
        {"product_id": [pid], "event_timestamp": [datetime.now(UTC)]},
    ).to_dict()
    assert same(body["features"]["product_price"], theirs["product_price"][0])
    assert body["features"]["copurchase_product_ids"] == theirs["copurchase_product_ids"][0]


def test_batch_features(client, env) -> None:
    ids = [env.customers[0], "nobody", env.customers[5]]
    r = client.post("/features/batch", headers=KEY, json={"entity": "customer", "ids": ids})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["id"] for x in results] == ids
    assert [x["found"] for x in results] == [True, False, True]
    assert results[1]["features"] is None and "orders_30d" in results[0]["features"]


@pytest.mark.parametrize(
    "body",
    [
        {"entity": "customer", "ids": []},
        {"entity": "order", "ids": ["x"]},
        {"entity": "customer", "ids": [f"c{i}" for i in range(101)]},
        {"entity": "customer", "ids": ["x" * 500]},
    ],
)
def test_batch_bounds(client, body) -> None:
    r = client.post("/features/batch", headers=KEY, json=body)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"


# --- churn ----------------------------------------------------------------------------------------


def test_churn_prediction_matches_the_saved_model(client, env, feast_store) -> None:
    cid = env.customers[7]
    r = client.post("/predict/churn", headers=KEY, json={"customer_id": cid})
    assert r.status_code == 200
    body = r.json()
    pointer, model = latest(env, "churn")
    frame = feast_store.get_online_features(
        feast_store.get_feature_service("churn_model_v1"),
        {"customer_id": [cid], "event_timestamp": [datetime.now(UTC)]},
    ).to_df()
    expected = model.predict_proba(model_matrix(frame, pointer["input_columns"]))[0, 1]
    # the request time moves the recency features between the two reads: a small tolerance
    assert body["churn_probability"] == pytest.approx(expected, abs=1e-4)
    assert body["churn_label"] == int(body["churn_probability"] >= pointer["threshold"])
    assert body["threshold"] == pointer["threshold"]
    assert body["model"] == {
        "name": "churn",
        "version": pointer["version"],
        "feature_service": "churn_model_v1",
    }
    assert body["feature_age_seconds"] >= max(body["feature_age_by_view"].values()) - 1e-6
    assert body["feature_age_seconds"] > 0


def test_churn_unknown_customer_is_404(client) -> None:
    assert (
        client.post("/predict/churn", headers=KEY, json={"customer_id": "nobody"}).status_code
        == 404
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'{"customer_id": 12}',
        b'{"customer": "c1"}',
        b'{"customer_id": "c1", "extra": 1}',
        b'{"customer_id": ""}',
    ],
)
def test_malformed_requests_are_422_json(client, raw) -> None:
    r = client.post(
        "/predict/churn", headers={**KEY, "content-type": "application/json"}, content=raw
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "invalid_request"
    assert "Traceback" not in r.text


def test_large_bodies_are_refused(client) -> None:
    big = json.dumps({"customer_id": "c1", "pad": "x" * 100_000})
    r = client.post(
        "/predict/churn", headers={**KEY, "content-type": "application/json"}, content=big
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


# --- recommendations --------------------------------------------------------------------------


def test_recommendations_are_ranked_by_the_ranker(client, env, feast_store, monkeypatch) -> None:
    cid = env.customers[4]
    online = client.app.state.resources.online
    requests = []  # what the scorer asked the ranking service for (our code, not Feast's)
    real_read = online.read

    async def read(service, entities, request=None, **kw):
        if kw.get("operation") == "ranking":
            requests.append((list(entities["product_id"]), request))
        return await real_read(service, entities, request, **kw)

    real_candidates = online.read_candidates  # the ranker's matrix from product blocks

    async def read_candidates(service, customer, product_key, ids, request, *args, **kw):
        if kw.get("operation") == "ranking":
            requests.append((list(ids), request))
        return await real_candidates(service, customer, product_key, ids, request, *args, **kw)

    monkeypatch.setattr(online, "read", read)
    monkeypatch.setattr(online, "read_candidates", read_candidates)
    r = client.post(
        "/recommendations",
        headers=KEY,
        json={"customer_id": cid, "k": 5, "exclude_purchased": True},
    )
    assert r.status_code == 200
    body = r.json()
    items = body["items"]
    assert not body["cold_start"] and len(items) == 5
    assert [i["rank"] for i in items] == [1, 2, 3, 4, 5]
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    assert len({i["product_id"] for i in items}) == 5
    sources = {"session", "copurchase", "category_fit", "category_popular", "popular"}
    assert {i["source"] for i in items} <= sources
    recent = (
        feast_store.get_online_features(
            ["customer_activity:recent_product_ids"], [{"customer_id": cid}]
        ).to_dict()["recent_product_ids"][0]
        or []
    )
    assert not {i["product_id"] for i in items} & set(recent)
    frequent = (
        feast_store.get_online_features(
            ["customer_activity:frequent_product_ids"], [{"customer_id": cid}]
        ).to_dict()["frequent_product_ids"][0]
        or []
    )
    assert set(frequent) - set(recent), "the test customer should have older most-bought products"
    # exclude_purchased leaves out the most-bought products too (the `frequent` source's)
    assert not {i["product_id"] for i in items} & set(frequent)
    # the scores are the saved ranker's on Feast's own feature rows, with the retrieval score
    # recomputed here from the recent products' co-purchase lists as Feast serves them
    pointer, model = latest(env, "ranking")
    assert pointer["feature_service"] == "ranking_model_v3"
    ids = [i["product_id"] for i in items]
    assert recent, "the test customer should have recent products"
    lists = feast_store.get_online_features(
        ["product_copurchase:copurchase_product_ids", "product_copurchase:copurchase_scores"],
        [{"product_id": p} for p in dict.fromkeys(recent)],
    ).to_dict()
    retrieval = dict.fromkeys(ids, 0.0)
    for neighbours, scores_ in zip(
        lists["copurchase_product_ids"], lists["copurchase_scores"], strict=True
    ):
        for q, sc in zip(neighbours or [], scores_ or [], strict=False):  # as the generator
            if q in retrieval:
                retrieval[q] += sc
    frame = feast_store.get_online_features(
        feast_store.get_feature_service(pointer["feature_service"]),
        {
            "customer_id": [cid] * len(ids),
            "product_id": ids,
            "event_timestamp": [datetime.now(UTC)] * len(ids),
            "candidate_copurchase_score": [retrieval[p] for p in ids],
        },
    ).to_df()
    assert frame["recent_copurchase_score"].tolist() == [retrieval[p] for p in ids]
    # every candidate the scorer ranked got the retrieval score recomputed here (not only the top)
    ((candidates, request),) = requests
    assert len(candidates) == body["candidates_scored"]
    lists_by_id = dict(
        zip(
            dict.fromkeys(recent),
            zip(lists["copurchase_product_ids"], lists["copurchase_scores"], strict=True),
            strict=True,
        )
    )
    expected_retrieval = []
    for p in candidates:
        total = 0.0
        for ids_, scores_ in lists_by_id.values():
            for q, sc in zip(ids_ or [], scores_ or [], strict=False):
                total += sc if q == p else 0.0
        expected_retrieval.append(total)
    assert request["candidate_copurchase_score"] == pytest.approx(expected_retrieval)
    assert any(expected_retrieval)  # some candidate came from co-purchases
    expected = model.predict(model_matrix(frame, pointer["input_columns"]))
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert body["model"]["version"] == pointer["version"]
    assert body["candidates_scored"] >= 5


def test_the_live_session_seeds_candidates(client, env, feast_store) -> None:
    """What the stream wrote to customer_session (carted, then viewed) is offered first, with
    what is bought together with it, as source `session`."""
    cid = env.customers[-3]
    carted, viewed = env.products[7], env.products[9]
    now = pd.Timestamp.now(tz="UTC")
    row = {f.name: None for f in SOURCES["customer_session"].features}
    row.update(
        customer_id=cid,
        event_timestamp=now,
        created_timestamp=now,
        session_id="s-live",
        session_events=3,
        session_views=2,
        session_carts=1,
        last_event_ts=now.floor("s"),
        recent_carted_product_ids=[carted],
        recent_viewed_product_ids=[viewed, carted],
    )
    feast_store.write_to_online_store("customer_session", pd.DataFrame([row]))
    body = client.post(
        "/recommendations",
        headers=KEY,
        json={"customer_id": cid, "k": 100, "exclude_purchased": False},
    ).json()
    source = {i["product_id"]: i["source"] for i in body["items"]}
    assert source[carted] == source[viewed] == "session"
    lists = feast_store.get_online_features(
        ["product_copurchase:copurchase_product_ids", "product_copurchase:copurchase_scores"],
        [{"product_id": carted}, {"product_id": viewed}],
    ).to_dict()
    near = {  # as the generator pairs them (the synthetic store's lists differ in length)
        q
        for ids, scores in zip(
            lists["copurchase_product_ids"], lists["copurchase_scores"], strict=True
        )
        for q, _ in zip(ids or [], scores or [], strict=False)
    }
    session = {p for p, s in source.items() if s == "session"}
    assert session <= {carted, viewed} | near
    assert len(session) == min(20, len({carted, viewed} | near))  # API_CONFIG.session


def test_unknown_customer_gets_popular_products(client) -> None:
    body = client.post(
        "/recommendations", headers=KEY, json={"customer_id": "brand-new", "k": 4}
    ).json()
    assert body["cold_start"] is True
    assert len(body["items"]) == 4
    assert {i["source"] for i in body["items"]} == {"popular"}
    catalog = client.app.state.resources.catalog.state.catalog
    assert [i["product_id"] for i in body["items"]] == catalog.popular(4)


@pytest.mark.parametrize("k", [0, -1, 101])
def test_k_is_bounded(client, k) -> None:
    r = client.post("/recommendations", headers=KEY, json={"customer_id": "c00001", "k": k})
    assert r.status_code == 422


# --- metrics, errors ---------------------------------------------------------------------------


def test_metrics_after_traffic(client, env) -> None:
    client.post("/predict/churn", headers=KEY, json={"customer_id": env.customers[1]})
    client.get("/features/customers/nobody", headers=KEY)
    text = client.get("/metrics", headers=KEY).text
    assert (
        'shopfeast_http_requests_total{endpoint="/predict/churn",method="POST",status="200"}'
        in text
    )
    assert (
        'shopfeast_http_request_duration_seconds_bucket{endpoint="/predict/churn",le="0.02"}'
        in text
    )
    assert (
        'shopfeast_http_errors_total{endpoint="/features/customers/{customer_id}",'
        'status="404"}' in text
    )
    assert 'shopfeast_online_store_read_duration_seconds_count{operation="churn"}' in text
    pointer, _ = latest(env, "churn")
    assert (
        f'shopfeast_model_info{{feature_service="churn_model_v1",model="churn",'
        f'version="{pointer["version"]}"}} 1.0' in text
    )


def test_unexpected_errors_leave_no_trace(client, monkeypatch) -> None:
    async def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(client.app.state.resources.scorer, "churn", boom)
    raw = TestClient(client.app, raise_server_exceptions=False)  # as a real server answers
    r = raw.post("/predict/churn", headers=KEY, json={"customer_id": "c00001"})
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "secret" not in r.text


def test_metrics_show_freshness_and_the_last_monitor_run(client, env) -> None:
    from pipelines.storage import monitoring_latest

    report = {
        "now": "2025-05-01T06:00:00+00:00",
        "summary": {
            "quality": {"status": "ok", "alerts": 0},
            "drift": {"status": "alert", "alerts": 1},
            "skew": {"status": "not_run"},
        },
        "drift": {
            "results": [
                {
                    "view": "product_stats",
                    "feature": "product_price",
                    "psi": 0.4,
                    "status": "alert",
                },
                {"view": "customer_profile", "feature": "signup_ts", "status": "skipped"},
            ]
        },
        "skew": {
            "results": [{"view": "customer_activity", "feature": "orders_90d", "mismatches": 3}]
        },
        "served": {"results": [{"model": "churn", "feature": "score", "psi": 0.31}]},
        "model": {
            "results": [{"model": "churn", "version": "v9", "roc_auc": 0.61, "test_roc_auc": 0.74}]
        },
    }
    path = monitoring_latest(env.settings().data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    text = client.get("/metrics", headers=KEY).text
    assert 'shopfeast_feature_view_freshness_seconds{view="customer_activity"}' in text
    assert 'shopfeast_monitor_check_status{check="drift"} 2.0' in text
    assert 'shopfeast_monitor_check_status{check="skew"} -1.0' in text
    assert 'shopfeast_monitor_drift_alert{feature="product_price",view="product_stats"} 1.0' in text
    assert 'shopfeast_monitor_drift_psi{feature="product_price",view="product_stats"} 0.4' in text
    assert "signup_ts" not in text  # not judged: no gauge
    assert (
        'shopfeast_monitor_skew_mismatches{feature="orders_90d",view="customer_activity"} 3.0'
        in text
    )
    assert 'shopfeast_monitor_served_psi{feature="score",model="churn"} 0.31' in text
    assert (
        'shopfeast_monitor_model_roc_auc{kind="realised",model="churn",version="v9"} 0.61' in text
    )
    assert 'shopfeast_monitor_model_roc_auc{kind="test",model="churn",version="v9"} 0.74' in text
    stamp = [ln for ln in text.splitlines() if ln.startswith("shopfeast_monitor_last_run_")]
    assert float(stamp[0].split()[-1]) == 1746079200.0  # the run's clock


def test_the_api_logs_what_it_served_without_the_ids(client, env) -> None:
    """The served log (training/served_log.py): each churn answer is a row whose vector, put
    through the saved model, gives the served probability; a recommendation keeps a sample of
    its scored candidates; ids only as keyed digests."""
    import hashlib
    import hmac

    from training import served_log

    served = client.app.state.resources.scorer.served
    data_dir = env.settings().data_dir
    served.flush()
    before = {m: len(served_log.read(data_dir, m)) for m in ("churn", "ranking")}
    customers = env.customers[:12]
    probs = {}
    for cid in customers:
        r = client.post("/predict/churn", headers=KEY, json={"customer_id": cid})
        assert r.status_code == 200
        probs[cid] = r.json()["churn_probability"]
    rec = client.post("/recommendations", headers=KEY, json={"customer_id": customers[0], "k": 5})
    assert rec.status_code == 200 and not rec.json()["cold_start"]
    served.flush()

    key = bytes.fromhex((served_log.log_root(data_dir) / ".key").read_text().strip())
    digest = {hmac.new(key, c.encode(), hashlib.sha256).hexdigest()[:32]: c for c in customers}
    churn = served_log.read(data_dir, "churn").iloc[before["churn"] :]
    assert len(churn) == len(customers)
    pointer, model = latest(env, "churn")
    cols = [f"x:{c}" for c in pointer["input_columns"]]
    again = model.predict_proba(churn[cols].to_numpy())[:, 1]
    for (_, row), p in zip(churn.iterrows(), again, strict=True):
        cid = digest[row["customer_key"]]
        assert row["score"] == pytest.approx(probs[cid], abs=1e-9) == pytest.approx(p, abs=1e-6)
        assert row["model_version"] == pointer["version"]

    ranking = served_log.read(data_dir, "ranking").iloc[before["ranking"] :]
    scored = rec.json()["candidates_scored"]
    assert len(ranking) == min(scored, env.settings().served_log_rows_per_request)
    assert ranking["request_id"].nunique() == 1 and ranking["rank"].between(1, scored).all()
    rpointer, ranker = latest(env, "ranking")
    rcols = [f"x:{c}" for c in rpointer["input_columns"]]
    assert np.allclose(ranker.predict(ranking[rcols].to_numpy()), ranking["score"], atol=1e-5)
    top = {i["product_id"]: i["score"] for i in rec.json()["items"]}
    for _, row in ranking[ranking["rank"] <= 5].iterrows():
        assert row["score"] == pytest.approx(sorted(top.values(), reverse=True)[row["rank"] - 1])

    for part in served_log.log_root(data_dir).rglob("*.parquet"):
        raw = part.read_bytes()
        assert not any(c.encode() in raw for c in customers)


def test_a_missing_service_is_asked_for_once_a_minute(feast_store) -> None:
    """has_service: a service the registry lacks is remembered as missing (a request path asks
    on every call; each registry miss costs milliseconds), and asked for again after recheck_s."""
    online = OnlineFeatures(feast_store)
    assert online.has_service("churn_model_v1")
    assert not online.has_service("no_such_service_v1")
    asked = []

    def plan(name):
        asked.append(name)
        raise AssertionError("the registry was asked again")

    online.plan = plan
    assert not online.has_service("no_such_service_v1")
    assert asked == []
    with pytest.raises(AssertionError):
        online.has_service("no_such_service_v1", recheck_s=0.0)
    assert asked == ["no_such_service_v1"]
