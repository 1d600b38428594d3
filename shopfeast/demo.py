"""`make demo`: the whole job on a generated shop, with one summary at the end."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

console = Console()


def _stage(name: str):
    console.print(f"[bold]==> {name}[/bold]")
    return time.perf_counter()


def run(data_dir: Path, customers: int, products: int, days: int, seed: int) -> int:
    from pipelines import ingest
    from shopfeast import generator

    raw = data_dir / "raw"
    t = _stage(f"generate a demo shop into {raw}")
    generator.run(out=raw, customers=customers, products=products, days=days, seed=seed,
                  corrupt_fraction=0.01, start="2025-01-01", fmt="parquet")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    t = _stage(f"ingest into {data_dir}")
    code = ingest.run(raw_dir=raw, data_dir=data_dir, now=None)
    if code:
        return code
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    from pipelines import run as features

    t = _stage(f"build feature sources into {data_dir / 'features'}")
    outcomes = features.run(data_dir=data_dir, mode="incremental", echo=False)
    for o in outcomes:
        console.print(f"    {o.line()}")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")

    _train(data_dir, seed)
    _api_howto(data_dir)
    return 0


def _train(data_dir: Path, seed: int) -> None:
    """Train both models on the store and print their test figures next to the baselines."""
    from training import churn, ranking

    t = _stage("train the churn model (churn_model_v1)")
    card = churn.run(data_dir=data_dir, seed=seed, echo=False)
    for line in churn.summary(card).splitlines():
        console.print(f"    {line}")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")
    t = _stage("train the recommendation ranker (ranking_model_v1)")
    card = ranking.run(data_dir=data_dir, seed=seed, echo=False)
    for line in ranking.summary(card).splitlines():
        console.print(f"    {line}")
    console.print(f"    done in {time.perf_counter() - t:.1f}s")


def _api_howto(data_dir: Path) -> None:
    """How to start the API on what the demo built, and one call of each endpoint."""
    from shopfeast.api_howto import lines

    _stage("the API")
    for line in lines(data_dir):
        console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
