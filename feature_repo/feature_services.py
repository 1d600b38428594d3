"""Feature services: one per model version and one per API, the only way training and serving
ask for features (so the two cannot drift apart). A new model version gets a new service."""

from feast import FeatureService
from on_demand import (
    collection_match,
    customer_cycle,
    customer_product_affinity,
    customer_product_match,
    customer_recency,
    product_age,
    retrieval_match,
)
from views.collection import collection_stats, product_membership
from views.customer import customer_activity, customer_profile, customer_reviews, customer_rhythm
from views.product import product_copurchase, product_stats
from views.realtime import customer_session

from featurestore.schema import OWNER

churn_model_v1 = FeatureService(
    name="churn_model_v1",
    features=[customer_activity, customer_profile, customer_reviews, customer_recency],
    description="Churn model v1: every customer feature, as of the entity timestamp.",
    owner=OWNER,
    tags={"model": "churn", "version": "1", "entity": "customer"},
)

churn_model_v2 = FeatureService(
    name="churn_model_v2",
    features=[
        customer_activity,
        customer_profile,
        customer_reviews,
        customer_recency,
        customer_rhythm,
        customer_cycle,
    ],
    description="Churn model v2: v1 plus the customer's buying rhythm and trends "
    "(customer_rhythm: gaps between orders, first order, repeat orders, 30/90-day and "
    "quarter-on-quarter trends) and their silence against that rhythm (customer_cycle).",
    owner=OWNER,
    tags={"model": "churn", "version": "2", "entity": "customer"},
)


def ranking_v1_features() -> list:
    """What ranking_model_v1 reads (v2 reads it too): fresh projections for each service."""
    return [
        customer_activity[
            [
                "orders_90d",
                "spend_90d",
                "avg_order_value_90d",
                "lifetime_orders",
                "purchase_frequency_90d",
                "distinct_categories_90d",
            ]
        ],
        customer_recency,
        product_stats,
        product_age,
        customer_product_match,
    ]


ranking_model_v1 = FeatureService(
    name="ranking_model_v1",
    features=ranking_v1_features(),
    description="Ranking model v1: one (customer, candidate product) pair per entity row.",
    owner=OWNER,
    tags={"model": "ranking", "version": "1", "entity": "customer,product"},
)

ranking_model_v2 = FeatureService(
    name="ranking_model_v2",
    features=[*ranking_v1_features(), retrieval_match],
    description="Ranking model v2: v1 plus the candidate generator's co-purchase score, a "
    "request field (candidate_copurchase_score) per (customer, candidate) row.",
    owner=OWNER,
    tags={"model": "ranking", "version": "2", "entity": "customer,product"},
)

ranking_model_v3 = FeatureService(
    name="ranking_model_v3",
    features=[*ranking_v1_features(), retrieval_match, customer_product_affinity],
    description="Ranking model v3: v2 plus the customer's own history with the candidate "
    "(customer_product_affinity over the declared customer x product view: orders holding it in "
    "90 days and lifetime, days since bought, share of the customer's orders, views and carts).",
    owner=OWNER,
    tags={"model": "ranking", "version": "3", "entity": "customer,product"},
)

# An option, not the default: `shopfeast train ranking --service ranking_model_v4` (docs/training.md
# has what it measured on the demo shop and the Shopify fixture).
ranking_model_v4 = FeatureService(
    name="ranking_model_v4",
    features=[*ranking_v1_features(), retrieval_match, customer_product_affinity, collection_match],
    description="Ranking model v4: v3 plus whether the candidate shares a collection with the "
    "customer's purchases of the last 90 days (collection_match over product_membership and "
    "customer_collections, both as of the entity timestamp).",
    owner=OWNER,
    tags={"model": "ranking", "version": "4", "entity": "customer,product"},
)

customer_360_v1 = FeatureService(
    name="customer_360_v1",
    features=[customer_activity, customer_profile, customer_reviews, customer_recency],
    description="What GET /features/customers/{id} returns: everything known about a customer.",
    owner=OWNER,
    tags={"api": "features", "version": "1", "entity": "customer"},
)

product_360_v1 = FeatureService(
    name="product_360_v1",
    features=[product_stats, product_age, product_copurchase],
    description="What GET /features/products/{id} returns: statistics and co-purchases.",
    owner=OWNER,
    tags={"api": "features", "version": "1", "entity": "product"},
)

# What the candidate generator reads (training.candidates), one service per entity: the customer's
# side as of the request, and each product's side (the catalog and co-purchase neighbours).
candidate_customer_v1 = FeatureService(
    name="candidate_customer_v1",
    features=[
        customer_activity[["recent_product_ids", "frequent_product_ids", "favourite_category_90d"]]
    ],
    description="Candidate generation, customer side: recent and most-bought products and "
    "favourite category.",
    owner=OWNER,
    tags={"api": "recommendations", "version": "1", "entity": "customer"},
)

candidate_product_v1 = FeatureService(
    name="candidate_product_v1",
    features=[
        product_stats[["category", "product_popularity_30d", "product_price"]],
        product_copurchase,
    ],
    description="Candidate generation, product side: the catalog (category, popularity, price) "
    "and co-purchase neighbours.",
    owner=OWNER,
    tags={"api": "recommendations", "version": "1", "entity": "product"},
)

# The live session (customer_session, pushed by `shopfeast stream`): what /recommendations seeds
# candidates from besides the batch features (training.candidates, source `session`).
candidate_session_v1 = FeatureService(
    name="candidate_session_v1",
    features=[customer_session[["recent_carted_product_ids", "recent_viewed_product_ids"]]],
    description="Candidate generation, live session: products the customer carted and viewed in "
    "the last hours (the event stream), most recent first.",
    owner=OWNER,
    tags={"api": "recommendations", "version": "1", "entity": "customer"},
)

# A customer's history with candidate products (declared in feature_repo/aggregations.yaml): what
# a ranker reads per (customer, candidate) pair, zeros for pairs that never happened.
customer_product_history_v1 = FeatureService(
    name="customer_product_history_v1",
    features=[customer_product_affinity],
    description="Candidate scoring: how often and how recently the customer bought the candidate "
    "(90 days, lifetime, days since, share of their orders), viewed and carted it (30 days).",
    owner=OWNER,
    tags={"api": "recommendations", "version": "1", "entity": "customer,product"},
)

# Collections (Shopify's custom and smart collections): a collection's figures, a product's
# collections and the collections of a customer's recent purchases (ranking_model_v4 reads the
# last two through collection_match); notebooks, and the monitor's skew check.
collection_360_v1 = FeatureService(
    name="collection_360_v1",
    features=[collection_stats],
    description="Everything known about a collection: products, views, sales, prices, share.",
    owner=OWNER,
    tags={"api": "notebooks", "version": "1", "entity": "collection"},
)

product_collections_v1 = FeatureService(
    name="product_collections_v1",
    features=[product_membership],
    description="The collections a product belongs to, as of the entity timestamp.",
    owner=OWNER,
    tags={"api": "notebooks", "version": "1", "entity": "product"},
)
