"""The API as an attacker meets it: no echo of input, no Host-header redirects, trusted hosts,
the API's description and readiness details behind the key in production, bearer JWTs with
scopes per endpoint group, and an audit log that records who asked about how many entities
(never which, never the values)."""

from __future__ import annotations

import json
import time
import unicodedata
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from serving.app import create_app
from serving.schemas import EntityId
from shopconfig.settings import ID_MAX_LENGTH
from tests.support.jwt_support import AUDIENCE, ISSUER, bearer, make_issuer, token
from tests.support.serving_support import API_KEY, shared_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="session")
def store(request, tmp_path_factory, redis_url, postgres_dsn):
    return shared_store(request, tmp_path_factory, redis_url, postgres_dsn)


def client_for(store, **settings) -> TestClient:
    with pytest.MonkeyPatch.context() as mp:
        store.apply_env(mp)
        client = TestClient(create_app(store.settings(**settings)))
        client.__enter__()
    return client


@pytest.fixture(scope="module")
def client(store):
    c = client_for(store)
    yield c
    c.__exit__(None, None, None)


@pytest.mark.parametrize(
    "path", ["/features/customers/{}", "/features/products/{}"], ids=["customer", "product"]
)
def test_404_bodies_do_not_echo_the_caller(client, path) -> None:
    probe = "nobody<script>alert(1)</script>"
    r = client.get(path.format(probe), headers=KEY)
    assert r.status_code == 404 and "nobody" not in r.text and "script" not in r.text
    r = client.post("/predict/churn", json={"customer_id": probe}, headers=KEY)
    assert r.status_code == 404 and "nobody" not in r.text
    hidden = "nobody\u202eevil\x1b[2J"  # bidi override, terminal escape: not an id at all
    r = client.get(path.format(quote(hidden)), headers=KEY)
    assert r.status_code == 422 and "nobody" not in r.text and "\u202e" not in r.text


def test_no_redirect_built_from_the_host_header(client) -> None:
    for headers in ({"Host": "evil.example"}, {"Host": "evil.example", **KEY}):
        r = client.get("/metrics/", headers=headers, follow_redirects=False)
        assert r.status_code in (401, 404), r.status_code
        assert "location" not in r.headers and "evil" not in r.text


