"""Serving's pure parts: settings, the profile's safety options, matrices, bodies, errors."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from featurestore.online import _ONE_ROW, _distinct_rows
from featurestore.store import expand_vars as _expand
from featurestore.store import with_timeouts
from serving import errors
from serving.limits import BodyLimitMiddleware
from shopconfig.settings import Settings
from training.artifacts import ArtifactError, check, linear_closed_form
from training.matrix import model_matrix, to_matrix


def test_settings_come_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SHOPFEAST_API_KEY", "s3cret")
    monkeypatch.setenv("SHOPFEAST_MAX_K", "25")
    s = Settings(_env_file=None)
    assert s.resolved_models_dir() == (tmp_path / "models").resolve()
    assert s.api_key.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    assert s.max_k == 25
    monkeypatch.setenv("SHOPFEAST_MAX_K", "0")
    with pytest.raises(ValueError):
        Settings(_env_file=None)


def test_env_example_names_real_settings(repo_root) -> None:
    names = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (repo_root / ".env.example").read_text().splitlines()
        if "=" in line and line.lstrip("# ").startswith("SHOPFEAST_")
    }
    fields = {f"SHOPFEAST_{n.upper()}" for n in Settings.model_fields}
    assert names and names <= fields, names - fields


@pytest.mark.parametrize(
    "given,expected",
    [
        (
            "127.0.0.1:6379,db=0",
            "127.0.0.1:6379,db=0,socket_timeout=0.25,socket_connect_timeout=0.5,retry=null",
        ),
        (
            "redis:6379,db=1,password=p,ssl=true,socket_timeout=2",
            "redis:6379,db=1,password=p,ssl=true,socket_timeout=2,socket_connect_timeout=0.5,"
            "retry=null",
        ),
    ],
)
def test_connection_string_gets_timeouts_unless_given(given, expected) -> None:
    assert with_timeouts(given, 0.25, 0.5) == expected


def test_retry_null_reaches_redis_py_as_no_retry() -> None:
    """Feast json-decodes option values: `retry=null` is redis-py's `retry=None`, no back-off."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    _, params = RedisOnlineStore._parse_connection_string(with_timeouts("h:1", 0.25, 0.5))
    assert params == {"socket_timeout": 0.25, "socket_connect_timeout": 0.5, "retry": None}
    import redis

    conn = redis.Redis(host="h", port=1, **params).connection_pool.make_connection()
    assert conn.retry.get_retries() == 0


def test_profile_variables_expand_like_the_shell() -> None:
    assert _expand("a ${X} $Y ${MISSING}", {"X": "1", "Y": "2"}) == "a 1 2 ${MISSING}"


def test_fast_matrix_reads_values_like_model_matrix() -> None:
    columns = {
        "f": [1.5, None, float("nan"), 2.0],
        "i": [1, 2, None, 4],
        "b": [True, False, None, True],
        "s": ["3.5", "x", None, "7"],
        "l": [[1, 2], None, [], [3]],
        "t": [pd.Timestamp("2025-01-01", tz="UTC"), None, None, None],
    }
    names = ["i", "f", "b", "s", "l", "missing"]
    expected = model_matrix(pd.DataFrame(columns), names).to_numpy()
    np.testing.assert_array_equal(to_matrix(columns, names, 4), expected)


def test_fast_matrix_all_numeric_path() -> None:
    columns = {"f": [1.5, None, float("nan")], "i": [1, 2, None], "b": [True, None, False]}
    names = ["b", "f", "gone", "i"]
    expected = model_matrix(pd.DataFrame(columns), names).to_numpy()
    np.testing.assert_array_equal(to_matrix(columns, names, 3), expected)


def test_distinct_rows() -> None:
    assert _distinct_rows([["a", "b", "c"]], 3) == (None, None)
    assert _distinct_rows([["a", "a", "a"]], 3) == ([0], _ONE_ROW)  # repeated, not indexed
    assert _distinct_rows([["c", "c", "c"], ["p", "p", "p"]], 3) == ([0], _ONE_ROW)
    assert _distinct_rows([["c", "c", "c"], ["p", "q", "r"]], 3) == (None, None)
    assert _distinct_rows([["c", "c", "c"], ["p", "q", "p"]], 3) == ([0, 1], [0, 1, 0])
    firsts, slots = _distinct_rows([["c", "c", "d"], ["p", "q", "p"]], 3)
    assert firsts is None and slots is None
    assert _distinct_rows([["c", "d", "c"], ["p", "p", "p"]], 3) == ([0, 1], [0, 1, 0])


def _app(max_bytes: int) -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return {"keys": len(body)}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("internal detail")

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    return app


