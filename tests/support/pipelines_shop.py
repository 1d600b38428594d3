"""A tiny random shop in the clean layout, written as daily ingest batches (pipeline tests only).

Small enough for a naive day-by-day recomputation, awkward enough to matter: sessions across
midnight, refunds known days after the order, refunds without a refund_ts, cancelled orders,
profile changes, price and category changes, raw gender spellings, customers who never act,
orders on a window's edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contract import PANDAS_DTYPES, TABLES
from pipelines.storage import DAY_PARTITION, clean_dir, partition_time_column

START = pd.Timestamp("2025-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def typed(table: str, rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a clean table: every contract column, contract dtypes."""
    spec = TABLES[table]
    df = pd.DataFrame(rows).reindex(columns=[c.name for c in spec.clean_columns()])
    for c in spec.clean_columns():
        if c.kind == "timestamp":
            df[c.name] = pd.to_datetime(df[c.name], utc=True).astype("datetime64[us, UTC]")
        else:
            df[c.name] = df[c.name].astype(PANDAS_DTYPES[c.kind])
    return df


def build(
    seed: int = 3, customers: int = 30, products: int = 12, days: int = 60
) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = lambda d, sec: START + d * DAY + pd.to_timedelta(sec, unit="s")  # noqa: E731

    cats = ["books", "games", "garden", "toys"]
    prod = [
        dict(
            product_id=f"p{i}",
            name=f"P{i}",
            category=cats[i % 4],
            price=float(5 + i),
            created_at=START - 10 * DAY,
            updated_at=START - 10 * DAY,
        )
        for i in range(products)
    ]
    prod.append(dict(prod[0], category="garden", price=3.5, updated_at=ts(20, 3600)))
    prod.append(dict(prod[1], category=None, updated_at=ts(35, 0)))

    genders = ["female", "male", "F", "Male", None, "nonbinary", "other"]
    cust = []
    for i in range(customers):
        signup = ts(int(rng.integers(0, days - 10)), int(rng.integers(0, 86400)))
        row = dict(
            customer_id=f"c{i}",
            signup_ts=signup,
            updated_at=signup,
            birth_year=None if i % 7 == 0 else int(rng.integers(1950, 2005)),
            gender=genders[i % len(genders)],
            location_type=["urban", "rural", None][i % 3],
            loyalty_status=["none", "gold", "diamond"][i % 3],
            is_premium=bool(i % 2),
            education=["bachelor", "master", None, "phd"][i % 4],
            preferred_device=["mobile", "desktop", "tablet"][i % 3],
            email_opt_in=None if i % 5 == 0 else bool(i % 3),
        )
        cust.append(row)
        if i % 4 == 1:  # a profile change some days later
            cust.append(
                dict(
                    row,
                    updated_at=signup + int(rng.integers(1, 20)) * DAY,
                    loyalty_status="platinum",
                    birth_year=1980,
                    is_premium=True,
                )
            )
    signups = {r["customer_id"]: r["signup_ts"] for r in cust}
    active = [f"c{i}" for i in range(customers) if i % 6 != 5]  # every 6th never acts

    orders, items = [], []
    for k in range(5 * customers):
        c = active[int(rng.integers(len(active)))]
        t = signups[c] + pd.to_timedelta(int(rng.integers(60, 50 * 86400)), unit="s")
        if t >= START + days * DAY:
            continue
        status = rng.choice(["completed"] * 6 + ["cancelled", "refunded", "partially_refunded"])
        total = round(float(rng.uniform(5, 120)), 2)
        refunded = {"refunded": total, "partially_refunded": round(total / 3, 2)}.get(status, 0.0)
        refund_ts = (
            t + int(rng.integers(0, 12)) * DAY + pd.Timedelta(hours=3)
            if refunded and k % 3
            else None
        )
        orders.append(
            dict(
                order_id=f"o{k}",
                customer_id=c,
                order_ts=t,
                status=status,
                total_amount=total,
                discount_amount=float(k % 4 == 0) * 2.5,
                refunded_amount=refunded,
                refund_ts=refund_ts,
            )
        )
        for _ in range(int(rng.integers(1, 4))):
            items.append(
                dict(
                    order_id=f"o{k}",
                    product_id=f"p{int(rng.integers(products))}",
                    quantity=int(rng.integers(1, 4)),
                    unit_price=5.0,
                    order_ts=t,
                )
            )
    # An order that leaves its 7/30/90-day windows on known days, and one at midnight exactly.
    orders.append(
        dict(
            order_id="edge",
            customer_id="c1",
            order_ts=signups["c1"] + DAY,
            status="completed",
            total_amount=10.0,
        )
    )
    items.append(
        dict(
            order_id="edge",
            product_id="p3",
            quantity=1,
            unit_price=10.0,
            order_ts=signups["c1"] + DAY,
        )
    )
    midnight = signups["c2"].ceil("D") + DAY
    orders.append(
        dict(
            order_id="midnight",
            customer_id="c2",
            order_ts=midnight,
            status="completed",
            total_amount=1.0,
        )
    )
    items.append(
        dict(order_id="midnight", product_id="p4", quantity=2, unit_price=0.5, order_ts=midnight)
    )

    kinds = [
        "page_view",
        "product_view",
        "product_view",
        "search",
        "add_to_cart",
        "purchase",
        "checkout_start",
        "remove_from_cart",
    ]
    events = []
    for s in range(12 * customers):
        c = active[int(rng.integers(len(active)))]
        t = signups[c] + pd.to_timedelta(int(rng.integers(-3600, 50 * 86400)), unit="s")
        if s % 9 == 0:  # a session across midnight
            t = t.floor("D") + pd.Timedelta(hours=23, minutes=50)
        for e in range(int(rng.integers(1, 7))):
            et = t + pd.to_timedelta(e * int(rng.integers(30, 400)), unit="s")
            if et >= START + days * DAY:
                break
            kind = kinds[int(rng.integers(len(kinds)))]
            events.append(
                dict(
                    event_id=f"e{s}_{e}",
                    customer_id=c,
                    session_id=f"s{s}",
                    event_type=kind,
                    event_ts=et,
                    product_id=f"p{int(rng.integers(products))}",
                )
            )
    events.append(
        dict(
            event_id="anon",
            customer_id=None,
            session_id="sx",
            event_type="page_view",
            event_ts=ts(3, 100),
        )
    )
    # collections: every product in k1 from the start and in k2 from day 10 + i; p2 leaves k1 on
    # day 25
    members = [
        dict(product_id=f"p{i}", collection_id="k1", updated_at=START - 10 * DAY)
        for i in range(products)
    ]
    members += [
        dict(product_id=f"p{i}", collection_id="k2", updated_at=ts(10 + i, 3600))
        for i in range(products)
    ]
    members.append(
        dict(product_id="p2", collection_id="k1", updated_at=ts(25, 0), in_collection=False)
    )
    return {
        "customers": typed("customers", cust),
        "products": typed("products", prod),
        "product_collections": typed("product_collections", members),
        "orders": typed("orders", orders),
        "order_items": typed("order_items", items),
        "events": typed("events", events),
    }


