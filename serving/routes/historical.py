"""Feature values of a few entities over a time range, from the offline store.

`POST /features/historical` answers the values at each daily snapshot (00:00 UTC) in
`[start, end]`, read with Feast's `get_historical_features` (featurestore/history.py): what a
training set built at those instants holds. Bounded: at most `max_batch_entities` ids and
`max_historical_rows` ids x snapshots per call, one offline read at a time per process (each
runs DuckDB over the parquet sources in a worker thread, off the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter

from featurestore import history
from serving.audit import count_entities
from serving.deps import SettingsDep, StoreDep
from serving.errors import InvalidRequest, NotFound, StoreUnavailable, declared
from serving.routes.features import JOIN_KEYS, PII_FIELDS, _value
from serving.schemas import HistoricalRequest, HistoricalResponse

router = APIRouter(prefix="/features", tags=["features"])
log = logging.getLogger("serving")
_ONE_AT_A_TIME = threading.Lock()


@router.post("/historical", response_model=HistoricalResponse, responses=declared(404))
async def historical_features(body: HistoricalRequest, store: StoreDep, settings: SettingsDep):
    """Values at each daily snapshot in the range, per id, from the offline store. 404 names
    how many ids the offline store does not know (a row at or before `end`); 422 for a range
    without a snapshot, end before start, too many ids or rows, or features of another entity."""
    ids = list(dict.fromkeys(body.ids))
    count_entities(len(ids))
    if len(ids) > settings.max_batch_entities:
        raise InvalidRequest(f"at most {settings.max_batch_entities} ids per call")
    if body.end < body.start:
        raise InvalidRequest("end is before start")
    if (body.start.tzinfo is None) != (body.end.tzinfo is None):
        raise InvalidRequest("start and end must both carry a time zone, or neither (UTC)")
    at = history.snapshots(body.start, body.end)
    if not at:
        raise InvalidRequest("the range holds no snapshot (snapshots are daily at 00:00 UTC)")
    if len(ids) * len(at) > settings.max_historical_rows:
        raise InvalidRequest(
            f"{len(ids)} ids x {len(at)} snapshots is over {settings.max_historical_rows} rows: "
            "ask for a shorter range or fewer ids"
        )
    try:
        return await asyncio.to_thread(_answer, body, ids, at, store, settings)
    except history.HistoryRequestError as exc:
        raise InvalidRequest(str(exc)) from None


def _answer(body: HistoricalRequest, ids, at, store, settings) -> HistoricalResponse:
    with _ONE_AT_A_TIME:
        try:
            plan = history.plan(store, JOIN_KEYS[body.entity], body.feature_service, body.features)
        except history.HistoryRequestError:
            raise
        except Exception as exc:
            raise _unavailable(exc) from exc
        try:
            known = history.known_ids(plan, ids, at[-1])
        except Exception as exc:
            raise _unavailable(exc) from exc
        if unknown := [i for i in ids if i not in known]:
            raise NotFound(
                f"{len(unknown)} of {len(ids)} ids unknown to the offline store up to the end "
                "of the range"
            )
        try:
            df = history.read(store, plan, ids, at, settings.data_dir)
        except Exception as exc:
            raise _unavailable(exc) from exc
    names = [
        n
        for n in plan.names
        if n not in PII_FIELDS and str(plan.tags.get(n, {}).get("pii", "")).lower() != "true"
    ]
    records = df[names].to_dict("records") if names else [{} for _ in range(len(df))]
    rows = [
        {"id": i, "snapshot": t, "features": {k: _plain(v) for k, v in r.items()}}
        for i, t, r in zip(df["id"], df["snapshot"], records, strict=True)
    ]
    return HistoricalResponse(
        entity=body.entity,
        feature_service=body.feature_service,
        features=names,
        snapshots=at,
        rows=rows,
    )


def _plain(v: Any) -> Any:
    """A value as JSON carries it: arrays as lists, pandas' missing values as null."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    return _value(v)


def _unavailable(exc: Exception) -> StoreUnavailable:
    log.warning("offline read failed: %s: %s", type(exc).__name__, exc)
    return StoreUnavailable("the offline store or the registry did not answer")
