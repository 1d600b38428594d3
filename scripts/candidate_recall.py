"""How much of what customers bought the candidates hold: per source, by pool size, and the cost.

    python -m scripts.candidate_recall DATA_DIR [--test-queries N] [--seed 7] \
        [--variant NAME:key=value,...] ...

On a store built by `shopfeast features`, the ranker's test queries (`purchase_queries` with the
seed `train ranking` uses: the same 1,500 queries its card reports on, or `--test-queries` of
them) and their candidate inputs read as of each query through the candidate services, exactly
as training reads them; then, for each variant of `API_CONFIG`, every query's candidates from
`training.candidates.generate_columns` (what the API calls through `generate_rows`):

- recall: the share of a query's bought products among its candidates, averaged over queries (the
  card's "candidates hold"), and the same for the first 50, 100, 150, ... candidates (the list in
  priority order, so a prefix is the pool a smaller `max_candidates` gives);
- per source: candidates offered per query, and the share of the bought products it found (the
  shares add up to the recall);
- the time of one `generate_columns` call (the candidates' own cost in serving, inputs in hand),
  with `--timing`: the variants alternate query by query (old and new side by side, the same
  queries, catalogs warmed first as serving/catalog.py warms them), median and p99 per variant.

A variant is `API_CONFIG` with fields replaced (`name:copurchase=60,category_fit=120`); the keys
`fit_prior`, `fit_width`, `fit_floor` set training.candidates' FIT_* constants for that variant,
and `uncached=1` empties the catalog's category_fit cache before each timed call (what every call
cost before the cache).
`--variant main` is the list before the `category_fit` source (category_fit=0 and the pool split
of main at 0dc23ea).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore.store import open_store
from pipelines.storage import read_clean
from training import candidates
from training.ranking import QUERY, RankingConfig, candidate_inputs, purchase_queries

PREFIXES = (25, 50, 100, 150, 200, 300, 400, 500)
FIT_KEYS = {"fit_prior": "FIT_PRIOR", "fit_width": "FIT_WIDTH", "fit_floor": "FIT_FLOOR"}
UNCACHED = "uncached"  # a variant key: the catalog's category_fit cache emptied before each call
# main at 0dc23ea: API_CONFIG before the category_fit source
NAMED = {
    "main": "copurchase=100,category_popular=40,popular=200,random=0,max_candidates=200,"
    "history=10,frequent=50,session=20,category_fit=0",
    "api": "",
}


def parse_variant(spec: str) -> tuple[str, candidates.CandidateConfig, dict[str, float]]:
    name, _, body = spec.partition(":")
    body = body or NAMED.get(name, "")
    known = {f.name: f.type for f in fields(candidates.CandidateConfig)}
    changes: dict[str, int] = {}
    consts: dict[str, float] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key in FIT_KEYS:
            consts[FIT_KEYS[key]] = float(value)
        elif key == UNCACHED:
            consts[UNCACHED] = float(value)
        elif key in known:
            changes[key] = int(value)
        else:
            raise SystemExit(f"unknown key {key!r} in {spec!r}")
    return name, replace(candidates.API_CONFIG, **changes), consts


def measure(queries: pd.DataFrame, inputs, config, consts: dict[str, float]) -> dict:
    consts = {k: v for k, v in consts.items() if k != UNCACHED}
    saved = {k: getattr(candidates, k) for k in consts}
    for k, v in consts.items():
        setattr(candidates, k, v)
    try:
        return _measure(queries, inputs, config)
    finally:
        for k, v in saved.items():
            setattr(candidates, k, v)


def _measure(queries: pd.DataFrame, inputs, config) -> dict:
    days = queries["event_timestamp"].dt.floor("D")
    for catalog in inputs.catalogs.values():  # made once per catalog, as serving/catalog.py does
        catalog.warm()
    recall, sizes = [], []
    prefix = {n: [] for n in PREFIXES if n <= config.max_candidates}
    offered: dict[str, int] = {}
    found: dict[str, float] = {}
    for query, day, relevant in zip(queries[QUERY], days, queries["relevant"], strict=True):
        recent = inputs.recent[query]
        ids, srcs, _ = candidates.generate_columns(
            recent,
            inputs.neighbours[day],
            inputs.favourite[query],
            inputs.catalogs[day],
            rng=None,
            config=config,
            frequent=inputs.frequent.get(query, ()),
        )
        rel = set(relevant)
        hit = [pid in rel for pid in ids]
        recall.append(sum(hit) / len(rel))
        sizes.append(len(ids))
        for n in prefix:
            prefix[n].append(sum(hit[:n]) / len(rel))
        for src, h in zip(srcs, hit, strict=True):
            offered[src] = offered.get(src, 0) + 1
            found[src] = found.get(src, 0.0) + h / len(rel)
    q = len(queries)
    return {
        "recall": float(np.mean(recall)),
        "pool": float(np.mean(sizes)),
        "prefix": {n: float(np.mean(v)) for n, v in prefix.items()},
        "sources": {s: (offered[s] / q, found.get(s, 0.0) / q) for s in offered},
    }


def timing(queries: pd.DataFrame, inputs, variants: list, rounds: int) -> list[np.ndarray]:
    """Seconds of each `generate_columns` call per variant, the variants alternating query by
    query (`rounds` passes over the queries, the order of the variants reversed every other)."""
    days = queries["event_timestamp"].dt.floor("D")
    for catalog in inputs.catalogs.values():
        catalog.warm()
    out: list[list[float]] = [[] for _ in variants]
    for r in range(rounds):
        order = list(enumerate(variants))[:: 1 if r % 2 == 0 else -1]
        for query, day in zip(queries[QUERY], days, strict=True):
            args = (inputs.recent[query], inputs.neighbours[day], inputs.favourite[query])
            catalog, frequent = inputs.catalogs[day], inputs.frequent.get(query, ())
            for i, (_, config, consts) in order:
                for k, v in consts.items():
                    if k == UNCACHED:
                        if v:
                            catalog.fit_cache.clear()  # the cost of a catalog made for one call
                    else:
                        setattr(candidates, k, v)
                t0 = time.perf_counter()
                candidates.generate_columns(*args, catalog, None, config, frequent=frequent)
                out[i].append(time.perf_counter() - t0)
    return [np.asarray(v) for v in out]


def report(name: str, config, m: dict) -> str:
    lines = [
        f"{name}: {config}",
        f"  candidates hold {m['recall']:.1%} (pool {m['pool']:.1f} per query)",
        "  by pool size: " + ", ".join(f"{n} {v:.1%}" for n, v in m["prefix"].items()),
    ]
    for src, (n, share) in sorted(m["sources"].items(), key=lambda kv: -kv[1][1]):
        lines.append(f"  {src:<18} {n:6.1f} per query  finds {share:.1%}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--test-queries", type=int, default=RankingConfig().test_queries)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--variant", action="append", default=[])
    p.add_argument("--timing", type=int, default=0, help="passes of the alternating timing")
    args = p.parse_args()
    t0 = time.perf_counter()
    config = RankingConfig(test_queries=args.test_queries)
    queries = purchase_queries(args.data_dir, config, args.seed)
    queries = queries[queries["split"] == "test"].reset_index(drop=True)
    products = read_clean(args.data_dir, "products", ["product_id"])["product_id"].astype(str)
    fs = open_store("embedded", args.data_dir)
    inputs = candidate_inputs(fs, queries, sorted(products.unique()))
    print(f"{len(queries):,} test queries, inputs read in {time.perf_counter() - t0:.1f}s")
    variants = [parse_variant(spec) for spec in args.variant or ["main", "api"]]
    for name, cfg, consts in variants:
        m = measure(queries, inputs, cfg, consts)
        print(report(name + (f" {consts}" if consts else ""), cfg, m), flush=True)
    if args.timing:
        defaults = {k: getattr(candidates, k) for k in FIT_KEYS.values()}
        full = [(n, c, {**defaults, **k}) for n, c, k in variants]
        for (name, _, _), sec in zip(
            variants, timing(queries, inputs, full, args.timing), strict=True
        ):
            print(
                f"{name}: generate_columns {1000 * np.median(sec):.3f} ms median, "
                f"{1000 * np.quantile(sec, 0.99):.3f} ms p99, {1000 * sec.mean():.3f} ms mean "
                f"({len(sec):,} calls)"
            )
        for k, v in defaults.items():
            setattr(candidates, k, v)


if __name__ == "__main__":
    main()