def write_batch(data_dir: Path, tables: dict[str, pd.DataFrame], batch: str) -> None:
    """Append one ingest batch in the clean layout (part-<batch>.parquet per table/day)."""
    for name, df in tables.items():
        if df.empty:
            continue
        spec = TABLES[name]
        schema = spec.arrow_schema()
        out = clean_dir(data_dir, name)
        if spec.change_log:
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pandas(df, schema=schema, preserve_index=False),
                out / f"part-{batch}.parquet",
            )
            continue
        day = df[partition_time_column(spec)].dt.strftime("%Y-%m-%d")
        for d in sorted(day.unique()):
            part = out / f"{DAY_PARTITION}={d}"
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pandas(df[day == d], schema=schema, preserve_index=False),
                part / f"part-{batch}.parquet",
            )


def daily_batches(tables: dict[str, pd.DataFrame]) -> list[tuple[str, dict[str, pd.DataFrame]]]:
    """Split a shop into one batch per UTC day of each row's time column (a day's export)."""
    when = {n: df[TABLES[n].time_column or "order_ts"].dt.floor("D") for n, df in tables.items()}
    days = sorted(set().union(*[set(w.dropna()) for w in when.values()]))
    return [(f"{d:%Y%m%d}", {n: df[when[n] == d] for n, df in tables.items()}) for d in days]
