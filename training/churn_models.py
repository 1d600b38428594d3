"""The churn model family, fitted on plain matrices: no Feast, no files, testable on a toy frame.

Three learners, one baseline; `select` scores each setting on rolling-origin folds
(training/churn.py builds them) and `fit_final` refits the chosen setting on every training row;
`fit_learners` does both for every learner in one pool of worker processes:
- logistic regression, imputed and scaled inside one sklearn Pipeline (so serving imputes and
  scales exactly as training did), regularisation chosen on the folds;
- random forest (imputed; trees do not need scaling);
- XGBoost, which handles missing values itself, with early stopping on each fold's log loss;
- `with_btyd` puts a BG/NBD step (training/btyd.py) in front of a learner: it fits the four
  parameters on the rows the learner fits on (each fold's, then every training row) and adds
  P(alive) and the expected orders over the horizon as two more columns, in the saved Pipeline;
- the RFM baseline (`rfm_baseline` in LEARNERS): a logistic regression on four numbers, log
  recency, log frequency, log monetary value and log orders in 90 days. The logs matter: recency
  and spend are heavy-tailed, and a linear model on their raw values is a weaker baseline than the
  simple model a data scientist would actually write, and a weak baseline overstates any model's
  margin (docs/training.md has both on Complete Journey).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from xgboost import DMatrix, XGBClassifier

from training.btyd import BGNBDFeatures

# One thread for XGBoost: on a few thousand rows a boosting round is too short to share, and
# OpenMP threads spin while they wait for each other. On the demo shop's churn folds (customer-
# time, 6,792 rows) at machine load 15, two threads took 67 s CPU (284 s wall) to select and
# one 2.2 s (9 s wall), with the same rounds and scores.
N_JOBS = 1


@dataclass
class Fitted:
    name: str
    estimator: Any
    columns: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    calibrator: Any = None  # training.calibration.Calibrator, set on the chosen model

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        p = self.estimator.predict_proba(frame[self.columns])[:, 1]
        return p if self.calibrator is None else self.calibrator(p)

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The score before calibration."""
        return self.estimator.predict_proba(frame[self.columns])[:, 1]


def log1p_nonnegative(X):
    """log(1 + x) of counts, days and money, negatives (a refund larger than the spend) as 0.

    A module-level function, so a saved baseline pickles."""
    return np.log1p(np.clip(np.asarray(X, dtype=float), 0.0, None))


BTYD_STEP = "btyd"


def _model_and_columns(fitted: Fitted) -> tuple[Any, list[str]]:
    """The final model and the names of the columns it sees (the BG/NBD step adds two)."""
    est, columns = fitted.estimator, list(fitted.columns)
    if isinstance(est, Pipeline) and BTYD_STEP in est.named_steps:
        columns = est.named_steps[BTYD_STEP].output_names(columns)
        est = est.named_steps["model"]
    return (est.named_steps["model"] if isinstance(est, Pipeline) else est), columns


def btyd_parameters(fitted: Fitted) -> dict | None:
    """The BG/NBD step's fitted parameters (for the card), or None without one."""
    est = fitted.estimator
    if not (isinstance(est, Pipeline) and BTYD_STEP in est.named_steps):
        return None
    step = est.named_steps[BTYD_STEP]
    return {
        **step.params_.as_dict(),
        "mean_log_likelihood": step.mean_log_likelihood_,
        "fit_rows": step.fit_rows_,
        "inputs": list(step.inputs),
        "outputs": list(step.outputs),
        "time_unit": "week",
    }


def importance_kind(fitted: Fitted) -> str:
    model, _ = _model_and_columns(fitted)
    if isinstance(model, XGBClassifier):
        return "gain"
    return (
        "impurity decrease" if hasattr(model, "feature_importances_") else "|coefficient|, scaled"
    )


def importances(fitted: Fitted) -> pd.Series:
    """Per-column importance: gain for XGBoost, impurity for forests, |coef| of the scaled LR."""
    model, columns = _model_and_columns(fitted)
    if hasattr(model, "feature_importances_"):
        values = model.feature_importances_
    else:
        values = np.abs(model.coef_[0])
    return pd.Series(values, index=columns, name="importance").sort_values(ascending=False)


# --- selection on folds --------------------------------------------------------------------------

