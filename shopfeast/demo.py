"""`make demo`: the whole job on a generated shop, with one summary at the end."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import pandas as pd

from featurestore import store as feast_store
from monitoring import run as monitor
from pipelines import ingest
from pipelines import run as features
from shopconfig.progress import console as results_console
from shopfeast import demo_stream, generator
from shopfeast.api_howto import example_ids, lines
from training import churn, ranking

console = results_console()
START = "2025-01-01"
SHIFT_DAYS = 30  # the shifted twin shop changes this many days before its end
# The twin is at most this big: its drift alerts need a few hundred customers and a reference
# after the 90-day warm-up, not the demo shop's size (at 2,000 x 300 x 365 it cost 34 s of CPU,
# at 500 x 100 x 200 13.5 s; measured in the demo's process, imports warm)
TWIN = {"customers": 500, "products": 100, "days": 200}


def _stage(name: str):
    console.print(f"[bold]==> {name}[/bold]")
    return time.perf_counter()


def run(data_dir: Path, customers: int, products: int, days: int, seed: int) -> int:
    raw = data_dir / "raw"
    # The export arrives the morning after its last day: the clock of the ingest and of the
    # monitor's freshness checks, whatever today's date.
    clock = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=days, hours=6)
    t = _stage(f"generate a demo shop into {raw}")
    generator.run(
        out=raw,
        customers=customers,
        products=products,
        days=days,
        seed=seed,
        corrupt_fraction=0.01,
        start=START,
        fmt="parquet",
    )
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    t = _stage(f"ingest into {data_dir}")
    code = ingest.run(raw_dir=raw, data_dir=data_dir, now=_iso(clock))
    if code:
        return code
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    t = _stage(f"build feature sources into {data_dir / 'features'}")
    outcomes = features.run(data_dir=data_dir, mode="incremental", echo=False)
    for o in outcomes:
        console.print(f"    {o.line()}")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    code = _register(data_dir)
    if code:
        return code
    _train(data_dir, seed)
    _api_howto(data_dir)
    _monitor(data_dir, clock)
    _monitor_shifted(data_dir / "shifted", customers, products, days, seed)
    _stream(data_dir, clock, seed)
    return 0


def _register(data_dir: Path) -> int:
    """`feast apply` and materialize on the embedded profile: the registry and online store the
    notebooks and training read (the API's are Redis and PostgreSQL: see the last stage)."""
    import contextlib
    import io

    t = _stage("register and materialize (embedded profile: file registry, SQLite)")
    result = feast_store.feast_cli("embedded", ["apply"], data_dir, capture=True)
    if result.returncode:
        console.print(result.stdout + result.stderr, markup=False, highlight=False)
        console.print(f"feast apply failed (exit {result.returncode})")
        return result.returncode
    store = feast_store.open_store("embedded", data_dir)
    console.print(
        f"    registry {data_dir / 'feast' / 'registry.db'}: "
        f"{len(store.list_feature_views())} feature views, "
        f"{len(store.list_on_demand_feature_views())} on-demand views, "
        f"{len(store.list_feature_services())} feature services"
    )
    progress = io.StringIO()  # Feast's per-view progress bars
    try:
        with contextlib.redirect_stdout(progress), contextlib.redirect_stderr(progress):
            done = feast_store.materialize("embedded", data_dir)
    except Exception:
        console.print(progress.getvalue(), markup=False, highlight=False)
        raise
    console.print(
        f"    online store: {len(done.full) + len(done.incremental)} views materialized up to "
        f"{done.end:%Y-%m-%d %H:%M} UTC"
    )
    console.print(f"    done in {time.perf_counter() - t:.1f}s")
    return 0


def _train(data_dir: Path, seed: int) -> None:
    """Train both models on the store and print their test figures next to the baselines."""

    t = _stage(f"train the churn model ({churn.SERVICE})")
    card = churn.run(data_dir=data_dir, seed=seed, echo=False)
    for line in churn.summary(card).splitlines():
        console.print(f"    {line}")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")
    t = _stage(f"train the recommendation ranker ({ranking.SERVICE})")
    card = ranking.run(data_dir=data_dir, seed=seed, echo=False)
    for line in ranking.summary(card).splitlines():
        console.print(f"    {line}")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")


def _api_howto(data_dir: Path) -> None:
    """How to start the API on what the demo built, and one call of each endpoint."""

    _stage("the API")
    for line in lines(data_dir):
        console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def _report_path(data_dir: Path) -> str:
    return json.loads(monitor.report.latest_path(data_dir).read_text())["report_html"]


def _monitor(data_dir: Path, clock: pd.Timestamp) -> None:
    """Every check on what the demo built (docs/monitoring.md), drift against the churn model's
    training period: the report a data team reads every morning."""
    t = _stage("monitor the demo store: data quality, freshness, drift, training/serving skew")
    cpu = time.process_time()
    monitor.main(data_dir=data_dir, now=clock.isoformat(), console=console)
    console.print(
        f"    done in {time.perf_counter() - t:.1f}s ({time.process_time() - cpu:.1f}s CPU)"
    )
    console.print(f"    HTML report: {_report_path(data_dir)}", markup=False, soft_wrap=True)


def _monitor_shifted(data_dir: Path, customers: int, products: int, days: int, seed: int) -> None:
    """A smaller shop of the same seed (at most TWIN) shifted for its last SHIFT_DAYS days (prices
    up, fewer sessions, a category collapsing: generator --drift-from), built to feature sources
    and monitored for quality and drift: the alerts a real shift raises, next to the clean report
    above."""
    asked = {"customers": customers, "products": products, "days": days}
    size = {k: min(v, TWIN[k]) for k, v in asked.items()}
    day = max(size["days"] - SHIFT_DAYS, 1)
    clock = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=size["days"], hours=6)
    t = _stage(
        f"monitor a shifted twin ({size['customers']:,} customers, {size['products']:,} products, "
        f"{size['days']} days, same seed, --drift-from {day}) in {data_dir}"
    )
    cpu = time.process_time()
    generator.run(
        out=data_dir / "raw",
        **size,
        seed=seed,
        start=START,
        fmt="parquet",
        quiet=True,
        drift_from=day,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the main ingest's table said it all
        code = ingest.run(raw_dir=data_dir / "raw", data_dir=data_dir, now=_iso(clock))
    if code:
        console.print(f"    ingest of the shifted twin failed (exit {code})")
        return
    features.run(data_dir=data_dir, mode="historical", echo=False)
    monitor.main(data_dir=data_dir, now=clock.isoformat(), checks="quality,drift", console=console)
    console.print(
        f"    done in {time.perf_counter() - t:.1f}s ({time.process_time() - cpu:.1f}s CPU)"
    )
    console.print(f"    HTML report: {_report_path(data_dir)}", markup=False, soft_wrap=True)


def _stream(data_dir: Path, clock: pd.Timestamp, seed: int) -> None:
    """A burst of live events for the busiest customer through a Redis Stream and the stream
    worker into the demo's online store, and their recommendations before and after (the API's
    Scorer on the embedded store). Skipped, with one line, where no Redis can be reached or
    started."""
    customer = example_ids(data_dir)[0][0]
    t = _stage(
        f"stream live events for customer {customer} "
        "(Redis Stream -> stream worker -> online store)"
    )
    reached = demo_stream.reach_redis()
    if isinstance(reached, str):
        console.print(f"    skipped: {reached}", markup=False, highlight=False)
        return
    cpu = time.process_time()
    try:
        store = feast_store.open_store("embedded", data_dir)
        before = demo_stream.recommend(store, data_dir, customer)
        at = demo_stream.burst_clock(data_dir, customer, clock)
        events = demo_stream.burst_events(data_dir, customer, at, seed)
        burst = demo_stream.stream_burst(data_dir, store, events, reached.url)
        after = demo_stream.recommend(store, data_dir, customer)
        row = demo_stream.session_row(store, customer)
    finally:
        reached.close()
    c = burst.counters
    say = [
        f"stream: {reached.what}",
        f"sent {burst.sent} events of one session from {at:%Y-%m-%d %H:%M} UTC (views and "
        f"carts of products they never bought, one naming a product the shop lacks): "
        f"{c.accepted} accepted, {c.quarantined} quarantined ({demo_stream.rules_text(c)}); "
        f"online and committed {burst.online_ms:.0f} ms after the first XADD",
        f"customer_session online: {row['session_events']} events, {row['session_views']} "
        f"views, {row['session_carts']} carts; recently viewed {row['recent_viewed_product_ids']}",
        f"landed for the next `shopfeast daily`: {len(burst.landed)} part(s) in "
        f"{demo_stream.landing.landing_dir(data_dir)}",
        f"recommendations for {customer} (POST /recommendations, k={demo_stream.K}, "
        "product (candidate source, score)):",
        *demo_stream.side_by_side(before, after),
    ]
    for line in say:
        console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"    done in {time.perf_counter() - t:.1f}s ({time.process_time() - cpu:.1f}s CPU)"
    )
