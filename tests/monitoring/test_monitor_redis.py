"""Redis keys near expiry are a freshness alert before the values vanish (the redis profile's
3-day TTL), on the serving tests' materialized Redis store."""

from __future__ import annotations

import pytest
import redis

from monitoring import run
from tests.support.serving_support import shared_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="session")
def store(request, tmp_path_factory, redis_url, postgres_dsn):
    return shared_store(request, tmp_path_factory, redis_url, postgres_dsn)


def expiry(store) -> dict[str, dict]:
    opts = run.Options(data_dir=store.data_dir, profile="redis", checks=("freshness",))
    _, out, _ = run.monitor(opts)
    return {r["entity"]: r for r in out["freshness"]["results"] if r["check"] == "key_expiry"}


def test_a_key_about_to_expire_is_an_alert(store, monkeypatch) -> None:
    store.apply_env(monkeypatch)
    before = expiry(store)
    assert {"customer", "product"} <= set(before)
    for r in before.values():  # materialized today: about three days to live
        assert r["status"] == "ok" and r["missing"] == 0 and r["near_expiry"] == 0
        assert r["sampled"] >= 40 and 48 < r["min_ttl_hours"] <= r["profile_ttl_hours"] == 72
    client = redis.Redis.from_url(store.redis_url)
    # a customer's key (every customer is sampled: the store has 60); a pair's key names both
    key = next(
        k
        for k in client.scan_iter(count=1000)
        if b"customer_id" in k and b"product_id" not in k and client.ttl(k) > 0
    )
    ttl = client.ttl(key)
    client.expire(key, 3600)  # one entity's values would vanish within the hour
    try:
        after = expiry(store)
    finally:
        client.expire(key, ttl)
    hit = {e: r for e, r in after.items() if r["status"] == "alert"}
    assert list(hit) == ["customer"]
    assert hit["customer"]["near_expiry"] == 1 and hit["customer"]["min_ttl_hours"] <= 1.0
