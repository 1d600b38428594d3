"""The two things features are about: customers and products (declared in pipelines.specs)."""

from featurestore.schema import entity

customer = entity("customer")
product = entity("product")

# by declared name, for the views (each view's entity comes from its source's declaration)
ENTITIES = {"customer": customer, "product": product}
