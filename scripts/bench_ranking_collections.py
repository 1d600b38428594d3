"""Does "the candidate shares a collection with the customer's recent purchases" help the ranker?

    python -m scripts.bench_ranking_collections [--root data/bench-models] [--seed 7]

On the demo shop (`make demo`'s arguments, built under ROOT/demo by scripts.bench_models when
missing: generate, ingest, features; not measured): the ranking datasets are built once through
`ranking_model_v4` (v3 + collection_match), then two rankers are fitted side by side on the same
rows, queries, seed and parameters: one on v3's columns, one on v4's (v3's plus the collection
columns). Both are evaluated on the same test queries; printed: NDCG@10 / recall@10 / MAP@10 of
each (also with `exclude_purchased`), v4 minus v3 with a 95% paired bootstrap over queries,
how often the feature fires among bought and not-bought candidates, and its gain in v4.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from featurestore.odfv import COLLECTION_OUTPUTS
from featurestore.store import open_store
from scripts.bench_models import build
from training.evaluation import paired_difference
from training.ranking import (
    BASELINES,
    EXCLUDE,
    LABEL,
    QUERY,
    RankingConfig,
    build_datasets,
    evaluate,
    fit_ranker,
    purchase_history,
)

K = 10
# v4's columns beyond v3's: the on-demand view's outputs, and the stored counts Feast may hand
# along with its inputs
COLLECTION_COLUMNS = {*COLLECTION_OUTPUTS, "collection_count", "collection_count_90d"}


def _interval(d: dict) -> str:
    return f"{d['mean']:+.4f} (95% {d['low']:+.4f} to {d['high']:+.4f}, {d['queries']} queries)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("data/bench-models"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--queries",
        default=None,
        help="train,validation,test query counts (default: RankingConfig's 5000,1000,1500)",
    )
    args = p.parse_args()
    env = {**os.environ, "SHOPFEAST_PROGRESS": "off"}
    data = build("demo", args.root.resolve(), env)
    t0 = time.perf_counter()
    config = replace(RankingConfig(), service="ranking_model_v4")
    if args.queries:
        train, valid, test = (int(x) for x in args.queries.split(","))
        config = replace(config, train_queries=train, validation_queries=valid, test_queries=test)
    print(f"queries: {config.train_queries} / {config.validation_queries} / {config.test_queries}")
    fs = open_store("embedded", data)
    d = build_datasets(data, fs, config, args.seed, say=print)
    v4 = d.columns
    v3 = [c for c in v4 if c not in COLLECTION_COLUMNS]
    added = [c for c in v4 if c in COLLECTION_COLUMNS]
    print(f"datasets: {time.perf_counter() - t0:.0f}s; v3 {len(v3)} columns, v4 adds {added}")
    test_q = d.queries[d.queries["split"] == "test"]
    history = purchase_history(data, test_q)
    result: dict = {"columns": {"v3": v3, "v4": v4}}
    lists = {}
    for name, cols in (("v3", v3), ("v4", v4)):
        t = time.perf_counter()
        model = fit_ranker(d.train, d.valid, cols, config.params, args.seed)
        metrics, ranked = evaluate(model, cols, d.test, test_q, d.inputs, history)
        lists[name] = ranked
        result[name] = {
            "as_is": metrics["ranker"],
            EXCLUDE: metrics[EXCLUDE]["ranker"],
            "best_iteration": int(model.best_iteration),
            "seconds": round(time.perf_counter() - t, 1),
        }
        if name == "v4":
            gain = model.get_booster().get_score(importance_type="gain")
            total = sum(gain.values())
            result["v4"]["gain_share"] = {c: gain.get(c, 0.0) / total for c in added}
            result["baselines"] = {b: metrics[b] for b in BASELINES}
    result["v4_minus_v3"] = paired_difference(lists["v4"]["ranker"], lists["v3"]["ranker"], K)
    fired = {}
    for split, rows in (("train", d.train), ("test", d.test)):
        s = rows["shares_collection"].to_numpy(float)
        y = rows[LABEL].to_numpy()
        fired[split] = {
            "bought": float(np.nanmean(s[y == 1])),
            "not_bought": float(np.nanmean(s[y == 0])),
            "rows": int(len(rows)),
            "queries": int(rows[QUERY].nunique()),
        }
    result["shares_collection_rate"] = fired
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["cpu_s"] = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    for name in ("v3", "v4"):
        r, m = result[name], result[name]["as_is"]
        print(
            f"{name}: NDCG@10 {m[f'ndcg@{K}']:.4f}, recall@10 {m[f'recall@{K}']:.4f}"
            f", MAP@10 {m[f'map@{K}']:.4f}; with exclude_purchased NDCG@10 "
            f"{r[EXCLUDE][f'ndcg@{K}']:.4f} ({r['best_iteration']} trees, {r['seconds']}s)"
        )
    print(f"v4 - v3 NDCG@10, as is: {_interval(result['v4_minus_v3'])}")
    print(f"v4 gain share of the collection columns: {result['v4']['gain_share']}")
    print(f"shares_collection = 1 among candidates: {fired}")
    print(f"{result['cpu_s']:.0f} s CPU, peak RSS {result['peak_rss_gib']:.2f} GiB")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
