"""The churn model family and its artifacts on a synthetic matrix (no Feast needed)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from training import artifacts, churn_models
from training.btyd import BGNBDFeatures
from training.matrix import model_matrix, usable_columns

LEARNERS = {learner.name: learner for learner in churn_models.LEARNERS}


def _fit(
    name: str, X, y, Xv, yv, seed: int, grid: tuple[dict, ...] | None = None
) -> tuple[churn_models.Fitted, churn_models.Selection]:
    """One learner chosen on a single fold (fit on X, validate on Xv; `grid` replaces its
    settings), then refitted on X alone, as train churn does with its rolling-origin folds."""
    learner = LEARNERS[name] if grid is None else replace(LEARNERS[name], grid=grid)
    both = pd.concat([X, Xv], ignore_index=True)
    fold = churn_models.Fold(
        pd.Timestamp(0), np.arange(len(X)), np.arange(len(X), len(X) + len(Xv))
    )
    sel = churn_models.select(learner, both, np.concatenate([y, yv]), [fold], seed)
    return churn_models.fit_final(learner, sel, X, y, seed), sel


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

    lr, _ = _fit("logistic_regression", X, y, Xv, yv, seed=0)
    xgb, xsel = _fit("xgboost", X, y, Xv, yv, seed=0)
    rf, _ = _fit("random_forest", X, y, Xv, yv, seed=0)
    rfm, _ = _fit("logistic_regression", X[cols[:3]], y, Xv[cols[:3]], yv, seed=0)
    models = {"logistic": lr, "xgboost": xgb, "forest": rf, "three_columns": rfm}
    auc = {n: roc_auc_score(yt, m.predict(Xt)) for n, m in models.items()}
    assert min(auc.values()) > 0.7
    assert auc["logistic"] > auc["three_columns"] + 0.02
    # early stopping bit: the fold stopped well before the cap, and the refit has its rounds
    budget = LEARNERS["xgboost"].grid[0]["n_estimators"]
    assert xsel.params["fold_rounds"][0] < budget - 1
    assert xgb.estimator.get_booster().num_boosted_rounds() == xsel.params["n_estimators"]
    imp = churn_models.importances(xgb)
    assert set(imp.index) == set(cols) and imp.iloc[0] > 0


def test_same_seed_same_model_and_save_load_latest(tmp_path) -> None:
    X, y = _frame(1000, 3)
    Xv, yv = _frame(300, 4)
    X, Xv = X.astype(float), Xv.astype(float)
    short = (LEARNERS["xgboost"].grid[0] | {"n_estimators": 300},)  # one setting, fewer rounds
    a, _ = _fit("xgboost", X, y, Xv, yv, seed=5, grid=short)
    b, _ = _fit("xgboost", X, y, Xv, yv, seed=5, grid=short)
    np.testing.assert_array_equal(a.predict(Xv), b.predict(Xv))
    card = {
        "feature_service": {"name": "churn_model_v1"},
        "input_columns": a.columns,
        "threshold": 0.4,
        "trained_at": pd.Timestamp("2025-01-01", tz="UTC"),
    }
    artifacts.save(tmp_path, "churn", "v1", a.estimator, card)
    model = artifacts.load(tmp_path / "models", "churn")  # the API's loader
    loaded = model.card
    np.testing.assert_allclose(model.predict_proba(Xv.to_numpy()), a.predict(Xv), rtol=1e-6)
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


def _numbers_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Every kind of number column a feature read hands back, with missing values."""
    floats = rng.normal(size=n)
    floats[rng.random(n) < 0.2] = np.nan
    return pd.DataFrame(
        {
            "i": rng.integers(-(2**40), 2**40, n),
            "u": rng.integers(0, 255, n).astype(np.uint8),
            "f": floats,
            "g": floats.astype(np.float32),
            "b": rng.random(n) < 0.5,
            "n": pd.array(np.where(rng.random(n) < 0.3, None, 1), dtype="Int64"),
            "o": pd.Series([None if i % 7 == 0 else i * 0.5 for i in range(n)], dtype=object),
        }
    )


