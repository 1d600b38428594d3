"""Prometheus scrape endpoint (behind the API key when one is set, like every data endpoint)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from serving import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def scrape() -> Response:
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
