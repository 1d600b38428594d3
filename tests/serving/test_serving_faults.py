"""Faults with real servers: Redis unreachable, frozen, stopped and back; a missing model.

A dead or hung Redis must cost a request a bounded fraction of a second and a 503 with a JSON
body, never a hanging worker, and the service must come back by itself when Redis does. The
frozen and stopped Redis is a redis-server process of the test's own
(tests/support/serving_support.py),
holding a copy of the materialized store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.errors import StartupError
from tests.support.serving_support import API_KEY, PrivateRedis, free_port, shared_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = {"X-API-Key": API_KEY}
BOUND_S = 2.0  # 1 s socket timeouts (the 5 s deadline must not be what bounds it), a slow machine


@pytest.fixture(scope="session")
def store(request, tmp_path_factory, redis_url, postgres_dsn):
    return shared_store(request, tmp_path_factory, redis_url, postgres_dsn)


def requests(store):
    c, p = store.customers[3], store.products[1]
    return [
        ("POST", "/predict/churn", {"customer_id": c}),
        ("POST", "/recommendations", {"customer_id": c, "k": 3}),
        ("GET", f"/features/customers/{c}", None),
        ("GET", f"/features/products/{p}", None),
        ("POST", "/features/batch", {"entity": "customer", "ids": [c]}),
    ]


def timed(client, method, path, body=None, headers=KEY):
    start = time.perf_counter()
    r = client.request(method, path, json=body, headers=headers)
    return r, time.perf_counter() - start


def assert_unavailable(client, store) -> None:
    for method, path, body in requests(store):
        if path.startswith("/features/products/"):
            continue  # product rows may still be served from the in-memory copy
        r, took = timed(client, method, path, body)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "store_unavailable"
        assert r.headers.get("retry-after") == "1"
        assert took < BOUND_S, (path, took)


def wait_for_200(client, method, path, body, seconds: float = 10.0) -> int:
    """Requests until one answers 200; returns how many it took."""
    deadline = time.monotonic() + seconds
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        if client.request(method, path, json=body, headers=KEY).status_code == 200:
            return tries
        time.sleep(0.2)
    raise AssertionError(f"{path} did not recover within {seconds}s")


def app_on(store, monkeypatch, connection_string: str, **settings):
    store.apply_env(monkeypatch, REDIS_CONNECTION_STRING=connection_string)
    return create_app(store.settings(**settings))  # default deadline: the timeouts must bound it


def test_unreachable_redis_answers_503_fast(store, monkeypatch) -> None:
    app = app_on(store, monkeypatch, f"127.0.0.1:{free_port()},db=0")
    with TestClient(app) as client:  # start-up goes on without Redis
        assert client.get("/health").status_code == 200
        r, took = timed(client, "GET", "/ready", headers={})
        assert r.status_code == 503 and took < 3.0
        assert r.json()["checks"]["redis"]["ok"] is False
        assert r.json()["checks"]["registry"]["ok"] is True
        assert_unavailable(client, store)
        r, _ = timed(client, "GET", f"/features/products/{store.products[1]}")
        assert r.status_code == 503  # nothing was ever cached


def test_frozen_redis_then_thawed(store, monkeypatch, tmp_path) -> None:
    with PrivateRedis(tmp_path, store.redis_url) as redis_server:
        app = app_on(store, monkeypatch, redis_server.connection_string)
        with TestClient(app) as client:
            for method, path, body in requests(store):
                assert client.request(method, path, json=body, headers=KEY).status_code == 200
            redis_server.freeze()  # accepts connections, answers nothing: the timeouts' case
            try:
                assert_unavailable(client, store)
                r, took = timed(client, "GET", "/health", headers={})
                assert r.status_code == 200 and took < 0.5  # the worker is not hung
            finally:
                redis_server.thaw()
            for method, path, body in requests(store):
                wait_for_200(client, method, path, body)


def test_stopped_redis_then_back(store, monkeypatch, tmp_path) -> None:
    with PrivateRedis(tmp_path, store.redis_url) as redis_server:
        app = app_on(store, monkeypatch, redis_server.connection_string)
        with TestClient(app) as client:
            method, path, body = requests(store)[0]
            assert client.request(method, path, json=body, headers=KEY).status_code == 200
            redis_server.stop()
            assert_unavailable(client, store)
            assert client.get("/ready").status_code == 503
            redis_server.start()  # same port, the store copied in again; the app is untouched
            for method, path, body in requests(store):
                assert wait_for_200(client, method, path, body) <= 3
            assert client.get("/ready").status_code == 200


def test_missing_model_stops_start_up(store, monkeypatch, tmp_path) -> None:
    store.apply_env(monkeypatch)
    empty = tmp_path / "models"
    empty.mkdir()
    with (
        pytest.raises(StartupError, match="model 'churn' not found"),
        TestClient(create_app(store.settings(models_dir=empty))),
    ):
        pass


def test_unreadable_model_file_stops_start_up(store, monkeypatch, tmp_path) -> None:
    import shutil

    store.apply_env(monkeypatch)
    models = tmp_path / "models"
    shutil.copytree(store.data_dir / "models", models)
    pointer = (models / "ranking" / "latest.json").read_text()
    version = __import__("json").loads(pointer)["version"]
    (models / "ranking" / version / "model.joblib").write_bytes(b"not a model")
    with (
        pytest.raises(StartupError, match="model 'ranking': cannot load"),
        TestClient(create_app(store.settings(models_dir=models))),
    ):
        pass
    (models / "ranking" / version / "model.joblib").unlink()
    with (
        pytest.raises(StartupError, match="model file .* is missing"),
        TestClient(create_app(store.settings(models_dir=models))),
    ):
        pass


def _serve_refused(**env: str) -> str:
    """Run `shopfeast serve` with `env` added (an empty value removes the variable); it must
    stop with exit 1 and no traceback. Returns what it said."""
    full = {**os.environ, "SHOPFEAST_PORT": "1", **env}
    full = {k: v for k, v in full.items() if k not in env or v}
    done = subprocess.run(
        [sys.executable, "-m", "shopfeast.cli", "serve"],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_serve_command_says_what_is_missing(tmp_path) -> None:
    said = _serve_refused(SHOPFEAST_MODELS_DIR=str(tmp_path))
    assert "cannot start: model 'churn' not found" in said
    assert "shopfeast train churn" in said


def test_production_needs_an_api_key(store, monkeypatch) -> None:
    """SHOPFEAST_ENV=production refuses to start open, or with a guessable key; with a key it
    serves, and the key guards the data endpoints."""
    store.apply_env(monkeypatch)
    for key in (None, "short"):
        with (
            pytest.raises(StartupError, match="SHOPFEAST_ENV=production needs SHOPFEAST_API_KEY"),
            TestClient(create_app(store.settings(env="production", api_key=key))),
        ):
            pass
    with TestClient(create_app(store.settings(env="production"))) as client:
        assert client.get("/ready").status_code == 200
        cid = store.customers[0]
        assert client.post("/predict/churn", json={"customer_id": cid}).status_code == 401
        answer = client.post("/predict/churn", headers=KEY, json={"customer_id": cid})
        assert answer.status_code == 200


def test_serve_command_refuses_production_without_a_key() -> None:
    said = _serve_refused(SHOPFEAST_ENV="production", SHOPFEAST_API_KEY="")
    assert "cannot start: SHOPFEAST_ENV=production needs SHOPFEAST_API_KEY" in said
