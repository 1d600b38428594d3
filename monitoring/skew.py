"""Training/serving skew: the online vector against the offline value as of the same instant.

For sampled entities (customers and products that exist in the offline sources at the instant;
for the services that need both, the (customer, product) pairs a view keyed by both holds, else
the two samples zipped), every feature of every feature service
is read online (`get_online_features`, what serving reads) and offline (`get_historical_features`,
what training reads) at one instant: the latest materialization end, floored to whole seconds (the
grain Feast stores online). Values are compared as served: nulls alike, timestamps at whole
seconds, floats to 1e-9 relative. Any mismatch is an alert naming the feature, with examples.
Rows stored online after the instant (pushed by the stream worker) are counted as ahead of the
batch side, not compared.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd

from featurestore.observe import ONLINE_TS, Group, read_both

EXAMPLES = 3


def entity_frame(
    group: Group,
    ids: dict[str, list[str]],
    n: int,
    pairs: dict[tuple[str, ...], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Rows of sampled ids for a group's keys: the sampled combinations that happened when a view
    is keyed by all of them (customer x product), else the samples zipped (cycling the shorter)."""
    known = (pairs or {}).get(tuple(sorted(group.keys)))
    if known is not None and len(known):
        frame = known[list(group.keys)].head(n).reset_index(drop=True)
    else:
        pools = [ids.get(k) or [] for k in group.keys]
        if not all(pools):
            return pd.DataFrame()
        rows = min(n, max(len(p) for p in pools))
        frame = pd.DataFrame(
            {
                k: [p[i % len(p)] for i in range(rows)]
                for k, p in zip(group.keys, pools, strict=True)
            }
        )
    for i, name in enumerate(group.request_fields):  # any value: both paths get the same one
        frame[name] = [0.125 * ((j + i) % 7) for j in range(len(frame))]
    return frame


def compare_group(store, group: Group, entities: pd.DataFrame, at: datetime) -> list[dict]:
    online, offline = read_both(store, group.refs, entities, at)
    keys = list(group.keys)
    at_s = int(pd.Timestamp(at).timestamp())
    out = []
    for ref in group.refs:
        view, feature = ref.split(":", 1)
        a = online[ref].tolist()
        b = offline[ref].tolist()
        # A row stamped after the instant did not come from materialization (which copies rows
        # up to it) but from a push: `shopfeast stream` keeps the real-time views ahead of the
        # batch side until `daily` catches up. Not comparable at the instant, so not skew.
        stamps = online.get(ref + ONLINE_TS)
        ahead = [bool(t and t > at_s) for t in stamps] if stamps is not None else [False] * len(a)
        bad = [i for i in range(len(a)) if not ahead[i] and not same(a[i], b[i])]
        compared = sum(_norm(v) is not None for v in b)
        examples = [
            {
                **{k: str(entities.iloc[i][k]) for k in keys},
                "online": _show(a[i]),
                "offline": _show(b[i]),
            }
            for i in bad[:EXAMPLES]
        ]
        out.append(
            {
                "view": view,
                "feature": feature,
                "services": group.services[ref],
                "rows": len(a),
                "non_null_offline": compared,
                "mismatches": len(bad),
                "ahead_of_batch": sum(ahead),
                "mismatch_share": round(len(bad) / len(a), 6) if a else 0.0,
                "examples": examples,
                "status": "alert" if bad else "ok",
            }
        )
    return out


def same(a, b) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _norm(v):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (pd.Timestamp, datetime)):
        return int(pd.Timestamp(v).timestamp() // 1)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer, float, np.floating)):
        return float(v)
    return v


def _show(v):
    n = _norm(v)
    if isinstance(n, list) and len(n) > 5:
        return n[:5] + ["..."]
    return n
