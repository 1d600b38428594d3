"""Calibration chosen on rolling origins, the cost-chosen threshold, and the saved calibrated
model as the API loads it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from training import artifacts, calibration


def test_the_cost_threshold_is_the_cheapest_cut_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=400).round(2)  # ties
    y = (rng.uniform(size=400) < p).astype(int)
    for fn, fp in ((5.0, 1.0), (1.0, 1.0), (1.0, 9.0)):
        got = calibration.cost_threshold(y, p, fn, fp)
        cuts = np.r_[np.unique(p), 2.0]
        costs = [calibration.cost_at(y, p, t, fn, fp) for t in cuts]
        assert got.cost_per_row == pytest.approx(min(costs))
        assert calibration.cost_at(y, p, got.threshold, fn, fp) == pytest.approx(min(costs))
    # a missed churner dearer than an offer: a lower cut than when they cost the same
    dear = calibration.cost_threshold(y, p, 5.0, 1.0).threshold
    assert dear < calibration.cost_threshold(y, p, 1.0, 1.0).threshold


def test_a_distorted_score_is_calibrated_and_a_calibrated_one_is_left_alone() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    truth = rng.uniform(0.02, 0.98, n)
    y = (rng.uniform(size=n) < truth).astype(int)
    folds = [np.arange(i, i + 1000) for i in range(0, n, 1000)]
    method, loss = calibration.choose(truth**3, y, folds)  # far too low
    assert method in ("platt", "isotonic") and loss[method] < loss["none"] - 0.05
    # the fold scores by hand: each map fitted on the origins before, scored on the next
    by_hand = []
    for k in (1, 2):
        past = np.concatenate(folds[:k])
        q = calibration.fit(method, truth[past] ** 3, y[past])(truth[folds[k]] ** 3)
        by_hand.append(log_loss(y[folds[k]], np.clip(q, 1e-6, 1 - 1e-6)))
    assert loss[method] == pytest.approx(np.mean(by_hand))
    fitted = calibration.fit(method, truth**3, y)
    assert abs(fitted(truth**3).mean() - y.mean()) < 0.01
    method, _ = calibration.choose(truth, y, folds)
    assert method in ("none", "platt")  # isotonic's steps cost more than they fix here


def test_the_saved_calibrated_model_scores_plain_arrays_as_trained(tmp_path) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
    y = (X["a"] + rng.normal(size=500) > 0).astype(int).to_numpy()
    est = Pipeline(
        [("impute", SimpleImputer()), ("scale", StandardScaler()), ("model", LogisticRegression())]
    ).fit(X, y)
    p = est.predict_proba(X)[:, 1]
    for method in ("platt", "isotonic"):
        cal = calibration.fit(method, p**2, y)
        saved = calibration.CalibratedModel(est, cal)
        card = {"feature_service": {"name": "churn_model_v2"}, "input_columns": list(X.columns)}
        artifacts.save(tmp_path / method, "churn", "v1", saved, card)
        model = artifacts.load(tmp_path / method / "models", "churn")
        assert model.closed_form is not None  # the linear closed form, then the map
        got = model.predict_proba(X.to_numpy())
        np.testing.assert_allclose(got, cal(est.predict_proba(X)[:, 1]), atol=1e-9)
        assert not np.allclose(got, est.predict_proba(X)[:, 1])
