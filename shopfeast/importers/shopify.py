"""Shopify -> the raw data contract: Admin REST JSON dumps, GraphQL bulk JSONL, admin CSV exports.

`shopfeast import shopify SRC --out RAW_DIR [--since TIME]` reads whichever of these SRC holds
(docs/shopify.md says which exports to take and how to run the daily import):

- REST Admin API dumps, one file per resource or its pages as JSON lines: `orders`, `products`,
  `customers`, `custom_collections`, `smart_collections`, `collects` (`orders.json` holding
  `{"orders": [...]}`, or `orders-2.jsonl` with one page or one order per line);
- GraphQL bulk-operation results (`*.jsonl` whose records have `gid://shopify/...` ids; nested
  connections come as their own lines with `__parentId`);
- the admin CSV exports: Orders (one row per line item, the order's columns on its rows),
  Products (one row per variant, keyed by Handle) and Customers (needs the `Customer ID` column).

Mapping (the importer does not clean: rows ingest rejects are written for ingest to quarantine):

- orders: one row per order per change (contract v1.1 change log, key `order_id` + `updated_at`):
  the order as placed at `created_at`, then a version at each refund's `created_at` (refunded
  amount = the refund transactions that succeeded, summed up to then; `refund_ts` = that refund's
  creation) and at `cancelled_at` (status cancelled). Guests (no customer) keep an empty
  `customer_id`. Test orders (`test: true`; in the CSV export, payment by Shopify's Bogus
  Gateway) are left out and counted. `total_amount` = `total_price`, `discount_amount` =
  `total_discounts`, `channel` from `source_name`, `currency` noted (one shop currency).
- order_items: one row per line item of a new order; `variant_id` = the line's variant (REST
  `variant_id`, bulk `variant { id }`; the admin CSV export has no variant id, so it is left empty
  there: `Lineitem sku` is a code the merchant types, not an id); `discount` = the line's discount
  allocations (else `total_discount`). A line whose product was deleted (product id null) points
  at a placeholder product `deleted:<sku or title>` (inactive, named after the line).
- products: `title` -> name, `product_type` -> category, `vendor` -> brand, `tags`, price = the
  lowest variant price, inventory = the variants' sum, `status` active -> is_active.
- customers: signup = `created_at`, country = the default address's country code, e-mail opt-in.
- product_collections: custom collections via collects, smart collections as listed (REST: the
  collects of a smart collection are not listed by Shopify; bulk: the collection's products). A
  change log: the importer keeps the memberships in force in its state and writes a row where one
  began or ended (`_memberships`).

Products and customers carry no history in Shopify: the first import takes each as it is now,
from its `created_at` on; later imports add a change-log row at each newer `updated_at`.

Personal data (names, e-mails, phones, addresses, notes) is never written: only contract columns
are. The orders CSV names the customer by e-mail only: it is matched to the customers CSV in
memory (an e-mail that matches nobody makes a guest order) and dropped.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipelines.contract import TABLES
from shopfeast.importers import empty_frame, write_table

RESOURCES = (
    "custom_collections",
    "smart_collections",
    "collects",
    "customers",
    "products",
    "orders",
)
META_DIR = "_meta"
STATE_FILE = "shopify_state.json"
REPORT_FILE = "shopify_import.json"
TEST_GATEWAYS = ("bogus",)  # Shopify's test payment gateway ("Bogus Gateway")
CHANNELS = {
    "web": "web",
    "pos": "pos",
    "iphone": "mobile_app",
    "android": "mobile_app",
    "mobile_app": "mobile_app",
    "shopify_draft_order": "draft_order",
}


class ShopifyError(Exception):
    """An export that cannot be read: names the file (and line), never a value."""


@dataclass
class Shop:
    """What SRC holds, in the REST resources' shape (snake_case, numeric ids as text)."""

    orders: dict[str, dict] = field(default_factory=dict)
    products: dict[str, dict] = field(default_factory=dict)
    customers: dict[str, dict] = field(default_factory=dict)
    collections: dict[str, dict] = field(default_factory=dict)  # id -> {title, kind}
    # (collection_id, product_id) -> when the product joined (a collect's created_at), if known
    collects: dict[tuple[str, str], str | None] = field(default_factory=dict)
    # collections whose whole membership this export lists (a bulk collection with its products)
    listed: set[str] = field(default_factory=set)
    kinds: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    read: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, resource: str, record: dict, kind: str) -> None:
        self.kinds[resource].add(kind)
        self.read[resource] += 1
        if resource == "orders":
            self.read["order_items"] += len(record.get("line_items") or [])
        if resource in ("custom_collections", "smart_collections"):
            kind_name = resource.removesuffix("_collections")
            self.collections[_id(record["id"])] = {"title": record.get("title"), "kind": kind_name}
            if "product_ids" in record:  # bulk: the collection's products, all of them
                self.listed.add(_id(record["id"]))
            for pid in record.get("product_ids", ()):
                self.collects[(_id(record["id"]), _id(pid))] = None
        elif resource == "collects":
            key = (_id(record["collection_id"]), _id(record["product_id"]))
            self.collects[key] = record.get("created_at")
        else:  # the same record twice (overlapping pages, two dumps): the newest wins
            known = getattr(self, resource)
            rid = _id(record["id"])
            if rid not in known or _newer(record, known[rid]):
                known[rid] = record


