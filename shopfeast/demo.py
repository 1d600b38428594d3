"""`make demo`: the whole job on a generated shop, with one summary at the end."""

from __future__ import annotations

import time
from pathlib import Path

from featurestore import store as feast_store
from pipelines import ingest
from pipelines import run as features
from shopconfig.progress import console as results_console
from shopfeast import generator
from shopfeast.api_howto import lines
from training import churn, ranking

console = results_console()


def _stage(name: str):
    console.print(f"[bold]==> {name}[/bold]")
    return time.perf_counter()


def run(data_dir: Path, customers: int, products: int, days: int, seed: int) -> int:

    raw = data_dir / "raw"
    t = _stage(f"generate a demo shop into {raw}")
    generator.run(
        out=raw,
        customers=customers,
        products=products,
        days=days,
        seed=seed,
        corrupt_fraction=0.01,
        start="2025-01-01",
        fmt="parquet",
    )
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    t = _stage(f"ingest into {data_dir}")
    code = ingest.run(raw_dir=raw, data_dir=data_dir, now=None)
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
