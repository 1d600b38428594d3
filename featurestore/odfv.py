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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cached_property, partial
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SECONDS_PER_DAY = 86_400.0

# --- customer_recency --------------------------------------------------------------------------
REQUEST_TIME = "event_timestamp"
LAST_ORDER = "last_order_ts"  # customer_activity
SIGNUP = "signup_ts"  # customer_profile
OPTIONAL_LAST_ACTIVITY = "last_event_ts"  # customer_activity: latest event of any type before T

# Each on-demand view's outputs, name: dtype (pipelines.specs vocabulary), declared once here;
# feature_repo/on_demand.py builds the views' schemas from them.
RECENCY_OUTPUTS = {
    "days_since_last_order": "float64",
    "days_since_last_activity": "float64",
    "tenure_days": "float64",
}
AGE_OUTPUTS = {"days_since_created": "float64"}

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

# --- retrieval_match ---------------------------------------------------------------------------
# A request field, not a stored feature: the candidate generator's summed co-purchase score of
# the customer's recent products toward the candidate (training.candidates.copurchase_scores),
# which training computes as of each query and serving as of the request, with the same code.
CANDIDATE_COPURCHASE = "candidate_copurchase_score"
RETRIEVAL_OUTPUTS = {"recent_copurchase_score": "float64"}

MATCH_OUTPUTS = {
    "price_ratio": "float64",
    "price_distance": "float64",
    "category_affinity": "float64",
    "is_favourite_category": "int64",
    "brand_affinity": "float64",
    "already_purchased": "int64",
    "copurchase_score": "float64",
    "copurchase_hits": "int64",
}


