"""On-demand views: values that depend on the request time or on a (customer, product) pair.

Ages change every instant, so they are computed at read time from stored timestamps: offline the
request time is the entity frame's `event_timestamp`, online the caller passes the request time in
the same field. The logic lives in featurestore/odfv.py (pure, unit-tested); these UDFs only call
it, because Feast rebuilds a UDF from its source text in the reading process.
"""

from typing import Any

from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, UnixTimestamp
from views.collection import customer_collections, product_membership
from views.customer import customer_activity, customer_profile, customer_rhythm
from views.declared import declared
from views.product import product_copurchase, product_stats

from featurestore.odfv import (
    AFFINITY_INPUTS,
    AFFINITY_OUTPUTS,
    AGE_INPUTS,
    AGE_OUTPUTS,
    ARROW_TAG,
    CANDIDATE_COPURCHASE,
    COLLECTION_INPUTS,
    COLLECTION_OUTPUTS,
    CYCLE_INPUTS,
    CYCLE_OUTPUTS,
    MATCH_INPUTS,
    MATCH_OUTPUTS,
    RECENCY_INPUTS,
    RECENCY_OUTPUTS,
    RETRIEVAL_OUTPUTS,
)
from featurestore.schema import OWNER, inputs, outputs

# The offline store (featurestore.offline) calls these UDFs with pyarrow columns, the whole
# retrieval at once (featurestore/odfv.py computes them with numpy); online they get lists.
ARROW = dict([ARROW_TAG])

request_time = RequestSource(
    name="request_time",
    schema=[
        Field(
            name="event_timestamp",
            dtype=UnixTimestamp,
            description="The instant the features are for: the entity timestamp offline, "
            "the request time online.",
        )
    ],
    description="The instant a request is for (Feast fills it from the entity frame offline).",
    owner=OWNER,
    tags={"layer": "request"},
)


