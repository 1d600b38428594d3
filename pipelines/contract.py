"""Raw data contract v1.2, declared once.

The validator, the generator, the importers and the feature pipelines all read the tables, columns,
types and rule names from here; docs/data_contract.md is the prose version of the same contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

# 1.2 added an optional column (order_items.variant_id): every 1.1 shop is a valid 1.2 shop. The
# version is part of the ingest state's hash name, so a data directory ingested under 1.1 has its
# row hashes recomputed over the new column list (pipelines.ingest_state.State.load).
CONTRACT_VERSION = "1.2"

Kind = Literal["string", "timestamp", "int", "float", "bool"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}

# pandas dtypes of the clean tables (nullable where the contract allows missing values).
PANDAS_DTYPES: dict[str, str] = {
    "string": "string",
    "timestamp": "datetime64[us, UTC]",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    required: bool
    # Columns whose combination identifies a row; a second row with the same key is `duplicate_id`.
    key: tuple[str, ...] = ()
    # Timestamp that places the row in time; event-like tables are partitioned by its UTC day.
    time_column: str | None = None
    # A change log keeps one row per version (customers, products), read "as of T".
    change_log: bool = False
    extra_clean_columns: tuple[Column, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def partitioned(self) -> bool:
        return not self.change_log

    def clean_columns(self) -> tuple[Column, ...]:
        return self.columns + self.extra_clean_columns

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(c.name, ARROW_TYPES[c.kind]) for c in self.clean_columns()])


def _c(name: str, kind: Kind, required: bool = False, doc: str = "") -> Column:
    return Column(name, kind, required, doc)


CUSTOMERS = Table(
    "customers",
    (
        _c("customer_id", "string", True),
        _c("signup_ts", "timestamp", True, "first time the customer existed"),
        _c("updated_at", "timestamp", False, "when this version took effect; default signup_ts"),
        _c("birth_year", "int", False, "1900..current year, else missing"),
        _c("gender", "string", False, "normalised to female / male / other / unknown"),
        _c("country", "string"),
        _c("location_type", "string", False, "urban / suburban / rural"),
        _c("loyalty_status", "string", False, "none / silver / gold / platinum"),
        _c("is_premium", "bool"),
        _c("education", "string"),
        _c("preferred_device", "string", False, "mobile / desktop / tablet"),
        _c("email_opt_in", "bool"),
    ),
    required=True,
    key=("customer_id", "updated_at"),
    time_column="updated_at",
    change_log=True,
)

PRODUCTS = Table(
    "products",
    (
        _c("product_id", "string", True),
        _c("name", "string", True),
        _c("category", "string", False, "missing -> unknown"),
        _c("subcategory", "string"),
        _c("brand", "string"),
        _c("collection", "string"),
        _c("price", "float", True, ">= 0"),
        _c("created_at", "timestamp", True),
        _c("updated_at", "timestamp", False, "default created_at"),
        _c("is_active", "bool", False, "default true"),
        _c("description", "string"),
        _c("inventory_quantity", "int"),
        _c("tags", "string", False, "comma-separated (Shopify tags)"),
    ),
    required=True,
    key=("product_id", "updated_at"),
    time_column="updated_at",
    change_log=True,
)

PRODUCT_COLLECTIONS = Table(
    "product_collections",
    (
        _c("product_id", "string", True),
        _c("collection_id", "string", True),
        _c("collection", "string", False, "the collection's title"),
        _c("updated_at", "timestamp", True, "when this membership took effect"),
        _c("in_collection", "bool", False, "default true; false: the product left it then"),
    ),
    required=False,
    key=("product_id", "collection_id", "updated_at"),
    time_column="updated_at",
    change_log=True,
)

ORDERS = Table(
    "orders",
    (
        _c("order_id", "string", True),
        _c("customer_id", "string", False, "missing = guest checkout"),
        _c("order_ts", "timestamp", True),
        _c("status", "string", True, "completed / cancelled / refunded / partially_refunded"),
        _c("total_amount", "float", True, "after discounts, >= 0"),
        _c("discount_amount", "float", False, "default 0"),
        _c("refunded_amount", "float", False, "default 0; <= total_amount"),
        _c("refund_ts", "timestamp"),
        _c("channel", "string"),
        _c("currency", "string"),
        _c("updated_at", "timestamp", False, "when this version took effect; default order_ts"),
    ),
    required=True,
    # Orders are a change log too (v1.1): a row per version, read as of T (pipelines.order_versions)
    key=("order_id", "updated_at"),
    time_column="order_ts",
)

ORDER_ITEMS = Table(
    "order_items",
    (
        _c("order_id", "string", True),
        _c("product_id", "string", True),
        _c("variant_id", "string", False, "the variant sold (Shopify's line item variant), v1.2"),
        _c("quantity", "int", True, "> 0"),
        _c("unit_price", "float", True, ">= 0"),
        _c("discount", "float", False, "default 0"),
    ),
    required=True,
    key=(),  # an order may list the same product twice; only exact duplicate rows are rejected
    time_column=None,
    # Clean order_items carry their order's timestamp: it places them in a day partition and
    # saves every pipeline a join.
    extra_clean_columns=(_c("order_ts", "timestamp", True, "copied from the order"),),
)

EVENTS = Table(
    "events",
    (
        _c("event_id", "string", False, "dedup key when present"),
        _c("customer_id", "string", False, "missing = anonymous visitor"),
        _c("session_id", "string", True),
        _c("event_type", "string", True),
        _c("event_ts", "timestamp", True),
        _c("product_id", "string", False, "required for product_view, carts and purchase"),
        _c("device_type", "string"),
        _c("page_context", "string"),
        _c("search_query", "string"),
    ),
    required=False,
    key=("event_id",),
    time_column="event_ts",
)

REVIEWS = Table(
    "reviews",
    (
        _c("review_id", "string", True),
        _c("customer_id", "string"),
        _c("product_id", "string", True),
        _c("rating", "float", True, "1..5"),
        _c("title", "string"),
        _c("body", "string", False, "may be empty, any language, emoji, markup"),
        _c("review_ts", "timestamp", True),
    ),
    required=False,
    key=("review_id",),
    time_column="review_ts",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (CUSTOMERS, PRODUCTS, PRODUCT_COLLECTIONS, ORDERS, ORDER_ITEMS, EVENTS, REVIEWS)
}
# Ingest order: a table is validated after the tables it references.
INGEST_ORDER = (
    "customers",
    "products",
    "product_collections",
    "orders",
    "order_items",
    "events",
    "reviews",
)

ORDER_STATUSES = ("completed", "cancelled", "refunded", "partially_refunded")
EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
)
EVENTS_NEEDING_PRODUCT = ("product_view", "add_to_cart", "remove_from_cart", "purchase")

# Every quarantined row carries exactly one of these rule names (the first rule it breaks, in this
# order). The generator's --corrupt-fraction injects rows for each and records which.
RULES: dict[str, str] = {
    "missing_required": "a required value is missing",
    "unparseable": "a value cannot be read as its column's type (timestamp, number, bool)",
    "invalid_value": "a value outside its column's vocabulary (order status, event type), or an "
    "id longer than shopconfig's ID_MAX_LENGTH or holding control or invisible characters",
    "negative_value": "a negative price, amount or quantity, or a zero quantity",
    "out_of_range": "a number above its column's upper bound (UPPER_BOUNDS, configurable)",
    "rating_out_of_range": "rating outside 1..5",
    "refund_exceeds_total": "refunded_amount greater than total_amount",
    "future_timestamp": "a timestamp later than the ingest time plus the tolerance",
    "duplicate_row": "an exact copy of a row already seen",
    "duplicate_id": "a second row with the same id (table key) but different values",
    "unknown_order": "order_items row whose order_id is not a clean order",
    "unknown_product": "product_id that is not a clean product",
    "unknown_customer": "customer_id given but not a clean customer",
    "before_signup": "an order placed before its customer's signup",
    "bot_session": "an event in a session with an inhuman event rate",
}

FUTURE_TOLERANCE_HOURS = 24

# Upper bounds (inclusive) of numeric columns; a value above one is quarantined as `out_of_range`.
# Features sum money in integer micro-units, exact up to about 9e9 per entity
# (pipelines/windows.py): no single value may come near that. The defaults fit any shop's
# currency (a 100-million order in rupiah is 6,000 US dollars); SHOPFEAST_VALUE_BOUNDS overrides
# them per column, e.g. '{"orders.total_amount": 1e6}'.
UPPER_BOUNDS: dict[str, float] = {
    "products.price": 1e8,
    "products.inventory_quantity": 1e9,
    "orders.total_amount": 1e8,
    "orders.discount_amount": 1e8,
    "orders.refunded_amount": 1e8,
    "order_items.quantity": 1e6,
    "order_items.unit_price": 1e8,
    "order_items.discount": 1e8,
}
