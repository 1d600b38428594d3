"""What each group of churn features adds: one dataset read, one learner refitted per column set.

    python -m scripts.bench_churn_features --data-dir DIR [--learner xgboost] [--out FILE]

Reads the `churn_model_v2` dataset of a built store once (labels and point-in-time features, as
`shopfeast train churn` does), then, for the plain time split and the customer-time split, fits
one learner (chosen settings and early stopping on the same rolling-origin folds as training) on:

- cumulative sets: v1's columns; + inter-purchase gaps (repeat orders, mean / spread / last gap,
  days since the last order over the usual gap); + trends (180 days, the quarter before, 30 vs 90
  days, quarter vs quarter); + first-order age; + the BG/NBD step (P(alive), expected orders):
  the last is v2 entire;
- under the time split also v2 minus each group,

and prints each one's fold and test ROC-AUC and its test ROC-AUC minus the log-RFM baseline with
the 95% paired-bootstrap interval over customers (training.evaluation.paired_auc_difference).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from featurestore.odfv import CYCLE_OUTPUTS
from pipelines.families import customer_rhythm
from training import churn, churn_models
from training.evaluation import paired_auc_difference
from training.labels import ENTITY_KEY, LABEL, TIMESTAMP
from training.matrix import model_matrix
from training.split import fit_test_split

GAPS = (
    "repeat_orders",
    "mean_gap_days",
    "gap_std_days",
    "last_gap_days",
    "max_gap_days",
    "recency_gap_ratio",
)
AGE = ("days_since_first_order",)
RHYTHM = {f.name for f in customer_rhythm.SOURCE.features} | set(CYCLE_OUTPUTS)
TRENDS = tuple(sorted(RHYTHM - set(GAPS) - set(AGE) - {"first_order_ts"}))


def column_sets(columns: list[str], time_split: bool) -> list[tuple[str, list[str], bool]]:
    """(name, columns, with the BG/NBD step) for every set measured."""

    def keep(*groups: tuple[str, ...]) -> list[str]:
        chosen = {c for g in groups for c in g}
        return [c for c in columns if c not in RHYTHM or c in chosen]

    sets = [
        ("v1", keep(), False),
        ("v1 + gaps", keep(GAPS), False),
        ("v1 + gaps + trends", keep(GAPS, TRENDS), False),
        ("v1 + gaps + trends + first-order age", keep(GAPS, TRENDS, AGE), False),
        ("v2 (+ BG/NBD step)", keep(GAPS, TRENDS, AGE), True),
    ]
    if time_split:
        sets += [
            ("v2 minus gaps", keep(TRENDS, AGE, ("repeat_orders",)), True),
            ("v2 minus trends", keep(GAPS, AGE), True),
            ("v2 minus the BG/NBD step", keep(GAPS, TRENDS, AGE), False),
            ("v2 minus gaps and BG/NBD", keep(TRENDS, AGE), False),
        ]
    return sets


def measure(ds: churn.Dataset, learner_name: str, seed: int) -> list[dict]:
    f = ds.frame
    train, test = f[f["split"] == "train"], f[f["split"] == "test"]
    X = model_matrix(train, ds.columns).reset_index(drop=True)
    Xt = model_matrix(test, ds.columns)
    y, yt = train[LABEL].to_numpy().astype(int), test[LABEL].to_numpy().astype(int)
    groups = test[ENTITY_KEY].to_numpy()
    folds = churn.folds_of(ds, train.reset_index(drop=True), seed)
    learners = {learner.name: learner for learner in churn_models.LEARNERS}
    rfm = churn.rfm_columns(ds.columns)
    base_sel = churn_models.select(learners[churn.BASELINE], X[rfm], y, folds, seed)
    base = churn_models.fit_final(learners[churn.BASELINE], base_sel, X[rfm], y, seed)
    base_p = base.predict(Xt)
    out = []
    for name, cols, with_step in column_sets(ds.columns, ds.split == "time"):
        t0 = time.process_time()
        learner = learners[learner_name]
        if with_step:
            learner = churn_models.with_btyd(learner, ds.horizon_days)
        sel = churn_models.select(learner, X[cols], y, folds, seed)
        fitted = churn_models.fit_final(learner, sel, X[cols], y, seed)
        p = fitted.predict(Xt)
        d = paired_auc_difference(yt, p, base_p, groups=groups, seed=seed)
        row = {
            "split": ds.split,
            "set": name,
            "columns": len(cols) + (3 if with_step else 0),
            "folds_auc": sel.mean_auc,
            "test_auc": _auc(yt, p),
            "minus_rfm": d,
            "cpu_s": round(time.process_time() - t0, 1),
        }
        out.append(row)
        print(
            f"  {ds.split:<13} {name:<40} {row['columns']:>3} cols  folds {sel.mean_auc:.4f}  "
            f"test {row['test_auc']:.4f}  minus log-RFM {d['mean']:+.4f} "
            f"({d['low']:+.4f} to {d['high']:+.4f})  {row['cpu_s']:.0f} s CPU",
            flush=True,
        )
    print(f"  {ds.split:<13} log-RFM baseline: test {_auc(yt, base_p):.4f}", flush=True)
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--learner", default="xgboost", choices=("xgboost", "logistic_regression"))
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    t0 = time.perf_counter()
    ds = churn.build_dataset(
        args.data_dir, args.horizon_days, split="time", seed=args.seed, service="churn_model_v2"
    )
    print(
        f"{args.data_dir}: {len(ds.frame):,} rows, {len(ds.columns)} columns, read in "
        f"{time.perf_counter() - t0:.0f} s; learner {args.learner}",
        flush=True,
    )
    results = measure(ds, args.learner, args.seed)
    f = ds.frame.copy()
    f["split"] = fit_test_split(f[TIMESTAMP], f[ENTITY_KEY], args.seed).to_numpy()
    results += measure(replace(ds, frame=f, split="customer-time"), args.learner, args.seed)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