def _newer(a: dict, b: dict) -> bool:
    ta, tb = _ts(a.get("updated_at")), _ts(b.get("updated_at"))
    return ta is not None and (tb is None or ta >= tb)


# --- reading ------------------------------------------------------------------------------------


def read_source(src: Path, exported_at: pd.Timestamp) -> Shop:
    """Every export in `src` (a directory, or one file)."""
    src = Path(src)
    if not src.exists():
        raise ShopifyError(f"{src}: no such file or directory")
    paths = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    shop = Shop()
    csvs: dict[str, list[tuple[Path, list[dict]]]] = defaultdict(list)
    for path in paths:
        name = path.name.lower()
        if name.endswith(".csv"):
            kind, rows = _read_csv(path)
            if kind is None:
                shop.notes.append(f"{path.name}: not a Shopify orders, products or customers CSV")
                continue
            csvs[kind].append((path, rows))
        elif name.endswith(".jsonl"):
            lines = list(_json_lines(path))
            if lines and _is_gid(lines[0][1].get("id")):
                _read_bulk(shop, path, lines)
            else:
                _read_rest(shop, path, (obj for _, obj in lines))
        elif name.endswith(".json"):
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ShopifyError(f"{path.name}: not valid JSON ({_reason(exc)})") from exc
            _read_rest(shop, path, [obj])
        else:
            shop.notes.append(f"{path.name}: not a .json, .jsonl or .csv file, skipped")
            continue
        shop.files.append(path.name)
    if csvs:
        _read_csv_exports(shop, csvs, exported_at)
    if "REST" in shop.kinds.get("smart_collections", ()):
        shop.notes.append(
            "smart_collections: the REST API does not list a smart collection's products; "
            "export collections with a GraphQL bulk query for their members"
        )
    mixed = {r: sorted(k) for r, k in shop.kinds.items() if len(k) > 1}
    if mixed:
        r, k = next(iter(mixed.items()))
        raise ShopifyError(f"{src}: {r} come from {' and '.join(k)} exports; give one kind")
    return shop


def _reason(exc: Exception) -> str:
    return str(exc).split(":")[0]


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ShopifyError(
                    f"{path.name}: line {n}: not valid JSON ({_reason(exc)})"
                ) from exc
            if not isinstance(obj, dict):
                raise ShopifyError(f"{path.name}: line {n}: expected a JSON object")
            yield n, obj


def _resource_of(path: Path) -> str | None:
    stem = path.name.lower()
    for r in RESOURCES:
        if stem.startswith(r):
            return r
    return None


def _read_rest(shop: Shop, path: Path, objects: Iterable[dict]) -> None:
    """REST dumps: `{"orders": [...]}` pages, a bare list, or one resource object per line."""
    by_name = _resource_of(path)
    for obj in objects:
        if isinstance(obj, list):
            obj = {by_name: obj} if by_name else {}
        pages = {k: v for k, v in obj.items() if k in RESOURCES and isinstance(v, list)}
        if not pages:
            singular = {r.removesuffix("s"): r for r in RESOURCES}
            inner = [k for k in obj if k in singular and isinstance(obj[k], dict)]
            if inner:  # {"order": {...}}
                pages = {singular[inner[0]]: [obj[inner[0]]]}
            elif by_name and "id" in obj:
                pages = {by_name: [obj]}
            else:
                raise ShopifyError(
                    f"{path.name}: no Shopify resource ({', '.join(RESOURCES)}) found"
                )
        for resource, records in pages.items():
            for record in records:
                shop.add(resource, record, "REST")