def test_model_matrix_of_numpy_columns_equals_reading_each_value_as_a_number() -> None:
    f = _numbers_frame(np.random.default_rng(3), 500)
    m = model_matrix(f, list(f.columns))
    for name in f.columns:  # each value on its own: float() of a number, NaN of a missing one
        expected = [np.nan if pd.isna(v) else float(v) for v in f[name].tolist()]
        np.testing.assert_array_equal(m[name].to_numpy(), np.array(expected, dtype=float))
        assert m[name].dtype == np.float64


def test_model_matrix_of_some_rows_equals_the_matrix_of_those_rows_renumbered() -> None:
    rng = np.random.default_rng(5)
    n = 400
    f = _numbers_frame(rng, n)
    f.index = rng.permutation(n) + 10_000  # not 0..n-1: the result is numbered anew
    rows = rng.random(n) < 0.6
    columns = ["o", "gone", *f.columns[:6]]
    for dtype in (np.float64, np.float32):
        expected = model_matrix(f[rows].reset_index(drop=True), columns, dtype)
        got = model_matrix(f, columns, dtype, rows=rows)
        pd.testing.assert_frame_equal(got, expected)
        assert got.to_numpy().flags.f_contiguous
    assert len(model_matrix(f, columns, rows=np.zeros(n, dtype=bool))) == 0


def _folds(ts: np.ndarray, origins: tuple[int, ...]) -> list[churn_models.Fold]:
    """Rolling-origin folds over "cutoff" numbers `ts`: each trains before its origin and
    validates on it."""
    return [
        churn_models.Fold(
            pd.Timestamp(o, unit="D"), np.flatnonzero(ts < o), np.flatnonzero(ts == o)
        )
        for o in origins
    ]


def test_rolling_origin_selection_refits_the_best_setting_on_all_rows() -> None:
    X, y = _frame(2400, 5)
    X = model_matrix(X, usable_columns(X))
    # four "cutoffs" of 600 rows; folds validate on the last two
    folds = _folds(np.repeat(np.arange(4), 600), (2, 3))
    learners = {lr.name: lr for lr in churn_models.LEARNERS}
    assert set(learners) == {"logistic_regression", "random_forest", "xgboost", "rfm_baseline"}
    sel = churn_models.select(learners["logistic_regression"], X, y, folds, seed=0)
    assert len(sel.tried) == len(churn_models.C_GRID) and len(sel.fold_auc) == 2
    assert sel.mean_auc == max(t["mean_auc"] for t in sel.tried)
    assert sel.params["C"] in churn_models.C_GRID
    assert np.isnan(sel.oof[:1200]).all() and not np.isnan(sel.oof[1200:]).any()
    final = churn_models.fit_final(learners["logistic_regression"], sel, X, y, seed=0)
    assert sel.params["C"] == final.estimator.named_steps["model"].C
    boost = churn_models.select(learners["xgboost"], X, y, folds, seed=0)
    rounds = boost.params["fold_rounds"]
    assert len(rounds) == 2 and boost.params["n_estimators"] == round(np.mean(rounds))
    assert "early_stopping_rounds" not in boost.params
    fitted = churn_models.fit_final(learners["xgboost"], boost, X, y, seed=0)
    assert fitted.estimator.get_booster().num_boosted_rounds() == boost.params["n_estimators"]


