"""Ranked products for one customer: candidates from the online store, ranked by the ranker."""

from __future__ import annotations

from fastapi import APIRouter

from serving.audit import count_entities
from serving.deps import ScorerDep, SettingsDep
from serving.errors import InvalidRequest
from serving.schemas import RecommendationRequest, RecommendationResponse

router = APIRouter(tags=["recommendations"])


@router.post("/recommendations", response_model=RecommendationResponse)
async def recommend(body: RecommendationRequest, scorer: ScorerDep, settings: SettingsDep):
    """Co-purchases of recent products and popular products of the customer's categories,
    ranked with ranking_model_v1; an unknown customer gets popular products (`cold_start`)."""
    count_entities(1)
    if body.k > settings.max_k:
        raise InvalidRequest(f"k must be at most {settings.max_k}")
    return await scorer.recommend(body.customer_id, body.k, body.exclude_purchased)