C_GRID = (0.01, 0.1, 1.0, 10.0)
# Issue 18 (docs/training.md, "train churn on 75k rows"): 300 trees on every row and XGBoost at
# learning rate 0.03 (about 1,800 rounds a fold) took 330 s and 217 s of the 596 s `train churn
# --split time` needed on 74,627 rows. Each tree now draws a quarter of the rows (sklearn's
# bootstrap `max_samples`) and there are 100 of them; XGBoost learns at 0.1 and stops after 50
# rounds without gain (about 500 rounds): 92 s in all. On that shop and the demo's the same model
# (XGBoost) is chosen; its test ROC-AUC moved by -0.0014 and -0.0031 there (time and
# customer-time splits; paired intervals short of 0) and by -0.005 to +0.001 on the demo's; the
# forest's by -0.004 to +0.007.
FOREST = {
    "n_estimators": 100,
    "max_samples": 0.25,
    "min_samples_leaf": 5,
    "max_features": "sqrt",
    "class_weight": None,
}
BOOSTING = {
    "n_estimators": 2000,
    "learning_rate": 0.1,
    "max_depth": 4,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "reg_lambda": 1.0,
    "early_stopping_rounds": 50,
}


def _linear(params: dict, seed: int, log: bool = False) -> Pipeline:
    steps = [("log1p", FunctionTransformer(log1p_nonnegative, feature_names_out="one-to-one"))]
    return Pipeline(
        (steps if log else [])
        + [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=params["C"], max_iter=2000, random_state=seed)),
        ]
    )


def _forest(params: dict, seed: int) -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("model", RandomForestClassifier(**params, random_state=seed, n_jobs=1)),
        ]
    )


def _boosting(params: dict, seed: int) -> XGBClassifier:
    return XGBClassifier(
        **params,
        objective="binary:logistic",
        eval_metric="logloss",
        tree_method="hist",
        random_state=seed,
        n_jobs=N_JOBS,
    )


@dataclass(frozen=True)
class Learner:
    """A model family: the settings tried, how to build one, whether it stops early."""

    name: str
    grid: tuple[dict, ...]
    build: Any  # (params, seed) -> an unfitted estimator
    early_stopping: bool = False
    rfm_only: bool = False  # the baseline reads only the RFM columns


LEARNERS = (
    Learner(
        "logistic_regression",
        tuple({"C": c, "imputer": "median", "scaler": "standard"} for c in C_GRID),
        _linear,
    ),
    Learner("random_forest", (FOREST,), _forest),
    Learner("xgboost", (BOOSTING,), _boosting, early_stopping=True),
    Learner(
        "rfm_baseline",
        tuple(
            {"C": c, "transform": "log1p", "imputer": "median", "scaler": "standard"}
            for c in C_GRID
        ),
        lambda params, seed: _linear(params, seed, log=True),
        rfm_only=True,
    ),
)


def with_btyd(learner: Learner, horizon_days: int) -> Learner:
    """`learner` with and without a BG/NBD step (Pipeline([("btyd", BGNBDFeatures), ("model",
    ...)])): each setting is tried both ways (`"btyd": True/False`), so the rolling-origin folds
    decide whether the step is used, like any other setting."""
    inner = learner.build

    def build(params: dict, seed: int) -> Any:
        rest = {k: v for k, v in params.items() if k != BTYD_STEP}
        if not params.get(BTYD_STEP, True):
            return inner(rest, seed)
        return Pipeline([(BTYD_STEP, BGNBDFeatures(horizon_days)), ("model", inner(rest, seed))])

    grid = tuple({**p, BTYD_STEP: use} for use in (True, False) for p in learner.grid)
    return replace(learner, build=build, grid=grid)


@dataclass
class Fold:
    """One rolling-origin fold: fit on `train`, score on `valid` (row positions in the frame)."""

    origin: pd.Timestamp
    train: np.ndarray
    valid: np.ndarray


@dataclass
class Selection:
    """What the folds chose for one learner."""

    params: dict
    fold_auc: list[float]  # of the chosen setting, one per fold
    mean_auc: float
    oof: np.ndarray  # out-of-fold probabilities of the chosen setting, NaN outside validation
    tried: list[dict]  # every setting with its mean fold ROC-AUC


# Fold fits run in this many worker processes (joblib's loky: each worker limits its BLAS and
# OpenMP threads to its share of the cores, and XGBoost keeps N_JOBS = 1, so no thread spins);
# the fits are independent and seeded, so the selection is the same as one process's
# (tests/training/test_training_models.py). The CPU seconds stay; the wall time nearly halves on
# a quiet 2-core machine (docs/training.md, issue 18 on 75k rows).
FOLD_JOBS = 2


def _head_and_model(est: Any) -> tuple[list[Any], Any]:
    """The transformers a (possibly nested) Pipeline runs before its final estimator, in the
    order it runs them, and that estimator (an estimator alone: no transformers)."""
    if not isinstance(est, Pipeline):
        return [], est
    head = []
    for _, step in est.steps[:-1]:
        inner, last = _head_and_model(step)
        head += [*inner, last]
    inner, model = _head_and_model(est.steps[-1][1])
    return head + inner, model


