"""What features are about: customers, products and collections (declared in pipelines.specs)."""

from featurestore.schema import entity

customer = entity("customer")
product = entity("product")
collection = entity("collection")

# by declared name, for the views (each view's entity comes from its source's declaration)
ENTITIES = {"customer": customer, "product": product, "collection": collection}