# --- GraphQL bulk JSONL -------------------------------------------------------------------------


def _is_gid(value: object) -> bool:
    return isinstance(value, str) and value.startswith("gid://shopify/")


def _gid_type(gid: str) -> str:
    return gid.split("/")[3]


def _id(value: object) -> str:
    """A Shopify id as text: `gid://shopify/Order/123` and 123 are both `123`."""
    if _is_gid(value):
        return str(value).split("/")[4].split("?")[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _money(value: object) -> float | None:
    """A REST money string, a GraphQL MoneyV2 or MoneyBag (the shop-currency amount)."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = (value.get("shopMoney") or value).get("amount")
    return None if value in (None, "") else float(value)


def _read_bulk(shop: Shop, path: Path, lines: list[tuple[int, dict]]) -> None:
    """Bulk results: parents before children, children name their parent with `__parentId`."""
    parents: dict[str, dict] = {}
    kinds: dict[str, str] = {}
    for n, obj in lines:
        gid = obj.get("id")
        parent = obj.get("__parentId")
        if parent is None:
            if not _is_gid(gid):
                raise ShopifyError(f"{path.name}: line {n}: a top-level record without a gid id")
            kind = _gid_type(gid)
            record = _bulk_record(kind, obj)
            if record is None:
                raise ShopifyError(f"{path.name}: line {n}: unsupported bulk type {kind}")
            parents[gid] = record
            kinds[gid] = kind
            continue
        if parent not in parents:
            raise ShopifyError(f"{path.name}: line {n}: __parentId names no earlier record")
        _bulk_child(parents[parent], kinds[parent], obj, f"{path.name}: line {n}")
    resource = {
        "Order": "orders",
        "Product": "products",
        "Customer": "customers",
        "Collection": "collections",
    }
    for gid, record in parents.items():
        r = resource[kinds[gid]]
        if r == "collections":
            r = "smart_collections" if record.pop("smart") else "custom_collections"
        shop.add(r, record, "GraphQL bulk")


def _bulk_record(kind: str, o: dict) -> dict | None:
    if kind == "Order":
        customer = o.get("customer")
        return {
            "id": _id(o["id"]),
            "created_at": o.get("createdAt"),
            "updated_at": o.get("updatedAt"),
            "cancelled_at": o.get("cancelledAt"),
            "test": bool(o.get("test")),
            "currency": o.get("currencyCode"),
            "customer": {"id": _id(customer["id"])} if customer else None,
            "total_price": _money(o.get("totalPriceSet")),
            "total_discounts": _money(o.get("totalDiscountsSet")),
            "source_name": o.get("sourceName"),
            "line_items": [],
            "refunds": [_bulk_refund(r) for r in o.get("refunds") or []],
        }
    if kind == "Product":
        tags = o.get("tags")
        return {
            "id": _id(o["id"]),
            "title": o.get("title"),
            "product_type": o.get("productType"),
            "vendor": o.get("vendor"),
            "tags": ", ".join(tags) if isinstance(tags, list) else tags,
            "created_at": o.get("createdAt"),
            "updated_at": o.get("updatedAt"),
            "status": (o.get("status") or "").lower() or None,
            "variants": [],
        }
    if kind == "Customer":
        address = o.get("defaultAddress") or {}
        consent = o.get("emailMarketingConsent") or {}
        state = consent.get("marketingState")
        return {
            "id": _id(o["id"]),
            "created_at": o.get("createdAt"),
            "updated_at": o.get("updatedAt"),
            "default_address": {"country_code": address.get("countryCodeV2")},
            "email_marketing_consent": {"state": state.lower()} if state else None,
        }
    if kind == "Collection":
        return {
            "id": _id(o["id"]),
            "title": o.get("title"),
            "smart": o.get("ruleSet") is not None,
            "product_ids": [],
        }
    return None


def _bulk_refund(r: dict) -> dict:
    amount = _money(r.get("totalRefundedSet") or r.get("totalRefunded"))
    return {
        "created_at": r.get("createdAt"),
        "transactions": [{"kind": "refund", "status": "success", "amount": amount}],
    }


def _bulk_child(parent: dict, kind: str, o: dict, where: str) -> None:
    child = _gid_type(o["id"]) if _is_gid(o.get("id")) else None
    if kind == "Order" and child == "LineItem":
        product, variant = o.get("product"), o.get("variant")
        discount = o.get("totalDiscountSet")
        parent["line_items"].append(
            {
                "product_id": _id(product["id"]) if product else None,
                "variant_id": _id(variant["id"]) if variant else None,
                "title": o.get("title") or o.get("name"),
                "sku": o.get("sku"),
                "quantity": o.get("quantity"),
                "price": _money(o.get("originalUnitPriceSet")),
                "total_discount": _money(discount) if discount is not None else 0.0,
            }
        )
    elif kind == "Order" and child == "Refund":
        parent["refunds"].append(_bulk_refund(o))
    elif kind == "Product" and child == "ProductVariant":
        parent["variants"].append(
            {
                "price": _money(o.get("price")),
                "inventory_quantity": o.get("inventoryQuantity"),
                "sku": o.get("sku"),
            }
        )
    elif kind == "Collection" and child == "Product":
        parent["product_ids"].append(_id(o["id"]))
    else:
        raise ShopifyError(f"{where}: unsupported child {child} of {kind}")


# --- admin CSV exports --------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[str | None, list[dict]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ShopifyError(f"{path.name}: not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text))
    cols = set(reader.fieldnames or ())
    if "Lineitem quantity" in cols:
        kind = "orders"
    elif "Handle" in cols and ("Variant Price" in cols or "Variant SKU" in cols):
        kind = "products"
    elif "Total Spent" in cols or "Accepts Email Marketing" in cols or "Customer ID" in cols:
        kind = "customers"
    else:
        return None, []
    rows = []
    for n, row in enumerate(reader, 2):
        if None in row:  # more fields than the header
            raise ShopifyError(f"{path.name}: line {n}: more fields than the header")
        rows.append({k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()})
    return kind, rows


REQUIRED_CSV = {
    "orders": ("Name", "Created at", "Total", "Lineitem quantity", "Lineitem price"),
    "products": ("Handle", "Variant Price"),
    "customers": ("Customer ID",),
}


def _read_csv_exports(
    shop: Shop, csvs: dict[str, list[tuple[Path, list[dict]]]], exported_at: pd.Timestamp
) -> None:
    for kind, files in csvs.items():
        for path, rows in files:
            missing = [c for c in REQUIRED_CSV[kind] if rows and c not in rows[0]]
            if missing:
                raise ShopifyError(f"{path.name}: missing column '{missing[0]}'")
    # The customers and products exports give the keys the orders export refers to by e-mail,
    # SKU and line item name.
    email_to_customer: dict[str, str] = {}
    for _, rows in csvs.get("customers", []):
        for row in rows:
            cid = row.get("Customer ID", "").lstrip("'")
            if not cid:
                continue
            email = (row.get("Email") or "").lower()
            if email:
                email_to_customer[email] = cid
            opt = _yes(row.get("Accepts Email Marketing", row.get("Accepts Marketing")))
            country = row.get("Default Address Country Code") or row.get("Country Code")
            shop.add(
                "customers",
                {
                    "id": cid,
                    "created_at": None,  # the export has no dates: first order, else export time
                    "updated_at": None,
                    "default_address": {"country_code": country or None},
                    "email_marketing_consent": (
                        None
                        if opt is None
                        else {"state": "subscribed" if opt else "not_subscribed"}
                    ),
                },
                "CSV",
            )
    by_sku: dict[str, str] = {}
    by_title: dict[str, str] = {}
    for _, rows in csvs.get("products", []):
        for handle, group in _groups(rows, "Handle"):
            head = next((r for r in group if r.get("Title")), group[0])
            variants = [r for r in group if r.get("Variant Price")]
            for v in variants:
                if v.get("Variant SKU"):
                    by_sku[v["Variant SKU"]] = handle
                options = [v.get(f"Option{i} Value") for i in (1, 2, 3)]
                options = [o for o in options if o and o != "Default Title"]
                if head.get("Title"):
                    by_title[" - ".join([head["Title"], " / ".join(options)]).strip(" -")] = handle
            if head.get("Title"):
                by_title[head["Title"]] = handle
            status = (head.get("Status") or "").lower() or (
                None
                if head.get("Published") is None
                else ("active" if _yes(head.get("Published")) else "draft")
            )
            shop.add(
                "products",
                {
                    "id": handle,
                    "title": head.get("Title") or None,
                    "product_type": head.get("Type") or None,
                    "vendor": head.get("Vendor") or None,
                    "tags": head.get("Tags") or None,
                    "created_at": None,
                    "updated_at": None,
                    "status": status,
                    "variants": [
                        {
                            "price": _float(v.get("Variant Price")),
                            "inventory_quantity": _int(v.get("Variant Inventory Qty")),
                            "sku": v.get("Variant SKU"),
                        }
                        for v in variants
                    ],
                },
                "CSV",
            )
    for _, rows in csvs.get("orders", []):
        key = "Id" if rows and rows[0].get("Id") is not None else "Name"
        for oid, group in _groups(rows, key):
            head = group[0]

            def first(col: str, group: list[dict] = group) -> str | None:
                return next((r[col] for r in group if r.get(col)), None)

            email = (first("Email") or "").lower()
            cid = email_to_customer.get(email)
            refunded = _float(first("Refunded Amount")) or 0.0
            payment = (first("Payment Method") or "").lower()
            shop.add(
                "orders",
                {
                    "id": oid,
                    "created_at": head.get("Created at"),
                    "updated_at": None,
                    "cancelled_at": first("Cancelled at"),
                    "test": any(g in payment for g in TEST_GATEWAYS),
                    "currency": first("Currency"),
                    "customer": {"id": cid} if cid else None,
                    "email_unmatched": bool(email) and cid is None,
                    "total_price": _float(first("Total")),
                    "total_discounts": _float(first("Discount Amount")) or 0.0,
                    "source_name": first("Source"),
                    "line_items": [
                        {
                            "product_id": by_sku.get(r.get("Lineitem sku") or "")
                            or by_title.get(r.get("Lineitem name") or ""),
                            "title": r.get("Lineitem name"),
                            "sku": r.get("Lineitem sku") or None,
                            "quantity": _int(r.get("Lineitem quantity")),
                            "price": _float(r.get("Lineitem price")),
                            "total_discount": _float(r.get("Lineitem discount")) or 0.0,
                        }
                        for r in group
                        if r.get("Lineitem quantity")
                    ],
                    # The export has no refund time: the refund counts from the export on.
                    "refunds": (
                        [
                            {
                                "created_at": exported_at.isoformat(),
                                "transactions": [
                                    {"kind": "refund", "status": "success", "amount": refunded}
                                ],
                            }
                        ]
                        if refunded > 0
                        else []
                    ),
                },
                "CSV",
            )


def _groups(rows: list[dict], key: str) -> Iterator[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        k = (row.get(key) or "").lstrip("'")
        if k:
            groups.setdefault(k, []).append(row)
    yield from groups.items()


def _yes(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in ("yes", "true", "1", "subscribed")


def _float(value: object) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _int(value: object) -> int | None:
    if value is None or value == "":
        return None
    return int(float(value))


# --- mapping to the contract --------------------------------------------------------------------


def _ts(value: object) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _after(ts: pd.Timestamp | None, since: pd.Timestamp | None) -> bool:
    return since is None or (ts is not None and ts > since)


def refund_events(order: dict) -> list[tuple[pd.Timestamp, float]]:
    """(created_at, amount) per refund: its refund transactions that succeeded, summed."""
    out = []
    for r in order.get("refunds") or []:
        amount = sum(
            _money(t.get("amount")) or 0.0
            for t in r.get("transactions") or []
            if t.get("kind", "refund") == "refund" and t.get("status", "success") == "success"
        )
        at = _ts(r.get("created_at") or r.get("processed_at"))
        if at is not None and amount:
            out.append((at, amount))
    return sorted(out)


def order_versions(order: dict, since: pd.Timestamp | None) -> list[dict]:
    """The order as placed, then after each refund and its cancellation (newer than `since`)."""
    placed = _ts(order.get("created_at") or order.get("processed_at"))
    cancelled = _ts(order.get("cancelled_at"))
    refunds = refund_events(order)
    total = _money(order.get("total_price"))
    base = {
        "order_id": _id(order["id"]),
        "customer_id": _id(order["customer"]["id"]) if order.get("customer") else None,
        "order_ts": placed,
        "total_amount": total,
        "discount_amount": _money(order.get("total_discounts")) or 0.0,
        "channel": CHANNELS.get(order.get("source_name") or "", order.get("source_name")),
        "currency": order.get("currency"),
    }
    points = sorted({p for p in [placed, cancelled, *(t for t, _ in refunds)] if p is not None})
    versions: list[dict] = []
    for p in points:
        done = [(t, a) for t, a in refunds if t <= p]
        refunded = round(sum(a for _, a in done), 2)
        if cancelled is not None and cancelled <= p:
            status = "cancelled"
        elif refunded and total is not None and refunded >= total:
            status = "refunded"
        elif refunded:
            status = "partially_refunded"
        else:
            status = "completed"
        version = {
            **base,
            "updated_at": p,
            "status": status,
            "refunded_amount": refunded,
            "refund_ts": done[-1][0] if done else None,
        }
        if versions and all(
            versions[-1][k] == version[k] for k in ("status", "refunded_amount", "refund_ts")
        ):
            continue
        versions.append(version)
    if placed is None:  # ingest quarantines it (missing_required)
        versions = [{**base, "updated_at": None, "status": "completed", "refunded_amount": 0.0}]
    return [
        v for v in versions if since is None or v["updated_at"] is None or v["updated_at"] > since
    ]


def _line_discount(line: dict) -> float:
    allocations = line.get("discount_allocations")
    if allocations:
        return round(sum(_money(a.get("amount")) or 0.0 for a in allocations), 2)
    return _money(line.get("total_discount")) or 0.0


def deleted_product_id(line: dict) -> str:
    return "deleted:" + (line.get("sku") or line.get("title") or line.get("name") or "unknown")


@dataclass
class Imported:
    tables: dict[str, pd.DataFrame]
    report: dict
    memberships: dict[str, str] = field(default_factory=dict)  # in force after this import


def convert(
    shop: Shop,
    since: pd.Timestamp | None,
    exported_at: pd.Timestamp,
    known: dict[str, str] | None = None,
) -> Imported:
    """The contract's tables from what was read; `since` keeps only what changed after it, `known`
    (the memberships the last import left in force, from its state) only the memberships that
    changed."""
    counts: dict[str, dict[str, int]] = {
        t: {"read": shop.read.get(t, 0)} for t in ("customers", "products", "orders", "order_items")
    }
    orders, items, deleted = [], [], {}
    first_order: dict[str, pd.Timestamp] = {}  # customer or product -> earliest order
    test = test_lines = guests = unmatched = unchanged = 0
    currencies: set[str] = set()
    for order in shop.orders.values():
        if order.get("test"):
            test += 1
            test_lines += len(order.get("line_items") or [])
            continue
        placed = _ts(order.get("created_at"))
        versions = order_versions(order, since)
        if order.get("currency"):
            currencies.add(order["currency"])
        if order.get("customer") is None:
            guests += 1
            unmatched += bool(order.get("email_unmatched"))
        else:
            cid = _id(order["customer"]["id"])
            if placed is not None:
                first_order[cid] = min(first_order.get(cid, placed), placed)
        if not versions:
            unchanged += 1
        orders.extend(versions)
        for line in order.get("line_items") or []:
            pid = line.get("product_id")
            if pid is None or line.get("product_exists") is False:  # the product was deleted
                pid = deleted_product_id(line)
                deleted.setdefault(pid, (line, placed))
                if placed is not None:
                    prev = deleted[pid][1]
                    deleted[pid] = (deleted[pid][0], placed if prev is None else min(prev, placed))
            pid = _id(pid)
            if placed is not None:
                first_order[pid] = min(first_order.get(pid, placed), placed)
            if _after(placed, since):  # lines of orders placed before `since` were imported then
                items.append(
                    {
                        "order_id": _id(order["id"]),
                        "product_id": pid,
                        "variant_id": None if (vid := line.get("variant_id")) is None else _id(vid),
                        "quantity": line.get("quantity"),
                        "unit_price": _money(line.get("price")),
                        "discount": _line_discount(line),
                    }
                )
    customers = [
        row
        for c in shop.customers.values()
        if (row := _customer_row(c, since, first_order.get(_id(c["id"])), exported_at))
    ]
    products = [
        row
        for p in shop.products.values()
        if (row := _product_row(p, since, first_order.get(_id(p["id"])), exported_at))
    ]
    for pid, (line, placed) in deleted.items():
        if pid in shop.products or not _after(placed, since):
            continue
        products.append(
            {
                "product_id": pid,
                "name": line.get("title") or line.get("name") or pid,
                "price": _money(line.get("price")),
                "created_at": placed,
                "updated_at": placed,
                "is_active": False,
            }
        )
    collections, membership_counts, members = _memberships(shop, known, products, exported_at)
    tables = {
        "customers": _frame(customers),
        "products": _frame(products),
        "orders": _frame(orders),
        "order_items": _frame(items),
        "product_collections": _frame(collections),
    }
    counts["orders"].update(test_excluded=test, unchanged=unchanged, written=len(orders))
    counts["order_items"].update(
        test_excluded=test_lines,
        written=len(items),
        of_older_orders=counts["order_items"]["read"] - test_lines - len(items),
    )
    counts["customers"]["written"] = len(customers)
    counts["products"]["written"] = len(products)
    counts["product_collections"] = membership_counts
    report = {
        "counts": counts,
        "guest_orders": guests,
        "guest_orders_unmatched_email": unmatched,
        "deleted_products": len(deleted),
        "currencies": sorted(currencies),
        "collections": len(shop.collections),
    }
    return Imported(tables, report, members)


MEMBER_SEP = " "  # "collection_id product_id" in the state file


def _memberships(
    shop: Shop, known: dict[str, str] | None, products: list[dict], exported_at: pd.Timestamp
) -> tuple[list[dict], dict[str, int], dict[str, str]]:
    """product_collections rows: a row where a membership began or ended since the last import.

    Shopify keeps no history of memberships, only what holds now, so the importer keeps the
    memberships in force (by where they came from: `collect` or a bulk `list`) in its state and
    writes the difference. A new membership takes effect at its collect's `created_at`; without
    one (bulk) at the product's first row on the first import, else at the export (`exported_at`:
    never before it happened). A known membership that an export listing it in full no longer
    holds (REST `collects`, which list every custom collection's products; a bulk collection with
    its products) ends at the export. Returns the rows, their counts and the memberships now in
    force."""
    first = known is None
    known = dict(known or {})
    start = {r["product_id"]: r["created_at"] for r in products}
    for p in shop.products.values():
        start.setdefault(_id(p["id"]), _ts(p.get("created_at")))
    rows: list[dict] = []
    now: dict[str, str] = {}

    def row(cid: str, pid: str, when, inside: bool) -> dict:
        title = shop.collections.get(cid, {}).get("title")
        return {
            "product_id": pid,
            "collection_id": cid,
            "collection": title,
            "updated_at": when,
            "in_collection": inside,
        }

    for (cid, pid), joined in sorted(shop.collects.items()):
        key = f"{cid}{MEMBER_SEP}{pid}"
        now[key] = "list" if cid in shop.listed else "collect"
        if key in known:
            continue
        when = _ts(joined) or (start.get(pid) if first else None) or exported_at
        rows.append(row(cid, pid, when, True))
    joined_rows = len(rows)
    covered = "collects" in shop.kinds
    for key, origin in sorted(known.items()):
        cid, pid = key.split(MEMBER_SEP, 1)
        if key in now:
            continue
        if (origin == "collect" and covered) or cid in shop.listed:
            rows.append(row(cid, pid, exported_at, False))
        else:  # not listed by this export: still in force as far as we know
            now[key] = origin
    counts = {
        "read": len(shop.collects),
        "joined": joined_rows,
        "left": len(rows) - joined_rows,
        "unchanged": len(shop.collects) - joined_rows,
        "written": len(rows),
    }
    return rows, counts, now


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _first_row_time(
    record: dict, since: pd.Timestamp | None, first_order: pd.Timestamp | None, exported_at
) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
    """(created, this row's updated_at), or None when the record did not change after since."""
    created = _ts(record.get("created_at")) or first_order or exported_at
    updated = _ts(record.get("updated_at")) or created
    if since is not None and not updated > since:
        return None
    # A record new since the last import is taken from its creation on; one seen before gets a
    # new change-log row at its update.
    new = since is None or created > since
    return created, created if new else updated


def _customer_row(c: dict, since, first_order, exported_at) -> dict | None:
    times = _first_row_time(c, since, first_order, exported_at)
    if times is None:
        return None
    consent = c.get("email_marketing_consent")
    if consent is not None:
        opt_in = consent.get("state") == "subscribed"
    else:
        opt_in = c.get("accepts_marketing")
    address = c.get("default_address") or {}
    return {
        "customer_id": _id(c["id"]),
        "signup_ts": times[0],
        "updated_at": times[1],
        "country": address.get("country_code") or None,
        "email_opt_in": opt_in,
    }


def _product_row(p: dict, since, first_order, exported_at) -> dict | None:
    times = _first_row_time(p, since, first_order, exported_at)
    if times is None:
        return None
    variants = p.get("variants") or []
    prices = [x for v in variants if (x := _money(v.get("price"))) is not None]
    stock = [
        v.get("inventory_quantity") for v in variants if v.get("inventory_quantity") is not None
    ]
    status = p.get("status")
    return {
        "product_id": _id(p["id"]),
        "name": p.get("title"),
        "category": p.get("product_type") or None,
        "brand": p.get("vendor") or None,
        "tags": p.get("tags") or None,
        "price": min(prices) if prices else None,
        "created_at": times[0],
        "updated_at": times[1],
        "is_active": None if status is None else status == "active",
        "inventory_quantity": sum(stock) if stock else None,
    }


# --- the command --------------------------------------------------------------------------------


def load_state(out: Path) -> dict:
    path = Path(out) / META_DIR / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def watermark(shop: Shop) -> str | None:
    """The newest `updated_at` (or creation, refund, cancellation) seen in the source."""
    stamps = []
    for resource in ("orders", "products", "customers"):
        for record in getattr(shop, resource).values():
            for key in ("updated_at", "created_at", "cancelled_at"):
                if (ts := _ts(record.get(key))) is not None:
                    stamps.append(ts)
            if resource == "orders":
                stamps.extend(t for t, _ in refund_events(record))
    return max(stamps).isoformat() if stamps else None


def run(
    src: Path,
    out: Path,
    since: str | None = None,
    exported_at: str | None = None,
    quiet: bool = False,
) -> dict:
    """Import SRC into OUT; returns the report (also written to OUT/_meta/shopify_import.json).

    `since` (else the watermark of the last import into OUT) keeps only what changed after it.
    `exported_at` is when the exports were taken (default: now): CSV refunds, and collection
    memberships that began or ended without a time of their own, count from then on.
    """
    out = Path(out)
    clock = _ts(exported_at) if exported_at else pd.Timestamp.now(tz="UTC")
    state = load_state(out)
    since_ts = _ts(since) if since else _ts(state.get("watermark"))
    shop = read_source(Path(src), clock)
    imported = convert(shop, since_ts, clock, state.get("memberships"))
    written = {
        name: write_table(df if len(df.columns) else empty_frame(name), out, name)
        for name, df in imported.tables.items()
        if name in TABLES
    }
    mark = watermark(shop)
    if since_ts is not None and (mark is None or _ts(mark) < since_ts):
        mark = since_ts.isoformat()
    report = {
        "source": str(Path(src).resolve()),
        "files": shop.files,
        "kinds": {r: sorted(k) for r, k in shop.kinds.items()},
        "since": since_ts.isoformat() if since_ts is not None else None,
        "exported_at": clock.isoformat(),
        "watermark": mark,
        "written": written,
        **imported.report,
        "notes": shop.notes,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta = out / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    (meta / REPORT_FILE).write_text(json.dumps(report, indent=2))
    state = {"watermark": mark, "memberships": imported.memberships}
    (meta / STATE_FILE).write_text(json.dumps(state, indent=2))
    if not quiet:
        _print(report, out)
    return report


def _print(report: dict, out: Path) -> None:
    c = report["counts"]
    print(
        f"shopify -> {out}: "
        + ", ".join(
            f"{t} {c[t]['read']:,} read, {n:,} rows" for t, n in report["written"].items() if t in c
        )
    )
    print(
        f"  test orders left out: {c['orders']['test_excluded']:,} "
        f"({c['order_items']['test_excluded']:,} lines); guest orders: {report['guest_orders']:,}; "
        f"deleted products: {report['deleted_products']:,}; currency: "
        + (", ".join(report["currencies"]) or "-")
    )
    m = c["product_collections"]
    print(
        f"  collections: {report['collections']:,}; memberships {m['read']:,} read, "
        f"{m['joined']:,} joined, {m['left']:,} left, {m['unchanged']:,} unchanged"
    )
    if len(report["currencies"]) > 1:
        print("  warning: more than one currency; the contract expects the shop's one currency")
    if report["since"]:
        print(f"  since {report['since']}: {c['orders']['unchanged']:,} orders unchanged")
    print(f"  watermark {report['watermark']} (kept in {out / META_DIR / STATE_FILE})")
    for note in report["notes"]:
        print(f"  note: {note}")
