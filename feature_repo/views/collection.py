"""Collection views: a collection's figures, and a product's collections. From the declarations."""

from data_sources import collection_stats_source, product_membership_source
from entities import ENTITIES

from featurestore.schema import feature_view
from pipelines.sources import sources

_declared = sources(strict=True)

collection_stats = feature_view(_declared["collection_stats"], ENTITIES, collection_stats_source)
product_membership = feature_view(
    _declared["product_membership"], ENTITIES, product_membership_source
)
