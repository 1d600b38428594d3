"""The churn model family, fitted on plain matrices: no Feast, no files, testable on a toy frame.

Three learners, one baseline; `select` scores each setting on rolling-origin folds
(training/churn.py builds them) and `fit_final` refits the chosen setting on every training row:
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
from xgboost import XGBClassifier

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


def _fold_fit(
    learner: Learner, params: dict, X: pd.DataFrame, y: np.ndarray, fold: Fold, seed: int
) -> tuple[np.ndarray, int | None]:
    """One setting fitted on one fold's train rows: its validation scores and, for a learner
    that stops early (on the validation rows), the rounds it needed."""
    est = learner.build(params, seed)
    rounds = None
    if learner.early_stopping:
        fit_X, valid_X, model = X.iloc[fold.train], X.iloc[fold.valid], est
        if isinstance(est, Pipeline):  # the steps before the model, fitted on fit rows
            head = est[:-1].fit(fit_X, y[fold.train])
            fit_X, valid_X, model = head.transform(fit_X), head.transform(valid_X), est[-1]
        model.fit(fit_X, y[fold.train], eval_set=[(valid_X, y[fold.valid])], verbose=False)
        rounds = int(model.best_iteration) + 1
    else:
        est.fit(X.iloc[fold.train], y[fold.train])
    return est.predict_proba(X.iloc[fold.valid])[:, 1], rounds


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
    jobs = FOLD_JOBS if jobs is None else jobs
    tasks = [(params, f) for params in learner.grid for f in folds]
    if jobs > 1 and len(tasks) > 1:
        done = Parallel(n_jobs=min(jobs, len(tasks)), backend="loky")(
            delayed(_fold_fit)(learner, params, X, y, f, seed) for params, f in tasks
        )
    else:
        done = [_fold_fit(learner, params, X, y, f, seed) for params, f in tasks]
    best: Selection | None = None
    tried = []
    for i, params in enumerate(learner.grid):
        aucs, rounds = [], []
        oof = np.full(len(y), np.nan)
        for f, (p, r) in zip(folds, done[i * len(folds) : (i + 1) * len(folds)], strict=True):
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


def fit_final(
    learner: Learner, selection: Selection, X: pd.DataFrame, y: np.ndarray, seed: int
) -> Fitted:
    """The chosen setting refitted on every training row (a boosted model with the rounds its
    folds needed, no early stopping)."""
    params = {k: v for k, v in selection.params.items() if k != "fold_rounds"}
    est = learner.build(params, seed).fit(X, y)
    return Fitted(learner.name, est, list(X.columns), dict(selection.params))
