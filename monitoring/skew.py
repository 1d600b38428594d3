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
        bad = np.flatnonzero(differ(a, b) & ~np.array(ahead, dtype=bool)).tolist()
        compared = int((~_nulls(b)).sum())
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


def differ(a: list, b: list) -> np.ndarray:
    """`not same(a[i], b[i])` for every i, over whole columns: numbers, strings, timestamps and
    lists of them compared with NumPy; a column holding anything else (or a mix, such as a bool
    next to a number) goes value by value through `same`."""
    a, b = list(a), list(b)
    kind = _kind(a, b)
    if kind == "null":
        return np.zeros(len(a), dtype=bool)
    if kind == "number":
        return _differ_numbers(_floats(a), _floats(b))
    if kind == "string":
        x, y = _objects(a), _objects(b)
        return ~((x == y) | (_nulls(a) & _nulls(b)))  # None == None is True there already
    if kind == "time":
        x, y = _seconds(a), _seconds(b)
        if x is not None and y is not None:
            nx, ny = np.isnan(x), np.isnan(y)
            return (nx != ny) | (~nx & ~ny & (x != y))
    if kind == "list":
        return _differ_lists(a, b)
    return np.array([not same(x, y) for x, y in zip(a, b, strict=True)], dtype=bool)


_NULL_TYPES = (type(None), type(pd.NaT), type(pd.NA))


def _kind(a: list, b: list) -> str:
    types = set(map(type, a)) | set(map(type, b))
    types -= set(_NULL_TYPES)
    if not types:
        return "null"
    if types <= {str, float} and str in types:  # NaN is a string column's null
        floats = [v for v in (*a, *b) if type(v) is float]
        return "string" if all(math.isnan(v) for v in floats) else "mixed"
    if all(t is not bool and issubclass(t, (float, int, np.integer)) for t in types):
        if not all(issubclass(t, (float, int, np.int64, np.int32)) for t in types):
            return "mixed"
        return "number"
    if all(issubclass(t, datetime) for t in types):
        return "time"
    if all(issubclass(t, (list, tuple, np.ndarray)) for t in types):
        return "list"
    return "mixed"


def _nulls(values: list) -> np.ndarray:
    """Where `_norm` gives None: None, NaT, NA, a float NaN."""
    return np.array(
        [
            v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and v != v)
            for v in values
        ],
        dtype=bool,
    )


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [None if type(v) is float else v for v in values]  # NaN: null (checked by _kind)
    return out


def _floats(values: list) -> np.ndarray:
    return np.array([np.nan if v is None or v is pd.NaT or v is pd.NA else v for v in values],
                    dtype=np.float64)  # fmt: skip


def _differ_numbers(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) per element, NaN as null (equal to NaN)."""
    nx, ny = np.isnan(x), np.isnan(y)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(x - y)
        close = (x == y) | (
            np.isfinite(diff)
            & ((diff <= 1e-9 * np.abs(x)) | (diff <= 1e-9 * np.abs(y)) | (diff <= 1e-12))
        )
    return (nx != ny) | (~nx & ~ny & ~close)


def _seconds(values: list) -> np.ndarray | None:
    """Whole epoch seconds (floored, as `_norm`), NaN for null; None when pandas cannot put the
    column on one clock (naive next to aware)."""
    try:
        stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    except (TypeError, ValueError):
        return None
    ns = stamps.dt.as_unit("ns").astype("int64").to_numpy()
    out = (ns // 1_000_000_000).astype(np.float64)
    out[stamps.isna().to_numpy()] = np.nan
    return out


def _differ_lists(a: list, b: list) -> np.ndarray:
    """Null against a list differs, lists of other lengths differ, else their items (flattened
    and compared as columns, by the rules above) decide."""
    na, nb = _nulls(a), _nulls(b)
    la = np.array([-1 if n else len(v) for v, n in zip(a, na, strict=True)])
    lb = np.array([-1 if n else len(v) for v, n in zip(b, nb, strict=True)])
    out = la != lb
    rows = np.flatnonzero(~out & (la > 0))
    if len(rows):
        flat_a = [x for i in rows for x in _items(a[i])]
        flat_b = [x for i in rows for x in _items(b[i])]
        items = differ(flat_a, flat_b)
        starts = np.concatenate([[0], np.cumsum(la[rows])[:-1]])
        out[rows] = np.logical_or.reduceat(items, starts)
    return out


def _items(v) -> list:
    return v.tolist() if isinstance(v, np.ndarray) else list(v)


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
