"""The API's description: its metrics labels, its security schemes, and every status each
route can answer, declared (on an app that has not started) and each one provoked for real (on
the served store): the document and the API say the same, in both directions. The fuzz test
(test_fuzz.py) adds that no generated request gets a status the document does not declare.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from serving import prometheus
from serving.app import create_app
from shopconfig.settings import ID_MAX_LENGTH, Settings
from tests.support.jwt_support import AUDIENCE, ISSUER, bearer, make_issuer, token
from tests.support.serving_support import END, free_port, shared_store


def _count(endpoint: str, status: str) -> float:
    value = prometheus.REGISTRY.get_sample_value(
        "shopfeast_http_requests_total", {"endpoint": endpoint, "method": "GET", "status": status}
    )
    return value or 0.0


def test_metrics_label_the_documents_by_their_path(tmp_path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path)), raise_server_exceptions=False)
    before = {p: _count(p, "200") for p in ("/docs", "/openapi.json")}
    unmatched = _count("unmatched", "404")
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
    assert client.get("/no/such/path").status_code == 404
    for path, n in before.items():
        assert _count(path, "200") == n + 1, path
    assert _count("unmatched", "404") == unmatched + 1  # a 404 is never labelled by its raw path
    assert 'endpoint="/no/such/path"' not in prometheus.render().decode()


# What each route can answer besides 200: the middlewares' 413 (a body over the limit) and 400 (a
# Host not trusted, when hosts are set) everywhere; behind a credential 401 and 403 (the scope);
# 422 for a bad request, 503 for a store or registry down; 404 where one id is looked up.
GUARDED = {"401", "403", "413", "422", "503"}
EXPECTED = {
    ("get", "/health"): {"413"},
    ("get", "/ready"): {"413", "503"},
    ("get", "/features/customers/{customer_id}"): GUARDED | {"404"},
    ("get", "/features/products/{product_id}"): GUARDED | {"404"},
    ("post", "/features/batch"): GUARDED,  # unknown ids are `found: false`, not a 404
    ("post", "/features/historical"): GUARDED | {"404"},
    ("post", "/predict/churn"): GUARDED | {"404"},
    ("post", "/recommendations"): GUARDED,  # an unknown customer gets the cold-start list
    ("post", "/events"): GUARDED,  # 503: the stream's Redis down
    ("get", "/metrics"): {"401", "403", "413"},
}
SUCCESS = {("post", "/events"): "202"}  # accepted onto the stream; every other route: 200


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {(m, p): op for p, methods in doc["paths"].items() for m, op in methods.items()}


@pytest.mark.parametrize("hosts", [[], ["api.shop.example"]], ids=["any-host", "trusted-hosts"])
def test_openapi_declares_every_status_and_both_schemes(tmp_path, hosts) -> None:
    settings = Settings(data_dir=tmp_path, api_key="k" * 20, trusted_hosts=hosts)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    doc = client.get("/openapi.json", headers={"Host": (hosts or ["testserver"])[0]}).json()
    ops = operations(doc)
    assert set(ops) == set(EXPECTED)
    host = {"400"} if hosts else set()
    for key, statuses in EXPECTED.items():
        responses = ops[key]["responses"]
        assert set(responses) == {SUCCESS.get(key, "200")} | statuses | host, (key, responses)
        for status in statuses | host:
            if key[1] == "/ready" and status == "503":
                continue  # /ready's 503 is its own body: which check failed
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (key, status)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["api_key"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer_jwt"] == {"type": "http", "scheme": "bearer"}
    either = [{"api_key": []}, {"bearer_jwt": []}]  # OpenAPI: any one of the list
    for key in EXPECTED:
        security = ops[key].get("security")
        if key[1] == "/health":
            assert not security
        else:  # /ready takes one optionally (its details, in production)
            assert sorted(security, key=str) == either, (key, security)
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}


# --- each declared status, provoked -------------------------------------------------------------

TRUSTED = "testserver"  # TestClient's Host
STREAM = "test:openapi-events"


@pytest.fixture(scope="module")
def served(request, tmp_path_factory, redis_url, postgres_dsn):
    """The served store behind the key and bearer JWTs with trusted hosts; and the same app
    with Redis unreachable (a port nobody listens on)."""
    store = shared_store(request, tmp_path_factory, redis_url, postgres_dsn)
    key, jwks = make_issuer(tmp_path_factory.mktemp("jwks"))
    settings = store.settings(
        jwt_jwks_file=jwks,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        trusted_hosts=[TRUSTED],
        stream_redis_url=store.redis_url,
        stream_key=STREAM,  # POST /events appends here; removed after
    )
    dead = free_port()
    clients = []
    with pytest.MonkeyPatch.context() as mp:
        for redis in (None, f"127.0.0.1:{dead},db=0"):
            store.apply_env(mp, **({"REDIS_CONNECTION_STRING": redis} if redis else {}))
            down = {"stream_redis_url": f"redis://127.0.0.1:{dead}/0"} if redis else {}
            app = create_app(settings.model_copy(update=down))
            clients.append(TestClient(app, raise_server_exceptions=False))
            clients[-1].__enter__()
    yield store, key, *clients
    for c in clients:
        c.__exit__(None, None, None)
    Redis.from_url(store.redis_url).delete(STREAM)


def requests(store) -> dict[tuple[str, str], dict[str, tuple[str, str, object]]]:
    """Per operation: a good request, and where the route takes input a bad one (422) and one
    for an id nobody has (a 404, or 200 where the route answers unknown ids)."""
    c, p, nobody = store.customers[0], store.products[0], "C9999999"
    window = {"start": (END - timedelta(days=2)).isoformat(), "end": END.isoformat()}
    history = {"entity": "customer", "ids": [c], "feature_service": "customer_360_v1", **window}
    too_long = "x" * (ID_MAX_LENGTH + 1)
    event = {
        "event_id": "openapi-1",
        "customer_id": c,
        "session_id": "s-openapi",
        "event_type": "product_view",
        "event_ts": END.isoformat(),
        "product_id": p,
    }
    return {
        ("get", "/health"): {"good": ("GET", "/health", None)},
        ("get", "/ready"): {"good": ("GET", "/ready", None)},
        ("get", "/features/customers/{customer_id}"): {
            "good": ("GET", f"/features/customers/{c}", None),
            "bad": ("GET", f"/features/customers/{too_long}", None),
            "unknown": ("GET", f"/features/customers/{nobody}", None),
        },
        ("get", "/features/products/{product_id}"): {
            "good": ("GET", f"/features/products/{p}", None),
            "bad": ("GET", f"/features/products/{too_long}", None),
            "unknown": ("GET", "/features/products/P9999999", None),
        },
        ("post", "/features/batch"): {
            "good": ("POST", "/features/batch", {"entity": "customer", "ids": [c]}),
            "bad": ("POST", "/features/batch", {"entity": "customer", "ids": []}),
            "unknown": ("POST", "/features/batch", {"entity": "customer", "ids": [nobody]}),
        },
        ("post", "/features/historical"): {
            "good": ("POST", "/features/historical", history),
            "bad": (
                "POST",
                "/features/historical",
                {**history, "end": window["start"], "start": window["end"]},
            ),
            "unknown": ("POST", "/features/historical", {**history, "ids": [nobody]}),
        },
        ("post", "/predict/churn"): {
            "good": ("POST", "/predict/churn", {"customer_id": c}),
            "bad": ("POST", "/predict/churn", {}),
            "unknown": ("POST", "/predict/churn", {"customer_id": nobody}),
        },
        ("post", "/recommendations"): {
            "good": ("POST", "/recommendations", {"customer_id": c, "k": 3}),
            "bad": ("POST", "/recommendations", {"customer_id": c, "k": 0}),
            "unknown": ("POST", "/recommendations", {"customer_id": nobody, "k": 3}),
        },
        ("post", "/events"): {
            "good": ("POST", "/events", {"events": [event]}),
            "bad": ("POST", "/events", {"events": []}),
        },
        ("get", "/metrics"): {"good": ("GET", "/metrics", None)},
    }


@pytest.mark.integration
@pytest.mark.slow
def test_every_declared_status_is_answered_and_no_other(served) -> None:
    store, key, up, down = served
    everything = bearer(token(key, "features:read predict events:write metrics:read"))
    no_scope = {  # a scope, but not the route's
        op: bearer(token(key, "metrics:read" if op == ("post", "/events") else "events:write"))
        for op in requests(store)
    }
    seen: dict[tuple[str, str], set[str]] = {}

    def send(client, op, method, path, body, headers, **extra) -> None:
        r = client.request(method, path, json=body, headers=headers, **extra)
        seen.setdefault(op, set()).add(str(r.status_code))
        if r.status_code >= 400 and not (path == "/ready" and r.status_code == 503):
            assert set(r.json()) == {"error"}, (op, r.status_code, r.text)
            assert {"code", "message"} <= set(r.json()["error"]), (op, r.text)

    for op, reqs in requests(store).items():
        method, path, body = reqs["good"]
        send(up, op, method, path, body, everything)  # 200
        send(up, op, method, path, body, {})  # 401 where a credential is needed
        send(up, op, method, path, body, no_scope[op])  # 403 where a scope is
        over = (520 if path == "/events" else 70) * 1024  # /events takes 500 events: 512 KiB
        send(up, op, method, path, None, everything, content=b"x" * over)  # 413
        send(up, op, method, path, body, {**everything, "Host": "evil.example"})  # 400
        send(down, op, method, path, body, everything)  # 503 where Redis is read
        for kind in ("bad", "unknown"):
            if kind in reqs:
                send(up, op, *reqs[kind], everything)
    # the historical read has no Redis in it: its 503 is the offline store failing
    op = ("post", "/features/historical")
    source = store.data_dir / "features" / "customer_activity"
    aside = source.with_name("customer_activity.aside")
    source.rename(aside)
    try:
        send(up, op, *requests(store)[op]["good"], everything)
    finally:
        aside.rename(source)
    doc = up.get("/openapi.json", headers=everything).json()
    for op, statuses in seen.items():
        declared = set(operations(doc)[op]["responses"])
        assert statuses == declared, (op, sorted(statuses), sorted(declared))
    assert set(seen) == set(operations(doc))
