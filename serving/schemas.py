"""Request and response bodies. Ids are bounded strings; unknown fields are refused."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shopconfig.settings import ID_MAX_LENGTH

# Ids as ingest stores them (pipelines/validate.py): NFC, no control or invisible characters,
# at most ID_MAX_LENGTH characters.
_VISIBLE = (
    r"^[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ue000-\uf8ff]+$"
)
EntityId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=ID_MAX_LENGTH, strip_whitespace=True, pattern=_VISIBLE
    ),
    AfterValidator(lambda v: unicodedata.normalize("NFC", v)),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChurnRequest(Strict):
    customer_id: EntityId


class RecommendationRequest(Strict):
    customer_id: EntityId
    k: int = Field(10, ge=1, description="How many products to return (bounded by the server).")
    exclude_purchased: bool = True


class BatchRequest(Strict):
    entity: Literal["customer", "product"]
    ids: list[EntityId] = Field(min_length=1)


class ModelRef(BaseModel):
    name: str
    version: str
    feature_service: str


class ChurnResponse(BaseModel):
    customer_id: str
    churn_probability: float
    churn_label: int
    threshold: float
    model: ModelRef
    feature_age_seconds: float | None
    feature_age_by_view: dict[str, float]


class RecommendedItem(BaseModel):
    rank: int
    product_id: str
    score: float | None
    source: str


class RecommendationResponse(BaseModel):
    customer_id: str
    cold_start: bool
    candidates_scored: int
    model: ModelRef
    items: list[RecommendedItem]


class FeaturesResponse(BaseModel):
    entity: str
    id: str
    feature_service: str
    features: dict[str, Any]
    feature_age_seconds: float | None


class BatchItem(BaseModel):
    id: str
    found: bool
    features: dict[str, Any] | None


class BatchResponse(BaseModel):
    entity: str
    feature_service: str
    results: list[BatchItem]


FeatureRef = Annotated[
    str, StringConstraints(min_length=3, max_length=256, pattern=r"^[^:]+:[^:]+$")
]


class HistoricalRequest(Strict):
    entity: Literal["customer", "product"]
    ids: list[EntityId] = Field(min_length=1, description="Bounded like /features/batch.")
    start: datetime = Field(description="First instant of the range (ISO 8601; naive is UTC).")
    end: datetime = Field(description="Last instant of the range, inclusive.")
    feature_service: str | None = Field(
        None, max_length=128, description="A feature service of this entity (or `features`)."
    )
    features: list[FeatureRef] | None = Field(
        None, min_length=1, max_length=500, description="`view:feature` references."
    )


class HistoricalRow(BaseModel):
    id: str
    snapshot: datetime
    features: dict[str, Any]


class HistoricalResponse(BaseModel):
    entity: str
    feature_service: str | None
    features: list[str]
    snapshots: list[datetime]
    rows: list[HistoricalRow]


EventValue = str | int | float | bool | None


class EventsRequest(Strict):
    """Shop events in the raw contract's shape: one object per event, fields as its columns."""

    events: list[dict[str, EventValue]] = Field(min_length=1, max_length=10_000)


class EventRejection(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    rule: str = Field(description="The contract rule it broke (docs/data_contract.md).")
    column: str | None = Field(description="The column that broke it; never its value.")


class EventsResponse(BaseModel):
    accepted: int
    rejected: int
    rejections: list[EventRejection]
