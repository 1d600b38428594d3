"""A small hand-made shop, written straight into the clean storage layout.

It does not need the generator or the ingest: the oracle tests can run while those are elsewhere,
and the shop is shaped to hit the contract's edges on purpose: timestamps exactly at 00:00 UTC and
one microsecond before, cancelled orders, refunds known later (and refunds without a timestamp),
orders that change after they are placed (refunds and cancellations as later versions),
guest orders, anonymous events, customers who never do anything, customers who sign up late, profile
and price changes at midnight, missing birth years, a year boundary (ages change on 1 January).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contract import TABLES
from pipelines.storage import DAY_PARTITION, clean_dir, partition_time_column

START = pd.Timestamp("2024-10-01", tz="UTC")
DAYS = 150  # crosses 1 January 2025


def _ts(rng: np.random.Generator, n: int, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.Series:
    """Random instants in [lo, hi); a fifth land exactly on midnight, a tenth one µs before it."""
    span = int((hi - lo) / pd.Timedelta(microseconds=1))
    us = rng.integers(0, max(span, 1), n)
    ts = pd.Series(lo + pd.to_timedelta(us, unit="us"))
    kind = rng.random(n)
    ts[kind < 0.2] = ts[kind < 0.2].dt.floor("D")
    late = (kind >= 0.2) & (kind < 0.3)
    ts[late] = ts[late].dt.floor("D") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return ts.clip(lower=lo, upper=hi - pd.Timedelta(microseconds=1)).astype("datetime64[us, UTC]")


def build(
    seed: int = 11,
    customers: int = 40,
    products: int = 14,
    orders: int = 450,
    events: int = 2500,
    reviews: int = 120,
) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    end = START + pd.Timedelta(days=DAYS)

    cids = [f"c{i:03d}" for i in range(customers)]
    signup = _ts(rng, customers, START - pd.Timedelta(days=20), end - pd.Timedelta(days=10))
    birth = pd.array(rng.integers(1950, 2005, customers), dtype="Int64")
    birth[rng.random(customers) < 0.2] = pd.NA
    cust = pd.DataFrame(
        {"customer_id": cids, "signup_ts": signup, "updated_at": signup, "birth_year": birth}
    )
    # a third change their profile later (birth year corrected, sometimes at exactly midnight)
    changed = cust.sample(frac=0.33, random_state=seed).copy()
    changed["updated_at"] = [
        s + pd.Timedelta(days=int(d))
        for s, d in zip(changed["signup_ts"], rng.integers(1, 40, len(changed)), strict=True)
    ]
    changed.loc[changed.index[::2], "updated_at"] = changed["updated_at"].dt.floor("D")
    changed["updated_at"] = changed["updated_at"].clip(
        lower=changed["signup_ts"] + pd.Timedelta(microseconds=1)
    )
    changed["birth_year"] = pd.array(rng.integers(1950, 2005, len(changed)), dtype="Int64")
    cust = pd.concat([cust, changed], ignore_index=True)
    cust["gender"] = "unknown"

    pids = [f"p{i:02d}" for i in range(products)]
    created = _ts(rng, products, START - pd.Timedelta(days=30), end - pd.Timedelta(days=20))
    prod = pd.DataFrame(
        {
            "product_id": pids,
            "name": pids,
            "price": rng.uniform(1, 90, products).round(2),
            "created_at": created,
            "updated_at": created,
        }
    )
    prod["category"] = [("a", "b", "c")[i % 3] for i in range(products)]
    prod["brand"] = [("x", "y", "z", None)[i % 4] for i in range(products)]
    reprice = prod.sample(n=products // 2, random_state=seed).copy()
    reprice["updated_at"] = (
        reprice["created_at"] + pd.to_timedelta(rng.integers(1, 60, len(reprice)), unit="D")
    ).dt.floor("D")
    reprice["price"] = (reprice["price"] * rng.uniform(0.7, 1.3, len(reprice))).round(2)
    prod = pd.concat([prod, reprice], ignore_index=True)

    # Orders only by the first three quarters of the customers (the rest never buy), after signup;
    # a tenth are guests; statuses include cancellations and refunds.
    buyers = max(1, customers * 3 // 4)
    who = rng.integers(0, buyers, orders)
    o_cust = pd.Series([cids[i] for i in who], dtype="string")
    o_ts = _ts(rng, orders, START, end)
    first = cust.groupby("customer_id")["signup_ts"].min()
    floor = first[o_cust].reset_index(drop=True) + pd.Timedelta(microseconds=1)
    o_ts = o_ts.where(o_ts > floor, floor).astype("datetime64[us, UTC]")
    o_cust[rng.random(orders) < 0.1] = pd.NA
    status = rng.choice(
        ["completed", "cancelled", "refunded", "partially_refunded"], orders, p=[0.7, 0.1, 0.1, 0.1]
    )
    total = rng.uniform(5, 300, orders).round(2)
    refunded = np.where(
        status == "refunded",
        total,
        np.where(status == "partially_refunded", (total * 0.3).round(2), 0.0),
    )
    refund_ts = o_ts + pd.to_timedelta(rng.integers(0, 40 * 24 * 3600, orders), unit="s")
    refund_ts = refund_ts.where(refunded > 0)
    refund_ts[(refunded > 0) & (rng.random(orders) < 0.2)] = pd.NaT  # refund without a time
    ords = pd.DataFrame(
        {
            "order_id": [f"o{i:04d}" for i in range(orders)],
            "customer_id": o_cust,
            "order_ts": o_ts,
            "status": status,
            "total_amount": total,
            "discount_amount": 0.0,
            "refunded_amount": refunded,
            "refund_ts": refund_ts.astype("datetime64[us, UTC]"),
        }
    )

    lines = rng.integers(1, 4, orders)
    oi = pd.DataFrame(
        {
            "order_id": np.repeat(ords["order_id"], lines),
            "order_ts": np.repeat(ords["order_ts"], lines),
        }
    )
    oi["product_id"] = rng.choice(pids, len(oi))
    oi["quantity"] = pd.array(rng.integers(1, 4, len(oi)), dtype="Int64")
    oi["unit_price"] = rng.uniform(1, 90, len(oi)).round(2)
    # products cannot be bought before they exist
    oi = oi[
        oi["order_ts"].to_numpy()
        > prod.groupby("product_id")["created_at"].min()[oi["product_id"]].to_numpy()
    ]

    browsers = rng.integers(0, min(customers, buyers + 4), events)  # a few only browse
    e_cust = pd.Series([cids[i] for i in browsers], dtype="string")
    e_cust[rng.random(events) < 0.15] = pd.NA
    etype = rng.choice(
        ["page_view", "product_view", "search", "add_to_cart", "purchase"],
        events,
        p=[0.25, 0.4, 0.1, 0.15, 0.1],
    )
    ev = pd.DataFrame(
        {
            "event_id": [f"e{i:05d}" for i in range(events)],
            "customer_id": e_cust,
            "session_id": [f"s{i}" for i in rng.integers(0, events // 4, events)],
            "event_type": etype,
            "event_ts": _ts(rng, events, START, end),
        }
    )
    ev["product_id"] = pd.Series(rng.choice(pids, events), dtype="string").where(
        ev["event_type"].isin(["product_view", "add_to_cart", "purchase"])
    )

    r_cust = pd.Series([cids[i] for i in rng.integers(0, buyers, reviews)], dtype="string")
    r_cust[rng.random(reviews) < 0.1] = pd.NA
    rv = pd.DataFrame(
        {
            "review_id": [f"r{i:04d}" for i in range(reviews)],
            "customer_id": r_cust,
            "product_id": rng.choice(pids, reviews),
            "rating": rng.integers(1, 6, reviews).astype(float),
            "body": rng.choice(
                ["great product, love it", "terrible, broke at once", "ok", "", None], reviews
            ),
            "review_ts": _ts(rng, reviews, START, end),
        }
    )
    ords = pd.concat([ords, later_versions(ords, seed)], ignore_index=True)
    return {
        "customers": cust,
        "products": prod,
        "product_collections": collections(prod, seed),
        "orders": ords,
        "order_items": oi,
        "events": ev,
        "reviews": rv,
    }


def collections(prod: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Three collections, many to many: products join some days after their creation (at
    midnight or in between), a few leave again, and one joins before the product exists."""
    rng = np.random.default_rng(seed + 2)
    first = prod.sort_values("updated_at").drop_duplicates("product_id")
    rows = []
    for _, p in first.iterrows():
        for cid in ("k1", "k2", "k3"):
            if rng.random() < 0.45:
                continue
            joined = p["created_at"] + pd.Timedelta(days=int(rng.integers(-3, 40)))
            if rng.random() < 0.3:
                joined = joined.floor("D")
            rows.append((p["product_id"], cid, f"Collection {cid}", joined, True))
            if rng.random() < 0.25:
                left = joined + pd.Timedelta(days=int(rng.integers(1, 60)), hours=5)
                rows.append((p["product_id"], cid, f"Collection {cid}", left, False))
    cols = ["product_id", "collection_id", "collection", "updated_at", "in_collection"]
    out = pd.DataFrame(rows, columns=cols)
    out["updated_at"] = out["updated_at"].astype("datetime64[us, UTC]")
    return out


