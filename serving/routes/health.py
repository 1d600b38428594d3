"""Liveness and readiness: never behind the API key (orchestrators call them)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import ResourcesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(res: ResourcesDep) -> JSONResponse:
    """Redis answers, the registry answers, the models and the catalog are loaded."""
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
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503
    )


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
