"""Prometheus metrics of the API, in a registry of its own.

A private `CollectorRegistry` keeps `/metrics` to what this service measures (Feast registers its
feature-server metrics in the default one). Endpoints are labelled by route template, never by the
raw path, so ids do not explode the label space.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # `_created` timestamps per series are noise on a scrape page
REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Milliseconds matter here: the targets are p99 < 20 ms and < 60 ms.
_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
)

REQUESTS = Counter(
    "shopfeast_http_requests_total",
    "HTTP requests answered.",
    ["endpoint", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "shopfeast_http_request_duration_seconds",
    "Time to answer a request.",
    ["endpoint"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "shopfeast_http_errors_total",
    "Requests answered with a 4xx or 5xx status.",
    ["endpoint", "status"],
    registry=REGISTRY,
)
STORE_LATENCY = Histogram(
    "shopfeast_online_store_read_duration_seconds",
    "Time of one online-store read (Redis round trip and decoding).",
    ["operation"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "shopfeast_online_store_errors_total",
    "Online-store reads that failed (Redis down, timed out).",
    ["operation"],
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "shopfeast_model_info",
    "Models loaded (value 1), by name and version.",
    ["model", "version", "feature_service"],
    registry=REGISTRY,
)
COLD_STARTS = Counter(
    "shopfeast_recommendations_cold_start_total",
    "Recommendation requests for a customer the store does not know.",
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)


@contextmanager
def time_store(operation: str) -> Iterator[None]:
    """Time an online-store read; a failure counts as an error of that operation."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        STORE_ERRORS.labels(operation).inc()
        raise
    finally:
        STORE_LATENCY.labels(operation).observe(time.perf_counter() - start)


def endpoint_label(scope: Scope) -> str:
    """The route template a request matched, or `unmatched` (a 404: never the raw path).

    FastAPI routes leave themselves in `scope["route"]`; Starlette's plain routes (`/docs`,
    `/openapi.json`, `/docs/oauth2-redirect`) leave only their endpoint, found among the app's
    routes.
    """
    if path := getattr(scope.get("route"), "path", None):
        return path
    endpoint, app = scope.get("endpoint"), scope.get("app")
    if endpoint is not None and app is not None:
        for route in getattr(app, "routes", ()):
            if getattr(route, "endpoint", None) is endpoint:
                return getattr(route, "path", None) or "unmatched"
    return "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): counts and times every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = endpoint_label(scope)
            LATENCY.labels(endpoint).observe(time.perf_counter() - start)
            REQUESTS.labels(endpoint, scope["method"], str(status)).inc()
            if status >= 400:
                ERRORS.labels(endpoint, str(status)).inc()