def test_trusted_hosts(store) -> None:
    c = client_for(store, trusted_hosts=["api.shop.example", "*.internal.example"])
    try:
        r = c.get("/health", headers={"Host": "evil.example"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
        assert c.get("/health", headers={"Host": "api.shop.example"}).status_code == 200
        assert c.get("/health", headers={"Host": "a.internal.example:8000"}).status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_production_keeps_docs_and_readiness_details_behind_the_key(store) -> None:
    c = client_for(store, env="production")
    try:
        for path in ("/docs", "/openapi.json"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers=KEY).status_code == 200
        assert "/features/customers/{customer_id}" in c.get("/openapi.json", headers=KEY).text
        bare = c.get("/ready").json()
        assert bare["status"] == "ready"
        assert all(set(check) == {"ok"} for check in bare["checks"].values())
        full = c.get("/ready", headers=KEY).json()
        assert full["checks"]["models"]["churn"] and "products" in full["checks"]["catalog"]
    finally:
        c.__exit__(None, None, None)


# --- bearer JWTs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    """A local issuer: an RSA key pair, its public half as a JWKS file."""
    return make_issuer(tmp_path_factory.mktemp("jwks"))


@pytest.fixture(scope="module")
def jwt_client(store, issuer, tmp_path_factory):
    _, jwks = issuer
    log = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    c = client_for(
        store,
        jwt_jwks_file=jwks,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        audit_log=str(log),
        audit_max_bytes=4096,
        audit_backups=3,
    )
    yield c, log
    c.__exit__(None, None, None)


def test_scopes_per_endpoint_group(jwt_client, issuer, store) -> None:
    c, _ = jwt_client
    key, _ = issuer
    reader = bearer(token(key, "features:read"))
    customer = store.customers[0]
    assert c.get(f"/features/customers/{customer}", headers=reader).status_code == 200
    r = c.post("/predict/churn", json={"customer_id": customer}, headers=reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert 'scope="predict"' in r.headers["www-authenticate"]
    both = bearer(token(key, "features:read predict"))
    assert c.post("/predict/churn", json={"customer_id": customer}, headers=both).status_code == 200
    scp = bearer(token(key, "", scp=["metrics:read"]))  # the `scp` list form (Okta, Entra)
    assert c.get("/metrics", headers=scp).status_code == 200
    assert c.get("/metrics", headers=reader).status_code == 403
    assert c.get(f"/features/customers/{customer}", headers=KEY).status_code == 200  # the key
    # POST /events needs events:write (an event every row rule refuses: nothing is appended)
    body = {"events": [{"event_id": "e1", "event_type": "hover"}]}
    r = c.post("/events", json=body, headers=both)
    assert r.status_code == 403 and 'scope="events:write"' in r.headers["www-authenticate"]
    writer = bearer(token(key, "events:write"))
    r = c.post("/events", json=body, headers=writer)
    assert r.status_code == 202 and r.json()["accepted"] == 0, r.text


@pytest.mark.parametrize(
    "make",
    [
        lambda key: token(key, "features:read", exp=int(time.time()) - 120),
        lambda key: token(key, "features:read", aud="another-api"),
        lambda key: token(key, "features:read", iss="https://evil.example"),
        lambda key: token(rsa.generate_private_key(public_exponent=65537, key_size=2048), "x"),
        lambda key: jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE}, None, "none"),
        lambda key: jwt.encode(
            {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
            "secret",
            algorithm="HS256",
            headers={"kid": "test-1"},
        ),
        lambda key: "not-a-jwt",
    ],
    ids=["expired", "audience", "issuer", "other-key", "alg-none", "hs256", "garbage"],
)
def test_bad_tokens_are_401(jwt_client, issuer, store, make) -> None:
    c, _ = jwt_client
    key, _ = issuer
    r = c.get(f"/features/customers/{store.customers[0]}", headers=bearer(make(key)))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_no_credentials_is_401(jwt_client) -> None:
    c, _ = jwt_client
    assert c.post("/features/batch", json={"entity": "customer", "ids": ["a"]}).status_code == 401


def test_audit_log_says_who_what_how_many_never_which(jwt_client, issuer, store) -> None:
    c, log = jwt_client
    key, _ = issuer
    ids = store.customers[:7]
    t = bearer(token(key, "features:read", sub="svc-audit"))
    assert c.post("/features/batch", json={"entity": "customer", "ids": ids}, headers=t).is_success
    assert c.post("/predict/churn", json={"customer_id": ids[0]}, headers=t).status_code == 403
    lines = []
    for path in sorted(log.parent.glob("audit.jsonl*")):
        lines += [json.loads(x) for x in path.read_text().splitlines()]
    mine = [x for x in lines if x["principal"]["username"] == "svc-audit"]
    batch = next(x for x in mine if x["action"]["path"] == "/features/batch")
    assert batch["entities"] == 7 and batch["status"] == 200 and batch["outcome"] == "success"
    assert batch["principal"]["auth_type"] == "jwt" and batch["timestamp"]
    denied = next(x for x in mine if x["action"]["path"] == "/predict/churn")
    assert denied["status"] == 403 and denied["outcome"] == "denied"
    text = "".join(p.read_text() for p in log.parent.glob("audit.jsonl*"))
    assert not any(i in text for i in ids)  # never which entities
    assert "Bearer" not in text and "eyJ" not in text and API_KEY not in text  # no secrets
    for _ in range(40):  # 4 KiB per file: the log rotates, keeping 3 old files
        c.get("/metrics", headers=KEY)
    assert len(list(log.parent.glob("audit.jsonl.*"))) == 3


def test_a_body_that_is_not_json_text_is_422(client) -> None:
    r = client.post(
        "/features/batch",
        content=b'{"entity": "customer", "ids": ["\xff"]}',
        headers={**KEY, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_ids_at_the_api_are_the_ids_ingest_stores() -> None:
    """NFC, no control or invisible characters, at most ID_MAX_LENGTH: one rule with ingest."""
    ids = TypeAdapter(EntityId)
    assert ids.validate_python(unicodedata.normalize("NFD", "cé")) == "cé"
    assert ids.validate_python("c" * ID_MAX_LENGTH)
    for bad in ("c\u200b1", "c\x071", "c\u202eevil", "", "c" * (ID_MAX_LENGTH + 1)):
        with pytest.raises(ValidationError):
            ids.validate_python(bad)
