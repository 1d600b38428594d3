"""The API's description and its metrics, on an app that has not started (no store needed)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving import prometheus
from serving.app import create_app
from shopconfig.settings import Settings


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
