"""Internal frames (integer codes, model days) -> Arrow tables in the raw contract's columns.

Ids, vocabulary strings and timestamps are made by Arrow compute kernels, not Python strings per
row: the clickstream has millions of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.contract import ARROW_TYPES, EVENT_TYPES, TABLES
from shopfeast.generator import vocab
from shopfeast.generator.catalog import Catalog
from shopfeast.generator.config import Span
from shopfeast.generator.orders import CHANNELS, STATUS

TS = pa.timestamp("us", tz="UTC")


def raw_schema(table: str) -> pa.Schema:
    """The raw file's schema: the contract's columns (clean-only extras excluded)."""
    return pa.schema([(c.name, ARROW_TYPES[c.kind]) for c in TABLES[table].columns])


def _digit_words(prefix: str, digits: int) -> np.ndarray:
    """uint32 words of `prefix` + each `digits`-digit number, as little-endian byte quads."""
    text = [f"{prefix}{i:0{digits}d}".encode() for i in range(10**digits)]
    return np.frombuffer(b"".join(text), dtype=np.uint32)


_FOUR_DIGITS = _digit_words("", 4)


def id_width(n: int) -> int:
    """Minimum digits for n ids (ids() may use a few more to align rows to 4 bytes)."""
    return max(6, len(str(n)))


def ids(prefix: str, idx: np.ndarray, width: int) -> pa.Array:
    """`prefix` + zero-padded (idx + 1); null where idx < 0.

    Rows are whole 4-byte words (the prefix plus 3 digits, then 4 digits per word, so a 1-letter
    prefix gives 7, 11, 15 ... digits), filled from lookup tables and wrapped into an Arrow string
    array without a Python string per row: ten million ids take well under a second.
    """
    if not 1 <= len(prefix) <= 3:
        raise ValueError("id prefixes are 1 to 3 ASCII characters")
    idx = np.asarray(idx, dtype=np.int64)
    n = len(idx)
    head_digits = 4 - len(prefix)
    words = 1 + -(-max(width - head_digits, 0) // 4)
    value = np.maximum(idx, 0) + 1
    data = np.empty((n, words), dtype=np.uint32)
    for k in range(words - 1, 0, -1):  # four digits per pass, least significant last word
        value, rest = np.divmod(value, 10_000)
        data[:, k] = _FOUR_DIGITS[rest]
    if n and value.max() >= 10**head_digits:
        raise ValueError(f"{int(idx.max()) + 1} does not fit in the id width")
    data[:, 0] = _digit_words(prefix, head_digits)[value]
    size = 4 * words
    offsets = np.arange(n + 1, dtype=np.int64) * size
    typ = pa.string() if n * size < 2**31 else pa.large_string()
    offsets = offsets.astype(np.int32 if typ == pa.string() else np.int64)
    valid = idx >= 0
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(
        typ, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=int(n - valid.sum())
    )
    return arr if typ == pa.string() else arr.cast(pa.string())


def codes(idx: np.ndarray, words: tuple[str, ...] | np.ndarray) -> pa.Array:
    """Vocabulary strings by index; null where idx < 0."""
    idx = np.asarray(idx, dtype=np.int32)
    arr = pa.array(idx, mask=idx < 0)
    return pa.DictionaryArray.from_arrays(
        arr, pa.array(list(words), pa.string())
    ).dictionary_decode()


def stamps(span: Span, day: np.ndarray) -> pa.Array:
    day = np.asarray(day, dtype=np.float64)
    mask = ~np.isfinite(day)
    return pa.array(span.to_us(np.where(mask, 0.0, day)), type=TS, mask=mask)


def _table(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    schema = raw_schema(name)
    n = len(next(iter(columns.values())))
    # A contract column the generator does not model (orders' updated_at, products' tags) is
    # written empty: ingest gives it its default.
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


BESTSELLERS = vocab.COLLECTIONS.index("Bestsellers")


def product_collections(cat: Catalog, span: Span) -> pa.Table:
    """Memberships from each product's creation: its own collection (two thirds of products have
    one), and every seventh product also in Bestsellers (collections are many to many)."""
    p = cat.products
    own = p["collection"].to_numpy()
    idx = np.arange(len(p))
    extra = (idx % 7 == 0) & (own != BESTSELLERS)
    prod = np.concatenate([idx[own >= 0], idx[extra]])
    coll = np.concatenate([own[own >= 0], np.full(int(extra.sum()), BESTSELLERS)])
    order = np.lexsort((coll, prod))
    prod, coll = prod[order], coll[order]
    slugs = np.array([c.lower().replace(" ", "-") for c in vocab.COLLECTIONS], dtype=object)
    return _table(
        "product_collections",
        {
            "product_id": ids("P", prod, id_width(len(p))),
            "collection_id": pa.array(slugs[coll], pa.string()),
            "collection": codes(coll, vocab.COLLECTIONS),
            "updated_at": stamps(span, p["created"].to_numpy()[prod]),
            "in_collection": pa.array(np.ones(len(prod), bool)),
        },
    )


def customers(log: pd.DataFrame, n_customers: int, span: Span) -> pa.Table:
    w = id_width(n_customers)
    c = log["customer"].to_numpy()
    year = log["birth_year"].to_numpy()
    return _table(
        "customers",
        {
            "customer_id": ids("C", c, w),
            "signup_ts": stamps(span, log["signup"].to_numpy()),
            "updated_at": stamps(span, log["day"].to_numpy()),
            "birth_year": pa.array(year, mask=year < 0),
            "gender": codes(log["gender"].to_numpy(), vocab.GENDERS),
            "country": codes(log["country"].to_numpy(), vocab.COUNTRIES),
            "location_type": codes(log["location_type"].to_numpy(), vocab.LOCATION_TYPES),
            "loyalty_status": codes(log["loyalty"].to_numpy(), vocab.LOYALTY),
            "is_premium": pa.array(log["is_premium"].to_numpy() > 0),
            "education": codes(log["education"].to_numpy(), vocab.EDUCATION),
            "preferred_device": codes(log["device"].to_numpy(), vocab.DEVICES),
            "email_opt_in": pa.array(log["email_opt_in"].to_numpy() > 0),
        },
    )


def products(cat: Catalog, span: Span) -> pa.Table:
    p = cat.products
    log = cat.changes.sort_values(["day", "product"], kind="stable")
    i = log["product"].to_numpy()
    brand = cat.brand_names[p["brand"].to_numpy()]
    adjective = np.array(vocab.ADJECTIVES, dtype=object)[p["adjective"].to_numpy()]
    sub_title = np.array([s.title() for s in cat.subcategory_names], dtype=object)[
        p["sub_row"].to_numpy()
    ]
    model = p["model_no"].to_numpy()
    name = (
        brand
        + " "
        + adjective
        + " "
        + sub_title
        + np.where(model > 0, " " + model.astype(str).astype(object), "")
    )
    noun = np.array(cat.subcategory_nouns, dtype=object)[p["sub_row"].to_numpy()]
    tagline = np.array(vocab.TAGLINES, dtype=object)[p["tagline"].to_numpy()]
    description = adjective + " " + noun + " by " + brand + ". " + tagline
    sub_row = p["sub_row"].to_numpy()
    return _table(
        "products",
        {
            "product_id": ids("P", i, id_width(len(p))),
            "name": pa.array(name[i], pa.string()),
            "category": codes(p["cat"].to_numpy()[i], cat.category_names),
            "subcategory": codes(sub_row[i], cat.subcategory_names),
            "brand": pa.array(brand[i], pa.string()),
            "collection": codes(p["collection"].to_numpy()[i], vocab.COLLECTIONS),
            "price": pa.array(log["price"].to_numpy()),
            "created_at": stamps(span, p["created"].to_numpy()[i]),
            "updated_at": stamps(span, log["day"].to_numpy()),
            "is_active": pa.array(log["is_active"].to_numpy()),
            "description": pa.array(description[i], pa.string()),
            "inventory_quantity": pa.array(log["inventory_quantity"].to_numpy().astype(np.int64)),
        },
    )


def orders(o: pd.DataFrame, n_customers: int, span: Span) -> pa.Table:
    n = len(o)
    return _table(
        "orders",
        {
            "order_id": ids("O", np.arange(n), id_width(n)),
            "customer_id": ids("C", o["who"].to_numpy(), id_width(n_customers)),
            "order_ts": stamps(span, o["t"].to_numpy()),
            "status": codes(o["status"].to_numpy(), STATUS),
            "total_amount": pa.array(o["total"].to_numpy()),
            "discount_amount": pa.array(o["discount"].to_numpy()),
            "refunded_amount": pa.array(o["refunded"].to_numpy()),
            "refund_ts": stamps(span, o["refund_t"].to_numpy()),
            "channel": codes(o["channel"].to_numpy(), CHANNELS),
            "currency": pa.array(np.full(n, vocab.CURRENCY, dtype=object), pa.string()),
        },
    )


def order_items(lines: pd.DataFrame, n_orders: int, n_products: int) -> pa.Table:
    return _table(
        "order_items",
        {
            "order_id": ids("O", lines["order"].to_numpy(), id_width(n_orders)),
            "product_id": ids("P", lines["product"].to_numpy(), id_width(n_products)),
            "quantity": pa.array(lines["quantity"].to_numpy().astype(np.int64)),
            "unit_price": pa.array(lines["unit_price"].to_numpy()),
            "discount": pa.array(lines["discount"].to_numpy()),
        },
    )


def events(
    ev: pd.DataFrame,
    queries: np.ndarray,
    n_sessions: int,
    n_customers: int,
    n_products: int,
    span: Span,
) -> pa.Table:
    n = len(ev)
    return _table(
        "events",
        {
            "event_id": ids("E", np.arange(n), id_width(n)),
            "customer_id": ids("C", ev["who"].to_numpy(), id_width(n_customers)),
            "session_id": ids("S", ev["session"].to_numpy(), id_width(n_sessions)),
            "event_type": codes(ev["type"].to_numpy(), EVENT_TYPES),
            "event_ts": stamps(span, ev["t"].to_numpy()),
            "product_id": ids("P", ev["product"].to_numpy(), id_width(n_products)),
            "device_type": codes(ev["device"].to_numpy(), vocab.DEVICES),
            "page_context": codes(ev["page"].to_numpy(), vocab.PAGE_CONTEXTS),
            "search_query": codes(ev["query"].to_numpy(), queries.astype(str)),
        },
    )


def reviews(r: pd.DataFrame, n_customers: int, n_products: int, span: Span) -> pa.Table:
    n = len(r)
    return _table(
        "reviews",
        {
            "review_id": ids("R", np.arange(n), id_width(n)),
            "customer_id": ids("C", r["who"].to_numpy(), id_width(n_customers)),
            "product_id": ids("P", r["product"].to_numpy(), id_width(n_products)),
            "rating": pa.array(r["rating"].to_numpy()),
            "title": pa.array(r["title"].to_numpy(), pa.string()),
            "body": pa.array(r["body"].to_numpy(), pa.string()),
            "review_ts": stamps(span, r["t"].to_numpy()),
        },
    )
