"""Customer views: activity, profile and reviews. Schemas come from the pipelines' declarations."""

from data_sources import (
    customer_activity_source,
    customer_profile_source,
    customer_reviews_source,
)
from entities import customer

from pipelines.registry import sources
from shopfeast.feast_schema import feature_view

_declared = sources(strict=True)

customer_activity = feature_view(_declared["customer_activity"], customer, customer_activity_source)
customer_profile = feature_view(_declared["customer_profile"], customer, customer_profile_source)
customer_reviews = feature_view(_declared["customer_reviews"], customer, customer_reviews_source)
