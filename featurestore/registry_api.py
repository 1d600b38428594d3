"""Feast's REST registry server (`feast serve_registry --rest-api`), runnable on this FastAPI.

Feast 0.67's `RestRegistryServer` builds its app with `FastAPI(default_status_code=...,
default_headers=...)`, two keywords that FastAPI 0.145 removed with `FastAPI(**extra)`; on the
pinned FastAPI the plain command stops with a TypeError. `RegistryRestServer` is Feast's server
unchanged except that its app is built by a FastAPI that takes those two keywords: the status
keyword was a no-op, the headers (nosniff, frame and XSS options) are added by a middleware.
`feast ui` serves the same routes under the UI and works as it is.
"""

from __future__ import annotations

from fastapi import FastAPI
from feast import FeatureStore
from feast.api.registry.rest import rest_registry_server as _feast_rest
from starlette.middleware.base import BaseHTTPMiddleware


class _DefaultHeaders(BaseHTTPMiddleware):
    def __init__(self, app, headers: dict[str, str]):
        super().__init__(app)
        self.headers = headers

    async def dispatch(self, request, call_next):
        response = await call_next(request)
        for name, value in self.headers.items():
            response.headers.setdefault(name, value)
        return response


class _FastAPI(FastAPI):
    def __init__(self, *args, default_status_code=None, default_headers=None, **kwargs):
        super().__init__(*args, **kwargs)
        if default_headers:
            self.add_middleware(_DefaultHeaders, headers=dict(default_headers))


class RegistryRestServer(_feast_rest.RestRegistryServer):
    """Feast's REST registry server; routes under /api/v1 (features, views, services, ...)."""

    def __init__(self, store: FeatureStore):
        feast_fastapi = _feast_rest.FastAPI
        _feast_rest.FastAPI = _FastAPI
        try:
            super().__init__(store)
        finally:
            _feast_rest.FastAPI = feast_fastapi


def serve(store: FeatureStore, host: str = "127.0.0.1", port: int = 6572) -> None:
    RegistryRestServer(store).start_server(port=port, host=host)