@on_demand_feature_view(
    sources=[
        inputs(customer_activity, RECENCY_INPUTS["customer_activity"]),
        inputs(customer_profile, RECENCY_INPUTS["customer_profile"]),
        request_time,
    ],
    schema=outputs(RECENCY_OUTPUTS),
    mode="python",
    description="Recency and tenure at the request time t, exact at any instant (not only daily): "
    "days_since_last_order = (t - last_order_ts) in days, days_since_last_activity = (t - latest "
    "of last_order_ts and last_event_ts), tenure_days = (t - signup_ts); NaN/null when unknown. "
    "(Feast 0.67 compares inferred output fields with their descriptions, so they live here.)",
    owner=OWNER,
    tags={"domain": "customer", "layer": "on_demand", "contract": "point_in_time", **ARROW},
)
def customer_recency(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import customer_recency as compute

    return compute(inputs)


@on_demand_feature_view(
    sources=[
        inputs(customer_activity, CYCLE_INPUTS["customer_activity"]),
        inputs(customer_rhythm, CYCLE_INPUTS["customer_rhythm"]),
        request_time,
    ],
    schema=outputs(CYCLE_OUTPUTS),
    mode="python",
    description="A customer's silence against their own rhythm at the request time t: "
    "days_since_first_order = (t - first_order_ts) in days (the first order's age, BG/NBD's T); "
    "recency_gap_ratio = days since the last order / mean_gap_days (1: an order is due about "
    "now); NaN when unknown.",
    owner=OWNER,
    tags={"domain": "customer", "layer": "on_demand", "contract": "point_in_time", **ARROW},
)
def customer_cycle(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import customer_cycle as compute

    return compute(inputs)


@on_demand_feature_view(
    sources=[inputs(product_stats, AGE_INPUTS["product_stats"]), request_time],
    schema=outputs(AGE_OUTPUTS),
    mode="python",
    description="Product age at the request time t: days_since_created = (t - "
    "product_created_at) in days; NaN/null when unknown.",
    owner=OWNER,
    tags={"domain": "product", "layer": "on_demand", "contract": "point_in_time", **ARROW},
)
def product_age(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import product_age as compute

    return compute(inputs)


@on_demand_feature_view(
    sources=[
        inputs(customer_activity, MATCH_INPUTS["customer_activity"]),
        inputs(product_stats, MATCH_INPUTS["product_stats"]),
        inputs(product_copurchase, MATCH_INPUTS["product_copurchase"]),
    ],
    schema=outputs(MATCH_OUTPUTS),
    mode="python",
    description="How a candidate product fits a customer: price_ratio = price / the customer's "
    "mean item price 90d, price_distance = |ln(price_ratio)|, category_affinity and "
    "brand_affinity = the customer's 90-day share of units in the candidate's category / brand, "
    "is_favourite_category, already_purchased (0/1), copurchase_score = sum of the candidate's "
    "co-purchase scores with the recent products, copurchase_hits = how many of them match.",
    owner=OWNER,
    tags={"domain": "ranking", "layer": "on_demand", **ARROW},
)
def customer_product_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import customer_product_match as compute

    return compute(inputs)


candidate_retrieval = RequestSource(
    name="candidate_retrieval",
    schema=[
        Field(
            name=CANDIDATE_COPURCHASE,
            dtype=Float64,
            description="The candidate generator's summed co-purchase score of the customer's "
            "recent products toward the candidate (0 when none), as of the request.",
        )
    ],
    description="How the candidate generator found a candidate: computed by "
    "training.candidates.copurchase_scores from the candidate services' features as "
    "of t, by training (offline, a column of the entity frame) and serving (per candidate).",
    owner=OWNER,
    tags={"layer": "request"},
)


@on_demand_feature_view(
    sources=[candidate_retrieval],
    schema=outputs(RETRIEVAL_OUTPUTS),
    mode="python",
    description="recent_copurchase_score = the candidate's summed co-purchase score from the "
    "customer's recent products' neighbour lists (the direction the candidate generator and the "
    "co-purchase baseline use; customer_product_match's copurchase_score reads the candidate's "
    "own list); NaN/null when not given.",
    owner=OWNER,
    tags={"domain": "ranking", "layer": "on_demand", **ARROW},
)
def retrieval_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import retrieval_match as compute

    return compute(inputs)


@on_demand_feature_view(
    sources=[
        inputs(declared["customer_product_history"], AFFINITY_INPUTS["customer_product_history"]),
        inputs(customer_activity, AFFINITY_INPUTS["customer_activity"]),
        request_time,
    ],
    schema=outputs(AFFINITY_OUTPUTS),
    mode="python",
    description="A customer's history with a candidate product (the declared view "
    "customer_product_history, stored only for pairs that happened), zeros for a pair that never "
    "happened: bought_orders_90d / _lifetime = the customer's orders containing it, "
    "days_since_bought = (t - the last such order) in days (NaN if never), bought_order_share = "
    "bought_orders_lifetime / the customer's lifetime_orders (NaN without orders), viewed_30d and "
    "carted_30d = its product views and add-to-carts by the customer.",
    owner=OWNER,
    tags={"domain": "ranking", "layer": "on_demand", "contract": "point_in_time", **ARROW},
)
def customer_product_affinity(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import customer_product_affinity as compute

    return compute(inputs)


@on_demand_feature_view(
    sources=[
        inputs(product_membership, COLLECTION_INPUTS["product_membership"]),
        inputs(customer_collections, COLLECTION_INPUTS["customer_collections"]),
    ],
    schema=outputs(COLLECTION_OUTPUTS),
    mode="python",
    description="Does the candidate share a collection with the customer's recent purchases? "
    "Its collections at t (product_membership) against those that at t hold a product of the "
    "customer's orders in the 90 days before t (customer_collections): shares_collection (0/1), "
    "shared_collections (how many of the candidate's), shared_collection_share (that over the "
    "candidate's collections; NaN for a candidate in none). A missing row has no collections.",
    owner=OWNER,
    tags={"domain": "ranking", "layer": "on_demand", "contract": "point_in_time", **ARROW},
)
def collection_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from featurestore.odfv import collection_match as compute

    return compute(inputs)
