"""Feature freshness: how old the offline sources and the online store are at `now`.

Per view: the last snapshot day the pipelines computed (their watermark,
DIR/state/features/<view>.json; a change-point source may have no row on a quiet day, so its newest
row is shown but not judged) and the registry's materialized-up-to time. Snapshots are daily at
00:00 UTC, so a healthy store is at most a day and the pipeline run behind: `warn_hours` (26)
tolerates that, `alert_hours` (48) fires before the redis profile's 3-day key expiry makes keys
vanish. On the redis profile, sampled entities' keys with less than `expiry_alert_hours` (24) to
live, or already gone while the source knows the entity, are an alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipelines.specs import FeatureSource
from pipelines.storage import state_dir


@dataclass(frozen=True)
class FreshnessThresholds:
    warn_hours: float = 26.0
    alert_hours: float = 48.0
    expiry_alert_hours: float = 24.0


def watermark(data_dir: Path, source: FeatureSource) -> pd.Timestamp | None:
    path = state_dir(data_dir) / "features" / f"{source.name}.json"
    if not path.exists():
        return None
    end = json.loads(path.read_text()).get("end")
    return pd.Timestamp(end, tz="UTC") if end else None


def judge(age_hours: float | None, t: FreshnessThresholds) -> str:
    if age_hours is None:
        return "alert"
    if age_hours > t.alert_hours:
        return "alert"
    if age_hours > t.warn_hours:
        return "warn"
    return "ok"


def offline(
    data_dir: Path,
    source: FeatureSource,
    newest: pd.Timestamp | None,
    now: pd.Timestamp,
    t: FreshnessThresholds,
) -> dict:
    mark = watermark(data_dir, source)
    computed = mark if mark is not None else newest
    age = _hours(now, computed)
    return {
        "check": "offline",
        "view": source.name,
        "computed_up_to": _iso(computed),
        "newest_row": _iso(newest),
        "age_hours": age,
        "status": judge(age, t),
    }


def online(view: str, until: datetime | None, now: pd.Timestamp, t: FreshnessThresholds) -> dict:
    age = _hours(now, pd.Timestamp(until) if until else None)
    out = {
        "check": "materialized",
        "view": view,
        "materialized_up_to": _iso(until),
        "age_hours": age,
        "status": judge(age, t),
    }
    if until is None:
        out["note"] = "never materialized"
    return out


def expiry(
    entity: str,
    ttls: list[int],
    t: FreshnessThresholds,
    key_ttl: int | None,
) -> dict:
    """Redis TTLs of sampled entities' keys (-2: gone, -1: no expiry)."""
    gone = sum(1 for x in ttls if x == -2)
    live = [x for x in ttls if x >= 0]
    near = sum(1 for x in live if x < t.expiry_alert_hours * 3600)
    return {
        "check": "key_expiry",
        "entity": entity,
        "sampled": len(ttls),
        "missing": gone,
        "near_expiry": near,
        "min_ttl_hours": round(min(live) / 3600, 2) if live else None,
        "profile_ttl_hours": round(key_ttl / 3600, 2) if key_ttl else None,
        "threshold_hours": t.expiry_alert_hours,
        "status": "alert" if (gone or near) else "ok",
    }


def _hours(now: pd.Timestamp, then: pd.Timestamp | None) -> float | None:
    if then is None:
        return None
    then = then.tz_localize("UTC") if then.tzinfo is None else then
    return round(max((now - then).total_seconds(), 0.0) / 3600, 2)


def _iso(ts) -> str | None:
    return None if ts is None else pd.Timestamp(ts).isoformat()
