"""What the monitor reads from Feast: materialization watermarks, online key expiry, and the
online and offline vectors of the same entities at the same instant.

Public Feast API except the Redis client (`_get_client`, listed with the other private names in
tests/featurestore). Comparing and judging is the monitor's business (monitoring/).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore
from feast.online_response import TIMESTAMP_POSTFIX
from feast.value_type import ValueType

from featurestore.redis_encoding import entity_keys

TIMESTAMP = "event_timestamp"


def materialized_until(store: FeatureStore) -> dict[str, datetime | None]:
    """Per feature view, the end of its latest materialization recorded in the registry."""
    return {v.name: v.most_recent_end_time for v in store.list_feature_views()}


def online_kind(store: FeatureStore) -> str:
    return str(getattr(store.config.online_store, "type", "sqlite"))


def key_ttl_seconds(store: FeatureStore) -> int | None:
    return getattr(store.config.online_store, "key_ttl_seconds", None)


def redis_ttls(
    store: FeatureStore, join_key: str | tuple[str, ...], ids: list[str] | list[tuple[str, ...]]
) -> list[int]:
    """Seconds until each entity's Redis hash expires (-1 no expiry, -2 no key). An entity of
    several keys (customer x product) is a tuple of ids under the tuple of its join keys."""
    online = store.config.online_store
    client = store._get_provider().online_store._get_client(online)
    if isinstance(join_key, str):
        keys = entity_keys(pa.array(ids, pa.string()), join_key, ValueType.STRING, store.project)
    else:
        from featurestore.materialize.source import KEY_SEP
        from featurestore.materialize.writer import composite_keys

        joined = pa.array([KEY_SEP.join(i) for i in ids], pa.string())
        keys = composite_keys(joined, tuple(join_key), store.project)
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.ttl(k)
    return [int(v) for v in pipe.execute()]


@dataclass
class Group:
    """Feature references read together: they need the same entity columns."""

    keys: tuple[str, ...]
    request_fields: tuple[str, ...]
    refs: list[str]
    services: dict[str, list[str]]  # ref -> services that serve it


def service_groups(
    store: FeatureStore, join_key_of: dict[str, str | tuple[str, ...]]
) -> list[Group]:
    """Every feature of every feature service, grouped by the entity keys it needs.

    `join_key_of`: feature view name -> its join key, or keys (the declarations'). An on-demand
    view needs its source views' keys and its request fields.
    """
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}

    def needs(view: str) -> tuple[set[str], set[str]]:
        if view in join_key_of:
            keys = join_key_of[view]
            return ({keys} if isinstance(keys, str) else set(keys)), set()
        odfv = odfvs[view]
        keys: set[str] = set()
        fields: set[str] = set()
        for p in odfv.source_feature_view_projections:
            k, _ = needs(p)
            keys |= k
        for src in odfv.source_request_sources.values():
            fields |= {f.name for f in src.schema}
        return keys, fields - {TIMESTAMP}

    groups: dict[tuple, Group] = {}
    services: list[FeatureService] = store.list_feature_services()
    for svc in sorted(services, key=lambda s: s.name):
        for proj in svc.feature_view_projections:
            keys, fields = needs(proj.name)
            gk = (tuple(sorted(keys)), tuple(sorted(fields)))
            g = groups.setdefault(gk, Group(gk[0], gk[1], [], {}))
            for f in proj.features:
                ref = f"{proj.name_to_use()}:{f.name}"
                if ref not in g.services:
                    g.refs.append(ref)
                    g.services[ref] = []
                g.services[ref].append(svc.name)
    # A view that needs only request fields (no key) is read with the group needing most keys
    # (its service reads it with those rows too).
    keyed = sorted((g for g in groups.values() if g.keys), key=lambda g: -len(g.keys))
    for g in [g for g in groups.values() if not g.keys]:
        if keyed:
            host = keyed[0]
            host.request_fields = tuple(sorted(set(host.request_fields) | set(g.request_fields)))
            host.refs += g.refs
            host.services |= g.services
    return keyed


ONLINE_TS = "__online_ts"  # read_both: the online row time of a ref (epoch seconds)


def read_both(
    store: FeatureStore, refs: list[str], entities: pd.DataFrame, at: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Online and offline values of `refs` for the rows of `entities` (keys and request fields)
    as of `at`; columns named by the refs, rows in the order of `entities`.

    Read with short feature names: Feast 0.67's `get_online_features(full_feature_names=True)`
    drops on-demand views' outputs. Refs whose short names collide are read in separate calls.
    The online frame also holds `<ref>__online_ts`: the stored row's event time in seconds.
    """
    online, offline = {}, {}
    for part in _without_collisions(refs):
        on, off = _read(store, part, entities, at)
        for ref in part:
            name = ref.split(":", 1)[1]
            online[ref], offline[ref] = on[name].tolist(), off[name].tolist()
            stamp = on.get(name + TIMESTAMP_POSTFIX)
            if stamp is not None:
                online[ref + ONLINE_TS] = stamp.tolist()
    return pd.DataFrame(online), pd.DataFrame(offline)


def _without_collisions(refs: list[str]) -> list[list[str]]:
    parts: list[list[str]] = []
    for ref in refs:
        name = ref.split(":", 1)[1]
        for part in parts:
            if all(r.split(":", 1)[1] != name for r in part):
                part.append(ref)
                break
        else:
            parts.append([ref])
    return parts


def _read(store: FeatureStore, refs: list[str], entities: pd.DataFrame, at: datetime):
    frame = entities.reset_index(drop=True).copy()
    frame[TIMESTAMP] = pd.Timestamp(at)
    frame["_row"] = range(len(frame))
    offline = store.get_historical_features(entity_df=frame, features=refs).to_df()
    offline = offline.sort_values("_row").reset_index(drop=True)
    rows = frame.drop(columns=["_row"]).to_dict("records")
    values = store.get_online_features(features=refs, entity_rows=rows).to_dict(
        include_event_timestamps=True
    )
    # an on-demand view's outputs may come without times: keep only columns of the full length
    online = pd.DataFrame({k: v for k, v in values.items() if len(v) == len(rows)})
    return online, offline
