"""What routes are given: the objects built once at start-up, and the API-key check.

Routes declare what they need as `Annotated[..., Depends(...)]` types; nothing is global, so a test
builds an app with its own settings and gets its own store and models. The providers are `async`
although they only look things up: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per dependency per request (measured: most of a cached product read's CPU).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from feast import FeatureStore

from featurestore.online import OnlineFeatures
from serving.catalog import CatalogKeeper
from serving.errors import Unauthorized
from serving.scoring import Scorer
from shopconfig.settings import Settings
from training.artifacts import LoadedModel


@dataclass
class Resources:
    """Everything the lifespan builds, held on `app.state.resources`."""

    settings: Settings
    store: FeatureStore
    online: OnlineFeatures
    churn_model: LoadedModel
    ranking_model: LoadedModel
    catalog: CatalogKeeper
    scorer: Scorer


async def get_resources(request: Request) -> Resources:
    return request.app.state.resources


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(res: Annotated[Resources, Depends(get_resources)]) -> FeatureStore:
    return res.store


async def get_online(res: Annotated[Resources, Depends(get_resources)]) -> OnlineFeatures:
    return res.online


async def get_scorer(res: Annotated[Resources, Depends(get_resources)]) -> Scorer:
    return res.scorer


SettingsDep = Annotated[Settings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
StoreDep = Annotated[FeatureStore, Depends(get_store)]
OnlineDep = Annotated[OnlineFeatures, Depends(get_online)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]


async def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """When an API key is configured, the X-API-Key header must carry it (constant-time check)."""
    expected = settings.api_key.get_secret_value() if settings.api_key else None
    if not expected:
        return
    if not x_api_key or not secrets.compare_digest(x_api_key.encode(), expected.encode()):
        raise Unauthorized("missing or wrong X-API-Key")
