"""Customer views: activity, profile, reviews and buying rhythm. Schemas come from the
pipelines' declarations."""

from data_sources import (
    customer_activity_source,
    customer_profile_source,
    customer_reviews_source,
    customer_rhythm_source,
)
from entities import ENTITIES

from featurestore.schema import feature_view
from pipelines.sources import family_sources

_declared = family_sources(strict=True)

customer_activity = feature_view(_declared["customer_activity"], ENTITIES, customer_activity_source)
customer_profile = feature_view(_declared["customer_profile"], ENTITIES, customer_profile_source)
customer_reviews = feature_view(_declared["customer_reviews"], ENTITIES, customer_reviews_source)
customer_rhythm = feature_view(_declared["customer_rhythm"], ENTITIES, customer_rhythm_source)
