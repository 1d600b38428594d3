"""The on-demand features' logic: pure functions from Feast's python-mode inputs to outputs.

Feast calls these (through the thin UDFs in feature_repo/on_demand.py) with a dict of columns,
each a list with one value per row: offline from `get_historical_features`, online from
`get_online_features`. Both paths must give the same number for the same inputs, so:

- timestamps are read at whole seconds: Feast's online path carries `unix_timestamp_val` in
  seconds (stored values and the request time alike), the offline path microseconds; flooring
  both makes training equal serving, exact at any instant to the second;
- anything may be missing (None, NaN, an absent optional column) and gives a defined value; an
  unknown float is NaN (Feast serves it as null online, pandas holds NaN offline, and Feast infers
  the output types from a sample run, which a None would defeat).

Columns each function reads are named below; `OPTIONAL_*` ones are used when the pipelines
provide them and have documented fallbacks otherwise (docs/feast.md lists them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

SECONDS_PER_DAY = 86_400.0

# --- customer_recency --------------------------------------------------------------------------
REQUEST_TIME = "event_timestamp"
LAST_ORDER = "last_order_ts"  # customer_activity
SIGNUP = "signup_ts"  # customer_profile
OPTIONAL_LAST_ACTIVITY = "last_event_ts"  # customer_activity: latest event of any type before T

RECENCY_OUTPUTS = ("days_since_last_order", "days_since_last_activity", "tenure_days")

# --- product_age -------------------------------------------------------------------------------
PRODUCT_CREATED = "product_created_at"  # product_stats

# --- customer_product_match --------------------------------------------------------------------
RECENT_PRODUCTS = "recent_product_ids"  # customer_activity, most recent first
FAVOURITE_CATEGORY = "favourite_category_90d"  # customer_activity
PRODUCT_PRICE = "product_price"  # product_stats
PRODUCT_CATEGORY = "category"  # product_stats
PRODUCT_BRAND = "brand"  # product_stats
COPURCHASE_IDS = "copurchase_product_ids"  # product_copurchase
COPURCHASE_SCORES = "copurchase_scores"  # product_copurchase
OPTIONAL_PURCHASED = "purchased_product_ids"  # customer_activity: distinct products ever bought
OPTIONAL_ITEM_PRICE = "avg_item_price_90d"  # customer_activity: mean unit price bought, 90d
OPTIONAL_CATEGORIES = "top_categories_90d"  # customer_activity: categories by units, 90d
OPTIONAL_CATEGORY_SHARES = "top_category_shares_90d"  # their shares of units (same order)
OPTIONAL_BRANDS = "top_brands_90d"  # customer_activity: brands by units, 90d
OPTIONAL_BRAND_SHARES = "top_brand_shares_90d"

# What each on-demand view reads, per source view (feature_repo/on_demand.py projects its sources
# to these, so inputs never collide by name across views; optional ones only when declared).
RECENCY_INPUTS = {
    "customer_activity": (LAST_ORDER, OPTIONAL_LAST_ACTIVITY),
    "customer_profile": (SIGNUP,),
}
AGE_INPUTS = {"product_stats": (PRODUCT_CREATED,)}
MATCH_INPUTS = {
    "customer_activity": (
        RECENT_PRODUCTS,
        FAVOURITE_CATEGORY,
        OPTIONAL_PURCHASED,
        OPTIONAL_ITEM_PRICE,
        OPTIONAL_CATEGORIES,
        OPTIONAL_CATEGORY_SHARES,
        OPTIONAL_BRANDS,
        OPTIONAL_BRAND_SHARES,
    ),
    "product_stats": (PRODUCT_PRICE, PRODUCT_CATEGORY, PRODUCT_BRAND),
    "product_copurchase": (COPURCHASE_IDS, COPURCHASE_SCORES),
}

MATCH_OUTPUTS = (
    "price_ratio",
    "price_distance",
    "category_affinity",
    "is_favourite_category",
    "brand_affinity",
    "already_purchased",
    "copurchase_score",
    "copurchase_hits",
)


def customer_recency(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Days since the last order / last activity and tenure, at the request time, as floats."""
    n = _rows(inputs)
    now = [_stored_seconds(t) for t in _column(inputs, REQUEST_TIME, n)]
    last_order = [_stored_seconds(v) for v in _column(inputs, LAST_ORDER, n)]
    signup = [_stored_seconds(v) for v in _column(inputs, SIGNUP, n)]
    last_event = [_stored_seconds(v) for v in _column(inputs, OPTIONAL_LAST_ACTIVITY, n)]
    last_activity = [_latest(a, b) for a, b in zip(last_order, last_event, strict=True)]
    return {
        "days_since_last_order": [_days(t, s) for t, s in zip(now, last_order, strict=True)],
        "days_since_last_activity": [_days(t, s) for t, s in zip(now, last_activity, strict=True)],
        "tenure_days": [_days(t, s) for t, s in zip(now, signup, strict=True)],
    }


