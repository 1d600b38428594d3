"""Ranked products for one customer: candidates from the online store, ranked by the ranker."""

from __future__ import annotations

from fastapi import APIRouter

from serving.audit import count_entities
from serving.deps import ResourcesDep
from serving.errors import InvalidRequest
from serving.schemas import RecommendationRequest, RecommendationResponse

router = APIRouter(tags=["recommendations"])


@router.post("/recommendations", response_model=RecommendationResponse)
async def recommend(body: RecommendationRequest, res: ResourcesDep):
    """Co-purchases of recent products and popular products of the customer's categories,
    ranked with ranking_model_v1; an unknown customer gets popular products (`cold_start`)."""
    # (one dependency for the scorer and the settings: FastAPI solves each per request)
    count_entities(1)
    if body.k > res.settings.max_k:
        raise InvalidRequest(f"k must be at most {res.settings.max_k}")
    return await res.scorer.recommend(body.customer_id, body.k, body.exclude_purchased)
