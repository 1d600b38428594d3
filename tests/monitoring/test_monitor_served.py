"""What the API served, against training's test set and, once labels mature, against what
happened: on a small store with a churn model trained by `shopfeast train`'s own code.

Predictions "served at t" are what the API computes at t: the churn service's features as of t
(online equals offline at the same instant: test_monitor_feast) through the model, written by the
API's own log writer. Labels are recomputed here from the clean orders, one prediction at a time,
and the ROC-AUC with scikit-learn.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from featurestore import store as feast_store
from monitoring import run
from pipelines.order_versions import latest_versions
from pipelines.storage import models_dir, read_clean
from tests.support import training_shop
from training import churn, served_log
from training.artifacts import load
from training.matrix import model_matrix
from training.served_log import Bounds, ServedLog
from training.store import historical

pytestmark = pytest.mark.slow  # trains a churn model on the small store: ~30 s of CPU

H = training_shop.SMALL_HORIZON_DAYS
UNBOUNDED = Bounds(rows_per_request=10**6, max_rows_per_day=10**6)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    shared = training_shop.small_store(tmp_path_factory.mktemp)
    data = tmp_path_factory.mktemp("monitor_served") / "data"
    shutil.copytree(shared, data)
    card = churn.run(data, horizon_days=H, seed=5, echo=False)
    model = load(models_dir(data), "churn")
    orders = latest_versions(
        read_clean(data, "orders", ["order_id", "customer_id", "order_ts", "status", "updated_at"])
    )
    end = orders["order_ts"].max().floor("D") + pd.Timedelta(days=1)
    # served every 5 days from day 45 to the last day whose label is observed, and 3 days later
    last = end - pd.Timedelta(days=H + 1)
    days = list(pd.date_range(end - pd.Timedelta(days=75), last, freq="5D"))
    late = [end - pd.Timedelta(days=10), end - pd.Timedelta(days=3)]
    customers = sorted(read_clean(data, "customers", ["customer_id"])["customer_id"].unique())
    rows = pd.DataFrame(
        [(c, t + pd.Timedelta(hours=10)) for t in days + late for c in customers],
        columns=["customer_id", "event_timestamp"],
    )
    fs = feast_store.open_store("embedded", data)
    frame = historical(fs, rows, model.feature_service)
    X = model_matrix(frame, list(model.input_columns)).to_numpy()
    rows["score"] = model.predict_proba(X)
    return {
        "data": data,
        "card": card,
        "model": model,
        "orders": orders,
        "end": end,
        "rows": rows,
        "X": X,
        "late": len(late) * len(customers),
    }


def serve(data: Path, model, rows: pd.DataFrame, X: np.ndarray, scores) -> None:
    """The API's writer, one request per (customer, instant)."""
    shutil.rmtree(served_log.model_dir(data, "churn"), ignore_errors=True)
    log = ServedLog(data, UNBOUNDED)
    for i, r in enumerate(rows.itertuples()):
        log.append(
            "churn",
            model.version,
            model.feature_service,
            {"customer_id": [r.customer_id]},
            model.input_columns,
            X[i : i + 1],
            np.array([scores[i]]),
            now=r.event_timestamp.to_pydatetime(),
        )
    log.flush()


def monitor(data: Path, checks: str, now: pd.Timestamp, fail_on: str = "") -> tuple[int, dict]:
    opts = run.Options(
        data_dir=data,
        checks=run.parse_classes(checks, "--checks"),
        fail_on=run.parse_classes(fail_on, "--fail-on"),
        now=now,
    )
    code, out, _ = run.monitor(opts)
    return code, out


def oracle(orders: pd.DataFrame, customers: pd.DataFrame, rows: pd.DataFrame, end) -> list:
    """The label contract read literally, one prediction at a time (None: cannot be labelled)."""
    live = orders[(orders["status"] != "cancelled") & orders["customer_id"].notna()]
    by = {c: sorted(g) for c, g in live.groupby("customer_id")["order_ts"]}
    signup = customers.groupby("customer_id")["signup_ts"].min().to_dict()
    h = pd.Timedelta(days=H)
    out = []
    for r in rows.itertuples():
        t, mine = r.event_timestamp, by.get(r.customer_id, [])
        if t + h > end or not signup[r.customer_id] < t or not any(x < t for x in mine):
            out.append(None)
        else:
            out.append(int(not any(t <= x < t + h for x in mine)))
    return out