def customer_recency(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Days since the last order / last activity and tenure, at the request time, as floats."""
    if _arrow(inputs):
        return _columns_or_rows(_recency_columns, customer_recency, inputs)
    n = _rows(inputs)
    now = _seconds_column(_column(inputs, REQUEST_TIME, n))
    last_order = _seconds_column(_column(inputs, LAST_ORDER, n))
    signup = _seconds_column(_column(inputs, SIGNUP, n))
    last_event = _seconds_column(_column(inputs, OPTIONAL_LAST_ACTIVITY, n))
    last_activity = [_latest(a, b) for a, b in zip(last_order, last_event, strict=True)]
    columns = (
        [_days(t, s) for t, s in zip(now, last_order, strict=True)],
        [_days(t, s) for t, s in zip(now, last_activity, strict=True)],
        [_days(t, s) for t, s in zip(now, signup, strict=True)],
    )
    return dict(zip(RECENCY_OUTPUTS, columns, strict=True))


def product_age(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Days since the product was created, at the request time."""
    if _arrow(inputs):
        return _columns_or_rows(_age_columns, product_age, inputs)
    n = _rows(inputs)
    now = _seconds_column(_column(inputs, REQUEST_TIME, n))
    created = _seconds_column(_column(inputs, PRODUCT_CREATED, n))
    (name,) = AGE_OUTPUTS
    return {name: _days_column(now, created)}


def retrieval_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The retrieval score as a float (NaN when the caller gave none)."""
    if _arrow(inputs):
        return _columns_or_rows(_retrieval_columns, retrieval_match, inputs)
    n = _rows(inputs)
    values = [_number(v) for v in _column(inputs, CANDIDATE_COPURCHASE, n)]
    (name,) = RETRIEVAL_OUTPUTS
    return {name: [math.nan if v is None else v for v in values]}


def customer_product_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """How a candidate fits a customer: price, category, brand, history, co-purchase.

    Rows come in runs of one customer (serving scores a customer's candidates in one call, and
    hands the same customer values to every row): the customer's side (sets and share tables)
    is built once per run, and each row only looks its candidate up in it. Offline (pyarrow
    columns) the whole frame is computed with numpy (_match_columns).
    """
    if _arrow(inputs):
        return _columns_or_rows(_match_columns, customer_product_match, inputs)
    n = _rows(inputs)
    has_shares = OPTIONAL_CATEGORIES in inputs
    customer = [_column(inputs, name, n) for name in _CUSTOMER_SIDE]
    price = _column(inputs, PRODUCT_PRICE, n)
    category = _column(inputs, PRODUCT_CATEGORY, n)
    brand = _column(inputs, PRODUCT_BRAND, n)
    ids = _column(inputs, COPURCHASE_IDS, n)
    scores = _column(inputs, COPURCHASE_SCORES, n)
    product = _column(inputs, "product_id", n)
    products = zip(price, category, brand, product, ids, scores, strict=True)
    if all(_constant(c, n) for c in customer):  # serving: one customer, many candidates
        side = _Customer(*(c[0] for c in customer), has_shares=has_shares)
        columns = side.match_columns(price, category, brand, product, ids, scores)
        return dict(zip(MATCH_OUTPUTS, columns, strict=True))
    else:
        rows, last, side = [], None, None
        for values, p in zip(zip(*customer, strict=True), products, strict=True):
            if side is None or any(a is not b for a, b in zip(values, last, strict=True)):
                side, last = _Customer(*values, has_shares=has_shares), values
            rows.append(side.match(*p))
    columns = zip(*rows, strict=True) if rows else ([] for _ in MATCH_OUTPUTS)
    return {name: list(values) for name, values in zip(MATCH_OUTPUTS, columns, strict=True)}


# the customer's inputs of customer_product_match, in _Customer's argument order
_CUSTOMER_SIDE = (
    RECENT_PRODUCTS,
    OPTIONAL_PURCHASED,
    FAVOURITE_CATEGORY,
    OPTIONAL_ITEM_PRICE,
    OPTIONAL_CATEGORIES,
    OPTIONAL_CATEGORY_SHARES,
    OPTIONAL_BRANDS,
    OPTIONAL_BRAND_SHARES,
)


class _Customer:
    """One customer's side of customer_product_match, ready for many candidates."""

    __slots__ = ("recent", "purchased", "favourite", "usual", "categories", "brands", "shares")

    def __init__(
        self,
        recent: Any,
        purchased: Any,
        favourite: Any,
        usual_price: Any,
        categories: Any,
        category_shares: Any,
        brands: Any,
        brand_shares: Any,
        has_shares: bool,
    ) -> None:
        self.recent = frozenset(_strings(recent))
        self.purchased = self.recent | frozenset(_strings(purchased))
        self.favourite = _text(favourite)
        usual = _number(usual_price)
        self.usual = usual if usual and usual > 0 else None
        self.shares = has_shares
        self.categories = _share_table(categories, category_shares)
        self.brands = _share_table(brands, brand_shares)

    def match(
        self, price: Any, category: Any, brand: Any, product: Any, ids: Any, scores: Any
    ) -> tuple:
        """The MATCH_OUTPUTS of one candidate, in that order (a str, as Feast serves one, is
        its own _text: taken as it is)."""
        if type(price) is not float:
            price = _number(price)
        elif price != price:  # NaN
            price = None
        if price is not None and self.usual:
            ratio = price / self.usual
            distance = abs(math.log(ratio)) if ratio > 0 else math.nan  # NaN > 0 is False
        else:
            ratio = distance = math.nan
        if type(category) is not str:
            category = _text(category)
        is_favourite = int(category is not None and category == self.favourite)
        if self.shares:
            category_affinity = _lookup(self.categories, category)
        else:
            category_affinity = float(is_favourite)
        if type(product) is not str:
            product = _text(product)
        score, hits = _copurchase(self.recent, ids, scores) if self.recent else (0.0, 0)
        if type(brand) is not str:
            brand = _text(brand)
        brand_affinity = math.nan if self.brands is None else _lookup(self.brands, brand)
        return (
            ratio,
            distance,
            category_affinity,
            is_favourite,
            brand_affinity,
            int(product is not None and product in self.purchased),
            score,
            hits,
        )

    def match_columns(
        self,
        price: list[Any],
        category: list[Any],
        brand: list[Any],
        product: list[Any],
        ids: list[Any],
        scores: list[Any],
    ) -> tuple[list[Any], ...]:
        """`match` of every candidate, as columns in MATCH_OUTPUTS order: the same values,
        computed a column at a time (no call and no tuple per candidate: serving's 200)."""
        n, nan = len(price), math.nan
        prices = [p if type(p) is float else _number(p) for p in price]
        if self.usual:
            usual = self.usual
            ratio = [nan if p is None or p != p else p / usual for p in prices]
            distance = [abs(math.log(r)) if r > 0 else nan for r in ratio]
        else:
            ratio, distance = [nan] * n, [nan] * n
        categories = [c if type(c) is str else _text(c) for c in category]
        favourite = self.favourite
        is_favourite = [int(c is not None and c == favourite) for c in categories]
        if self.shares:
            table = self.categories
            category_affinity = [_lookup(table, c) for c in categories]
        else:
            category_affinity = [float(f) for f in is_favourite]
        brands = [b if type(b) is str else _text(b) for b in brand]
        table = self.brands
        brand_affinity = [nan] * n if table is None else [_lookup(table, b) for b in brands]
        purchased = self.purchased
        already = [
            int(p is not None and p in purchased)
            for p in (p if type(p) is str else _text(p) for p in product)
        ]
        score, hits = [0.0] * n, [0] * n
        if self.recent:
            recent = self.recent
            lists = [i for i in ids if type(i) is list]
            if set(map(type, chain.from_iterable(lists))) <= _STR_TYPE:
                # lists of ids as Feast serves them (str only): one without a recent product
                # has no hit (_copurchase's answer, 0.0 and 0), found by one C-level pass each
                disjoint = recent.isdisjoint
                rows = [j for j, i in enumerate(ids) if type(i) is not list or not disjoint(i)]
            else:
                rows = range(n)
            for j in rows:
                score[j], hits[j] = _copurchase(recent, ids[j], scores[j])
        return (
            ratio,
            distance,
            category_affinity,
            is_favourite,
            brand_affinity,
            already,
            score,
            hits,
        )


def _copurchase(recent: frozenset[str], ids: Any, scores: Any) -> tuple[float, int]:
    """Sum of the candidate's co-purchase scores with the customer's recent products.

    `ids[j]` goes with `scores[j]`; a pair with a missing id or score counts for nothing."""
    if type(ids) is not list:
        ids = _iterable(ids)
    if _no_str_in(recent, ids):  # the common case: none of its neighbours bought lately
        return 0.0, 0
    if type(scores) is not list:
        scores = _iterable(scores)
    total, hits = 0.0, 0
    for pid, s in zip(ids, scores, strict=False):
        if type(pid) is not str:
            pid = _text(pid)
        if pid in recent and s is not None and s == s:  # NaN != NaN
            total += float(s)
            hits += 1
    return total, hits


def _no_str_in(recent: frozenset[str], ids: list[Any]) -> bool:
    """Whether every id is a str and none is in `recent` (two C-level passes: a tenth of the
    loop below); False when unsure (another type, which the loop reads through _text)."""
    try:
        return recent.isdisjoint(ids) and set(map(type, ids)) <= _STR_TYPE
    except TypeError:  # an unhashable id
        return False


_STR_TYPE = frozenset({str})


def _share_table(keys: Any, shares: Any) -> dict[str, float] | None:
    """The customer's share of units per key (the first of a repeated key); None when unknown."""
    if _missing_list(keys):
        return None
    table: dict[str, float] = {}
    for name, s in zip(_strings(keys), _numbers(shares), strict=False):
        table.setdefault(name, s if s is not None else 0.0)
    return table


def _lookup(table: dict[str, float] | None, key: str | None) -> float:
    """The share of `key`; 0 when not among the customer's, NaN when either is unknown."""
    if table is None or key is None:
        return math.nan
    return table.get(key, 0.0)


# --- one customer's candidates, from per-product parts (serving) --------------------------------
# A recommendation scores one customer's candidates, and each candidate's product inputs are the
# same request after request until its row is written again: serving keeps each product's side
# (`ProductInputs`) with its cached row and computes product_age and customer_product_match for
# the candidates from those, as numpy or short loops over them: the same numbers as the functions
# above on the same inputs (the same IEEE operations; the logarithm through math.log).


class ProductInputs:
    """One product's inputs of product_age and customer_product_match, as those functions read
    them: created at (whole seconds, NaN when unknown), price (NaN when unknown), category,
    brand and id as text, and its co-purchase pairs that can count (an id, a score that is a
    number), in list order."""

    __slots__ = ("created", "price", "category", "brand", "product", "pairs", "neighbours")
    # pairs: {neighbour id: ((position in the list, score), ...)}

    def __init__(self, values: dict[str, Any], product: Any) -> None:
        created = _stored_seconds(values.get(PRODUCT_CREATED))
        self.created = math.nan if created is None else created
        price = values.get(PRODUCT_PRICE)
        price = price if type(price) is float else _number(price)
        self.price = math.nan if price is None or price != price else price
        self.category = _text(values.get(PRODUCT_CATEGORY))
        self.brand = _text(values.get(PRODUCT_BRAND))
        self.product = _text(product)
        ids, scores = values.get(COPURCHASE_IDS), values.get(COPURCHASE_SCORES)
        ids = ids if type(ids) is list else list(_iterable(ids))
        scores = scores if type(scores) is list else list(_iterable(scores))
        pairs: dict[str, list[tuple[int, float]]] = {}
        for at, (pid, score) in enumerate(zip(ids, scores, strict=False)):  # as _copurchase
            pid = pid if type(pid) is str else _text(pid)
            if pid is not None and score is not None and score == score:
                pairs.setdefault(pid, []).append((at, float(score)))
        self.pairs = {pid: tuple(found) for pid, found in pairs.items()}
        self.neighbours = frozenset(pairs)


def instant_seconds(value: Any) -> float:
    """An instant as the functions above read it: whole epoch seconds, NaN when unknown."""
    seconds = _stored_seconds(value)
    return math.nan if seconds is None else seconds


def age_for_candidates(now: float, products: list[ProductInputs]) -> np.ndarray:
    """product_age's days_since_created for each product at `now` (whole seconds)."""
    created = np.fromiter((p.created for p in products), dtype=np.float64, count=len(products))
    return (now - created) / SECONDS_PER_DAY


def match_customer(customer: dict[str, Any], has_shares: bool) -> _Customer:
    """The customer's side of customer_product_match from its inputs (absent ones None)."""
    return _Customer(*(customer.get(name) for name in _CUSTOMER_SIDE), has_shares=has_shares)


def match_for_candidates(side: _Customer, products: list[ProductInputs]) -> list[np.ndarray]:
    """customer_product_match's outputs for one customer's candidates, in MATCH_OUTPUTS order,
    as floats (NaN where the function serves null): `match_columns` on the same inputs."""
    n, nan = len(products), math.nan
    if side.usual:
        price = np.fromiter((p.price for p in products), dtype=np.float64, count=n)
        ratio = price / side.usual
        distance = [abs(math.log(r)) if r > 0 else nan for r in ratio.tolist()]
    else:
        ratio, distance = np.full(n, nan), [nan] * n
    favourite = side.favourite
    is_favourite = [float(p.category is not None and p.category == favourite) for p in products]
    if side.shares:
        table = side.categories
        category_affinity = [_lookup(table, p.category) for p in products]
    else:
        category_affinity = is_favourite
    table = side.brands
    brand = [nan] * n if table is None else [_lookup(table, p.brand) for p in products]
    purchased = side.purchased
    already = [float(p.product is not None and p.product in purchased) for p in products]
    score, hits = np.zeros(n), np.zeros(n)
    recent = side.recent
    if recent:
        for j, p in enumerate(products):
            if recent.isdisjoint(p.neighbours):
                continue
            found = [e for pid in recent & p.neighbours for e in p.pairs[pid]]
            if len(found) > 1:
                found.sort()  # list order: the order _copurchase adds them in
            total = 0.0
            for _, s in found:
                total += s
            score[j], hits[j] = total, len(found)
    columns = (ratio, distance, category_affinity, is_favourite, brand, already, score, hits)
    return [np.asarray(c, dtype=np.float64) for c in columns]


# --- customer_product_affinity -----------------------------------------------------------------
# Reads the declared customer x product view (feature_repo/aggregations.yaml), which is sparse: a
# pair that never happened has no row, so Feast hands nulls; here it reads as zeros.
PAIR_ORDERS_90D = "pair_orders_90d"  # customer_product_history
PAIR_ORDERS = "pair_orders_lifetime"
PAIR_LAST_ORDER = "pair_last_order_ts"
PAIR_VIEWS = "pair_views_30d"
PAIR_CARTS = "pair_carts_30d"
LIFETIME_ORDERS = "lifetime_orders"  # customer_activity
AFFINITY_INPUTS = {
    "customer_product_history": (
        PAIR_ORDERS_90D,
        PAIR_ORDERS,
        PAIR_LAST_ORDER,
        PAIR_VIEWS,
        PAIR_CARTS,
    ),
    "customer_activity": (LIFETIME_ORDERS,),
}
AFFINITY_OUTPUTS = {
    "bought_orders_90d": "int64",
    "bought_orders_lifetime": "int64",
    "days_since_bought": "float64",
    "bought_order_share": "float64",
    "viewed_30d": "int64",
    "carted_30d": "int64",
}


def customer_product_affinity(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The pair's history, zeros for a pair that never happened; days since the customer last
    bought the product (NaN if never) and the share of the customer's orders containing it
    (NaN without orders), at the request time."""
    if _arrow(inputs):
        return _columns_or_rows(_affinity_columns, customer_product_affinity, inputs)
    n = _rows(inputs)
    now = _seconds_column(_column(inputs, REQUEST_TIME, n))
    last = _seconds_column(_column(inputs, PAIR_LAST_ORDER, n))
    counts = [
        _counts(_column(inputs, name, n))
        for name in (PAIR_ORDERS_90D, PAIR_ORDERS, PAIR_VIEWS, PAIR_CARTS)
    ]
    orders_90d, orders, views, carts = counts
    total = _counts(_column(inputs, LIFETIME_ORDERS, n))
    share = [o / t if t else math.nan for o, t in zip(orders, total, strict=True)]
    days = _days_column(now, last)
    columns = (orders_90d, orders, days, share, views, carts)
    return dict(zip(AFFINITY_OUTPUTS, columns, strict=True))


def _count(value: Any) -> int:
    """A stored count, 0 when there is none (a pair or customer without a row)."""
    number = _number(value)
    return 0 if number is None else int(number)


_EXACT = 2**53  # an int of at most this size is its own int(float(v))


def _counts(values: list[Any]) -> list[int]:
    """_count of each value; None (most pairs never happened) and a plain int (what Feast
    serves a stored count as) directly, the same numbers."""
    return [
        0 if v is None else v if type(v) is int and -_EXACT <= v <= _EXACT else _count(v)
        for v in values
    ]


# --- collection_match --------------------------------------------------------------------------
# Does the candidate share a collection with the customer's recent purchases? The candidate's
# collections as of t (product_membership) against those of the products the customer bought in
# the 90 days before t, as of t (customer_collections): both stored views, read as of the same t,
# so the match is as point-in-time correct as they are and equal offline and online.
CANDIDATE_COLLECTIONS = "collection_ids"  # product_membership
CUSTOMER_COLLECTIONS = "collection_ids_90d"  # customer_collections
COLLECTION_INPUTS = {
    "product_membership": (CANDIDATE_COLLECTIONS,),
    "customer_collections": (CUSTOMER_COLLECTIONS,),
}
COLLECTION_OUTPUTS = {
    "shares_collection": "int64",
    "shared_collections": "int64",
    "shared_collection_share": "float64",
}


def collection_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """shares_collection (0/1), shared_collections (how many of the candidate's collections hold
    one of the customer's 90-day purchases), shared_collection_share (that over the candidate's
    collections; NaN for a candidate in none). A customer or candidate without a row has none.

    Rows come in runs of one customer (serving scores one customer's candidates): the customer's
    set is built once per run."""
    if _arrow(inputs):
        inputs = _as_lists(inputs)
    n = _rows(inputs)
    candidate = _column(inputs, CANDIDATE_COLLECTIONS, n)
    customer = _column(inputs, CUSTOMER_COLLECTIONS, n)
    shares, shared, share = [], [], []
    last: Any = object()
    held: frozenset[str] = frozenset()
    for mine, theirs in zip(candidate, customer, strict=True):
        if theirs is not last:
            held, last = frozenset(_strings(theirs)), theirs
        own = set(_strings(mine))
        k = len(own & held)
        shares.append(int(k > 0))
        shared.append(k)
        share.append(k / len(own) if own else math.nan)
    return dict(zip(COLLECTION_OUTPUTS, (shares, shared, share), strict=True))


# --- customer_cycle ----------------------------------------------------------------------------
# A customer's silence against their own rhythm, at the request time t: churn's strongest signals
# in a non-contractual shop. From stored timestamps (customer_activity.last_order_ts,
# customer_rhythm.first_order_ts) and the customer's mean gap between orders, all as of t.
FIRST_ORDER = "first_order_ts"  # customer_rhythm
MEAN_GAP = "mean_gap_days"  # customer_rhythm
CYCLE_INPUTS = {
    "customer_activity": (LAST_ORDER,),
    "customer_rhythm": (FIRST_ORDER, MEAN_GAP),
}
CYCLE_OUTPUTS = {
    "days_since_first_order": "float64",
    "recency_gap_ratio": "float64",
}


def customer_cycle(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """days_since_first_order = (t - first_order_ts) in days; recency_gap_ratio = days since the
    last order / mean_gap_days (1: due about now; 3: three usual gaps overdue); NaN when unknown
    (no order, or fewer than two orders for the ratio, or a mean gap of 0)."""
    if _arrow(inputs):
        return _columns_or_rows(_cycle_columns, customer_cycle, inputs)
    n = _rows(inputs)
    now = _seconds_column(_column(inputs, REQUEST_TIME, n))
    first = _seconds_column(_column(inputs, FIRST_ORDER, n))
    last = _seconds_column(_column(inputs, LAST_ORDER, n))
    gaps = [_number(v) for v in _column(inputs, MEAN_GAP, n)]
    age = [_days(t, f) for t, f in zip(now, first, strict=True)]
    ratio = [
        _days(t, s) / g if g is not None and g > 0 else math.nan
        for t, s, g in zip(now, last, gaps, strict=True)
    ]
    return dict(zip(CYCLE_OUTPUTS, (age, ratio), strict=True))


def _cycle_columns(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    n = _arrow_rows(inputs)
    now = _seconds_array(_array(inputs, REQUEST_TIME), n)
    first = _seconds_array(_array(inputs, FIRST_ORDER), n)
    last = _seconds_array(_array(inputs, LAST_ORDER), n)
    gap = _floats(_array(inputs, MEAN_GAP), n)
    usable = np.where(gap > 0, gap, np.nan)
    return dict(
        zip(CYCLE_OUTPUTS, (_days_array(now, first), _days_array(now, last) / usable), strict=True)
    )


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
    if type(v) is datetime and v.tzinfo is not None:  # the common case, first
        return v.timestamp()
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


def _seconds_column(values: list[Any]) -> list[float | None]:
    """_stored_seconds of each value; a value repeated (the request time on every row) once,
    an aware datetime seen before (a product's creation time, read again by every request)
    from `_SECONDS`."""
    out: list[float | None] = []
    previous: Any = out  # a sentinel no value is
    seconds = None
    for v in values:
        if v is not previous:
            previous = v
            if type(v) is datetime and v.tzinfo is not None:
                seconds = _SECONDS.get(v, _NO_SECONDS)
                if seconds is _NO_SECONDS:
                    seconds = _remember_seconds(v)
            else:
                seconds = _stored_seconds(v)
        out.append(seconds)
    return out


# aware datetime -> its _stored_seconds (equal datetimes are the same instant: the same
# seconds); at most _SECONDS_LIMIT of them, then it starts again
_SECONDS: dict[datetime, float | None] = {}
_SECONDS_LIMIT = 100_000
_NO_SECONDS = object()


def _remember_seconds(v: datetime) -> float | None:
    seconds = _stored_seconds(v)
    if len(_SECONDS) >= _SECONDS_LIMIT:
        _SECONDS.clear()
    _SECONDS[v] = seconds
    return seconds


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


def _days_column(now: list[float | None], then: list[float | None]) -> list[float]:
    """_days of each pair, without a call per row (the same arithmetic)."""
    nan, day = math.nan, SECONDS_PER_DAY
    return [
        nan if t is None or s is None else (t - s) / day for t, s in zip(now, then, strict=True)
    ]


def _constant(column: list[Any], n: int) -> bool:
    """Every value of the column equal to the first (the same object, as serving repeats one
    customer's values, costs one C-level pass)."""
    try:
        return n > 0 and column.count(column[0]) == n
    except (TypeError, ValueError):  # arrays compare element-wise
        return False


def _missing_list(v: Any) -> bool:
    return v is None or (not hasattr(v, "__len__") and _missing(v))


def _number(v: Any) -> float | None:
    if type(v) is float:  # the common case, first
        return None if v != v else v
    return None if _missing(v) else float(v)


def _numbers(values: Any) -> list[float | None]:
    return [_number(v) for v in _iterable(values)]


def _text(v: Any) -> str | None:
    if type(v) is str:  # the common case, first
        return v
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


# --- whole columns at once (the offline store) -------------------------------------------------
# featurestore.offline hands an on-demand view tagged ARROW_TAG a dict of pyarrow arrays, the
# whole retrieval at once, instead of Python lists: the functions above then compute with numpy
# over the columns and return numpy arrays, the same numbers as the row code (same IEEE
# operations in the same order; the logarithm through math.log, as the row code). Rows the
# column code does not model (a null inside a list of keys, where _strings shifts the pairs) and
# input types it does not know are computed by the row code. Online, inputs are lists: unchanged.

# membership tests over (row, code) keys use a bitmap when its span is at most this many bits
# (32 MiB) and at most this many bits per key looked up or in (_member, _copurchase_by_source)
_BITMAP_BITS = 2**28
_BITMAP_BITS_PER_KEY = 256
_BITMAP_BYTES = 2**20  # ... built a byte per key (8x the memory, touched fresh) up to this span
# _copurchase_by_source finds (source row, product) pairs through a byte per possible pair when
# there are at most this many (32 MiB), and at most this many per key looked up or in it
_FLAG_BYTES = 2**25
_FLAGS_PER_KEY = 32
# ... and works once per source row on a column the offline store hands over dictionary-encoded
# when the source has at most this many rows per entity row (else per entity row: no cheaper)
_BY_SOURCE_ROWS = 0.5
_STRINGS_BY_SOURCE_ROWS = 2.0  # ... and codes a string column once per source row up to this

ARROW_TAG = ("udf_inputs", "arrow")  # (tag, value) on a view whose UDF accepts pyarrow columns


class _RowCode(Exception):
    """An input the column code does not handle: use the row code."""


def _arrow(inputs: dict[str, Any]) -> bool:
    """Columns from the offline store (all pyarrow) rather than lists: the first value tells,
    which costs the online path (lists) one type check per call."""
    for v in inputs.values():
        return type(v) is not list and isinstance(v, (pa.Array, pa.ChunkedArray))
    return False


def _as_lists(inputs: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: v.to_pylist() if hasattr(v, "to_pylist") else list(v) for k, v in inputs.items()}


def _array(inputs: dict[str, Any], name: str, dictionary: bool = False) -> pa.Array | None:
    """A column as one pyarrow array; a dictionary-encoded one decoded unless `dictionary`."""
    v = inputs.get(name)
    if v is None:
        return None
    if isinstance(v, pa.ChunkedArray):  # one chunk (the offline store's): itself, no copy
        v = v.chunk(0) if v.num_chunks == 1 else v.combine_chunks()
    if not isinstance(v, pa.Array):
        raise _RowCode(name)
    if not dictionary and isinstance(v, pa.DictionaryArray):
        v = v.dictionary_decode()
    return None if pa.types.is_null(v.type) else v


def _arrow_rows(inputs: dict[str, Any]) -> int:
    return max((len(v) for v in inputs.values() if v is not None), default=0)


_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _seconds_array(a: pa.Array | None, n: int) -> np.ndarray:
    """_stored_seconds of every value as float64, NaN for missing."""
    if a is None:
        return _nans(n)
    if pa.types.is_timestamp(a.type) and len(a):
        ints = _fixed_values(a, np.int64)  # whatever a null holds: overwritten below
        out = _empty(len(a), np.float64)
        per_second = _PER_SECOND[a.type.unit]
        if per_second == 1:
            out[:] = ints
        else:  # the integer floor division, each quotient written as float64
            np.floor_divide(ints, per_second, out=out, casting="unsafe")
    elif pa.types.is_timestamp(a.type):
        out = np.zeros(0)
    elif pa.types.is_integer(a.type) or pa.types.is_floating(a.type):
        out = np.floor(_floats(a))
    else:
        raise _RowCode(str(a.type))
    if a.null_count:
        out[_nulls(a)] = np.nan
    return out


def _empty(n: int, dtype: type) -> np.ndarray:
    """An uninitialised array from Arrow's memory pool rather than numpy's malloc: the pool keeps
    the pages the join just freed, where glibc hands a big block back to the kernel on free, so
    each fresh numpy array of a 500,000-row column is page-faulted in again (~2 ms per 4 MB)."""
    return np.frombuffer(pa.allocate_buffer(n * np.dtype(dtype).itemsize), dtype=dtype)


def _as(values: np.ndarray, dtype: type) -> np.ndarray:
    """values.astype(dtype), in an array of _empty's."""
    out = _empty(len(values), dtype)
    np.copyto(out, values, casting="unsafe")
    return out


def _nans(n: int) -> np.ndarray:
    out = _empty(n, np.float64)
    out.fill(np.nan)
    return out


def _fixed_values(a: pa.Array, dtype: type) -> np.ndarray:
    """The values buffer of a fixed-width array (no nulls' handling), without a copy."""
    return np.frombuffer(a.buffers()[1], dtype=dtype, count=a.offset + len(a))[a.offset :]


def _nulls(a: pa.Array) -> np.ndarray:
    """Per value whether it is null (from the validity bitmap)."""
    if not a.null_count:
        return np.zeros(len(a), dtype=bool)
    if a.buffers()[0] is None:  # a null-typed array
        return np.ones(len(a), dtype=bool)
    valid = np.unpackbits(
        np.frombuffer(a.buffers()[0], dtype=np.uint8), count=a.offset + len(a), bitorder="little"
    )
    return valid[a.offset :] == 0


def _floats(a: pa.Array | None, n: int = 0) -> np.ndarray:
    """float64 values, NaN for missing."""
    if a is None or pa.types.is_null(a.type):
        return _nans(len(a) if a is not None else n)
    if not (pa.types.is_integer(a.type) or pa.types.is_floating(a.type)):
        raise _RowCode(str(a.type))
    if pa.types.is_float64(a.type) and len(a):  # its values as they are, nulls made NaN
        values = _fixed_values(a, np.float64)
        if not a.null_count:
            return values  # read-only, as pyarrow's zero-copy to_numpy: no caller writes
        out = _as(values, np.float64)
        out[_nulls(a)] = np.nan
        return out
    # unsafe: an integer past 2^53 rounds to the nearest float, as float(v) does (a safe cast
    # raises on it)
    as_floats = a.cast(pa.float64(), safe=False)
    return pc.fill_null(as_floats, np.nan).to_numpy(zero_copy_only=False)


def _days_array(now: np.ndarray, then: np.ndarray, into: bool = False) -> np.ndarray:
    """(now - then) in days, NaN when either is; `into`: written over `then` (an array of
    _seconds_array's, no other holder), no new array."""
    out = np.subtract(now, then, out=then if into else None)
    return np.divide(out, SECONDS_PER_DAY, out=out)


def _recency_columns(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    n = _arrow_rows(inputs)
    now = _seconds_array(_array(inputs, REQUEST_TIME), n)
    last_order = _seconds_array(_array(inputs, LAST_ORDER), n)
    signup = _seconds_array(_array(inputs, SIGNUP), n)
    latest = _seconds_array(_array(inputs, OPTIONAL_LAST_ACTIVITY), n)
    np.fmax(last_order, latest, out=latest)  # the latest known
    columns = (
        _days_array(now, last_order, into=True),
        _days_array(now, latest, into=True),
        _days_array(now, signup, into=True),
    )
    return dict(zip(RECENCY_OUTPUTS, columns, strict=True))


def _age_columns(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    n = _arrow_rows(inputs)
    now = _seconds_array(_array(inputs, REQUEST_TIME), n)
    created = _seconds_array(_array(inputs, PRODUCT_CREATED), n)
    (name,) = AGE_OUTPUTS
    return {name: _days_array(now, created, into=True)}


def _retrieval_columns(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    n = _arrow_rows(inputs)
    (name,) = RETRIEVAL_OUTPUTS
    return {name: _floats(_array(inputs, CANDIDATE_COPURCHASE), n)}


def _strings_array(a: pa.Array | None, n: int) -> pa.Array:
    if a is None or pa.types.is_null(a.type):
        return pa.nulls(len(a) if a is not None else n, pa.string())
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        raise _RowCode(str(a.type))
    return a.cast(pa.string())


class _Lists:
    """A list column flattened: each value's row, its position in its list, and the values.

    A dictionary-encoded column (what the offline store hands over for a source it gathered
    from: per row an index into the source's rows) is flattened once per source row: `values`
    are then the dictionary's, and `take` maps each of this column's flattened values to one of
    them (None when `values` are this column's own). `rows` and `position` are worked out when
    first read: a list of numbers read only by place (co-purchase scores, shares: `lengths`
    and `values`) never needs them."""

    def __init__(
        self,
        a: pa.Array | None,
        n: int,
        strings: bool,
        compact: bool = False,
        memo: dict[tuple, np.ndarray] | None = None,
    ) -> None:
        """`compact`: a dictionary-encoded string column's values taken per row (`take` None)
        when the rows hold fewer values than the dictionary (coding a string costs more than
        taking it). `memo`: _index's, for the indices of a dictionary-encoded column."""
        self.take: np.ndarray | None = None
        at = None
        if a is None:
            self.lengths = np.zeros(n, dtype=np.int64)
            values = pa.array([], pa.string() if strings else pa.float64())
        else:
            if pa.types.is_dictionary(a.type):
                at, a = _index(a, memo), a.dictionary  # -1: a null index
            if not (pa.types.is_list(a.type) or pa.types.is_large_list(a.type)):
                raise _RowCode(str(a.type))
            self.lengths = pc.fill_null(pc.list_value_length(a), 0).to_numpy().astype(np.int64)
            values = pc.list_flatten(a)
        if at is not None:  # per row: the length of the dictionary row it points at
            source_starts = np.cumsum(self.lengths) - self.lengths
            self.lengths = np.append(self.lengths, 0)[at]  # a null index: the 0 appended
            if len(values):  # (a row with values points at a dictionary row: at >= 0)
                self.take = source_starts[at[self.rows]] + self.position
        if not len(values):  # no list has a value (an optional input not given): no row
            self.rows = self.position = np.zeros(0, dtype=np.int64)
        if strings:
            if compact and self.take is not None and len(self.take) < len(values):
                values, self.take = values.take(pa.array(self.take)), None
            self.values = _strings_array(values, len(values))
            nulls = (
                pc.is_null(self.values).to_numpy(zero_copy_only=False)
                if len(values) and self.values.null_count
                else None
            )
            if nulls is not None and self.take is not None:
                nulls = nulls[self.take]
            self.null_rows = (
                np.unique(self.rows[nulls]) if nulls is not None else np.zeros(0, dtype=np.int64)
            )
        else:
            self.values = _floats(values, len(values))
            if self.take is not None:
                self.values, self.take = self.values[self.take], None
            self.null_rows = np.zeros(0, dtype=np.int64)

    @cached_property
    def rows(self) -> np.ndarray:
        """Each flattened value's row."""
        return np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)

    @cached_property
    def position(self) -> np.ndarray:
        """Each flattened value's place in its row's list."""
        starts = np.cumsum(self.lengths) - self.lengths
        return np.arange(len(self.rows), dtype=np.int64) - starts[self.rows]


class _Codes:
    """One integer code per distinct string over the arrays given (-1 for null), int32;
    `takes[i]`, when given, maps the i-th part to its rows (a _Lists' `take`). A
    dictionary-encoded part (_string_part) is encoded once per dictionary value and its codes
    taken by its indices (a null index: -1)."""

    def __init__(
        self,
        *arrays: pa.Array,
        takes: tuple[np.ndarray | None, ...] = (),
        memo: dict[tuple, np.ndarray] | None = None,
    ) -> None:
        plain = [a.dictionary if isinstance(a, pa.DictionaryArray) else a for a in arrays]
        encoded = pc.dictionary_encode(pa.chunked_array(plain, pa.string()))  # one dictionary
        self.size = max(len(encoded.chunk(0).dictionary), 1) if encoded.num_chunks else 1
        if encoded.num_chunks:
            codes = np.concatenate([_filled(c.indices, -1) for c in encoded.chunks]).astype(
                np.int32, copy=False
            )
        else:
            codes = np.zeros(0, dtype=np.int32)
        self.parts, start = [], 0
        memo = {} if memo is None else memo
        for i, a in enumerate(arrays):
            part = codes[start : start + len(plain[i])]
            if isinstance(a, pa.DictionaryArray):  # index -1 (null) takes the -1 appended
                at = _index(a, memo)
                part = np.take(np.append(part, np.int32(-1)), at, out=_empty(len(at), np.int32))
            take = takes[i] if i < len(takes) else None
            self.parts.append(part[take] if take is not None else part)
            start += len(plain[i])

    def keys(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(row, code) as one int64; -1 where the code is null (never a member)."""
        out = np.multiply(rows, self.size, out=_empty(len(rows), np.int64))
        np.add(out, codes, out=out)
        out[codes < 0] = -1
        return out


def _filled(a: pa.Array, fill: int) -> np.ndarray:
    """An integer array's values as numpy, `fill` for null: without a null, its buffer as it
    is (read-only, no copy; pc.fill_null would copy it whole)."""
    if not a.null_count:
        return a.to_numpy()
    return pc.fill_null(a, fill).to_numpy()


def _index(a: pa.DictionaryArray, memo: dict[tuple, np.ndarray] | None = None) -> np.ndarray:
    """A dictionary-encoded column's indices as int64, -1 for null. The columns of one gathered
    view share one index (the offline store's): with `memo` (one call's, its inputs alive
    meanwhile) it is converted once."""
    index = a.indices
    buffers = index.buffers()
    key = (buffers[1].address, index.offset, len(index), index.null_count)
    if memo is not None and key in memo:
        return memo[key]
    at = _filled(index.cast(pa.int64()), -1)
    if memo is not None:
        memo[key] = at
    return at


def _member(query: np.ndarray, members: np.ndarray) -> np.ndarray:
    """query[i] among members (keys >= 0): a bitmap over the keys' span when it is small
    (_bitmap_fits), else one sort and a binary search (np.isin sorts both). Not a byte per key
    (_flags): at 500,000 ranking rows the span is 22.8M (customer row, product) keys, 22.8 MB
    touched fresh in the retrieval's process against 2.9 MB of bits."""
    members = members[members >= 0]
    if not len(members):
        return np.zeros(len(query), dtype=bool)
    space = int(members.max()) + 1
    if _bitmap_fits(space, len(query) + len(members)):
        return _in_bitmap(_bitmap(members, space), query)
    members = np.sort(members)
    at = np.minimum(np.searchsorted(members, query), len(members) - 1)
    return (members[at] == query) & (query >= 0)


def _flags_fit(space: int, keys: int) -> bool:
    """Whether a byte per key of `space` is worth it for `keys` keys and queries: at most
    _FLAG_BYTES, and at most _FLAGS_PER_KEY per key (setting and reading bytes costs several
    times less than packing bits, and the bits one by one many times more)."""
    return space <= min(_FLAG_BYTES, _FLAGS_PER_KEY * max(keys, 1))


def _flags(keys: np.ndarray, space: int) -> np.ndarray:
    """A byte per key in [0, space), True for `keys` (each in that range), from Arrow's pool."""
    flags = _empty(space, np.bool_)
    flags.fill(False)
    flags[keys] = True
    return flags


def _bitmap_fits(space: int, keys: int) -> bool:
    """Whether a bitmap of `space` bits is worth it for `keys` keys and queries: at most
    _BITMAP_BITS, and at most _BITMAP_BITS_PER_KEY per key (zeroing and touching it then
    costs less than sorting the keys and one binary search per query, ~20 cache misses)."""
    return space <= _BITMAP_BITS and space <= _BITMAP_BITS_PER_KEY * max(keys, 1)


def _bitmap(keys: np.ndarray, space: int) -> np.ndarray:
    """One bit per key in [0, space), set for `keys` (each in that range): a byte per key
    packed (several times faster than setting bits one by one) while that is at most
    _BITMAP_BYTES, else bit by bit."""
    if space <= _BITMAP_BYTES:
        flags = _empty(space, np.bool_)
        flags.fill(False)
        flags[keys] = True
        return np.packbits(flags, bitorder="little")
    bits = _empty((space + 7) >> 3, np.uint8)
    bits.fill(0)
    np.bitwise_or.at(bits, keys >> 3, np.left_shift(1, keys & 7).astype(np.uint8))
    return bits


def _in_bitmap(bits: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per query whether its bit is set; False for a query outside the bitmap (-1: null)."""
    inside = (query >= 0) & (query < 8 * len(bits))
    q = np.where(inside, query, 0)
    return inside & ((bits[q >> 3] >> (q & 7).astype(np.uint8)) & 1).astype(bool)


def _share_lookup(
    keys: _Lists,
    shares: _Lists,
    key_codes: np.ndarray,
    query_codes: np.ndarray,
    codes: _Codes,
    known: np.ndarray,
    query_rows: np.ndarray | None = None,
) -> np.ndarray:
    """_lookup(_share_table(keys, shares), key) per row: the share paired with the first
    occurrence of the key (pairs up to the shorter list; a missing share is 0), 0 when absent,
    NaN when the row's keys or the key are unknown. `query_rows`: per row the row of `keys`
    it reads (-1: none; `known` must be False there), else the row itself."""
    n = len(known)
    if not known.any():  # no row has keys (an optional input not given): all unknown
        return _nans(n)
    paired = keys.position < shares.lengths[keys.rows]
    rows, kc = keys.rows[paired], key_codes[paired]
    # the share at the same (row, position): shares are flattened in the same row order
    share_starts = np.cumsum(shares.lengths) - shares.lengths
    values = shares.values[share_starts[rows] + keys.position[paired]]
    values = np.where(np.isnan(values), 0.0, values)
    pair = codes.keys(rows, kc)
    order = np.argsort(pair, kind="stable")
    pair, values = pair[order], values[order]
    first = np.ones(len(pair), dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    pair, values = pair[first], values[first]
    if query_rows is None:
        query_rows = np.arange(n, dtype=np.int64)
    query = np.where(query_rows >= 0, codes.keys(query_rows, query_codes), -1)
    out = np.zeros(n)
    if len(pair):
        at = np.minimum(np.searchsorted(pair, query), len(pair) - 1)
        found = (pair[at] == query) & (query >= 0)
        out[found] = values[at[found]]
    return np.where(known & (query_codes >= 0), out, np.nan)


def _shared_source(
    ids: pa.Array | None, scores: pa.Array | None, memo: dict[tuple, np.ndarray] | None = None
) -> np.ndarray | None:
    """Per row the source row of its candidate's co-purchase lists (-1: none), when ids and
    scores both come dictionary-encoded with the same indices (the offline store's gathered
    product_copurchase); else None."""
    if not (isinstance(ids, pa.DictionaryArray) and isinstance(scores, pa.DictionaryArray)):
        return None
    if len(ids.dictionary) != len(scores.dictionary) or not ids.indices.equals(scores.indices):
        return None
    return _index(ids, memo)


def _copurchase_by_source(
    source: np.ndarray,
    ids: _Lists,
    scores: _Lists,
    c_ids: np.ndarray,
    wanted: Callable[[], tuple[np.ndarray, np.ndarray]],
    codes: _Codes,
) -> tuple[np.ndarray, np.ndarray]:
    """copurchase_score and copurchase_hits when the candidates' lists come once per source row
    (`ids`, `scores` over the source's rows; `source[r]` row r's, -1 for none): each recent
    product of a row (`wanted()`: rows, ascending, and product codes, of rows with a source
    row; a product may come twice) is looked up among its candidate's (source row, product)
    pairs, and the hits (a row's product once) are summed in the candidate list's order, as the
    row code adds them."""
    n = len(source)
    if np.array_equal(ids.lengths, scores.lengths):  # (as written: a score per id)
        s = scores.values  # each id's score at the same place
        kept = np.flatnonzero((c_ids >= 0) & ~np.isnan(s))
    else:
        valid = ids.position < scores.lengths[ids.rows]
        score_starts = np.cumsum(scores.lengths) - scores.lengths
        s = np.full(len(ids.rows), np.nan)
        s[valid] = scores.values[score_starts[ids.rows[valid]] + ids.position[valid]]
        kept = np.flatnonzero(valid & (c_ids >= 0) & ~np.isnan(s))
    # (source row, product) by source row, then place in the list
    if len(kept) == len(c_ids):  # every pair (no null id nor score): nothing to pick out
        pairs = ids.rows * codes.size + c_ids
    else:
        pairs = ids.rows[kept] * codes.size + c_ids[kept]
    rows, products = wanted()
    query = source[rows] * codes.size + products
    space = len(ids.lengths) * codes.size  # every (source row, product code)
    # Most queries find nothing and most pairs are found by none: the queries in a pair, and
    # the pairs some query found, are picked out first, and only those few pairs are sorted
    # and searched (not every pair sorted, nor a table of every pair's place built)
    if len(pairs) and _flags_fit(space, len(query) + len(pairs)):
        flags = _flags(pairs, space)  # a byte per (source row, product)
        found = flags[query]
        rows, query = rows[found], query[found]
        flags[pairs] = False
        flags[query] = True
        matched = flags[pairs]
    else:
        found = _member(query, pairs)
        rows, query = rows[found], query[found]
        matched = _member(pairs, query)
    pairs, kept = pairs[matched], kept[matched]
    order = np.argsort(pairs, kind="stable")
    pairs, kept = pairs[order], kept[order]
    position, weight = ids.position[kept], s[kept]
    # each query's run of equal pairs (at least one: every query is found), through the
    # distinct pairs: one search, not one for each end of the run
    first = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]]) if len(pairs) else pairs
    distinct = np.searchsorted(pairs[first], query)
    low = first[distinct]
    count = np.append(first[1:], len(pairs))[distinct] - low
    ends = np.cumsum(count)
    at = np.repeat(low - (ends - count), count) + np.arange(ends[-1] if len(ends) else 0)
    hit_rows = np.repeat(rows, count)
    # by row, then by place in the candidate's list (hits come by row already: a stable sort
    # of the one key runs through them)
    place = position[at]
    key = hit_rows * (int(place.max()) + 1) + place if len(place) else place
    in_order = np.argsort(key, kind="stable")
    key, hit_rows, at = key[in_order], hit_rows[in_order], at[in_order]
    # a product twice in a row's recent ones counts once (the row code asks a set): its hits,
    # the same (row, place), come together and the repeats are dropped (only the few found
    # are sorted, not every row's recent products beforehand)
    once = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    hit_rows, at = hit_rows[once], at[once]
    score = np.bincount(hit_rows, weights=weight[at], minlength=n).astype(np.float64, copy=False)
    hits = np.bincount(hit_rows, minlength=n).astype(np.int64, copy=False)
    return score, hits


# customer_product_match's customer lists, all from customer_activity: when the offline store
# hands them over dictionary-encoded with one index (its gathered source's row per entity row),
# sets and share tables are keyed by that source row, not by the entity row
_CUSTOMER_LISTS = (
    RECENT_PRODUCTS,
    OPTIONAL_PURCHASED,
    OPTIONAL_CATEGORIES,
    OPTIONAL_CATEGORY_SHARES,
    OPTIONAL_BRANDS,
    OPTIONAL_BRAND_SHARES,
)


def _shared_rows(
    inputs: dict[str, Any], memo: dict[tuple, np.ndarray] | None = None
) -> tuple[np.ndarray, int] | None:
    """(per entity row its customer source row, -1 for none; how many source rows) when every
    customer list present comes dictionary-encoded with the same indices over the same rows
    (RECENT_PRODUCTS among them), at most _BY_SOURCE_ROWS per entity row; else None."""
    first = None
    for name in _CUSTOMER_LISTS:
        a = _array(inputs, name, dictionary=True)
        if a is None and name != RECENT_PRODUCTS:
            continue
        if not isinstance(a, pa.DictionaryArray):
            return None
        if first is None:
            first = a
        elif len(a.dictionary) != len(first.dictionary) or not a.indices.equals(first.indices):
            return None
    if len(first.dictionary) > _BY_SOURCE_ROWS * len(first):
        return None
    return _index(first, memo), len(first.dictionary)


def _string_part(a: pa.Array | None, n: int) -> pa.Array:
    """A string column for _Codes: as _strings_array, a dictionary-encoded one kept so (its
    dictionary as strings) when it has at most _STRINGS_BY_SOURCE_ROWS values per row (coding
    a value costs less than decoding one, and coding it)."""
    if isinstance(a, pa.DictionaryArray) and len(a.dictionary) > _STRINGS_BY_SOURCE_ROWS * len(a):
        a = a.dictionary_decode()
    if isinstance(a, pa.DictionaryArray):
        return pa.DictionaryArray.from_arrays(
            a.indices, _strings_array(a.dictionary, len(a.dictionary))
        )
    return _strings_array(a, n)


def _recent_by_row(
    recent: _Lists, c_recent: np.ndarray, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's recent product codes (rows ascending, each row's in its list's order), rows
    whose candidate has a source row (source >= 0) only."""
    known = (c_recent >= 0) & (source[recent.rows] >= 0)
    return recent.rows[known], c_recent[known]


def _recent_by_customer(
    recent: _Lists, c_recent: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """_recent_by_row when `recent` holds the customer source rows' lists (`at[r]`: row r's,
    -1 for none): each customer row's codes laid out per entity row, for every entity row
    with a customer row (_with_source keeps those with a candidate source row)."""
    known = c_recent >= 0
    customer_rows, products = recent.rows[known], c_recent[known]
    counts = np.bincount(customer_rows, minlength=len(recent.lengths))
    starts = np.cumsum(counts) - counts
    live = np.flatnonzero(np.append(counts, 0)[at])  # rows with codes (at -1: the 0 appended)
    lengths = counts[at[live]]
    ends = np.cumsum(lengths)
    rows = np.repeat(live, lengths)
    # live row i's codes are starts[at[live[i]]] onwards, laid out from ends[i] - lengths[i]
    index = np.arange(len(rows), dtype=np.int64) + np.repeat(
        starts[at[live]] - (ends - lengths), lengths
    )
    return rows, products[index]


def _with_source(
    laid: tuple[np.ndarray, np.ndarray], source: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The laid-out (rows, codes) of _recent_by_customer whose row has a source row."""
    rows, products = laid
    keep = source[rows] >= 0
    return rows[keep], products[keep]


def _match_columns(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    n = _arrow_rows(inputs)
    get = lambda name: _array(inputs, name)  # noqa: E731

    def lists(name: str, strings: bool) -> _Lists:  # dictionary-encoded lists kept so
        return _Lists(_array(inputs, name, dictionary=True), n, strings, memo=memo)

    keys = (RECENT_PRODUCTS, OPTIONAL_PURCHASED, OPTIONAL_CATEGORIES, OPTIONAL_BRANDS)
    memo: dict[tuple, np.ndarray] = {}  # dictionary indices as numpy, once per index
    shared = _shared_rows(inputs, memo)
    if shared is not None:  # the customer's lists once per customer source row
        at, m = shared
        dictionaries = {name: _array(inputs, name, dictionary=True) for name in _CUSTOMER_LISTS}
        customer = [
            _Lists(a.dictionary if a is not None else None, m, strings=name in keys)
            for name, a in dictionaries.items()
        ]
    else:  # per entity row: only the values its rows hold are coded
        at = None
        customer = [
            _Lists(_array(inputs, name, dictionary=True), n, name in keys, True, memo)
            for name in _CUSTOMER_LISTS
        ]
    own_recent, purchased, cat_keys, cat_shares, brand_keys, brand_shares = customer
    source = _shared_source(
        _array(inputs, COPURCHASE_IDS, dictionary=True),
        _array(inputs, COPURCHASE_SCORES, dictionary=True),
        memo,
    )
    if source is None:
        ids = lists(COPURCHASE_IDS, strings=True)
        scores = lists(COPURCHASE_SCORES, strings=False)
    else:  # the candidates' lists once per source row
        ids_source = _array(inputs, COPURCHASE_IDS, dictionary=True).dictionary
        scores_source = _array(inputs, COPURCHASE_SCORES, dictionary=True).dictionary
        ids = _Lists(ids_source, len(ids_source), strings=True)
        scores = _Lists(scores_source, len(scores_source), strings=False)

    def strings(name: str) -> pa.Array:
        return _string_part(_array(inputs, name, dictionary=True), n)

    def known(name: str) -> np.ndarray:  # per entity row: its customer's list is not null
        a = _array(inputs, name, dictionary=True)
        if a is None:
            return np.zeros(n, dtype=bool)
        if shared is None:
            a = a.dictionary_decode() if isinstance(a, pa.DictionaryArray) else a
            return ~pc.is_null(a).to_numpy(zero_copy_only=False)
        valid = np.append(~pc.is_null(a.dictionary).to_numpy(zero_copy_only=False), False)
        return valid[at]  # at -1: the False appended

    brands_known = known(OPTIONAL_BRANDS)
    # without a customer's brand shares anywhere, brand_affinity is NaN: no brand coded
    brands = strings(PRODUCT_BRAND) if brands_known.any() else pa.array([], pa.string())
    codes = _Codes(
        own_recent.values, purchased.values, ids.values, strings("product_id"),
        cat_keys.values, strings(PRODUCT_CATEGORY), brand_keys.values, brands,
        strings(FAVOURITE_CATEGORY),
        takes=(own_recent.take, purchased.take, ids.take, None, cat_keys.take, None,
               brand_keys.take),
        memo=memo,
    )  # fmt: skip
    c_own_recent, c_purchased, c_ids, c_product, c_cat_keys, c_category = codes.parts[:6]
    c_brand_keys, c_brand, c_favourite = codes.parts[6:]
    rows = np.arange(n, dtype=np.int64) if shared is None else at
    recent, c_recent = own_recent, c_own_recent
    if shared is not None and source is None:  # the co-purchase part per entity row
        recent = lists(RECENT_PRODUCTS, strings=True)  # the customer rows' values, taken
        c_recent = c_own_recent[recent.take]
    # per customer source row: its recent products laid out per entity row once, for
    # `already` and the co-purchase part
    laid = _recent_by_customer(own_recent, c_own_recent, at) if shared is not None else None
    if source is None:
        wanted = None
    elif shared is None:
        wanted = partial(_recent_by_row, recent, c_recent, source)
    else:
        wanted = partial(_with_source, laid, source)
    ratio, distance = _nans(n), _nans(n)
    usual_price = get(OPTIONAL_ITEM_PRICE)
    if usual_price is not None:  # else no usual price: both NaN
        price, usual = _floats(get(PRODUCT_PRICE), n), _floats(usual_price, n)
        ok = ~np.isnan(price) & (usual > 0)
        ratio[ok] = price[ok] / usual[ok]
        positive = ratio > 0
        distance[positive] = np.abs(np.fromiter(map(math.log, ratio[positive]), np.float64))

    is_favourite = (c_category >= 0) & (c_category == c_favourite)

    if OPTIONAL_CATEGORIES in inputs:
        category_affinity = _share_lookup(
            cat_keys, cat_shares, c_cat_keys, c_category, codes, known(OPTIONAL_CATEGORIES),
            rows if shared is not None else None,
        )  # fmt: skip
    else:
        category_affinity = _as(is_favourite, np.float64)
    brand_affinity = _share_lookup(
        brand_keys, brand_shares, c_brand_keys, c_brand, codes, brands_known,
        rows if shared is not None else None,
    )  # fmt: skip

    if shared is None:  # the lists per entity row: each product against its row's candidate
        already = np.zeros(n, dtype=bool)
        for bought, c_bought in ((own_recent, c_own_recent), (purchased, c_purchased)):
            hit = (c_bought >= 0) & (c_bought == c_product[bought.rows])
            already[bought.rows[hit]] = True
    else:  # per customer source row: the recent products laid out (a few per entity row),
        # the purchased ones (many) through a bitmap over (customer row, product)
        laid_rows, laid_products = laid
        already = np.zeros(n, dtype=bool)
        already[laid_rows[laid_products == c_product[laid_rows]]] = True
        if len(purchased.rows):
            bought = codes.keys(purchased.rows, c_purchased)
            already |= _member(np.where(rows >= 0, codes.keys(rows, c_product), -1), bought)

    if source is None:
        # pairs of customers with recent products only: the others have no hit (nor in the
        # row code)
        recent_keys = codes.keys(recent.rows, c_recent)
        paired = (ids.position < scores.lengths[ids.rows]) & (recent.lengths[ids.rows] > 0)
        score_starts = np.cumsum(scores.lengths) - scores.lengths
        pair_rows = ids.rows[paired]
        s = scores.values[score_starts[pair_rows] + ids.position[paired]]
        hit = _member(codes.keys(pair_rows, c_ids[paired]), recent_keys) & ~np.isnan(s)
        score = np.bincount(pair_rows[hit], weights=s[hit], minlength=n).astype(np.float64)
        hits = np.bincount(pair_rows[hit], minlength=n).astype(np.int64)
    else:  # (not on a thread of its own: the numpy steps here are short and mostly hold the
        # GIL, so a second thread ran beside the rest no faster than after it, and cost 8 ms more
        # at 500,000 rows)
        score, hits = _copurchase_by_source(source, ids, scores, c_ids, wanted, codes)

    out = {
        "price_ratio": ratio,
        "price_distance": distance,
        "category_affinity": category_affinity,
        "is_favourite_category": _as(is_favourite, np.int64),
        "brand_affinity": brand_affinity,
        "already_purchased": _as(already, np.int64),
        "copurchase_score": score,
        "copurchase_hits": hits,
    }
    if shared is None:
        odd = np.concatenate([x.null_rows for x in (own_recent, purchased, cat_keys, brand_keys)])
    else:  # the entity rows of customer rows with a null key
        null = np.zeros(m + 1, dtype=bool)  # at -1: the False appended
        for x in (own_recent, purchased, cat_keys, brand_keys):
            null[x.null_rows] = True
        odd = np.flatnonzero(null[at])
    odd = np.unique(odd)
    if len(odd):  # _strings drops a null key and shifts the pairs: the row code's semantics
        subset = {k: (v.take(pa.array(odd)) if v is not None else None) for k, v in
                  ((k, _array(inputs, k)) for k in inputs)}  # fmt: skip
        rows_out = customer_product_match(
            {k: v.to_pylist() if v is not None else [None] * len(odd) for k, v in subset.items()}
        )
        for name, values in rows_out.items():
            out[name][odd] = values
    assert set(out) == set(MATCH_OUTPUTS)
    return out


def _affinity_columns(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    n = _arrow_rows(inputs)
    now = _seconds_array(_array(inputs, REQUEST_TIME), n)
    last = _seconds_array(_array(inputs, PAIR_LAST_ORDER), n)

    orders_90d, orders, views, carts = (
        _counts_array(_array(inputs, name), n)
        for name in (PAIR_ORDERS_90D, PAIR_ORDERS, PAIR_VIEWS, PAIR_CARTS)
    )
    total = _counts_array(_array(inputs, LIFETIME_ORDERS), n)
    share = _nans(n)
    np.divide(orders, total, out=share, where=total != 0)
    columns = (orders_90d, orders, _days_array(now, last, into=True), share, views, carts)
    return dict(zip(AFFINITY_OUTPUTS, columns, strict=True))


def _counts_array(a: pa.Array | None, n: int) -> np.ndarray:
    """_counts of every value as int64: 0 where there is none, int(float(v)) otherwise (an
    int64 column of counts, each at most 2^53, as it is: the same numbers)."""
    if a is not None and pa.types.is_int64(a.type) and len(a):
        values = _fixed_values(a, np.int64)
        if not ((values > _EXACT) | (values < -_EXACT)).any():
            if not a.null_count:
                return values
            return np.multiply(values, ~_nulls(a), out=_empty(len(a), np.int64))
    return np.nan_to_num(_floats(a, n), nan=0.0).astype(np.int64)


def _columns_or_rows(columns, rows, inputs: dict[str, Any]) -> dict[str, Any]:
    try:
        return columns(inputs)
    except _RowCode:
        return rows(_as_lists(inputs))
