"""The FastAPI app: `create_app(settings)` builds it; the lifespan opens the store and models once.

Run it with `shopfeast serve` (or `uvicorn --factory serving.app:create_app`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI

from featurestore.errors import StoreConfigError
from featurestore.online import OnlineFeatures
from featurestore.store import open_serving_store
from serving import auth, docs, errors, prometheus
from serving.audit import AuditMiddleware, open_audit_log
from serving.catalog import CatalogKeeper
from serving.deps import Credentials, Resources, require
from serving.limits import BodyLimitMiddleware, TrustedHostsMiddleware
from serving.routes import events, features, health, historical, predict, recommendations
from serving.routes import metrics as metrics_route
from serving.scoring import Scorer
from shopconfig.settings import Settings, get_settings
from streaming.log import async_producer
from training.artifacts import ArtifactError, load
from training.candidates import CUSTOMER_SERVICE, PRODUCT_SERVICE
from training.served_log import Bounds, ServedLog

log = logging.getLogger("serving")


def build_resources(settings: Settings) -> Resources:
    """Settings, models (cheap, and their absence is the commonest mistake), then the store."""
    if problems := settings.problems():
        raise errors.StartupError("; ".join(problems))
    models_dir = settings.resolved_models_dir()
    try:
        churn = load(models_dir, settings.churn_model)
        ranking = load(models_dir, settings.ranking_model)
        store = open_serving_store(settings)
    except (ArtifactError, StoreConfigError) as exc:
        raise errors.StartupError(str(exc)) from exc
    online = OnlineFeatures(
        store,
        cached_entities=("product",),
        max_stale_s=settings.product_max_stale_s,
        deadline_s=settings.store_deadline_s,
        unavailable=errors.StoreUnavailable,
        timer=prometheus.time_store,
    )
    services = [
        churn.feature_service,
        ranking.feature_service,
        CUSTOMER_SERVICE,
        PRODUCT_SERVICE,
        settings.customer_service,
        settings.product_service,
    ]
    for name in services:  # an unknown service stops start-up here, not on the first request
        try:
            online.plan(name)
        except Exception as exc:
            raise errors.StartupError(
                f"feature service '{name}' cannot be resolved from the "
                f"registry ({type(exc).__name__}: {exc}); run "
                "`make apply`"
            ) from exc
    catalog = CatalogKeeper(
        online,
        [PRODUCT_SERVICE, ranking.feature_service, settings.product_service],
        refresh_s=settings.catalog_refresh_s,
    )
    scorer = Scorer(
        online,
        churn,
        ranking,
        catalog,
        candidate_pool=settings.candidate_pool,
        served=served_log(settings),
    )
    producer = async_producer(
        settings.resolved_stream_redis_url(),
        settings.stream_key,
        settings.redis_socket_timeout_s,
        settings.redis_connect_timeout_s,
    )
    return Resources(settings, store, online, churn, ranking, catalog, scorer, producer)


def warm_up(res: Resources) -> None:
    """One prediction of each model at start-up: the first call of a booster allocates."""
    for model, rows in ((res.churn_model, 1), (res.ranking_model, res.settings.candidate_pool)):
        X = np.full((rows, len(model.input_columns)), np.nan)
        model.predict_proba(X) if model is res.churn_model else model.score(X)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    res = build_resources(settings)
    warm_up(res)
    for m in (res.churn_model, res.ranking_model):
        prometheus.MODEL_INFO.labels(m.name, m.version, m.feature_service).set(1)
    try:
        await res.catalog.refresh()
    except Exception as exc:  # Redis may be down at start: serve 503s and keep trying
        log.warning("catalog not loaded at start-up (%s); retrying in the background", exc)
    res.catalog.start()
    app.state.resources = res
    # What start-up loaded (Feast, the registry, models, the catalog: ~300k objects) lives as
    # long as the process; a full collection scanning it costs ~165 ms, a stall in the middle of
    # requests. Freezing moves it out of the collector's sight (measured after: 0.3 ms).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        await res.catalog.stop()
        if res.scorer.served is not None:
            res.scorer.served.flush()
        if res.producer is not None:
            await res.producer.close()
        gc.unfreeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    production = settings.env == "production"
    app = FastAPI(
        title="shopfeast serving",
        version="1",
        lifespan=lifespan,
        description="Churn, recommendation and feature APIs on the Feast online store.",
        # In production the API's own description is behind the key too (routes below).
        docs_url=None if production else "/docs",
        redoc_url=None,
        openapi_url=None if production else "/openapi.json",
        # `/metrics/` -> 307 to a URL built from the Host header, before any auth: no.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.credentials = Credentials(settings)
    errors.install(app)
    # Every status a route can answer is declared in the OpenAPI document: the middlewares'
    # on every route (a body over the limit; a Host not trusted, when hosts are set), the
    # groups' below, 404 on the routes that look one id up (tests/serving/test_openapi.py
    # provokes each one; the fuzz test sees no other).
    everywhere = (413, *((400,) if settings.trusted_hosts else ()))
    app.include_router(health.router, responses=errors.declared(*everywhere))
    protected = (*everywhere, 401, 403, 422, 503)
    groups = (
        (features.router, auth.FEATURES_READ, protected),
        (historical.router, auth.FEATURES_READ, protected),
        (predict.router, auth.PREDICT, protected),
        (recommendations.router, auth.PREDICT, protected),
        (events.router, auth.EVENTS_WRITE, protected),
        (metrics_route.router, auth.METRICS_READ, (*everywhere, 401, 403)),
    )
    for router, scope, statuses in groups:
        app.include_router(
            router, dependencies=[Depends(require(scope))], responses=errors.declared(*statuses)
        )
    if production:
        docs.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_path={"/events": settings.max_events_body_bytes},
    )
    app.add_middleware(prometheus.MetricsMiddleware)
    if log := audit_log_path(settings):
        app.add_middleware(
            AuditMiddleware,
            audit=open_audit_log(log, settings.audit_max_bytes, settings.audit_backups),
        )
    if settings.trusted_hosts:  # outermost: a request for another host is refused first
        app.add_middleware(TrustedHostsMiddleware, allowed=settings.trusted_hosts)
    return app


def audit_log_path(settings: Settings):
    """SHOPFEAST_AUDIT_LOG: a path, or `off`; unset: DATA_DIR/logs/audit.jsonl in production."""
    value = (settings.audit_log or "").strip()
    if value.lower() == "off" or (not value and settings.env != "production"):
        return None
    return Path(value) if value else Path(settings.data_dir) / "logs" / "audit.jsonl"


def served_log(settings: Settings) -> ServedLog | None:
    """The bounded log of served vectors and scores (SHOPFEAST_SERVED_LOG*), or None when off."""
    if not settings.served_log:
        return None
    bounds = Bounds(
        sample_rate=settings.served_log_sample_rate,
        max_rows_per_day=settings.served_log_max_rows_per_day,
        rows_per_request=settings.served_log_rows_per_request,
        retention_days=settings.served_log_retention_days,
    )
    return ServedLog(Path(settings.data_dir), bounds)
