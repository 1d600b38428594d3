"""Amazon Review Data (2018) JSON lines -> the raw data contract.

reviews: one per line read, duplicates included. `review_id` is a hash of the review's
content (reviewer, product, time, rating, summary, text): the 5-core file repeats a review once per
product variant it was shown on (same content, a different `style`), and those copies get the same
id and the same contract values, so ingest quarantines them as `duplicate_row` instead of counting
a review twice. A reviewer's different reviews of the same product on the same day (several variants
reviewed separately) differ in content and stay distinct.

products: one per asin; name `All Beauty <asin>`, category `All Beauty`, description = the
most reviewed variant style; `price` is required but unknown, so it is the placeholder 0.0
(docs/real_data.md); `created_at` = the product's first review (it existed by then).
customers: one per reviewer, `signup_ts` = first review. orders and order_items are required tables:
written empty, with their required columns.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd

from shopfeast.importers import empty_frame, stable_id, to_utc, write_table

CATEGORY = "All Beauty"
PRICE_PLACEHOLDER = 0.0
CONTENT = ["customer_id", "product_id", "rating", "title", "body", "review_ts"]


def load(file: Path) -> pd.DataFrame:
    """The file's records, one per line, nothing dropped."""
    opener = gzip.open if str(file).endswith(".gz") else open
    with opener(file, "rt", encoding="utf-8") as fh:
        return pd.DataFrame.from_records(json.loads(line) for line in fh if line.strip())


def convert(raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Pure mapping of the review records to the contract's tables."""
    reviews = pd.DataFrame(
        {
            "customer_id": raw["reviewerID"].astype(str),
            "product_id": raw["asin"].astype(str),
            "rating": raw["overall"].astype("float64"),
            "title": raw.get("summary"),
            "body": raw.get("reviewText"),
            "review_ts": to_utc(raw["unixReviewTime"], unit="s"),
        }
    )
    reviews.insert(
        0,
        "review_id",
        [stable_id(*row) for row in reviews[CONTENT].itertuples(index=False, name=None)],
    )
    return {
        "customers": (
            reviews.groupby("customer_id", sort=True)["review_ts"]
            .min()
            .rename("signup_ts")
            .reset_index()
        ),
        "products": _products(raw, reviews),
        "orders": empty_frame("orders"),
        "order_items": empty_frame("order_items"),
        "reviews": reviews,
    }


def _style_text(style: object) -> str | None:
    if not isinstance(style, dict) or not style:
        return None
    return "; ".join(f"{k.rstrip(':')}: {str(v).strip()}" for k, v in sorted(style.items()))


def _describe_variants(styles: pd.Series) -> str | None:
    """The most reviewed variant and how many variants were reviewed (some asins have hundreds)."""
    counts = styles.dropna().value_counts()
    if counts.empty:
        return None
    top = counts.sort_index().idxmax()
    return top if len(counts) == 1 else f"{top} (one of {len(counts)} variants reviewed)"


def _products(raw: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    styles = (
        raw.get("style", pd.Series(None, index=raw.index))
        .map(_style_text)
        .groupby(reviews["product_id"])
        .agg(_describe_variants)
        .rename("description")
    )
    first = reviews.groupby("product_id", sort=True)["review_ts"].min().rename("created_at")
    out = first.reset_index().join(styles, on="product_id")
    out["name"] = CATEGORY + " " + out["product_id"]
    out["category"] = CATEGORY
    out["price"] = PRICE_PLACEHOLDER
    return out


def known_rejects(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Copies of a review (same id, same values) that ingest will quarantine as duplicate_row."""
    return {"reviews": {"duplicate_row": int(tables["reviews"].duplicated().sum())}}


def run(file: Path, out: Path) -> dict[str, object]:
    """Write customers, products, reviews and empty orders/order_items to `out`."""
    tables = convert(load(Path(file)))
    written = {name: write_table(df, Path(out), name) for name, df in tables.items()}
    rejects = known_rejects(tables)
    print(f"amazon-reviews -> {out}: " + ", ".join(f"{k} {v:,}" for k, v in written.items()))
    print(
        f"  reviews: {rejects['reviews']['duplicate_row']:,} copies of a review across product "
        "variants kept; ingest will quarantine them as duplicate_row"
    )
    return {"rows": written, "known_rejects": rejects}
