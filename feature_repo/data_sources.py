"""One parquet file source per feature source, under $SHOPFEAST_DATA_DIR/features/<source>/.

Paths, timestamps and descriptions come from the declarations in pipelines/ (declared once); the
directory comes from SHOPFEAST_DATA_DIR (default ./data), so one set of definitions serves any
data directory: `feast apply` records the directory it was run with. On the spark profile
($SHOPFEAST_SOURCE_FORMAT=spark) the same files are SparkSources, which Feast's Spark offline
store reads (featurestore.schema.batch_source).
"""

from featurestore.realtime import push_source
from featurestore.schema import batch_source
from pipelines.realtime import SOURCES as REALTIME
from pipelines.sources import family_sources

_declared = family_sources(strict=True)

customer_activity_source = batch_source(_declared["customer_activity"])
customer_profile_source = batch_source(_declared["customer_profile"])
customer_reviews_source = batch_source(_declared["customer_reviews"])
product_stats_source = batch_source(_declared["product_stats"])
product_copurchase_source = batch_source(_declared["product_copurchase"])
collection_stats_source = batch_source(_declared["collection_stats"])
product_membership_source = batch_source(_declared["product_membership"])
customer_collections_source = batch_source(_declared["customer_collections"])
customer_rhythm_source = batch_source(_declared["customer_rhythm"])

# The real-time views' push sources (the stream worker writes their rows, `shopfeast features`
# their parquet change points, the push sources' batch sources).
customer_session_push = push_source(REALTIME["customer_session"])
product_realtime_push = push_source(REALTIME["product_realtime"])
