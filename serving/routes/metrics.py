"""Prometheus scrape endpoint (behind the API key when one is set, like every data endpoint)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from serving import prometheus

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def scrape() -> Response:
    return Response(prometheus.render(), media_type=prometheus.CONTENT_TYPE)
