"""What routes are given: the objects built once at start-up, and the API-key check.

Routes declare what they need as `Annotated[..., Depends(...)]` types; nothing is global, so a test
builds an app with its own settings and gets its own store and models. The providers are `async`
although they only look things up: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per dependency per request (measured: most of a cached product read's CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from feast import FeatureStore

from featurestore.online import OnlineFeatures
from serving.auth import AuthError, JwtVerifier, Principal, authenticate
from serving.catalog import CatalogKeeper
from serving.errors import Forbidden, Unauthorized
from serving.scoring import Scorer
from shopconfig.settings import Settings
from streaming.log import AsyncRedisStreamProducer
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
    producer: AsyncRedisStreamProducer | None = None  # POST /events appends here


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


class Credentials:
    """What authentication is checked against, built once per app from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self.verifier = (
            JwtVerifier(
                settings.jwt_jwks_file,
                issuer=settings.jwt_issuer or "",
                audience=settings.jwt_audience or "",
                algorithms=tuple(settings.jwt_algorithms),
                leeway_s=settings.jwt_leeway_s,
            )
            if settings.jwt_jwks_file
            else None
        )

    @property
    def required(self) -> bool:
        return bool(self.api_key) or self.verifier is not None

    def principal(self, x_api_key: str | None, bearer: str | None) -> Principal:
        try:
            return authenticate(
                self.api_key, self.verifier, x_api_key, f"Bearer {bearer}" if bearer else None
            )
        except AuthError as exc:
            challenge = {"WWW-Authenticate": "Bearer"} if self.verifier else None
            raise Unauthorized(exc.message, headers=challenge) from exc


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="api_key")
bearer_header = HTTPBearer(auto_error=False, scheme_name="bearer_jwt")
ApiKeyDep = Annotated[str | None, Security(api_key_header)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_header)]


def require(scope: str):
    """A dependency: the caller must be authenticated and hold `scope` (when auth is on)."""

    async def check(request: Request, x_api_key: ApiKeyDep, bearer: BearerDep) -> Principal:
        creds: Credentials = request.app.state.credentials
        principal = creds.principal(x_api_key, bearer.credentials if bearer else None)
        request.state.principal = principal  # for the audit log
        request.state.scope = scope
        if not principal.allows(scope):
            raise Forbidden(
                f"this endpoint needs scope '{scope}'",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        return principal

    return check


async def require_authenticated(
    request: Request, x_api_key: ApiKeyDep, bearer: BearerDep
) -> Principal:
    """Any valid credential (the API documents in production)."""
    creds: Credentials = request.app.state.credentials
    principal = creds.principal(x_api_key, bearer.credentials if bearer else None)
    request.state.principal = principal
    return principal