def test_realised_roc_auc_of_matured_predictions(shop) -> None:
    data, model, rows = shop["data"], shop["model"], shop["rows"]
    serve(data, model, rows, shop["X"], rows["score"].to_numpy())
    code, out = monitor(data, "model", shop["end"] + pd.Timedelta(hours=6), "model")
    [r] = out["model"]["results"]
    customers = read_clean(data, "customers", ["customer_id", "signup_ts"])
    labels = oracle(shop["orders"], customers, rows, shop["end"])
    known = [i for i, y in enumerate(labels) if y is not None]
    y = np.array([labels[i] for i in known])
    expected = roc_auc_score(y, rows["score"].to_numpy()[known])
    assert r["predictions"]["served"] == len(rows)
    assert r["predictions"]["matured"] == len(rows) - shop["late"]
    assert r["predictions"]["labelled"] == len(known) and len(known) > 500
    assert r["roc_auc"] == pytest.approx(expected, abs=1e-6)
    assert r["positive_rate"] == pytest.approx(y.mean(), abs=1e-6)
    chosen = shop["card"]["chosen"]
    assert r["test_roc_auc"] == pytest.approx(shop["card"]["metrics"]["test"][chosen]["roc_auc"])
    assert r["version"] == model.version
    assert code == (1 if r["status"] == "alert" else 0)

    # a model that ranks customers backwards: the realised ROC-AUC says so
    serve(data, model, rows, shop["X"], 1 - rows["score"].to_numpy())
    code, out = monitor(data, "model", shop["end"] + pd.Timedelta(hours=6), "model")
    [bad] = out["model"]["results"]
    assert bad["roc_auc"] == pytest.approx(1 - expected, abs=1e-6)
    # the small shop's test set is 50-odd rows: its own figure is uncertain (Hanley-McNeil SE
    # ~0.08), and a drop must beat both errors to alert
    assert bad["drop"] == pytest.approx(r["test_roc_auc"] - (1 - expected), abs=1e-6)
    assert bad["status"] != "ok" or bad["drop"] < 0.03 or bad["z"] < 1.645

    # predictions that say the opposite of what happened, whatever the test set's size
    rng = np.random.default_rng(0)
    backwards = np.array([0.5 if v is None else 0.8 * (1 - v) for v in labels])
    backwards = backwards + 0.2 * rng.random(len(rows))
    serve(data, model, rows, shop["X"], backwards)
    code, out = monitor(data, "model", shop["end"] + pd.Timedelta(hours=6), "model")
    [worst] = out["model"]["results"]
    assert worst["roc_auc"] == pytest.approx(roc_auc_score(y, backwards[known]), abs=1e-6)
    assert worst["roc_auc"] < 0.05 and worst["status"] == "alert" and code == 1
    assert out["summary"]["model"]["alerting"] == [
        f"churn {model.version} ROC-AUC {worst['roc_auc']:.3f} (test {worst['test_roc_auc']:.3f})"
    ]


def test_auc_standard_error_matches_the_bootstrap() -> None:
    from monitoring.model_health import auc_se

    rng = np.random.default_rng(3)
    y = (rng.random(1500) < 0.3).astype(int)
    p = rng.normal(y * 1.0, 1.0)
    auc = roc_auc_score(y, p)
    boot = []
    for _ in range(300):
        i = rng.integers(0, len(y), len(y))
        boot.append(roc_auc_score(y[i], p[i]))
    assert auc_se(auc, int(y.sum()), int(len(y) - y.sum())) == pytest.approx(np.std(boot), rel=0.2)


def test_predictions_not_yet_matured_are_not_judged(shop) -> None:
    data, model, rows = shop["data"], shop["model"], shop["rows"]
    recent = rows.tail(shop["late"]).reset_index(drop=True)
    serve(data, model, recent, shop["X"][-shop["late"] :], recent["score"].to_numpy())
    code, out = monitor(data, "model", shop["end"] + pd.Timedelta(hours=6), "model")
    assert out["summary"]["model"]["status"] == "not_run" and code == 2
    assert "0 matured, labelled predictions" in out["model"]["not_run"]


def test_served_vectors_and_scores_against_the_test_set(shop) -> None:
    data, model = shop["data"], shop["model"]
    ref = served_log.load_reference(data, "churn", model.version)
    cols = [served_log.FEATURE_PREFIX + c for c in model.input_columns]
    # training kept its labelled rows as the model saw them, with out-of-sample scores only: the
    # final model's on the test rows, out-of-fold ones on the train rows held out in a fold
    rows = shop["card"]["rows"]
    assert list(ref.columns) == [*cols, "score"]
    assert len(ref) == rows["train"]["rows"] + rows["test"]["rows"]
    test = ref.tail(rows["test"]["rows"])
    assert np.allclose(model.predict_proba(test[cols].to_numpy()), test["score"])
    scored = ref["score"].notna()
    held = sum(f["validation_rows"] for f in rows["folds"])
    assert rows["test"]["rows"] < scored.sum() <= rows["test"]["rows"] + held

    now = shop["end"] + pd.Timedelta(hours=6)
    at = now - pd.Timedelta(days=2)
    served = pd.DataFrame({"customer_id": [f"C{i:07d}" for i in range(len(ref))]})
    served["event_timestamp"] = at
    X = ref[cols].to_numpy()
    # serving as training (the scores the model gives these rows): nothing moved
    serve(data, model, served, X, model.predict_proba(X))
    code, out = monitor(data, "served", now, "served")
    rs = {r["feature"]: r for r in out["served"]["results"] if r["model"] == "churn"}
    assert set(rs) == {*model.input_columns, "score"}
    score = rs.pop("score")
    assert all(r["psi"] < 1e-9 and r["status"] == "ok" for r in rs.values())
    # the score's reference is the out-of-sample scores only
    assert score["entities"] == {"reference": int(scored.sum()), "served": len(ref)}
    assert sum(score["parts"]["value"]["ref_counts"]) == scored.sum()
    assert "ranking" in out["served"]["models"]  # no ranker here: said, not judged

    # serving loses one feature (a renamed column reads as missing): that feature, and the
    # score it moves, and nothing else
    lost = next(c for c in model.input_columns if ref[f"x:{c}"].nunique() > 5)
    broken = X.copy()
    broken[:, list(model.input_columns).index(lost)] = np.nan
    scores = model.predict_proba(broken)
    serve(data, model, served, broken, scores)
    code, out = monitor(data, "served", now, "served")
    flagged = {r["feature"] for r in out["served"]["results"] if r["status"] != "ok"}
    assert lost in flagged and code == 1
    assert flagged <= {lost, "score"}
    lost_row = next(r for r in out["served"]["results"] if r["feature"] == lost)
    assert lost_row["status"] == "alert" and lost_row["null_share"]["served"] == 1.0

    # the same vectors scored far higher (a model file swapped under the API): the score alone
    serve(data, model, served, X, np.minimum(model.predict_proba(X) + 0.4, 1.0))
    code, out = monitor(data, "served", now, "served")
    assert out["summary"]["served"]["alerting"] == ["churn.score"] and code == 1
