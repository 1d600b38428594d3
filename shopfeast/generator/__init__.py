"""A synthetic shop in the raw data contract, deterministic per seed, with learnable dynamics.

`generate` builds the tables in memory (Arrow), `run` writes them; docs/generator.md describes
what is modelled and the knobs. Stages, in order: catalog -> customers -> sessions (calendar,
visits, funnel) -> baskets (products, complements, follow-ups) -> events -> orders -> reviews ->
profile change log -> render to the contract -> corruption (optional) -> write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.contract import CONTRACT_VERSION, INGEST_ORDER
from shopconfig.progress import progress
from shopfeast.generator import (
    baskets,
    catalog,
    corruption,
    drift,
    events,
    orders,
    profile,
    render,
    reviews,
    sessions,
    writer,
)
from shopfeast.generator import customers as crowds
from shopfeast.generator.config import Knobs, Span, streams

GENERATOR_VERSION = "1"


@dataclass
class Shop:
    tables: dict[str, pa.Table]  # as written: corrupted rows included when asked for
    manifest: pd.DataFrame  # table, row, rule, detail of every injected bad row
    truth: dict[str, pd.DataFrame]  # hidden traits (churn days, complements), for tests and docs
    info: dict
    seconds: dict[str, float] = field(default_factory=dict)


def generate(
    customers: int,
    products: int,
    days: int,
    seed: int,
    corrupt_fraction: float = 0.0,
    start: str = "2025-01-01",
    knobs: Knobs | None = None,
    on_stage: Callable[[str, float], None] | None = None,
    drift_from: int | None = None,
) -> Shop:
    if customers < 1 or products < 1 or days < 1:
        raise ValueError("customers, products and days must be at least 1")
    if not 0.0 <= corrupt_fraction < 0.5:
        raise ValueError("corrupt_fraction must be in [0, 0.5)")
    knobs = knobs or Knobs()
    span = Span.of(start, days)
    rng = streams(seed)
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def stage(name: str) -> None:  # GENERATE_STAGES calls below
        now = time.perf_counter()
        seconds[name] = now - clock[0]
        clock[0] = now
        if on_stage:
            on_stage(name, seconds[name])

    cat = catalog.make_catalog(products, span, knobs, rng["catalog"])
    picker = catalog.ProductPicker(cat)
    crowd = crowds.make_customers(customers, span, knobs, cat, rng["customers"])
    stage("catalog and customers")

    cal = sessions.make_calendar(span, cat.category_weights, rng["sessions"])
    visits = pd.concat(
        [
            sessions.customer_sessions(crowd, cal, span, knobs, rng["sessions"]),
            sessions.anonymous_sessions(crowd.n, cal, span, knobs, rng["sessions"]),
        ],
        ignore_index=True,
    )
    visits = sessions.funnel(visits, crowd, cal, knobs, rng["sessions"])
    visits, bask = baskets.build(visits, crowd, cat, picker, span, knobs, rng["baskets"])
    stage("sessions and baskets")

    ev = events.build(visits, bask, rng["events"])
    stage("events")
    ords, lines = orders.build(visits, bask.items, ev, cat, cal, span, knobs, rng["orders"])
    revs = reviews.build(ords, lines, cat, span, knobs, rng["reviews"])
    log = profile.change_log(crowd, ords, span, knobs, rng["profile"])
    stage("orders, reviews, profiles")

    tables = {
        "customers": render.customers(log, crowd.n, span),
        "products": render.products(cat, span),
        "product_collections": render.product_collections(cat, span),
        "orders": render.orders(ords, crowd.n, span),
        "order_items": render.order_items(lines, len(ords), cat.n),
        "events": render.events(ev, bask.queries, len(visits), crowd.n, cat.n, span),
        "reviews": render.reviews(revs, crowd.n, cat.n, span),
    }
    del ev
    truth = _truth(crowd, cat, span)
    shift = None if drift_from is None else drift.apply(tables, span, drift_from, rng["drift"])
    stage("render")
    tables, manifest = corruption.inject(tables, corrupt_fraction, span, rng["corruption"])
    stage("corruption")
    info = {
        "generator_version": GENERATOR_VERSION,
        "contract_version": CONTRACT_VERSION,
        "seed": seed,
        "customers": customers,
        "products": products,
        "days": days,
        "start": span.start.isoformat(),
        "end": span.end.isoformat(),
        "corrupt_fraction": corrupt_fraction,
        "rows": {name: tables[name].num_rows for name in INGEST_ORDER},
        "bad_rows": {name: int((manifest["table"] == name).sum()) for name in INGEST_ORDER},
        "sessions": len(visits),
    }
    if shift is not None:
        info["drift"] = shift
    return Shop(tables=tables, manifest=manifest, truth=truth, info=info, seconds=seconds)


def _truth(crowd: crowds.Customers, cat: catalog.Catalog, span: Span) -> dict:
    f = crowd.frame
    w = render.id_width(crowd.n)

    def ts(day: np.ndarray) -> pd.Series:
        day = np.asarray(day, dtype=np.float64)
        us = span.to_us(np.where(np.isfinite(day), day, 0.0))
        out = pd.Series(pd.to_datetime(us, unit="us", utc=True))
        return out.where(np.isfinite(day))

    names = np.array(cat.category_names, dtype=object)
    favs = names[crowd.prefs.cats]
    cust = pd.DataFrame(
        {
            "customer_id": render.ids("C", np.arange(crowd.n), w).to_pandas(),
            "preexisting": f["preexisting"].to_numpy(),
            "at_risk": f["at_risk"].to_numpy(),
            "churn_ts": ts(f["churn_day"]),
            "decline_start_ts": ts(f["decline_start"]),
            "lull_start_ts": ts(f["lull_start"]),
            "lull_end_ts": ts(f["lull_end"]),
            "sessions_per_day": f["rate"].to_numpy(),
            "conversion": f["conv"].to_numpy(),
            "price_tier": f["tier"].to_numpy(),
            "favourite_categories": favs[:, 0] + "|" + favs[:, 1] + "|" + favs[:, 2],
        }
    )
    pw = render.id_width(cat.n)
    prod = pd.DataFrame(
        {
            "product_id": render.ids("P", np.arange(cat.n), pw).to_pandas(),
            "lemon": cat.products["lemon"].to_numpy(),
            "popularity": cat.products["popularity"].to_numpy(),
            "complement_1": render.ids("P", cat.complements[:, 0], pw).to_pandas(),
            "complement_2": render.ids("P", cat.complements[:, 1], pw).to_pandas(),
        }
    )
    return {"truth_customers": cust, "truth_products": prod}


GENERATE_STAGES = 6  # the stage() calls of generate()


def run(
    out: Path,
    customers: int,
    products: int,
    days: int,
    seed: int,
    corrupt_fraction: float = 0.0,
    start: str = "2025-01-01",
    fmt: str = "parquet",
    quiet: bool = False,
    drift_from: int | None = None,
) -> Shop:
    """Generate a shop and write it to `out` as `fmt`; prints a line per stage unless quiet."""
    if fmt not in writer.FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(writer.FORMATS)}")
    out = Path(out)

    def say(name: str, secs: float) -> None:
        if not quiet:
            print(f"  {name:<28} {secs:7.1f}s", flush=True)

    with progress("generate", total=GENERATE_STAGES + len(INGEST_ORDER), unit="steps") as bar:

        def stage_done(name: str, secs: float) -> None:
            say(name, secs)
            bar.step(name)

        shop = generate(
            customers,
            products,
            days,
            seed,
            corrupt_fraction,
            start,
            on_stage=stage_done,
            drift_from=drift_from,
        )
        t0 = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        writer.clear(out)
        for name in INGEST_ORDER:
            writer.write_table(shop.tables[name], out, name, fmt)
            bar.step(f"wrote {name}")
    shop.info["format"] = fmt
    writer.write_meta(out, shop.manifest, shop.info, shop.truth, corruption.MANIFEST_SCHEMA)
    shop.seconds["write"] = time.perf_counter() - t0
    say("write", shop.seconds["write"])
    if not quiet:
        rows = ", ".join(f"{k} {v:,}" for k, v in shop.info["rows"].items())
        bad = sum(shop.info["bad_rows"].values())
        print(f"wrote {out} ({fmt}): {rows}; {bad:,} injected bad rows", flush=True)
    return shop
