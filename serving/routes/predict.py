"""Churn probability of one customer, from the churn_model_v1 features it was trained on."""

from __future__ import annotations

from fastapi import APIRouter

from serving.audit import count_entities
from serving.deps import ScorerDep
from serving.errors import declared
from serving.schemas import ChurnRequest, ChurnResponse

router = APIRouter(prefix="/predict", tags=["predict"])


@router.post("/churn", response_model=ChurnResponse, responses=declared(404))
async def predict_churn(body: ChurnRequest, scorer: ScorerDep):
    """Probability, the label at the model's chosen threshold, its version, the features' age."""
    count_entities(1)
    return await scorer.churn(body.customer_id)
