"""Feature vectors as the online store serves them, through the API's feature services."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Response

from featurestore.online import OnlineFeatures
from serving.audit import count_entities
from serving.deps import OnlineDep, ResourcesDep, SettingsDep
from serving.errors import InvalidRequest, NotFound, declared
from serving.schemas import BatchRequest, BatchResponse, EntityId, FeaturesResponse

router = APIRouter(prefix="/features", tags=["features"])

JOIN_KEYS = {"customer": "customer_id", "product": "product_id"}
# Raw personal data never leaves the API, whatever a view may one day hold. Derived features
# (age in years, one-hot flags) are not raw PII; fields tagged pii=true in Feast are dropped too.
PII_FIELDS = frozenset(
    {
        "birth_year",
        "birth_date",
        "email",
        "name",
        "first_name",
        "last_name",
        "phone",
        "address",
        "street",
        "postcode",
        "zip_code",
        "ip_address",
    }
)


@router.get("/customers/{customer_id}", response_model=FeaturesResponse, responses=declared(404))
async def customer_features(customer_id: EntityId, online: OnlineDep, settings: SettingsDep):
    count_entities(1)
    return await _one(online, settings.customer_service, "customer", customer_id)


@router.get("/products/{product_id}", response_model=FeaturesResponse, responses=declared(404))
async def product_features(product_id: EntityId, online: OnlineDep, settings: SettingsDep):
    count_entities(1)
    return await _one(online, settings.product_service, "product", product_id)


@router.post("/batch", response_model=BatchResponse)
async def batch_features(body: BatchRequest, res: ResourcesDep) -> Response:
    # one dependency for the store and the settings: FastAPI solves each per request (~30 us)
    online, settings = res.online, res.settings
    count_entities(len(body.ids))
    if len(body.ids) > settings.max_batch_entities:
        raise InvalidRequest(f"at most {settings.max_batch_entities} ids per batch")
    service = settings.customer_service if body.entity == "customer" else settings.product_service
    res = await online.read(service, {JOIN_KEYS[body.entity]: body.ids}, operation="features")
    names = public_names(online, service)
    found = [any(flags) for flags in zip(*res.found.values(), strict=True)] or [False] * len(
        body.ids
    )
    rows = zip(*(res.columns[n] for n in names), strict=True)
    results = [
        {"id": i, "found": f, "features": dict(zip(names, row, strict=True)) if f else None}
        for i, f, row in zip(body.ids, found, rows, strict=True)
    ]
    # BatchResponse's shape, written here: validating 20 x 70 values through the model and
    # FastAPI's jsonable_encoder cost more than reading them (issue 17)
    payload = {"entity": body.entity, "feature_service": service, "results": results}
    return Response(_dumps(payload), media_type="application/json")


def _dumps(payload: Any) -> bytes:
    """JSON as FastAPI's JSONResponse renders `_jsonable` of the payload: times and dates as ISO
    strings, sets and tuples as lists, NumPy scalars as Python ones, NaN and infinities as null.

    orjson writes it (a tenth of the standard encoder's CPU: ~0.4 ms of a 20-customer request's
    ~2), with times, dates and whatever else JSON has no form for handed to `_default`. Its
    bytes are the standard encoder's except for a float under 1e-4 (`1e-5` or `0.00001` where
    Python writes `1e-05`): any token that may be one (`_MAY_DIFFER`) sends the payload through
    the standard encoder, so the body is byte for byte what it was. There, a non-finite float
    (rare: Feast keeps a missing value as null) makes the strict encoder raise, and only then is
    every value walked by `_value` (orjson writes those as null itself, the same bytes)."""
    try:
        out = orjson.dumps(payload, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:  # orjson.JSONEncodeError: a value it refuses (a non-str key, a huge int)
        out = None
    if out is not None and not _may_differ(out):
        return out
    try:
        return _encode(payload, _default)
    except ValueError:
        return _encode(_value(payload), None)


def _may_differ(out: bytes) -> bool:
    """Whether orjson's bytes may hold a number `json.dumps` writes otherwise: a negative
    exponent (`1e-5`; Python `1e-05`) or a plain decimal under 1e-4 (`0.00001`). Two substring
    scans (~0.03 ms for 40 kB; a regular expression takes ten times that), then, only if one
    hits, the exact pattern: a string holding the same characters costs the standard encoder's
    time, never a different body."""
    if b"e-" not in out and b"0.0000" not in out:
        return False
    return _MAY_DIFFER.search(out) is not None


# such a number: right after the `:`, `,` or `[` before a value, or a digit before `e-`
_MAY_DIFFER = re.compile(rb"[0-9]e-|[:,\[]-?0\.0000")


def _encode(payload: Any, default) -> bytes:
    return json.dumps(
        payload,
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
        default=default,
    ).encode("utf-8")


def _default(v: Any) -> Any:
    """What `_value` makes of a value JSON cannot write as it is (called only for those)."""
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, (set, frozenset)):
        return list(v)
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


async def _one(online: OnlineFeatures, service: str, entity: str, entity_id: str) -> dict:
    now = datetime.now(UTC)
    res = await online.read(
        service, {JOIN_KEYS[entity]: [entity_id]}, {"event_timestamp": now}, operation="features"
    )
    if not res.any_found(0):
        raise NotFound(f"unknown {entity}")  # the id is the caller's: not echoed
    oldest = res.oldest(0)
    return {
        "entity": entity,
        "id": entity_id,
        "feature_service": service,
        "features": _jsonable(res.row(0, public_names(online, service))),
        "feature_age_seconds": (now - oldest).total_seconds() if oldest else None,
    }


def public_names(online: OnlineFeatures, service: str) -> list[str]:
    """The service's features an answer may show (no PII), worked out once per plan."""
    plan = online.plan(service)
    known = _PUBLIC.get(service)
    if known is not None and known[0] is plan:
        return known[1]
    tagged = {
        f.name
        for vp in plan.views
        for f in vp.view.features
        if str((f.tags or {}).get("pii", "")).lower() == "true"
    }
    names = [n for n in plan.feature_names if n not in PII_FIELDS and n not in tagged]
    _PUBLIC[service] = (plan, names)
    return names


_PUBLIC: dict[str, tuple[Any, list[str]]] = {}  # service -> (its plan, public names)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _value(v) for k, v in row.items()}


def _value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_value(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return _value(v.item())
    return v