def product_age(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Days since the product was created, at the request time."""
    n = _rows(inputs)
    now = [_stored_seconds(t) for t in _column(inputs, REQUEST_TIME, n)]
    created = [_stored_seconds(v) for v in _column(inputs, PRODUCT_CREATED, n)]
    return {"days_since_created": [_days(t, c) for t, c in zip(now, created, strict=True)]}


def customer_product_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """How a candidate fits a customer: price, category, brand, history, co-purchase."""
    n = _rows(inputs)
    col = {
        name: _column(inputs, name, n)
        for name in (
            RECENT_PRODUCTS,
            FAVOURITE_CATEGORY,
            PRODUCT_PRICE,
            PRODUCT_CATEGORY,
            PRODUCT_BRAND,
            COPURCHASE_IDS,
            COPURCHASE_SCORES,
            OPTIONAL_PURCHASED,
            OPTIONAL_ITEM_PRICE,
            OPTIONAL_CATEGORIES,
            OPTIONAL_CATEGORY_SHARES,
            OPTIONAL_BRANDS,
            OPTIONAL_BRAND_SHARES,
            "product_id",
        )
    }
    out: dict[str, list[Any]] = {name: [] for name in MATCH_OUTPUTS}
    for i in range(n):
        row = {name: values[i] for name, values in col.items()}
        for name, value in _match_row(row, has_shares=OPTIONAL_CATEGORIES in inputs).items():
            out[name].append(value)
    return out


def _match_row(row: dict[str, Any], has_shares: bool) -> dict[str, Any]:
    price = _number(row[PRODUCT_PRICE])
    usual = _number(row[OPTIONAL_ITEM_PRICE])
    ratio = price / usual if price is not None and usual and usual > 0 else math.nan
    distance = abs(math.log(ratio)) if ratio > 0 else math.nan  # NaN > 0 is False

    category = _text(row[PRODUCT_CATEGORY])
    favourite = _text(row[FAVOURITE_CATEGORY])
    is_favourite = int(category is not None and category == favourite)
    if has_shares:
        category_affinity = _share(
            category, row[OPTIONAL_CATEGORIES], row[OPTIONAL_CATEGORY_SHARES]
        )
    else:
        category_affinity = float(is_favourite)
    brand_affinity = _share(
        _text(row[PRODUCT_BRAND]), row[OPTIONAL_BRANDS], row[OPTIONAL_BRAND_SHARES]
    )

    recent = _strings(row[RECENT_PRODUCTS])
    purchased = set(_strings(row[OPTIONAL_PURCHASED])) | set(recent)
    product = _text(row["product_id"])
    score, hits = _copurchase(recent, row[COPURCHASE_IDS], row[COPURCHASE_SCORES])
    return {
        "price_ratio": ratio,
        "price_distance": distance,
        "category_affinity": category_affinity,
        "is_favourite_category": is_favourite,
        "brand_affinity": brand_affinity,
        "already_purchased": int(product is not None and product in purchased),
        "copurchase_score": score,
        "copurchase_hits": hits,
    }


def _copurchase(recent: Sequence[str], ids: Any, scores: Any) -> tuple[float, int]:
    """Sum of the candidate's co-purchase scores with the customer's recent products."""
    recent_set = set(recent)
    total, hits = 0.0, 0
    for pid, s in zip(_strings(ids), _numbers(scores), strict=False):
        if pid in recent_set and s is not None:
            total += s
            hits += 1
    return total, hits


def _share(key: str | None, keys: Any, shares: Any) -> float:
    """The customer's share of units in `key`; 0 when not among them, NaN when unknown."""
    if _missing_list(keys) or key is None:
        return math.nan
    for name, s in zip(_strings(keys), _numbers(shares), strict=False):
        if name == key:
            return s if s is not None else 0.0
    return 0.0


# --- value coercion (Feast hands python values, numpy values or pandas values) -----------------


def _rows(inputs: dict[str, list[Any]]) -> int:
    return max((len(v) for v in inputs.values()), default=0)


def _column(inputs: dict[str, list[Any]], name: str, n: int) -> list[Any]:
    values = inputs.get(name)
    return list(values) if values is not None else [None] * n


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, NaT
    except (TypeError, ValueError):
        return False


def _instant(v: Any) -> float | None:
    """Epoch seconds (float) of a datetime-like, ISO string or epoch number; None when missing."""
    if _missing(v):
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return v.timestamp()
    if isinstance(v, str):
        return _instant(datetime.fromisoformat(v.replace("Z", "+00:00")))
    if hasattr(v, "to_pydatetime"):  # pandas Timestamp
        return _instant(v.to_pydatetime())
    if hasattr(v, "astype") and "datetime64" in str(getattr(v, "dtype", "")):
        return int(v.astype("datetime64[us]").astype("int64")) / 1e6
    return float(v)


def _stored_seconds(v: Any) -> float | None:
    t = _instant(v)
    return None if t is None else float(math.floor(t))


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _days(now: float | None, then: float | None) -> float:
    if now is None or then is None:
        return math.nan
    return (now - then) / SECONDS_PER_DAY


def _missing_list(v: Any) -> bool:
    return v is None or (not hasattr(v, "__len__") and _missing(v))


def _number(v: Any) -> float | None:
    return None if _missing(v) else float(v)


def _numbers(values: Any) -> list[float | None]:
    return [_number(v) for v in _iterable(values)]


def _text(v: Any) -> str | None:
    return None if _missing(v) else str(v)


def _strings(values: Any) -> list[str]:
    return [str(v) for v in _iterable(values) if not _missing(v)]


def _iterable(values: Any) -> Iterable[Any]:
    if values is None or isinstance(values, (str, bytes)):
        return ()
    try:
        return list(values)
    except TypeError:
        return ()
