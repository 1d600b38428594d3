"""Liveness and readiness: never behind the API key (orchestrators call them)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serving.deps import ApiKeyDep, BearerDep, ResourcesDep
from serving.errors import Unauthorized

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a check failed; the body says which"}})
async def ready(
    res: ResourcesDep, request: Request, x_api_key: ApiKeyDep, bearer: BearerDep
) -> JSONResponse:
    """Redis answers, the registry answers, the models and the catalog are loaded. In
    production the details (model versions, catalog size, timings, errors) need a credential;
    an orchestrator's probe gets the status and the checks' ok flags."""
    timeout = res.settings.ready_timeout_s
    checks = {
        "redis": await _check(_ping_redis(res), timeout),
        "registry": await _check(asyncio.to_thread(_registry_ok, res), timeout),
        "models": {
            "ok": True,
            "churn": res.churn_model.version,
            "ranking": res.ranking_model.version,
        },
        "catalog": {
            "ok": res.catalog.state.catalog is not None,
            "products": res.catalog.state.products,
        },
    }
    ok = all(c["ok"] for c in checks.values())
    if res.settings.env == "production" and not _authenticated(request, x_api_key, bearer):
        checks = {name: {"ok": c["ok"]} for name, c in checks.items()}
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503
    )


def _authenticated(request: Request, x_api_key: str | None, bearer) -> bool:
    try:
        request.app.state.credentials.principal(x_api_key, bearer.credentials if bearer else None)
    except Unauthorized:
        return False
    return True


async def _check(coro, timeout: float) -> dict:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(coro, timeout)
        return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 2)}
    except Exception as exc:  # the reason is the answer, not an error of this endpoint
        return {"ok": False, "error": type(exc).__name__}


async def _ping_redis(res) -> None:
    await res.online.ping()


def _registry_ok(res) -> None:
    # Bypasses the cache, so it asks PostgreSQL (or reads the registry file) now.
    res.store.registry.get_project(res.store.project, allow_cache=False)
