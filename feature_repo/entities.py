"""The two things features are about: customers and products (string ids, as in the contract)."""

from feast import Entity
from feast.value_type import ValueType

OWNER = "feature-platform@shopfeast"

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A shop customer, keyed by the raw contract's customer_id.",
    owner=OWNER,
    tags={"domain": "customer", "pii": "false"},
)

product = Entity(
    name="product",
    join_keys=["product_id"],
    value_type=ValueType.STRING,
    description="A catalogue product, keyed by the raw contract's product_id.",
    owner=OWNER,
    tags={"domain": "product", "pii": "false"},
)
