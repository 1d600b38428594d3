"""The churn model family, fitted on plain matrices: no Feast, no files, testable on a toy frame.

Three learners, one baseline, all scored on validation to pick one:
- logistic regression, imputed and scaled inside one sklearn Pipeline (so serving imputes and
  scales exactly as training did), regularisation chosen on validation;
- random forest (imputed; trees do not need scaling);
- XGBoost, which handles missing values itself, with early stopping on validation log loss;
- the RFM baseline: the same logistic regression on recency, frequency and monetary value only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

N_JOBS = 2  # the machine has two cores, shared


@dataclass
class Fitted:
    name: str
    estimator: Any
    columns: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(frame[self.columns])[:, 1]


def logistic(
    X: pd.DataFrame,
    y: np.ndarray,
    Xv: pd.DataFrame,
    yv: np.ndarray,
    seed: int,
    name: str = "logistic_regression",
) -> Fitted:
    """Scaled logistic regression; C picked by validation ROC-AUC from a short grid."""
    best = None
    for c in (0.01, 0.1, 1.0, 10.0):
        pipe = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
            ]
        ).fit(X, y)
        auc = roc_auc_score(yv, pipe.predict_proba(Xv)[:, 1])
        if best is None or auc > best[0]:
            best = (auc, c, pipe)
    return Fitted(
        name, best[2], list(X.columns), {"C": best[1], "imputer": "median", "scaler": "standard"}
    )


def random_forest(X: pd.DataFrame, y: np.ndarray, seed: int) -> Fitted:
    params = {
        "n_estimators": 300,
        "min_samples_leaf": 5,
        "max_features": "sqrt",
        "class_weight": None,
    }
    pipe = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            # One job: with several, the trees' votes are summed in thread order and the last bit of
            # a probability can differ between two runs with the same seed.
            ("model", RandomForestClassifier(**params, random_state=seed, n_jobs=1)),
        ]
    ).fit(X, y)
    return Fitted("random_forest", pipe, list(X.columns), params)


def xgboost(X: pd.DataFrame, y: np.ndarray, Xv: pd.DataFrame, yv: np.ndarray, seed: int) -> Fitted:
    params = {
        "n_estimators": 2000,
        "learning_rate": 0.03,
        "max_depth": 4,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5,
        "reg_lambda": 1.0,
        "early_stopping_rounds": 100,
    }
    model = XGBClassifier(
        **params,
        objective="binary:logistic",
        eval_metric="logloss",
        tree_method="hist",
        random_state=seed,
        n_jobs=N_JOBS,
    )
    model.fit(X, y, eval_set=[(Xv, yv)], verbose=False)
    chosen = {**params, "best_iteration": int(model.best_iteration)}
    return Fitted("xgboost", model, list(X.columns), chosen)


def importance_kind(fitted: Fitted) -> str:
    est = fitted.estimator
    model = est.named_steps["model"] if isinstance(est, Pipeline) else est
    if isinstance(model, XGBClassifier):
        return "gain"
    return (
        "impurity decrease" if hasattr(model, "feature_importances_") else "|coefficient|, scaled"
    )


def importances(fitted: Fitted) -> pd.Series:
    """Per-column importance: gain for XGBoost, impurity for forests, |coef| of the scaled LR."""
    est = fitted.estimator
    model = est.named_steps["model"] if isinstance(est, Pipeline) else est
    if hasattr(model, "feature_importances_"):
        values = model.feature_importances_
    else:
        values = np.abs(model.coef_[0])
    return pd.Series(values, index=fitted.columns, name="importance").sort_values(ascending=False)
