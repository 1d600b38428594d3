"""Product views: catalog statistics and co-purchases. Schemas come from the declarations."""

from data_sources import (
    product_copurchase_source,
    product_stats_source,
)
from entities import ENTITIES

from featurestore.schema import feature_view
from pipelines.sources import family_sources

_declared = family_sources(strict=True)

product_stats = feature_view(_declared["product_stats"], ENTITIES, product_stats_source)
product_copurchase = feature_view(
    _declared["product_copurchase"], ENTITIES, product_copurchase_source
)
