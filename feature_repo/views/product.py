"""Product views: catalogue statistics and co-purchases. Schemas come from the declarations."""

from data_sources import product_copurchase_source, product_stats_source
from entities import product

from pipelines.registry import sources
from shopfeast.feast_schema import feature_view

_declared = sources(strict=True)

product_stats = feature_view(_declared["product_stats"], product, product_stats_source)
product_copurchase = feature_view(
    _declared["product_copurchase"], product, product_copurchase_source
)
