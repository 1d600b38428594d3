"""The end of `make demo`: how to start the API and one call of each endpoint, with real ids.

The ids are the demo shop's busiest customer and best-selling product, so every call answers
with data (the churn prediction, recommendations with co-purchase candidates, feature vectors).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from pipelines.storage import read_clean
from shopconfig.settings import REPO_ROOT


def example_ids(data_dir: Path) -> tuple[list[str], str]:
    """(two customers with the most orders, the product sold most), from the clean tables."""
    orders = read_clean(data_dir, "orders", ["customer_id", "status"])
    orders = orders[orders["customer_id"].notna() & (orders["status"] != "cancelled")]
    customers = orders["customer_id"].astype(str).value_counts()
    items = read_clean(data_dir, "order_items", ["product_id", "quantity"])
    sold = items.groupby(items["product_id"].astype(str))["quantity"].sum()
    # ties broken by id, so the same shop always prints the same calls
    top = sorted(customers.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    product = min(sold.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return [c for c, _ in top], product


def lines(data_dir: Path, port: int = 8000) -> list[str]:
    customers, product = example_ids(data_dir)
    base = f"http://127.0.0.1:{port}"
    env = (
        ""
        if Path(data_dir).resolve() == (REPO_ROOT / "data").resolve()
        else f"SHOPFEAST_DATA_DIR={shlex.quote(str(Path(data_dir).resolve()))} "
    )
    key = ' -H "X-API-Key: $SHOPFEAST_API_KEY"' if os.environ.get("SHOPFEAST_API_KEY") else ""
    post = f"{key} -H 'content-type: application/json' -d"

    def body(obj: dict) -> str:
        return shlex.quote(json.dumps(obj, separators=(",", ":")))

    c = customers[0]
    return [
        "Serve the models from Redis (the redis profile; `make` reaches or starts Redis and",
        "PostgreSQL). From the repository root, in a second terminal:",
        f"  {env}make apply materialize   # register the definitions, load Redis",
        f"  {env}make serve               # {base}, OpenAPI docs at {base}/docs",
        "Then, in a third:",
        f"  curl -s {base}/health",
        f"  curl -s {base}/ready",
        f"  curl -s{key} {base}/features/customers/{c}",
        f"  curl -s{key} {base}/features/products/{product}",
        f"  curl -s -X POST {base}/features/batch{post} "
        + body({"entity": "customer", "ids": customers}),
        f"  curl -s -X POST {base}/predict/churn{post} " + body({"customer_id": c}),
        f"  curl -s -X POST {base}/recommendations{post} "
        + body({"customer_id": c, "k": 5, "exclude_purchased": True}),
        f"  curl -s{key} {base}/metrics | grep -E '^shopfeast_(http_requests_total|model_info)'",
    ]