def _same_head(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        type(s) is type(t) and s.get_params(deep=False) == t.get_params(deep=False)
        for s, t in zip(a, b, strict=True)
    )


def _head_groups(learner: Learner, seed: int) -> list[list[int]]:
    """The learner's settings (by position in its grid) grouped by the transformers in front
    of the model: a group's imputer, scaler and BG/NBD step are fitted once per fold and shared
    by its settings (the logistic regression's C grid), which changes no score, as each setting
    fitted alone runs the same transformers on the same rows."""
    groups: list[tuple[list[Any], list[int]]] = []
    for i, params in enumerate(learner.grid):
        head, _ = _head_and_model(learner.build(params, seed))
        for seen, members in groups:
            if _same_head(seen, head):
                members.append(i)
                break
        else:
            groups.append((head, [i]))
    return [members for _, members in groups]


def _fold_fits(
    learner: Learner,
    settings: list[dict],
    X: pd.DataFrame,
    y: np.ndarray,
    fold: Fold,
    seed: int,
) -> list[tuple[np.ndarray, int | None]]:
    """Settings sharing their transformers (`_head_groups`), fitted on one fold's train rows:
    the transformers once, then each setting's model on what they give. For each setting its
    validation scores and, for a learner that stops early (on the validation rows), the rounds
    it needed."""
    head, _ = _head_and_model(learner.build(settings[0], seed))
    fit_X, valid_X, fit_y = X.iloc[fold.train], X.iloc[fold.valid], y[fold.train]
    for step in head:  # as Pipeline.fit and Pipeline.predict_proba run them
        fit_X = step.fit_transform(fit_X, fit_y)
        valid_X = step.transform(valid_X)
    out = []
    for params in settings:
        _, model = _head_and_model(learner.build(params, seed))
        rounds = None
        if learner.early_stopping:
            if type(model) is XGBClassifier:
                model = _PlainValidation(**model.get_params())
            model.fit(fit_X, fit_y, eval_set=[(valid_X, y[fold.valid])], verbose=False)
            rounds = int(model.best_iteration) + 1
        else:
            model.fit(fit_X, fit_y)
        out.append((model.predict_proba(valid_X)[:, 1], rounds))
    return out


class _PlainValidation(XGBClassifier):
    """XGBClassifier with its early-stopping validation rows in a plain DMatrix, for the fold
    fits only (never saved). XGBoost's scikit-learn API puts them in a QuantileDMatrix (bins of
    the training rows' cuts), and scoring each round's tree from that took as long as fitting
    it: 8-11 ms a round on a 75k-shop fold's 10,178 validation rows, half of each fit (issue
    18). The model is the same (the validation rows only stop it), and so is every round's
    validation log loss: a hist tree splits at cut values, so the raw values fall on the same
    side of every split as their bins (tests/training/test_training_models.py)."""

    def _create_dmatrix(self, ref, **kwargs):  # XGBoost's hook for each matrix it builds
        if ref is None:  # the training rows: as XGBClassifier builds them
            return super()._create_dmatrix(ref, **kwargs)
        return DMatrix(**kwargs, nthread=self.n_jobs)


def select(
    learner: Learner,
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    seed: int,
    jobs: int | None = None,
) -> Selection:
    """Every setting of `learner` fitted on each fold's train rows, scored by ROC-AUC on its
    validation rows; the best mean wins. A learner that stops early stops on each fold's
    validation rows and keeps the mean number of rounds it needed. The fits run in `jobs`
    processes (FOLD_JOBS by default; 1: in this one)."""
    return fit_learners([(learner, X)], y, folds, seed, jobs, final=False).selection[learner.name]


def _selection(learner: Learner, folds: list[Fold], y: np.ndarray, done: dict) -> Selection:
    """The best setting by mean fold ROC-AUC, from each (setting, fold)'s scores and rounds."""
    best: Selection | None = None
    tried = []
    for i, params in enumerate(learner.grid):
        aucs, rounds = [], []
        oof = np.full(len(y), np.nan)
        for k, f in enumerate(folds):
            p, r = done[i, k]
            oof[f.valid] = p
            aucs.append(float(roc_auc_score(y[f.valid], p)))
            if r is not None:
                rounds.append(r)
        chosen = dict(params)
        if learner.early_stopping:
            chosen.pop("early_stopping_rounds", None)
            chosen["n_estimators"] = max(1, int(round(float(np.mean(rounds)))))
            chosen["fold_rounds"] = rounds
        mean = float(np.mean(aucs))
        tried.append({**params, "mean_auc": mean})
        if best is None or mean > best.mean_auc:
            best = Selection(chosen, aucs, mean, oof, tried)
    best.tried = tried
    return best