def later_versions(ords: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Orders that change after they are placed (contract v1.1): a third of the completed ones get
    a refund a few days later, some of those a second, larger one; some are cancelled later; some
    edited (another total). Versions land at midnight, one microsecond before it, or in between;
    a few say their refund happened after the version itself."""
    rng = np.random.default_rng(seed + 1)  # its own stream: the rest of the shop stays as it was
    base = ords[ords["status"] == "completed"].sample(frac=0.4, random_state=seed).copy()
    base["updated_at"] = base["order_ts"]
    n = len(base)
    kind = rng.choice(["refund", "refund2", "cancel", "edit"], n, p=[0.4, 0.25, 0.2, 0.15])
    gap = pd.to_timedelta(rng.integers(3600, 50 * 24 * 3600, n), unit="s")
    at = base["order_ts"] + gap
    shape = rng.random(n)
    at = at.where(shape >= 0.2, at.dt.floor("D") + pd.Timedelta(days=1))
    at = at.where((shape < 0.2) | (shape >= 0.3), at.dt.floor("D") - pd.Timedelta(microseconds=1))
    at = at.where(at > base["order_ts"], base["order_ts"] + pd.Timedelta(seconds=1))
    at = at.astype("datetime64[us, UTC]")
    v1 = base.copy()
    v1["updated_at"] = at
    part = (v1["total_amount"] * 0.25).round(2)
    refund = np.isin(kind, ["refund", "refund2"])
    v1.loc[refund, "status"] = "partially_refunded"
    v1.loc[refund, "refunded_amount"] = part[refund]
    v1.loc[refund, "refund_ts"] = at[refund]
    odd = refund & (rng.random(n) < 0.15)  # the version says the refund comes later still
    v1.loc[odd, "refund_ts"] = at[odd] + pd.Timedelta(days=2)
    v1.loc[kind == "cancel", "status"] = "cancelled"
    v1.loc[kind == "edit", "total_amount"] = (v1["total_amount"] * 0.8).round(2)[kind == "edit"]
    v2 = v1[kind == "refund2"].copy()
    v2["updated_at"] = v2["updated_at"] + pd.to_timedelta(
        rng.integers(3600, 20 * 24 * 3600, len(v2)), unit="s"
    )
    v2["status"] = "refunded"
    v2["refunded_amount"] = v2["total_amount"]
    v2["refund_ts"] = v2["updated_at"]
    out = pd.concat([v1, v2], ignore_index=True)
    out["refund_ts"] = out["refund_ts"].astype("datetime64[us, UTC]")
    return out


def write_clean(data_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Write tables in the clean layout (contract columns and types; day partitions)."""
    for name, df in tables.items():
        spec = TABLES[name]
        schema = spec.arrow_schema()
        full = df.reindex(columns=schema.names)
        if name == "orders":  # what ingest does: a version without updated_at is the order placed
            full["updated_at"] = full["updated_at"].fillna(full["order_ts"])
        arrow = pa.Table.from_pandas(full, schema=schema, preserve_index=False)
        out = clean_dir(data_dir, name)
        if spec.change_log:
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow, out / "part-0.parquet")
            continue
        day = full[partition_time_column(spec)].dt.strftime("%Y-%m-%d")
        for d in sorted(day.unique()):
            part = out / f"{DAY_PARTITION}={d}"
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow.filter(pa.array((day == d).to_numpy())), part / "part-0.parquet")
