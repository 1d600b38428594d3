"""The churn model family and its artifacts on a synthetic matrix (no Feast needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from training import artifacts, churn_models
from training.matrix import model_matrix, usable_columns


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {
            "days_since_last_order": rng.exponential(30, n),
            "orders_90d": pd.array(rng.poisson(2, n), dtype="Int64"),
            "spend_90d": rng.gamma(2, 50, n),
            "refund_rate_90d": rng.uniform(0, 1, n),
            "is_premium": rng.uniform(size=n) < 0.3,
        }
    )
    f.loc[rng.choice(n, n // 10, replace=False), "refund_rate_90d"] = np.nan
    logit = (
        0.04 * f["days_since_last_order"]
        - 0.5 * f["orders_90d"].astype(float)
        + 3 * (f["refund_rate_90d"].fillna(0.5) - 0.5)
    )
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(logit - 0.5)))).astype(int)
    return f, y.to_numpy()


def test_models_learn_and_beat_a_baseline_blind_to_the_extra_signal() -> None:
    X, y = _frame(3000, 0)
    Xv, yv = _frame(800, 1)
    Xt, yt = _frame(800, 2)
    cols = usable_columns(X)
    assert cols == list(X.columns)
    X, Xv, Xt = (model_matrix(f, cols) for f in (X, Xv, Xt))
    from sklearn.metrics import roc_auc_score

    lr = churn_models.logistic(X, y, Xv, yv, seed=0)
    xgb = churn_models.xgboost(X, y, Xv, yv, seed=0)
    rf = churn_models.random_forest(X, y, seed=0)
    rfm = churn_models.logistic(X[cols[:3]], y, Xv[cols[:3]], yv, seed=0, name="rfm")
    auc = {m.name: roc_auc_score(yt, m.predict(Xt)) for m in (lr, xgb, rf, rfm)}
    assert min(auc.values()) > 0.7
    assert auc["logistic_regression"] > auc["rfm"] + 0.02
    assert xgb.params["best_iteration"] < xgb.params["n_estimators"] - 1  # early stopping bit
    imp = churn_models.importances(xgb)
    assert set(imp.index) == set(cols) and imp.iloc[0] > 0


def test_same_seed_same_model_and_save_load_latest(tmp_path) -> None:
    X, y = _frame(1000, 3)
    Xv, yv = _frame(300, 4)
    a = churn_models.xgboost(X.astype(float), y, Xv.astype(float), yv, seed=5)
    b = churn_models.xgboost(X.astype(float), y, Xv.astype(float), yv, seed=5)
    np.testing.assert_array_equal(a.predict(Xv.astype(float)), b.predict(Xv.astype(float)))
    card = {
        "feature_service": {"name": "churn_model_v1"},
        "input_columns": a.columns,
        "threshold": 0.4,
        "trained_at": pd.Timestamp("2025-01-01", tz="UTC"),
    }
    artifacts.save(tmp_path, "churn", "v1", a.estimator, card)
    model = artifacts.load(tmp_path / "models", "churn")  # the API's loader
    loaded = model.card
    np.testing.assert_allclose(
        model.predict_proba(Xv.astype(float).to_numpy()), a.predict(Xv.astype(float)), rtol=1e-6
    )
    pointer = json.loads((tmp_path / "models" / "churn" / "latest.json").read_text())
    assert pointer["version"] == "v1" and pointer["threshold"] == 0.4
    assert loaded["trained_at"].startswith("2025-01-01")


def test_model_matrix_keeps_order_and_fills_missing_columns() -> None:
    f = pd.DataFrame(
        {
            "b": pd.array([1, None], dtype="Int64"),
            "a": [True, False],
            "when": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
            "ids": [["x"], ["y"]],
            "name": ["u", "v"],
        }
    )
    assert usable_columns(f) == ["b", "a"]
    m = model_matrix(f, ["a", "b", "gone"])
    assert list(m.columns) == ["a", "b", "gone"]
    assert m["a"].tolist() == [1.0, 0.0] and np.isnan(m.loc[1, "b"]) and m["gone"].isna().all()
