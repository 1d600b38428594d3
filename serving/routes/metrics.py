"""Prometheus scrape endpoint (behind the API key when one is set, like every data endpoint).

Besides the API's own metrics: each feature view's freshness from the registry, and the last
`shopfeast monitor` run's statuses, drift and skew (serving/monitor_gauges.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import Response

from featurestore.observe import materialized_until
from serving import monitor_gauges, prometheus
from serving.deps import ResourcesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def scrape(res: ResourcesDep) -> Response:
    try:
        views = materialized_until(res.store)  # the registry's cache: no round trip
    except Exception:  # a registry hiccup must not cost the API's own metrics
        views = {}
    health = monitor_gauges.render(res.settings.data_dir, views, datetime.now(UTC))
    return Response(prometheus.render() + health, media_type=prometheus.CONTENT_TYPE)