def test_body_limit_by_length_and_by_stream() -> None:
    client = TestClient(_app(100), raise_server_exceptions=False)
    assert client.post("/echo", json={"a": 1}).json() == {"keys": 1}
    r = client.post(
        "/echo", content=json.dumps({"a": "x" * 200}), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(10):
            yield b'{"a": "' + b"x" * 50 + b'"}'

    r = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_errors_are_json_without_internals() -> None:
    client = TestClient(_app(1000), raise_server_exceptions=False)
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.post("/echo", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "oops" not in r.text


def test_model_check_names_the_missing_file(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="churn.*latest.json is missing"):
        check(tmp_path, "churn")
    (tmp_path / "churn").mkdir()
    (tmp_path / "churn" / "latest.json").write_text(json.dumps({"version": "v1"}))
    (tmp_path / "churn" / "v1").mkdir()
    with pytest.raises(ArtifactError, match=r"model file .*v1/model.joblib is missing"):
        check(tmp_path, "churn")


def _churn_like_pipeline(add_indicator: bool = False):
    """What training/churn_models.py fits for its linear candidate, on data with gaps."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = rng.normal(5.0, 3.0, (400, 6))
    y = (X[:, 0] + rng.normal(0, 2, 400) > 5).astype(int)
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 4] = np.nan  # a column never seen: kept, filled with 0
    X[:, 5] = 2.0  # a constant column: scale 1
    pipe = Pipeline(
        [
            (
                "impute",
                SimpleImputer(
                    strategy="median", keep_empty_features=True, add_indicator=add_indicator
                ),
            ),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=0.1, max_iter=500)),
        ]
    )
    return pipe.fit(X, y), X


def test_linear_closed_form_equals_the_pipeline() -> None:
    pipe, X = _churn_like_pipeline()
    closed = linear_closed_form(pipe, X.shape[1])
    assert closed is not None
    X = np.vstack([X, np.full((1, X.shape[1]), np.nan), X[:1] * 1e3])
    np.testing.assert_allclose(closed(X), pipe.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(closed(X[:1]), pipe.predict_proba(X[:1])[:, 1], rtol=0, atol=1e-12)


def test_linear_closed_form_only_for_what_it_reproduces() -> None:
    pipe, X = _churn_like_pipeline(add_indicator=True)  # more outputs than inputs
    assert linear_closed_form(pipe, X.shape[1]) is None
    pipe, X = _churn_like_pipeline()
    assert linear_closed_form(pipe.steps[-1][1], X.shape[1]) is None  # not the pipeline
    assert linear_closed_form(pipe, X.shape[1] + 1) is None  # not the inputs it was fitted on


def test_production_settings_name_what_is_missing(monkeypatch) -> None:
    monkeypatch.delenv("SHOPFEAST_API_KEY", raising=False)
    assert Settings(_env_file=None).problems() == []  # development: a key is optional
    monkeypatch.setenv("SHOPFEAST_ENV", "production")
    (problem,) = Settings(_env_file=None).problems()
    assert "SHOPFEAST_API_KEY" in problem and "16" in problem
    monkeypatch.setenv("SHOPFEAST_API_KEY", "x" * 16)
    assert Settings(_env_file=None).problems() == []
    monkeypatch.setenv("SHOPFEAST_ENV", "prod")
    with pytest.raises(ValueError):
        Settings(_env_file=None)


def _as_served(v):
    """What /features/batch promises for a value, written out independently of the route."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _as_served(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_as_served(x) for x in v]
    if isinstance(v, np.generic):
        return _as_served(v.item())
    return v


@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("with_small", [False, True])
def test_batch_json_writes_every_kind_of_value(with_nan, with_small) -> None:
    """The batch route's JSON equals the plain walk of the payload, byte for byte, whether orjson
    writes it (no float under 1e-4), the strict encoder takes it (small floats, which orjson
    writes otherwise) or falls back (a NaN or an infinity somewhere)."""
    from serving.routes.features import _dumps

    when = datetime(2025, 12, 31, 23, 59, 59, 123456, tzinfo=UTC)
    features = {
        "n": 3,
        "x": 0.1,
        "neg_zero": -0.0,
        "big": 1e300,
        "s": "électronique",
        "none": None,
        "flag": True,
        "t": when,
        "d": date(2025, 1, 2),
        "ids": ["P1", "P2"],
        "pair": ("a", 1),
        "one": {"only"},
        "i64": np.int64(7),
        "f64": np.float64(0.25),
        "f32": np.float32(0.1),
        "b": np.bool_(True),
        "times": [when, None],
    }
    if with_nan:
        features |= {"nan": math.nan, "inf": [1.0, -math.inf], "npnan": np.float64("nan")}
    if with_small:  # Python writes 1e-05, -2.5e-07, 9.9e-05; orjson 0.00001, -2.5e-7, 0.000099
        features |= {"tiny": 1e-05, "tinier": [-2.5e-07, 1e-300], "under": 9.9e-05}
    payload = {
        "entity": "customer",
        "feature_service": "customer_360_v1",
        "results": [
            {"id": "c1", "found": True, "features": features},
            {"id": "nobody", "found": False, "features": None},
        ],
    }
    expected = json.dumps(
        _as_served(payload), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()
    assert _dumps(payload) == expected