def _with_btyd_inputs(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """`_frame` with the BG/NBD step's two other inputs, as a model matrix."""
    X, y = _frame(n, seed)
    rng = np.random.default_rng(seed)
    first_age = X["days_since_last_order"] + rng.exponential(200, len(X))
    X = X.assign(repeat_orders=rng.poisson(6, len(X)), days_since_first_order=first_age)
    return model_matrix(X, usable_columns(X)), y


def _short_boosting() -> churn_models.Learner:
    return replace(LEARNERS["xgboost"], grid=(LEARNERS["xgboost"].grid[0] | {"n_estimators": 300},))


def test_fold_fits_in_worker_processes_select_what_one_process_selects() -> None:
    """fit_learners in FOLD_JOBS processes, every learner's fold fits and then the final fits
    in one pool (issue 18's speed-up), gives every learner the same scores, rounds, choice and
    final model as select and fit_final one learner after another in this process."""
    X, y = _with_btyd_inputs(1800, 9)
    folds = _folds(np.repeat(np.arange(3), 600), (1, 2))
    learners = [
        churn_models.with_btyd(learner, horizon_days=90)
        for learner in (LEARNERS["logistic_regression"], LEARNERS["random_forest"])
    ]
    learners += [churn_models.with_btyd(_short_boosting(), 90), LEARNERS["rfm_baseline"]]
    matrices = [(lr, X.iloc[:, :4] if lr.rfm_only else X) for lr in learners]
    fits = churn_models.fit_learners(matrices, y, folds, seed=3, jobs=2)
    fitted, two = fits.fitted, fits.selection
    assert fits.workers["processes"] in (1, 2) and fits.workers["fit_cpu_seconds"] > 0
    for learner, Xl in matrices:
        one = churn_models.select(learner, Xl, y, folds, seed=3, jobs=1)
        sel = two[learner.name]
        assert one.params == sel.params and one.tried == sel.tried
        assert one.fold_auc == sel.fold_auc
        np.testing.assert_array_equal(one.oof, sel.oof)
        assert len(one.tried) == len(learner.grid) and not np.isnan(one.oof[600:]).any()
        here = churn_models.fit_final(learner, one, Xl, y, seed=3)
        np.testing.assert_array_equal(here.predict(Xl), fitted[learner.name].predict(Xl))
        assert fitted[learner.name].params == here.params


def test_settings_sharing_their_transformers_score_as_each_pipeline_fitted_alone() -> None:
    """The C grid's settings share each fold's imputer, scaler and BG/NBD step (fitted once,
    issue 18), and XGBoost's fold fits read their validation rows from a plain DMatrix: every
    setting's fold scores (and rounds) are those of its whole Pipeline or XGBClassifier fitted
    alone on the fold's train rows, to the last bit."""
    from sklearn.metrics import roc_auc_score

    X, y = _with_btyd_inputs(1500, 11)
    folds = _folds(np.repeat(np.arange(3), 500), (1, 2))
    linear = churn_models.with_btyd(LEARNERS["logistic_regression"], horizon_days=90)
    assert churn_models._head_groups(linear, 0) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for learner in (linear, LEARNERS["rfm_baseline"], _short_boosting()):
        sel = churn_models.select(learner, X, y, folds, seed=5, jobs=1)
        for i, params in enumerate(learner.grid):
            scores = []
            for f in folds:
                alone = learner.build(params, 5)
                if learner.early_stopping:
                    fit = {"eval_set": [(X.iloc[f.valid], y[f.valid])], "verbose": False}
                    alone.fit(X.iloc[f.train], y[f.train], **fit)
                else:
                    alone.fit(X.iloc[f.train], y[f.train])
                scores.append(alone.predict_proba(X.iloc[f.valid])[:, 1])
            aucs = [roc_auc_score(y[f.valid], p) for f, p in zip(folds, scores, strict=True)]
            assert sel.tried[i]["mean_auc"] == float(np.mean(aucs))
            if sel.tried[i]["mean_auc"] == sel.mean_auc:
                for f, p in zip(folds, scores, strict=True):
                    np.testing.assert_array_equal(sel.oof[f.valid], p)
        if learner.early_stopping:  # stopped by the validation rows, read from a plain DMatrix
            assert max(sel.params["fold_rounds"]) < 300
    from xgboost import DMatrix, QuantileDMatrix

    plain = churn_models._PlainValidation(n_jobs=1)
    train = plain._create_dmatrix(None, data=X, label=y)
    assert isinstance(train, QuantileDMatrix)
    valid = plain._create_dmatrix(train, data=X, label=y)
    assert type(valid) is DMatrix


def test_the_forest_draws_a_quarter_of_the_rows_for_each_of_its_trees() -> None:
    """Issue 18: 100 trees, each on a bootstrap draw of max_samples = 25% of the rows (the
    forest's cost on 75k churn rows; docs/training.md has the scores before and after)."""
    X, y = _frame(2000, 4)
    X = model_matrix(X, usable_columns(X))
    forest = LEARNERS["random_forest"].build(LEARNERS["random_forest"].grid[0], 0).fit(X, y)
    trees = forest.named_steps["model"].estimators_
    assert len(trees) == 100
    # a tree's root weighs the rows it drew (with repeats): 500 of the 2,000
    assert {t.tree_.weighted_n_node_samples[0] for t in trees} == {500.0}


def test_rfm_baseline_logs_its_inputs_and_beats_raw_on_skewed_rfm() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(9)
    n = 6000
    f = pd.DataFrame(
        {
            "days_since_last_order": rng.lognormal(3, 1.2, n),
            "lifetime_orders": rng.lognormal(1.5, 1.0, n).round() + 1,
            "lifetime_spend": rng.lognormal(5, 1.5, n),
            "orders_90d": rng.poisson(2, n).astype(float),
        }
    )
    logit = 1.5 * np.log1p(f["days_since_last_order"]) - 1.2 * np.log1p(f["lifetime_orders"]) - 5
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    tr, va, te = slice(0, 3000), slice(3000, 4000), slice(4000, n)
    logged, _ = _fit("rfm_baseline", f[tr], y[tr], f[va], y[va], seed=0)
    raw, _ = _fit("logistic_regression", f[tr], y[tr], f[va], y[va], seed=0)
    assert logged.params["transform"] == "log1p"
    assert logged.estimator.steps[0][0] == "log1p" and raw.estimator.steps[0][0] == "impute"
    auc_log = roc_auc_score(y[te], logged.predict(f[te]))
    auc_raw = roc_auc_score(y[te], raw.predict(f[te]))
    assert auc_log > auc_raw + 0.005
    # negatives (more refunded than spent) and gaps pass through
    g = f[te].copy()
    g.iloc[0, 2], g.iloc[1, 0] = -5.0, np.nan
    assert np.isfinite(logged.predict(g)).all()


def _step_only(learner):
    """The settings with the BG/NBD step (with_btyd also tries each without it)."""
    return replace(learner, grid=tuple(p for p in learner.grid if p["btyd"]))


def test_the_folds_decide_whether_the_btyd_step_is_used() -> None:
    """with_btyd tries every setting with and without the step; the folds pick by ROC-AUC, and
    the final model has the step exactly when the chosen setting says so."""
    X, y = _frame(1600, 7)
    rng = np.random.default_rng(7)
    first_age = X["days_since_last_order"] + rng.exponential(200, len(X))
    X = X.assign(repeat_orders=rng.poisson(6, len(X)), days_since_first_order=first_age)
    X = model_matrix(X, usable_columns(X))
    fold = churn_models.Fold(pd.Timestamp(0), np.arange(1200), np.arange(1200, 1600))
    learner = churn_models.with_btyd(LEARNERS["logistic_regression"], horizon_days=90)
    assert len(learner.grid) == 2 * len(LEARNERS["logistic_regression"].grid)
    assert [p["btyd"] for p in learner.grid].count(False) == len(
        LEARNERS["logistic_regression"].grid
    )
    sel = churn_models.select(learner, X, y, [fold], seed=0)
    best = max(sel.tried, key=lambda t: t["mean_auc"])
    assert sel.params["btyd"] == best["btyd"] and sel.mean_auc == best["mean_auc"]
    fitted = churn_models.fit_final(learner, sel, X, y, seed=0)
    assert (churn_models.btyd_parameters(fitted) is not None) == sel.params["btyd"]
    for use in (True, False):
        forced = replace(learner, grid=tuple(p for p in learner.grid if p["btyd"] is use))
        one = churn_models.fit_final(forced, churn_models.select(forced, X, y, [fold], 0), X, y, 0)
        assert isinstance(one.estimator.steps[0][1], BGNBDFeatures) is use


def test_a_btyd_step_fits_on_fit_rows_only_and_serves_from_plain_arrays(tmp_path) -> None:
    """Every learner behind the BG/NBD step: each fold's step learns its parameters from that
    fold's fit rows (a change to validation rows leaves them alone), the boosted model stops
    early on transformed validation rows, importances name the two added columns, and the
    API's loader scores plain float arrays exactly as the fitted Pipeline scores the frame."""
    from training import btyd

    X, y = _frame(1600, 7)
    rng = np.random.default_rng(7)
    first_age = X["days_since_last_order"] + rng.exponential(200, len(X))
    X = X.assign(repeat_orders=rng.poisson(6, len(X)), days_since_first_order=first_age)
    X = model_matrix(X, usable_columns(X))
    fold = churn_models.Fold(pd.Timestamp(0), np.arange(1200), np.arange(1200, 1600))
    boosting = replace(
        LEARNERS["xgboost"], grid=(LEARNERS["xgboost"].grid[0] | {"n_estimators": 300},)
    )
    learner = _step_only(churn_models.with_btyd(boosting, horizon_days=90))
    sel = churn_models.select(learner, X, y, [fold], seed=0)
    assert sel.params["fold_rounds"][0] < 300 and not np.isnan(sel.oof[1200:]).any()
    fitted = churn_models.fit_final(learner, sel, X.iloc[:1200], y[:1200], seed=0)
    step = fitted.estimator.named_steps["btyd"]
    x, t_x, T = btyd.inputs_in_weeks(
        X["repeat_orders"][:1200],
        X["days_since_first_order"][:1200],
        X["days_since_last_order"][:1200],
    )
    assert step.params_ == btyd.fit(x, t_x, T)[0]  # the fit rows' parameters, nothing else
    imp = churn_models.importances(fitted)
    assert {"btyd_p_alive", "btyd_expected_orders_90d", "btyd_p_no_order_90d"} <= set(imp.index)
    params = churn_models.btyd_parameters(fitted)
    assert params["fit_rows"] == 1200 and min(params[k] for k in ("r", "alpha", "a", "b")) > 0
    card = {"feature_service": {"name": "churn_model_v2"}, "input_columns": fitted.columns}
    artifacts.save(tmp_path, "churn", "v2", fitted.estimator, card)
    model = artifacts.load(tmp_path / "models", "churn")
    rows = X.iloc[1200:]
    np.testing.assert_allclose(
        model.predict_proba(rows.to_numpy()), fitted.predict(rows), rtol=1e-6
    )
    linear = _step_only(churn_models.with_btyd(LEARNERS["logistic_regression"], horizon_days=90))
    lsel = churn_models.select(linear, X, y, [fold], seed=0)
    lfit = churn_models.fit_final(linear, lsel, X, y, seed=0)
    assert len(churn_models.importances(lfit)) == X.shape[1] + 3


def test_model_matrix_is_the_column_by_column_conversion() -> None:
    """One column-major block, the same numbers as converting each column on its own."""
    import numpy as np
    import pandas as pd

    from training.matrix import model_matrix

    frame = pd.DataFrame(
        {
            "f": [1.5, None, 3.0],
            "i": [1, 2, 3],
            "b": [True, False, True],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "o": ["1", "x", None],
        },
        index=[10, 11, 12],
    )
    m = model_matrix(frame, ["o", "missing", "i", "f", "b", "n"])
    assert list(m.columns) == ["o", "missing", "i", "f", "b", "n"]
    assert list(m.index) == [10, 11, 12] and (m.dtypes == np.float64).all()
    want = {
        "o": [1.0, np.nan, np.nan],
        "missing": [np.nan] * 3,
        "i": [1.0, 2.0, 3.0],
        "f": [1.5, np.nan, 3.0],
        "b": [1.0, 0.0, 1.0],
        "n": [1.0, np.nan, 3.0],
    }
    for name, values in want.items():
        np.testing.assert_array_equal(m[name].to_numpy(), np.asarray(values))


def test_release_free_memory_hands_back_what_a_thread_freed() -> None:
    """Memory a thread allocated and freed stays with the process (glibc keeps it in that
    thread's arena) until release_free_memory hands it back, as it does between the ranking
    run's big steps."""
    import threading

    import psutil

    if artifacts._malloc_trim() is None:
        pytest.skip("the C library has no malloc_trim")
    process = psutil.Process()
    kept: list[bytearray] = []

    def churn() -> None:  # 64 KiB blocks: below glibc's mmap threshold, on the arena's heap
        blocks = [bytearray(64 * 1024) for _ in range(3000)]
        kept.append(bytearray(64 * 1024))  # the heap's top stays in use: no trim on free
        del blocks

    artifacts.release_free_memory()
    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    before = process.memory_info().rss
    artifacts.release_free_memory()
    after = process.memory_info().rss
    assert before - after > 100 * 2**20  # of the ~190 MiB the thread freed
