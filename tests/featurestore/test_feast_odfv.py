"""The on-demand logic on small inputs, as Feast hands them offline and online."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from featurestore import odfv

T = datetime(2025, 3, 10, 12, 0, 30, 700_000, tzinfo=UTC)


def nan_or(value):
    return None if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize(
    "request_time",
    [T, pd.Timestamp(T), T.isoformat(), np.datetime64(T.replace(tzinfo=None), "us")],
)
def test_recency_from_any_request_time_at_whole_seconds(request_time) -> None:
    last = datetime(2025, 3, 1, 6, 0, 0, 900_000, tzinfo=UTC)
    out = odfv.customer_recency(
        {
            "event_timestamp": [request_time],
            "last_order_ts": [last],
            "signup_ts": [pd.Timestamp("2024-03-10 12:00:30", tz="UTC")],
        }
    )
    whole = (T.replace(microsecond=0) - last.replace(microsecond=0)).total_seconds() / 86400
    assert out["days_since_last_order"] == [pytest.approx(whole, abs=1e-12)]
    assert out["days_since_last_activity"] == out["days_since_last_order"]
    assert out["tenure_days"] == [pytest.approx(365.0)]


def test_recency_unknowns_are_nan_and_activity_takes_the_latest() -> None:
    out = odfv.customer_recency(
        {
            "event_timestamp": [T, T, None],
            "last_order_ts": [None, T - timedelta(days=3), T],
            "last_event_ts": [T - timedelta(days=1), T - timedelta(days=2), None],
            "signup_ts": [None, pd.NaT, T],
        }
    )
    assert [nan_or(v) for v in out["days_since_last_order"]] == [None, 3.0, None]
    assert [nan_or(v) for v in out["days_since_last_activity"]] == [1.0, 2.0, None]
    assert all(math.isnan(v) for v in out["tenure_days"])


def test_cycle_is_the_first_order_age_and_the_silence_in_usual_gaps() -> None:
    out = odfv.customer_cycle(
        {
            "event_timestamp": [T, T, T, T],
            "first_order_ts": [T - timedelta(days=40), T - timedelta(days=40), None, T],
            "last_order_ts": [T - timedelta(days=12), T - timedelta(days=12), None, T],
            "mean_gap_days": [4.0, None, None, 0.0],
        }
    )
    assert [nan_or(v) for v in out["days_since_first_order"]] == [40.0, 40.0, None, 0.0]
    # 12 days silent, a usual gap of 4: three gaps overdue; unknown without a gap, or a gap of 0
    assert [nan_or(v) for v in out["recency_gap_ratio"]] == [3.0, None, None, None]
    assert set(out) == set(odfv.CYCLE_OUTPUTS)


def test_product_age() -> None:
    out = odfv.product_age(
        {"event_timestamp": [T, T], "product_created_at": [T - timedelta(days=10), None]}
    )
    assert out["days_since_created"][0] == pytest.approx(10.0)
    assert math.isnan(out["days_since_created"][1])


def match_inputs(**overrides):
    row = {
        "product_id": ["p9"],
        "recent_product_ids": [["p1", "p2", "p3"]],
        "favourite_category_90d": ["shoes"],
        "product_price": [30.0],
        "category": ["shoes"],
        "brand": ["acme"],
        "copurchase_product_ids": [["p2", "p7", "p3"]],
        "copurchase_scores": [[0.5, 0.9, 0.25]],
    }
    row.update({k: [v] for k, v in overrides.items()})
    return row


def test_match_with_the_guaranteed_inputs() -> None:
    out = odfv.customer_product_match(match_inputs())
    assert out["copurchase_score"] == [0.75] and out["copurchase_hits"] == [2]
    assert out["is_favourite_category"] == [1] and out["category_affinity"] == [1.0]
    assert out["already_purchased"] == [0]
    for name in ("price_ratio", "price_distance", "brand_affinity"):  # inputs not declared
        assert math.isnan(out[name][0])
    assert set(out) == set(odfv.MATCH_OUTPUTS)


def test_match_with_the_optional_inputs() -> None:
    out = odfv.customer_product_match(
        match_inputs(
            avg_item_price_90d=15.0,
            purchased_product_ids=["p9", "p1"],
            top_categories_90d=["bags", "shoes"],
            top_category_shares_90d=[0.7, 0.3],
            top_brands_90d=["other"],
            top_brand_shares_90d=[1.0],
        )
    )
    assert out["price_ratio"] == [2.0]
    assert out["price_distance"] == [pytest.approx(math.log(2.0))]
    assert out["category_affinity"] == [0.3] and out["brand_affinity"] == [0.0]
    assert out["already_purchased"] == [1]


def test_match_for_an_unknown_customer_and_product() -> None:
    """Online, an entity missing from the store arrives as None everywhere."""
    row = {k: [None] for k in match_inputs()}
    out = odfv.customer_product_match(row)
    assert out["copurchase_score"] == [0.0] and out["copurchase_hits"] == [0]
    assert out["already_purchased"] == [0] and out["is_favourite_category"] == [0]
    assert math.isnan(out["price_ratio"][0])


def test_match_accepts_numpy_arrays_as_offline_lists() -> None:
    out = odfv.customer_product_match(
        match_inputs(
            recent_product_ids=np.array(["p7"], dtype=object),
            copurchase_scores=np.array([0.5, 0.9, 0.25]),
        )
    )
    assert out["copurchase_score"] == [0.9]


def _reference_match(row: dict) -> dict:
    """customer_product_match of one row, from the definitions in docs/features.md, naively."""

    def missing(v):
        return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))

    def strings(values):
        return [] if values is None else [str(v) for v in values if not missing(v)]

    def share(key, keys, shares):
        if keys is None or missing(key):
            return math.nan
        for name, s in zip(keys, shares if shares is not None else [], strict=False):
            if not missing(name) and str(name) == key:
                return 0.0 if missing(s) else float(s)
        return 0.0

    price, usual = row.get("product_price"), row.get("avg_item_price_90d")
    ok = not missing(price) and not missing(usual) and usual > 0
    ratio = price / usual if ok else math.nan
    category = None if missing(row.get("category")) else row["category"]
    favourite = row.get("favourite_category_90d")
    is_favourite = int(category is not None and category == favourite)
    recent = set(strings(row.get("recent_product_ids")))
    bought = recent | set(strings(row.get("purchased_product_ids")))
    score, hits = 0.0, 0
    ids, scores = row.get("copurchase_product_ids"), row.get("copurchase_scores")
    pairs = zip(ids if ids is not None else [], scores if scores is not None else [], strict=False)
    for pid, s in pairs:
        if not missing(pid) and str(pid) in recent and not missing(s):
            score, hits = score + float(s), hits + 1
    brand = None if missing(row.get("brand")) else row["brand"]
    return {
        "price_ratio": ratio,
        "price_distance": abs(math.log(ratio)) if ratio > 0 else math.nan,
        "category_affinity": share(
            category, row.get("top_categories_90d"), row.get("top_category_shares_90d")
        ),
        "is_favourite_category": is_favourite,
        "brand_affinity": share(brand, row.get("top_brands_90d"), row.get("top_brand_shares_90d")),
        "already_purchased": int(row.get("product_id") in bought),
        "copurchase_score": score,
        "copurchase_hits": hits,
    }


def _random_match_batches(seed: int, null_keys: bool = False) -> list[list[dict]]:
    """Runs of one customer (as serving sends them: the same objects on every row), customers
    interleaved, numpy lists, missing values everywhere, nulls inside lists (`null_keys`: also
    inside the customer's category and brand lists)."""
    rng = np.random.default_rng(seed)
    products = [f"p{i}" for i in range(40)]
    cats, brands = ["a", "b", "c", "d"], ["x", "y", "z"]

    def maybe(value, p=0.15):
        return None if rng.random() < p else value

    def some(pool, k):
        return list(rng.choice(pool, size=k, replace=False))

    def keys(pool, k):
        picked = some(pool, k)
        return [maybe(x, 0.2) for x in picked] if null_keys else picked

    def customer():
        top_c = maybe(keys(cats, int(rng.integers(0, 4))))
        top_b = maybe(keys(brands, int(rng.integers(0, 3))))
        return {
            "recent_product_ids": maybe(some(products, int(rng.integers(0, 6)))),
            "purchased_product_ids": maybe(np.array(some(products, 8), dtype=object)),
            "favourite_category_90d": maybe(str(rng.choice(cats))),
            "avg_item_price_90d": maybe(float(rng.choice([0.0, 12.5, 40.0]))),
            "top_categories_90d": top_c,
            "top_category_shares_90d": None
            if top_c is None
            else [
                maybe(float(x), 0.1)
                for x in rng.random(max(0, len(top_c) + int(rng.integers(-1, 2))))
            ],
            "top_brands_90d": top_b,
            "top_brand_shares_90d": None if top_b is None else list(rng.random(len(top_b))),
        }

    def candidate():
        ids = some(products, int(rng.integers(0, 12)))
        ids = [maybe(i, 0.05) for i in ids]
        scores = [maybe(float(s), 0.05) for s in rng.random(len(ids))]
        if rng.random() < 0.3:
            scores[:0] = [math.nan] if ids else []
            scores = np.array(scores[: len(ids)], dtype=np.float32)
        return {
            "product_id": maybe(str(rng.choice(products)), 0.02),
            "product_price": maybe(float(rng.uniform(1, 80)), 0.1),
            "category": maybe(str(rng.choice(cats)), 0.1),
            "brand": maybe(str(rng.choice(brands)), 0.1),
            "copurchase_product_ids": maybe(ids, 0.05),
            "copurchase_scores": maybe(scores, 0.05),
        }

    people = [customer() for _ in range(6)]
    people.append(dict.fromkeys(people[0]))  # a customer without a row: every value missing
    rows = []
    for _ in range(30):  # runs of one customer, the same customer coming back later
        who = people[int(rng.integers(len(people)))]
        rows += [{**who, **candidate()} for _ in range(int(rng.integers(1, 15)))]
    batches = [rows]  # customers interleaved
    for who in people:  # one customer per call, as serving calls it
        batches.append([r for r in rows if r["recent_product_ids"] is who["recent_product_ids"]])
    return [b for b in batches if b]


def test_match_equals_a_naive_recomputation_on_random_batches() -> None:
    for batch in _random_match_batches(11):
        got = odfv.customer_product_match({name: [r[name] for r in batch] for name in batch[0]})
        for i, row in enumerate(batch):
            want = _reference_match(row)
            for name in odfv.MATCH_OUTPUTS:
                a, b = got[name][i], want[name]
                same = (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6)
                assert same, (i, name, a, b)


def test_match_for_one_customer_equals_the_row_by_row_match() -> None:
    """Serving's call (one customer, many candidates) computes column by column: value and type
    equal to `_Customer.match` row by row, on random batches with and without optional inputs."""
    checked = 0
    for seed in (11, 12, 13):
        for batch in _random_match_batches(seed)[1:]:  # one customer per batch
            if any(
                any(r[name] is not batch[0][name] for r in batch) for name in odfv._CUSTOMER_SIDE
            ):
                continue  # (customers whose lists are all missing share a batch)
            checked += 1
            for drop in (set(), OPTIONAL_MATCH_INPUTS):
                inputs = {n: [r[n] for r in batch] for n in batch[0] if n not in drop}
                got = odfv.customer_product_match(inputs)
                size = len(batch)

                def col(name, inputs=inputs, n=size):
                    return inputs.get(name, [None] * n)

                side = odfv._Customer(
                    *(col(name)[0] for name in odfv._CUSTOMER_SIDE),
                    has_shares=odfv.OPTIONAL_CATEGORIES in inputs,
                )
                names = (odfv.PRODUCT_PRICE, odfv.PRODUCT_CATEGORY, odfv.PRODUCT_BRAND)
                rows = [
                    side.match(*values)
                    for values in zip(
                        *(col(name) for name in names),
                        col("product_id"),
                        col(odfv.COPURCHASE_IDS),
                        col(odfv.COPURCHASE_SCORES),
                        strict=True,
                    )
                ]
                for j, name in enumerate(odfv.MATCH_OUTPUTS):
                    want = [row[j] for row in rows]
                    assert [(type(v), repr(v)) for v in got[name]] == [
                        (type(v), repr(v)) for v in want
                    ], name
    assert checked >= 12


def _arrow_column(values: list) -> pa.Array:
    """A column as the offline store hands it: numpy lists as lists, NaN kept."""
    return pa.array([v.tolist() if isinstance(v, np.ndarray) else v for v in values])


def _same_values(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


OPTIONAL_MATCH_INPUTS = {
    odfv.OPTIONAL_PURCHASED,
    odfv.OPTIONAL_ITEM_PRICE,
    odfv.OPTIONAL_CATEGORIES,
    odfv.OPTIONAL_CATEGORY_SHARES,
    odfv.OPTIONAL_BRANDS,
    odfv.OPTIONAL_BRAND_SHARES,
}


CANDIDATE_LISTS = (odfv.COPURCHASE_IDS, odfv.COPURCHASE_SCORES)


# customer_product_match's inputs by the view they come from, as the offline store hands a
# gathered view's list and string columns: over one index per view
CUSTOMER_COLUMNS = (*odfv._CUSTOMER_LISTS, odfv.FAVOURITE_CATEGORY)
PRODUCT_STRINGS = (odfv.PRODUCT_CATEGORY, odfv.PRODUCT_BRAND)


def _dictionary_columns(
    columns: dict[str, list],
    rng: np.random.Generator,
    by_view: bool = False,
    complete: bool = False,
) -> dict:
    """List columns as the offline store hands a gathered view's: an index per row into the
    source's lists (shuffled, with lists no row points at, a row without lists either a null
    index or an index to null lists), the candidate's ids and scores over one source with the
    same indices; anything else as _arrow_column. `by_view`: as the store hands them, every
    list and string column of one view over one index (the customer's, the product's), and
    the product id over the frame's distinct ids. `complete`: the unused source lists hold no
    null value (nor do the columns given, then, in any list)."""
    out = {name: _arrow_column(values) for name, values in columns.items()}
    lists = [n for n, column in out.items() if pa.types.is_list(column.type)]
    groups = [[n for n in CANDIDATE_LISTS if n in lists]]
    if by_view:
        for names in (CUSTOMER_COLUMNS, PRODUCT_STRINGS):
            groups.append([n for n in names if n in out and not pa.types.is_null(out[n].type)])
        product = out.get("product_id")
        if product is not None and pa.types.is_string(product.type):
            out["product_id"] = pc.dictionary_encode(product)
    grouped = {n for g in groups for n in g}
    groups += [[n] for n in lists if n not in grouped]
    for group in groups:
        if not group:
            continue
        rows = [out[n].to_pylist() for n in group]
        k = len(rows[0])
        order = rng.permutation(k + 3)
        where = np.empty(k + 3, dtype=np.int64)
        where[order] = np.arange(k + 3)
        index = [
            None if all(r[i] is None for r in rows) and rng.random() < 0.5 else int(where[i])
            for i in range(k)
        ]
        for name, values in zip(group, rows, strict=True):
            if not pa.types.is_list(out[name].type):  # a string column
                source = [*values, "unused", None, None]
                dictionary = pa.array([source[i] for i in order], out[name].type)
                out[name] = pa.DictionaryArray.from_arrays(pa.array(index, pa.int64()), dictionary)
                assert out[name].to_pylist() == values
                continue
            kind = out[name].type.value_type
            unused = (
                ["unused"]
                if pa.types.is_string(kind)
                else [0.5]
                if pa.types.is_floating(kind)
                else []
            )
            source = [*values, [*unused, *([] if complete else [None])], [], None]
            dictionary = pa.array([source[i] for i in order], out[name].type)
            out[name] = pa.DictionaryArray.from_arrays(pa.array(index, pa.int64()), dictionary)
            assert repr(out[name].to_pylist()) == repr(values)  # NaN inside lists too
    return out


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("null_keys", [False, True])
@pytest.mark.parametrize("optional", [True, False])
@pytest.mark.parametrize("lists", ["plain", "dictionary", "by_view"])
def test_match_over_arrow_columns_equals_the_row_code(
    seed, null_keys, optional, lists, monkeypatch
) -> None:
    """The offline store's whole-column call gives bit for bit the row code's numbers (nulls
    inside key lists go through the row code's own semantics; without the optional inputs the
    category affinity is the favourite flag), with list columns as lists or, as the offline
    store hands a gathered view's, dictionary-encoded over the source's lists; `by_view`:
    every list and string column of a view over one index, as the store hands them, so the
    customer's sets and share tables are built per customer source row."""
    monkeypatch.setattr(odfv, "_BY_SOURCE_ROWS", 10.0)  # the small batches' sources per row too
    rng = np.random.default_rng(seed)
    shared = 0
    for batch in _random_match_batches(seed, null_keys):
        names = [n for n in batch[0] if optional or n not in OPTIONAL_MATCH_INPUTS]
        rows = odfv.customer_product_match({n: [r[n] for r in batch] for n in names})
        given = {n: [r[n] for r in batch] for n in names}
        if lists == "plain":
            arrow = {n: _arrow_column(v) for n, v in given.items()}
        else:
            arrow = _dictionary_columns(given, rng, by_view=lists.startswith("by_view"))
            assert odfv._shared_source(*(arrow[n] for n in CANDIDATE_LISTS)) is not None
            if lists.startswith("by_view"):
                shared += odfv._shared_rows(arrow) is not None
        columns = odfv.customer_product_match(arrow)
        assert set(columns) == set(odfv.MATCH_OUTPUTS)
        for name in odfv.MATCH_OUTPUTS:
            assert isinstance(columns[name], np.ndarray), name
            assert _same_values(columns[name], rows[name]), name
    if lists.startswith("by_view"):
        assert shared  # the customer's side per source row was taken


def test_time_features_over_arrow_columns_equal_the_row_code() -> None:
    """Recency, age and the retrieval score over pyarrow columns (timestamps in us and ns, nulls,
    sub-second instants) equal the row code's numbers exactly."""
    rng = np.random.default_rng(5)
    n = 500
    base = np.datetime64("2025-01-01T00:00:00", "us").astype(np.int64)

    def instants(p_null):
        us = base + rng.integers(-400 * 86_400_000_000, 86_400_000_000, n)
        values = [None if rng.random() < p_null else int(v) for v in us]
        return pa.array(values, pa.timestamp("us", tz="UTC"))

    now = instants(0.02)
    inputs = {
        "event_timestamp": now,
        "last_order_ts": instants(0.2),
        "last_event_ts": instants(0.3).cast(pa.timestamp("ns", tz="UTC")),
        "signup_ts": instants(0.1),
        "product_created_at": instants(0.1),
        "first_order_ts": instants(0.2),
        "mean_gap_days": pa.array([None if i % 5 == 0 else (i % 4) * 3.5 for i in range(n)]),
        odfv.CANDIDATE_COPURCHASE: pa.array([None if i % 9 == 0 else i / 7 for i in range(n)]),
    }
    lists = {k: v.to_pylist() for k, v in inputs.items()}
    for fn in (odfv.customer_recency, odfv.product_age, odfv.retrieval_match, odfv.customer_cycle):
        columns, rows = fn(inputs), fn(lists)
        assert set(columns) == set(rows)
        for name in rows:
            assert _same_values(columns[name], rows[name]), name
    without = {k: v for k, v in inputs.items() if k != "last_event_ts"}  # the optional input
    got = odfv.customer_recency(without)["days_since_last_activity"]
    assert _same_values(got, odfv.customer_recency(without)["days_since_last_order"])


def test_retrieval_match_passes_the_score_and_marks_the_unknown() -> None:
    out = odfv.retrieval_match({odfv.CANDIDATE_COPURCHASE: [0.75, 0, None, np.float32(0.5)]})
    got = out["recent_copurchase_score"]
    assert got[:2] == [0.75, 0.0] and math.isnan(got[2]) and got[3] == 0.5
    assert set(out) == set(odfv.RETRIEVAL_OUTPUTS)


def test_affinity_reads_a_pair_that_never_happened_as_zeros() -> None:
    """Row 0: a pair with history; row 1: a pair with no stored row (Feast hands nulls, or NaN
    offline); row 2: neither the pair nor the customer has a row."""
    last = datetime(2025, 3, 4, 12, 0, 30, tzinfo=UTC)
    out = odfv.customer_product_affinity(
        {
            "event_timestamp": [T, T, T],
            "pair_orders_90d": [2, None, None],
            "pair_orders_lifetime": [3, float("nan"), None],
            "pair_last_order_ts": [last, None, pd.NaT],
            "pair_views_30d": [np.int64(5), None, None],
            "pair_carts_30d": [1, None, None],
            "lifetime_orders": [12, 4, None],
        }
    )
    assert out["bought_orders_90d"] == [2, 0, 0]
    assert out["bought_orders_lifetime"] == [3, 0, 0]
    assert out["viewed_30d"] == [5, 0, 0] and out["carted_30d"] == [1, 0, 0]
    assert out["bought_order_share"][:2] == [0.25, 0.0]
    assert math.isnan(out["bought_order_share"][2])  # a customer without orders
    assert out["days_since_bought"][0] == pytest.approx(6.0)
    assert all(math.isnan(d) for d in out["days_since_bought"][1:])
    assert all(type(v) is int for v in out["bought_orders_lifetime"])


def test_affinity_over_arrow_columns_equals_the_row_code() -> None:
    """The offline store's whole-column call of customer_product_affinity: the row code's numbers
    exactly (counts and stored nulls of sparse pairs, NaN offline, customers without orders)."""
    rng = np.random.default_rng(9)
    n = 400
    base = np.datetime64("2025-03-01T00:00:00", "us").astype(np.int64)

    def counts(p_null, high=6):
        return pa.array(
            [None if rng.random() < p_null else int(rng.integers(0, high)) for _ in range(n)]
        )

    inputs = {
        "event_timestamp": pa.array(
            [int(base + v) for v in rng.integers(0, 86_400_000_000, n)],
            pa.timestamp("us", tz="UTC"),
        ),
        "pair_orders_90d": counts(0.4),
        "pair_orders_lifetime": counts(0.4),
        "pair_last_order_ts": pa.array(
            [
                None if rng.random() < 0.4 else int(base - v)
                for v in rng.integers(0, 300 * 86_400_000_000, n)
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        "pair_views_30d": counts(0.5),
        "pair_carts_30d": counts(0.5),
        "lifetime_orders": pa.array(
            [
                None if i % 11 == 0 else (0 if i % 7 == 0 else int(rng.integers(1, 30)))
                for i in range(n)
            ]
        ).cast(pa.float64()),
    }
    columns = odfv.customer_product_affinity(inputs)
    rows = odfv.customer_product_affinity({k: v.to_pylist() for k, v in inputs.items()})
    assert set(columns) == set(odfv.AFFINITY_OUTPUTS)
    for name in odfv.AFFINITY_OUTPUTS:
        assert isinstance(columns[name], np.ndarray), name
        assert _same_values(columns[name], rows[name]), name
    share = np.asarray(rows["bought_order_share"], np.float64)
    assert np.isnan(share).any() and (share > 0).any()  # both cases met


@pytest.mark.parametrize("scored", ["unequal", "aligned", "complete"])
def test_match_over_gathered_lists_with_repeats_equals_the_row_code(scored) -> None:
    """Repeated products in a candidate's co-purchase list and in the customer's recent ones,
    scores of very different sizes (the sum's order shows in its last bits), lists of unequal
    length, nulls: the column code over dictionary-encoded lists gives the row code's numbers.
    `aligned`: a score per id in every list, as the pipeline writes them (the column code then
    reads them place by place); `complete`: besides, no null id or score (every pair kept)."""
    rng = np.random.default_rng(5)
    products = [f"p{i}" for i in range(8)]
    aligned = scored != "unequal"

    def maybe(value, p=0.1):
        return None if rng.random() < p else value

    def inner(value):  # an id or a score inside a list
        return value if scored == "complete" else maybe(value)

    rows = []
    for _ in range(400):
        k = int(rng.integers(0, 10))
        recent = [str(rng.choice(products)) for _ in range(int(rng.integers(0, 5)))]
        ids = maybe([inner(str(rng.choice(products))) for _ in range(k)], 0.05)
        scores = [
            inner(float(rng.random()) * 10.0 ** int(rng.integers(-8, 8)))
            for _ in range(k if aligned else int(rng.integers(0, k + 2)))
        ]
        rows.append(
            {
                "product_id": str(rng.choice(products)),
                "product_price": 1.0,
                "category": "a",
                "brand": "x",
                "favourite_category_90d": "a",
                "recent_product_ids": maybe(recent),
                "copurchase_product_ids": ids,
                "copurchase_scores": None if aligned and ids is None else scores,
            }
        )
    given = {name: [r[name] for r in rows] for name in rows[0]}
    want = odfv.customer_product_match(given)
    arrow = _dictionary_columns(given, rng, complete=scored == "complete")
    assert odfv._shared_source(*(arrow[n] for n in CANDIDATE_LISTS)) is not None
    lengths = [pc.list_value_length(arrow[n].dictionary) for n in CANDIDATE_LISTS]
    assert lengths[0].equals(lengths[1]) == aligned  # the two ways of reading the scores
    values = [pc.list_flatten(arrow[n].dictionary) for n in CANDIDATE_LISTS]
    assert (sum(v.null_count for v in values) == 0) == (scored == "complete")
    got = odfv.customer_product_match(arrow)
    assert sum(want["copurchase_hits"]) > 100
    for name in odfv.MATCH_OUTPUTS:
        assert isinstance(got[name], np.ndarray), name
        assert _same_values(got[name], want[name]), name


# customer_product_match's lookups over (row, code) keys: dense (a bitmap; the co-purchase
# pairs a byte per key, else through the bitmap) when the keys' span is small next to them, else
# sorted and binary-searched; the bitmap a byte per key packed, or bit by bit past _BITMAP_BYTES
DENSE = {"_BITMAP_BITS_PER_KEY": 10**9, "_FLAGS_PER_KEY": 10**9}
LOOKUPS = {
    "flags": DENSE,
    "bitmap": {**DENSE, "_FLAG_BYTES": 0},
    "bitmap_bits": {**DENSE, "_FLAG_BYTES": 0, "_BITMAP_BYTES": 0},
    "searched": {"_BITMAP_BITS": 0, "_FLAG_BYTES": 0},
}


@pytest.mark.parametrize("lookups", sorted(LOOKUPS))
@pytest.mark.parametrize("lists", ["dictionary", "by_view"])
def test_match_lookups_dense_or_searched_equal_the_row_code(lookups, lists, monkeypatch) -> None:
    """Whichever way customer_product_match's column code finds a row's keys (the product among
    the customer's, the recent products among the candidate's co-purchase pairs), its numbers
    are the row code's, bit for bit: random batches with nulls, and lists with repeated
    products and scores whose sum shows the order of addition."""
    for name, value in LOOKUPS[lookups].items():
        monkeypatch.setattr(odfv, name, value)
    monkeypatch.setattr(odfv, "_BY_SOURCE_ROWS", 10.0)
    bitmaps = []
    bitmap = odfv._bitmap
    monkeypatch.setattr(odfv, "_bitmap", lambda *a: bitmaps.append(1) or bitmap(*a))
    rng = np.random.default_rng(23)
    batches = [*_random_match_batches(13, null_keys=True), _repeats_rows(rng)]
    for batch in batches:
        given = {n: [r.get(n) for r in batch] for n in batch[0]}
        want = odfv.customer_product_match(given)
        arrow = _dictionary_columns(given, rng, by_view=lists == "by_view")
        got = odfv.customer_product_match(arrow)
        for name in odfv.MATCH_OUTPUTS:
            assert isinstance(got[name], np.ndarray), name
            assert _same_values(got[name], want[name]), (lookups, name)
    if lists == "by_view":  # the customer's lists per customer row: the way asked for taken
        assert bool(bitmaps) == (lookups != "searched")


def _repeats_rows(rng: np.random.Generator) -> list[dict]:
    """Rows with products repeated in the co-purchase lists and the recent ones, scores whose
    sum shows the order of addition in its last bits, lists of unequal length."""
    products = [f"p{i}" for i in range(8)]

    def maybe(value, p=0.1):
        return None if rng.random() < p else value

    rows = []
    for _ in range(300):
        k = int(rng.integers(0, 10))
        recent = [str(rng.choice(products)) for _ in range(int(rng.integers(0, 5)))]
        rows.append(
            {
                "product_id": str(rng.choice(products)),
                "product_price": 1.0,
                "category": "a",
                "brand": "x",
                "favourite_category_90d": "a",
                "recent_product_ids": maybe(recent),
                "copurchase_product_ids": maybe(
                    [maybe(str(rng.choice(products))) for _ in range(k)], 0.05
                ),
                "copurchase_scores": [
                    maybe(float(rng.random()) * 10.0 ** int(rng.integers(-2, 3)))
                    for _ in range(int(rng.integers(0, k + 2)))
                ],
            }
        )
    return rows


@pytest.mark.parametrize("layout", ["sliced", "chunked"])
def test_time_and_number_columns_sliced_or_chunked_equal_the_row_code(layout) -> None:
    """The column code reads timestamps, floats and counts from Arrow's buffers: a column that
    is a slice of a bigger one (an offset into its buffers, its validity bits not byte-aligned)
    or comes in several chunks gives the row code's numbers."""
    rng = np.random.default_rng(31)
    n = 203
    base = np.datetime64("2025-02-01T00:00:00", "us").astype(np.int64)

    def instants(unit="us"):
        values = [
            None if rng.random() < 0.2 else int(base + v)
            for v in rng.integers(-90 * 86_400_000_000, 86_400_000_000, n)
        ]
        us = pa.array(values, pa.timestamp("us", tz="UTC"))
        return us.cast(pa.timestamp(unit, tz="UTC"), safe=False)

    def numbers():
        return pa.array([None if rng.random() < 0.2 else float(v) for v in rng.random(n) * 40])

    columns = {
        "event_timestamp": instants("ns"),
        "last_order_ts": instants(),
        "last_event_ts": instants("ms"),
        "signup_ts": instants(),
        "product_created_at": instants("s"),
        "first_order_ts": instants(),
        "mean_gap_days": numbers(),
        odfv.CANDIDATE_COPURCHASE: numbers(),
        "pair_last_order_ts": instants(),
        "lifetime_orders": numbers(),
        "pair_orders_90d": pa.array([None if i % 3 else i % 7 for i in range(n)], pa.int64()),
        # a count past 2^53 reads as int(float(v)), as the row code reads it
        "pair_orders_lifetime": pa.array([2**53 + 1 if i == 150 else i for i in range(n)]),
        "pair_views_30d": pa.array(list(range(n)), pa.int32()),
    }

    def laid_out(a: pa.Array):
        if layout == "sliced":
            return a.slice(5, n - 13)
        return pa.chunked_array([a.slice(0, 70), a.slice(70, 3), a.slice(73)])

    arrow = {k: laid_out(v) for k, v in columns.items()}
    lists = {k: v.to_pylist() for k, v in arrow.items()}
    views = (
        odfv.customer_recency,
        odfv.product_age,
        odfv.retrieval_match,
        odfv.customer_cycle,
        odfv.customer_product_affinity,
    )
    for fn in views:
        got, want = fn(arrow), fn(lists)
        assert set(got) == set(want)
        for name in want:
            assert isinstance(got[name], np.ndarray), name
            assert _same_values(got[name], want[name]), (fn.__name__, name)
