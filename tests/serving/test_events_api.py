"""POST /events against the real Redis: 202 with accepted and rejected counts and each rejection's
rule; the accepted events are on the stream as the contract's fields; 401 without the key, 422 for
a malformed or oversized body, 503 when the stream's Redis is down."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.support.serving_support import API_KEY, shared_store

pytestmark = pytest.mark.integration
STREAM = "test:api-events"
GOOD = {
    "event_id": "api-1",
    "customer_id": "c00001",
    "session_id": "s1",
    "event_type": "product_view",
    "event_ts": "2025-02-28T10:00:00Z",
    "product_id": "p00002",
}


@pytest.fixture(scope="module")
def api(request, tmp_path_factory, redis_url, postgres_dsn):
    store = shared_store(request, tmp_path_factory, redis_url, postgres_dsn)
    client = redis.Redis.from_url(store.redis_url, decode_responses=True)
    client.delete(STREAM)
    with pytest.MonkeyPatch.context() as mp:
        store.apply_env(mp)
        settings = store.settings(stream_redis_url=store.redis_url, stream_key=STREAM)
        with TestClient(create_app(settings)) as c:
            yield c, client, store
    client.delete(STREAM)


def post(c: TestClient, body, key: str | None = API_KEY):
    return c.post("/events", json=body, headers={"X-API-Key": key} if key else {})


def test_events_are_checked_and_appended(api):
    c, client, _ = api
    events = [
        GOOD,
        {**GOOD, "event_id": "api-2", "event_type": "add_to_cart", "quantity_ignored": 3},
        {**GOOD, "event_id": "api-3", "event_type": "hover"},
        {**GOOD, "event_id": "api-4", "event_ts": "2031-01-01T00:00:00Z"},
        {k: v for k, v in GOOD.items() if k != "event_id"},
    ]
    r = post(c, {"events": events})
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": 2,
        "rejected": 3,
        "rejections": [
            {"index": 2, "rule": "invalid_value", "column": "event_type"},
            {"index": 3, "rule": "future_timestamp", "column": "event_ts"},
            {"index": 4, "rule": "missing_required", "column": "event_id"},
        ],
    }
    entries = client.xrange(STREAM)
    assert [f["event_id"] for _, f in entries[-2:]] == ["api-1", "api-2"]
    assert entries[-1][1]["event_type"] == "add_to_cart"
    assert entries[-1][1]["event_ts"] == GOOD["event_ts"]


def test_key_body_and_size_are_enforced(api):
    c, client, store = api
    assert post(c, {"events": [GOOD]}, key=None).status_code == 401
    for bad in ({"events": "nope"}, {"events": [{"event_id": {"nested": 1}}]}, {"events": []}):
        r = post(c, bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    r = post(c, {"events": [{**GOOD, "event_id": f"e{i}"} for i in range(501)]})
    assert r.status_code == 422 and "500" in r.json()["error"]["message"]
    before = client.xlen(STREAM)
    r = post(c, {"events": [{**GOOD, "event_id": f"ok{i}"} for i in range(500)]})
    assert r.status_code == 202 and r.json()["accepted"] == 500
    assert client.xlen(STREAM) == before + 500


def test_stream_down_is_a_503(request, tmp_path_factory, redis_url, postgres_dsn):
    store = shared_store(request, tmp_path_factory, redis_url, postgres_dsn)
    with pytest.MonkeyPatch.context() as mp:
        store.apply_env(mp)
        settings = store.settings(stream_redis_url="redis://127.0.0.1:1/0", stream_key=STREAM)
        with TestClient(create_app(settings)) as c:
            r = post(c, {"events": [GOOD]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "stream_unavailable", r.text
