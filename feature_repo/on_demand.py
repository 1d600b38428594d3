"""On-demand views: values that depend on the request time or on a (customer, product) pair.

Ages change every instant, so they are computed at read time from stored timestamps: offline the
request time is the entity frame's `event_timestamp`, online the caller passes the request time in
the same field. The logic lives in shopfeast/odfv.py (pure, unit-tested); these UDFs only call it,
because Feast rebuilds a UDF from its source text in the reading process.
"""

from typing import Any

from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, UnixTimestamp
from views.customer import customer_activity, customer_profile
from views.product import product_copurchase, product_stats

OWNER = "feature-platform@shopfeast"

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
    sources=[customer_activity, customer_profile, request_time],
    schema=[
        Field(
            name="days_since_last_order",
            dtype=Float64,
            description="(t - last_order_ts) in days; null without an order",
        ),
        Field(
            name="days_since_last_activity",
            dtype=Float64,
            description="(t - latest of last_order_ts and last_event_ts) in days; null without",
        ),
        Field(
            name="tenure_days",
            dtype=Float64,
            description="(t - signup_ts) in days; null when signup_ts is unknown",
        ),
    ],
    mode="python",
    description="Recency and tenure at the request time, exact at any instant (not only daily).",
    owner=OWNER,
    tags={"domain": "customer", "layer": "on_demand", "contract": "point_in_time"},
)
def customer_recency(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from shopfeast.odfv import customer_recency as compute

    return compute(inputs)


@on_demand_feature_view(
    sources=[customer_activity, product_stats, product_copurchase],
    schema=[
        Field(
            name="price_ratio",
            dtype=Float64,
            description="candidate price / the customer's mean item price over 90 days",
        ),
        Field(
            name="price_distance",
            dtype=Float64,
            description="|ln(price_ratio)|: distance from the customer's usual basket",
        ),
        Field(
            name="category_affinity",
            dtype=Float64,
            description="the customer's 90-day share of units in the candidate's category",
        ),
        Field(
            name="is_favourite_category",
            dtype=Int64,
            description="1 when the candidate is in the customer's favourite 90-day category",
        ),
        Field(
            name="brand_affinity",
            dtype=Float64,
            description="the customer's 90-day share of units in the candidate's brand",
        ),
        Field(
            name="already_purchased",
            dtype=Int64,
            description="1 when the customer bought the candidate before",
        ),
        Field(
            name="copurchase_score",
            dtype=Float64,
            description="sum of the candidate's co-purchase scores with the recent products",
        ),
        Field(
            name="copurchase_hits",
            dtype=Int64,
            description="how many of the recent products were bought with the candidate",
        ),
    ],
    mode="python",
    description="How a candidate product fits a customer (ranking features for one pair).",
    owner=OWNER,
    tags={"domain": "ranking", "layer": "on_demand"},
)
def customer_product_match(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from shopfeast.odfv import customer_product_match as compute

    return compute(inputs)
