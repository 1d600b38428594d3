"""Calibrated churn probabilities and the label's threshold chosen by a stated cost.

Calibration maps the chosen model's score to a probability, fitted on its out-of-fold scores
(each scored by a model that never saw the row, as sklearn's `CalibratedClassifierCV(...,
ensemble=False)` does) and applied to the final model refitted on every training row. Which map
(none, Platt's sigmoid on the score's log-odds, or isotonic regression) is chosen on the rolling
origins as well: each map is fitted on the folds before an origin and scored by log loss on the
origin's rows; the lowest mean wins, and "none" stays when nothing beats it.

The threshold: a false negative (a churner not contacted) costs `cost_fn`, a false positive (an
offer to a customer who would have stayed) costs `cost_fp`; the cut minimises their total on the
out-of-fold calibrated scores (for calibrated probabilities the cost-optimal cut is near
cost_fp / (cost_fp + cost_fn); the empirical one is what is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

METHODS = ("none", "platt", "isotonic")
EPS = 1e-6
# Stated costs (in units of one retention offer): missing a churner costs five offers. Change with
# `shopfeast train churn --cost-fn N --cost-fp M`.
COST_FN, COST_FP = 5.0, 1.0


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A fitted map from a score to a probability (module level, so a saved model pickles)."""

    method: str
    model: Any = None

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.method == "none":
            return p
        if self.method == "platt":
            return self.model.predict_proba(_logit(p)[:, None])[:, 1]
        return np.clip(self.model.predict(p), 0.0, 1.0)


def fit(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "none":
        return Calibrator("none")
    if method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p)[:, None], y)
        return Calibrator("platt", lr)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", iso)
    raise ValueError(f"calibration must be one of {METHODS}, not {method!r}")


def choose(oof: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> tuple[str, dict[str, float]]:
    """The map with the lowest mean log loss on each origin's rows, fitted on the origins before
    it (`folds`: the validation rows of each rolling origin, oldest first); with one origin only,
    "none". Returns the method and each method's mean log loss."""
    scores: dict[str, list[float]] = {m: [] for m in METHODS}
    for k in range(1, len(folds)):
        past = np.concatenate(folds[:k])
        now = folds[k]
        if len(set(y[past])) < 2 or len(set(y[now])) < 2:
            continue
        for m in METHODS:
            q = np.clip(fit(m, oof[past], y[past])(oof[now]), EPS, 1 - EPS)
            scores[m].append(float(log_loss(y[now], q, labels=[0, 1])))
    mean = {m: float(np.mean(v)) for m, v in scores.items() if v}
    if not mean:
        return "none", {}
    best = min(METHODS, key=lambda m: (round(mean[m], 12), METHODS.index(m)))
    return best, mean


@dataclass
class CostThreshold:
    threshold: float
    cost_per_row: float  # mean cost of the chosen cut on the rows it was chosen on
    cost_fn: float
    cost_fp: float


def cost_threshold(
    y: np.ndarray, p: np.ndarray, cost_fn: float = COST_FN, cost_fp: float = COST_FP
) -> CostThreshold:
    """The cut t (label 1 when p >= t) minimising cost_fn * FN + cost_fp * FP on (y, p)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # cut below each distinct score
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1 - ys)[last]
    fn = ys.sum() - tp
    cost = np.r_[cost_fn * ys.sum(), cost_fn * fn + cost_fp * fp]  # first: nobody flagged
    cuts = np.r_[np.inf, ps[last]]
    i = int(np.argmin(cost))
    t = float(cuts[i]) if np.isfinite(cuts[i]) else 1.0 + EPS
    return CostThreshold(t, float(cost[i] / max(len(y), 1)), cost_fn, cost_fp)


def cost_at(y: np.ndarray, p: np.ndarray, t: float, cost_fn: float, cost_fp: float) -> float:
    """Mean cost per row of the cut t on (y, p)."""
    y = np.asarray(y).astype(int)
    flag = np.asarray(p) >= t
    return float((cost_fn * ((y == 1) & ~flag).sum() + cost_fp * ((y == 0) & flag).sum()) / len(y))


class CalibratedModel:
    """The saved churn model: the fitted estimator (its Pipeline, BG/NBD step included) and the
    calibration map, with `predict_proba` as sklearn's. `estimator` stays reachable for the
    artifact loader's column checks and for importances."""

    def __init__(self, estimator: Any, calibrator: Calibrator) -> None:
        self.estimator = estimator
        self.calibrator = calibrator
        self.classes_ = np.array([0, 1])

    def predict_proba(self, X) -> np.ndarray:
        q = self.calibrator(self.estimator.predict_proba(X)[:, 1])
        return np.column_stack([1 - q, q])
