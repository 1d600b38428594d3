"""Evaluation measures: probabilistic classification (churn) and top-k ranking (recommendations).

Ranking metrics follow the usual binary-relevance definitions, written out here because their
edge cases (fewer than k relevant items, none relevant) decide the figures:

- recall@k = |top k ∩ relevant| / |relevant|
- NDCG@k = DCG@k / IDCG@k with gain 1 / log2(rank + 1); IDCG ranks min(|relevant|, k) hits first
- AP@k = sum over hit ranks i <= k of precision@i, divided by min(|relevant|, k); MAP is the mean

Queries with no relevant item are skipped (they say nothing about ranking quality).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def classification_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), log loss, Brier score and the base rate."""
    y_true = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y_true, p)),
        "pr_auc": float(average_precision_score(y_true, p)),
        "log_loss": float(log_loss(y_true, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, p)),
        "positive_rate": float(y_true.mean()),
        "rows": int(len(y_true)),
    }


def calibration(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Observed churn rate against mean predicted probability, per quantile bin."""
    prob_true, prob_pred = calibration_curve(y_true, p, n_bins=bins, strategy="quantile")
    return {
        "mean_predicted": [float(v) for v in prob_pred],
        "observed_rate": [float(v) for v in prob_true],
    }


def weighted_auc(y_true: np.ndarray, rank: np.ndarray, weight: np.ndarray) -> float:
    """ROC-AUC with row weights (ties count half), from each row's dense score rank: the chance
    that a random positive outscores a random negative, each drawn in proportion to its weight."""
    u = int(rank.max()) + 1
    pos = np.bincount(rank, weights=weight * y_true, minlength=u)
    neg = np.bincount(rank, weights=weight * (1 - y_true), minlength=u)
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float((pos * (below + 0.5 * neg)).sum() / total) if total > 0 else float("nan")


def paired_auc_difference(
    y_true: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    groups: np.ndarray | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """ROC-AUC of scores `a` minus scores `b` on the same rows, with a 95% interval from a paired
    bootstrap: whole groups (customers) are drawn with replacement, both models scored on the same
    draw, so a customer's correlated rows move together. Without groups, rows are drawn."""
    y = np.asarray(y_true).astype(float)
    ra = np.unique(np.asarray(a, dtype=float), return_inverse=True)[1]
    rb = np.unique(np.asarray(b, dtype=float), return_inverse=True)[1]
    ids = np.arange(len(y)) if groups is None else pd.factorize(pd.Series(groups))[0]
    n_groups = int(ids.max()) + 1 if len(ids) else 0
    ones = np.ones(len(y))
    point = weighted_auc(y, ra, ones) - weighted_auc(y, rb, ones)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        w = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[ids]
        diffs[i] = weighted_auc(y, ra, w) - weighted_auc(y, rb, w)
    low, high = np.nanquantile(diffs, [0.025, 0.975])
    return {
        "mean": float(point),
        "low": float(low),
        "high": float(high),
        "rows": int(len(y)),
        "groups": n_groups,
    }


def recall_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    gains = [1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(relevant), k)))
    return float(sum(gains) / ideal)


def ap_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    hits, total = 0, 0.0
    for i, item in enumerate(ranked[:k]):
        if item in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(relevant), k)


def paired_difference(
    a: Iterable[tuple[Sequence, set]],
    b: Iterable[tuple[Sequence, set]],
    k: int = 10,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """NDCG@k of ranking `a` minus ranking `b` on the same queries, with a 95% interval from a
    paired bootstrap over queries (queries with no relevant item skipped, as above).

    A mean difference says little on a few hundred queries: per-query NDCG is mostly 0 or large.
    Resampling whole queries keeps each query's two rankings together."""
    diffs = np.array(
        [
            ndcg_at_k(ra, rel, k) - ndcg_at_k(rb, rel_b, k)
            for (ra, rel), (rb, rel_b) in zip(a, b, strict=True)
            if rel
        ]
    )
    if not len(diffs):
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "queries": 0}
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "mean": float(diffs.mean()),
        "low": float(low),
        "high": float(high),
        "queries": int(len(diffs)),
    }


def ranking_metrics(rankings: Iterable[tuple[Sequence, set]], k: int = 10) -> dict[str, float]:
    """Mean recall@k, NDCG@k and MAP@k over (ranked list, relevant set) pairs."""
    rows = [
        (recall_at_k(r, rel, k), ndcg_at_k(r, rel, k), ap_at_k(r, rel, k))
        for r, rel in rankings
        if rel
    ]
    if not rows:
        return {
            f"recall@{k}": float("nan"),
            f"ndcg@{k}": float("nan"),
            f"map@{k}": float("nan"),
            "queries": 0,
        }
    m = pd.DataFrame(rows, columns=["r", "n", "a"]).mean()
    return {
        f"recall@{k}": float(m["r"]),
        f"ndcg@{k}": float(m["n"]),
        f"map@{k}": float(m["a"]),
        "queries": len(rows),
    }
