"""Collection views: a collection's figures, a product's collections and the collections of a
customer's recent purchases. From the declarations."""

from data_sources import (
    collection_stats_source,
    customer_collections_source,
    product_membership_source,
)
from entities import ENTITIES

from featurestore.schema import feature_view
from pipelines.sources import family_sources

_declared = family_sources(strict=True)

collection_stats = feature_view(_declared["collection_stats"], ENTITIES, collection_stats_source)
product_membership = feature_view(
    _declared["product_membership"], ENTITIES, product_membership_source
)
customer_collections = feature_view(
    _declared["customer_collections"], ENTITIES, customer_collections_source
)