@dataclass
class Fits:
    """What `fit_learners` gives: each learner's final model and selection, and what its worker
    processes reported (`{}` when everything ran in this process)."""

    fitted: dict[str, Fitted]
    selection: dict[str, Selection]
    workers: dict


def fit_learners(
    learners: list[tuple[Learner, pd.DataFrame]],
    y: np.ndarray,
    folds: list[Fold],
    seed: int,
    jobs: int | None = None,
    final: bool = True,
) -> Fits:
    """`select` for each (learner, its matrix), then (`final`) `fit_final` of each choice, all
    in one pool of `jobs` worker processes (FOLD_JOBS by default; 1: in this one): every
    learner's fold fits are handed out together, the slowest learners' first, so no worker
    waits for another learner's last fold; then the final fits, side by side. The fits are
    seeded and independent, so the result is what one process gives."""
    jobs = FOLD_JOBS if jobs is None else jobs
    tasks, keys = [], []
    for learner, X in learners:
        for members in _head_groups(learner, seed):
            settings = [learner.grid[i] for i in members]
            for k, f in enumerate(folds):
                tasks.append((_fold_fits, (learner, settings, X, y, f, seed)))
                keys.append((learner.name, members, k))
    order = sorted(range(len(tasks)), key=lambda t: _TASK_ORDER.get(keys[t][0], 0))
    fitted: dict[str, Fitted] = {}
    with _Pool(jobs, len(tasks)) as pool:
        results = dict(zip(order, pool.run([tasks[t] for t in order]), strict=True))
        done: dict[str, dict] = {learner.name: {} for learner, _ in learners}
        for t, (name, members, k) in enumerate(keys):
            for i, scores in zip(members, results[t], strict=True):
                done[name][i, k] = scores
        selection = {
            learner.name: _selection(learner, folds, y, done[learner.name])
            for learner, _ in learners
        }
        if final:
            finals = sorted(learners, key=lambda item: _TASK_ORDER.get(item[0].name, 0))
            calls = [(fit_final, (lr, selection[lr.name], X, y, seed)) for lr, X in finals]
            fitted = {m.name: m for m in pool.run(calls)}
            fitted = {learner.name: fitted[learner.name] for learner, _ in learners}
    return Fits(fitted, selection, pool.usage())


# The order fits are handed to the workers in: the slowest first (issue 18's 75k-row shop:
# an XGBoost or forest fold fit takes several times a logistic regression's).
_TASK_ORDER = {"xgboost": -3, "random_forest": -2, "logistic_regression": -1}


def _measured(fn: Any, args: tuple) -> tuple[Any, int, int, float]:
    """fn(*args) in a worker, with the worker's pid, its peak RSS so far (bytes; Linux reports
    KiB) and the call's CPU seconds."""
    began = time.process_time()
    out = fn(*args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out, os.getpid(), peak, time.process_time() - began


class _Pool:
    """`with _Pool(jobs, n) as pool: pool.run([(function, args), ...])`: the calls' results in
    order, in `jobs` loky worker processes kept for every run of the block (one process: here,
    in order); `usage()` sums what the workers reported."""

    def __init__(self, jobs: int, tasks: int) -> None:
        self.parallel = (
            Parallel(n_jobs=min(jobs, tasks), backend="loky") if jobs > 1 and tasks > 1 else None
        )
        self.peaks: dict[int, int] = {}
        self.cpu = 0.0

    def __enter__(self) -> _Pool:
        if self.parallel is not None:
            self.parallel.__enter__()
        return self

    def run(self, calls: list[tuple[Any, tuple]]) -> list[Any]:
        if self.parallel is None:
            return [fn(*args) for fn, args in calls]
        out = []
        for result, pid, peak, cpu in self.parallel(
            delayed(_measured)(fn, args) for fn, args in calls
        ):
            out.append(result)
            self.peaks[pid] = max(peak, self.peaks.get(pid, 0))
            self.cpu += cpu
        return out

    def usage(self) -> dict:
        """Worker processes, the CPU seconds of their fits, the largest one's peak RSS."""
        if not self.peaks:
            return {}
        return {
            "processes": len(self.peaks),
            "fit_cpu_seconds": round(self.cpu, 1),
            "peak_rss_gib": round(max(self.peaks.values()) / 2**30, 2),
        }

    def __exit__(self, *exc) -> None:
        if self.parallel is not None:
            self.parallel.__exit__(*exc)


def fit_final(
    learner: Learner, selection: Selection, X: pd.DataFrame, y: np.ndarray, seed: int
) -> Fitted:
    """The chosen setting refitted on every training row (a boosted model with the rounds its
    folds needed, no early stopping)."""
    params = {k: v for k, v in selection.params.items() if k != "fold_rounds"}
    est = learner.build(params, seed).fit(X, y)
    return Fitted(learner.name, est, list(X.columns), dict(selection.params))
