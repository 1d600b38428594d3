"""Feature values over time from the offline store: what `POST /features/historical` answers.

Values are read with Feast's own `get_historical_features` at each daily snapshot (00:00 UTC,
the pipelines' grain: docs/point_in_time.md) of a range, one entity row per (id, snapshot), so an
answer is exactly what a training set built at those instants holds. What may be asked is checked
first (`plan`): the features of one entity (no pair services, no request fields but the request
time) and ids the offline store knows (`known_ids`: a change-point row at or before the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView
from feast.errors import FeastObjectNotFoundException, FeatureNameCollisionError
from feast.utils import _get_online_request_context

from featurestore.store import bound_duckdb

DAY = timedelta(days=1)
# The request time is the one request field an offline read fills itself (the entity rows'
# event_timestamp); any other (ranking_model_v2's candidate score) would come from the caller.
REQUEST_TIME = "event_timestamp"


class HistoryRequestError(ValueError):
    """What was asked cannot be read for this entity; the message is safe to show a caller."""


@dataclass(frozen=True)
class HistoryPlan:
    join_key: str
    features: FeatureService | list[str]  # what get_historical_features is given
    names: tuple[str, ...]  # the result's feature columns, in the service's order
    tags: dict[str, dict[str, str]]  # feature name -> its tags (pii=true is never served)
    views: tuple[FeatureView, ...]  # the entity's views: where a known id has rows


def snapshots(start: datetime, end: datetime) -> list[datetime]:
    """The daily snapshots T with start <= T <= end (naive times are UTC)."""
    start, end = _utc(start), _utc(end)
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += DAY
    n = int((end - first) // DAY) + 1 if first <= end else 0
    return [first + i * DAY for i in range(n)]


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def plan(
    store: FeatureStore,
    join_key: str,
    service: str | None = None,
    features: Sequence[str] | None = None,
) -> HistoryPlan:
    """Resolve a feature service or `view:feature` references for entities keyed by `join_key`."""
    if (service is None) == (features is None):
        raise HistoryRequestError("give either feature_service or features, not both")
    try:
        wanted: FeatureService | list[str] = (
            store.get_feature_service(service) if service is not None else list(features or ())
        )
        refs, odfvs, _, _, _, grouped, names, request_data, _ = _get_online_request_context(
            store.registry, store.project, wanted, full_feature_names=False
        )
        views = [view for view, _ in grouped] + [
            store.get_feature_view(p.name)
            for odfv in odfvs
            for p in odfv.source_feature_view_projections.values()
        ]
    except (FeastObjectNotFoundException, FeatureNameCollisionError, ValueError, KeyError) as exc:
        # an unknown service, view or feature, a malformed reference; anything else (the registry
        # unreachable) is the caller's to answer as unavailable
        what = f"feature service '{service}'" if service is not None else "features"
        raise HistoryRequestError(f"{what} cannot be resolved: {_first_line(exc)}") from None
    join_keys = {k for view in views for k in view.join_keys}
    if join_keys != {join_key}:
        raise HistoryRequestError(
            f"these features are keyed by {sorted(join_keys)}, not by {join_key} alone"
        )
    if extra := set(request_data) - {REQUEST_TIME}:
        raise HistoryRequestError(f"these features need request fields {sorted(extra)}")
    tags = {
        f.name: dict(f.tags or {})
        for view in store.list_feature_views()
        if view.join_keys == [join_key]
        for f in view.features
    }
    ordered = [r.split(":", 1)[1] for r in refs]
    entity_views = tuple(v for v in store.list_feature_views() if v.join_keys == [join_key])
    return HistoryPlan(
        join_key=join_key,
        features=wanted,
        names=tuple(n for n in dict.fromkeys(ordered) if n in names),
        tags=tags,
        views=entity_views,
    )


def known_ids(plan: HistoryPlan, ids: Sequence[str], end: datetime) -> set[str]:
    """The ids with a change-point row at or before `end` in any of the entity's views (a
    customer or product the offline store has heard of by then)."""
    found: set[str] = set()
    con = duckdb.connect()
    try:
        for view in plan.views:
            source = view.batch_source
            rows = con.execute(
                f'SELECT DISTINCT "{plan.join_key}" FROM read_parquet($path, union_by_name = true) '
                f'WHERE "{plan.join_key}" IN (SELECT unnest($ids)) '
                f'AND "{source.timestamp_field}" <= $end',
                {"path": source.path, "ids": list(ids), "end": _utc(end)},
            ).fetchall()
            found.update(r[0] for r in rows)
    finally:
        con.close()
    return found


def read(
    store: FeatureStore,
    plan: HistoryPlan,
    ids: Sequence[str],
    at: Sequence[datetime],
    data_dir: Path,
) -> pd.DataFrame:
    """One row per (id, snapshot), ids in the order given, then by time: `id`, `snapshot` and
    the plan's feature columns, as `get_historical_features` returns them. DuckDB gets the
    store's memory limit and spill directory under `data_dir` (featurestore.store.bound_duckdb).
    """
    bound_duckdb(data_dir)
    entity_df = pd.DataFrame(
        [(i, t) for i in ids for t in at], columns=[plan.join_key, "event_timestamp"]
    )
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    df = store.get_historical_features(entity_df=entity_df, features=plan.features).to_df()
    order = {i: n for n, i in enumerate(ids)}
    df = df.assign(_order=df[plan.join_key].map(order))
    df = df.sort_values(["_order", "event_timestamp"], kind="stable").reset_index(drop=True)
    out = df[[plan.join_key, "event_timestamp", *plan.names]]
    return out.rename(columns={plan.join_key: "id", "event_timestamp": "snapshot"})


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
