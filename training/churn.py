"""`shopfeast train churn`: who will stop buying in the next `horizon` days.

The way of the data: clean orders and customers -> labelled entity frame (customers at monthly
cutoffs, training/labels.py) -> features as of each cutoff from the `churn_model_v2` service (or
`--service churn_model_v1`) ->
split by time into train and test -> logistic regression, random forest and XGBoost, plus an RFM
baseline, each setting scored on rolling-origin folds inside train -> the best on the folds is
refitted on all of train, tested, and saved with its card and plots; the `latest` pointer moves
to it. The card gives each model minus the baseline on test with a paired bootstrap interval.
With a service that serves BG/NBD's inputs (v2), every learner but the baseline fits behind a
BG/NBD step (training/btyd.py): its parameters are learnt on the rows the learner fits on, so
they never see a validation or test row, and they are saved inside the model's Pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore.store import open_store
from pipelines.lock import data_dir_lock
from pipelines.order_versions import latest_versions
from pipelines.storage import read_clean
from shopconfig.progress import console as results_console
from shopconfig.progress import progress
from training import artifacts, btyd, churn_models, plots, served_log, store
from training import calibration as calibrate
from training.evaluation import (
    calibration,
    classification_metrics,
    paired_auc_difference,
)
from training.labels import (
    ENTITY_KEY,
    LABEL,
    MIN_CUTOFFS,
    TIMESTAMP,
    NotEnoughHistory,
    churn_labels,
    cutoffs,
    data_end,
    required_span,
)
from training.matrix import model_matrix, usable_columns
from training.split import fit_test_split, rolling_origin_folds, time_split

SERVICE = "churn_model_v2"
# v2 = v1 + the buying rhythm and trends (customer_rhythm, customer_cycle) and the BG/NBD step;
# v1 stays trainable, to measure what v2 adds on the same data (scripts/bench_models.py).
SERVICES = ("churn_model_v2", "churn_model_v1")
MODEL = "churn"
# The baseline's four inputs, by their contract names: recency (on demand), frequency, monetary
# value, and orders in the last 90 days; churn_models logs them.
RFM = ("days_since_last_order", "lifetime_orders", "lifetime_spend", "orders_90d")
SELECT_BY = "roc_auc"
FOLDS = 3  # rolling origins: the last three training cutoffs
SPLITS = ("customer-time", "time")
SEEN = "test_seen_customers"
BASELINE = "rfm_baseline"

console = results_console()


@dataclass
class Dataset:
    """The labelled training frame: entity columns, label, split and every service feature."""

    frame: pd.DataFrame
    columns: list[str]
    horizon_days: int
    data_end: pd.Timestamp
    cutoff_freq: str
    service_features: list[str]
    split: str
    service: str = SERVICE


def build_dataset(
    data_dir: Path,
    horizon_days: int = 90,
    cutoff_freq: str = "MS",
    feature_store=None,
    split: str = "customer-time",
    seed: int = 7,
    step: Callable[[str], None] | None = None,
    service: str = SERVICE,
) -> Dataset:
    """Labels from the clean tables, features from the store, split by time into train and test.

    `split="customer-time"` also keeps each customer in one split (training/split.py says why);
    `split="time"` is the plain split by cutoff. Rows outside every split have `split` None.
    `time_split` keeps the plain 70/10/20 reading (the seen-customer diagnostic uses its test).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if service not in SERVICES:
        raise ValueError(f"service must be one of {SERVICES}, not {service!r}")
    orders = latest_versions(
        read_clean(
            data_dir, "orders", ["order_id", "customer_id", "order_ts", "status", "updated_at"]
        )
    )
    customers = read_clean(data_dir, "customers", ["customer_id", "signup_ts"])
    horizon = pd.Timedelta(days=horizon_days)
    end = data_end(orders)
    at = cutoffs(orders, horizon, cutoff_freq)
    labels = churn_labels(orders, customers, at, horizon, end)
    if labels[TIMESTAMP].nunique() < MIN_CUTOFFS:
        raise NotEnoughHistory(
            f"too few labellable cutoffs ({labels[TIMESTAMP].nunique()} of the "
            f"{MIN_CUTOFFS} a train/validation/test split needs): "
            + required_span(orders, horizon, cutoff_freq)
        )
    step = step or (lambda note: None)
    step(f"{len(labels):,} labels; reading {service}")
    fs = feature_store or open_store("embedded", data_dir)
    frame = store.historical(fs, labels, service)
    step("features read")
    frame["time_split"] = time_split(frame[TIMESTAMP]).to_numpy()
    groups = frame[ENTITY_KEY] if split == "customer-time" else None
    frame["split"] = fit_test_split(frame[TIMESTAMP], groups, seed).to_numpy()
    cols = usable_columns(frame, exclude={ENTITY_KEY, TIMESTAMP, LABEL, "split", "time_split"})
    refs = store.service_features(store.service(fs, service))
    return Dataset(frame, cols, horizon_days, end, cutoff_freq, refs, split, service)


def rfm_columns(columns: list[str]) -> list[str]:
    """The service's columns holding recency, frequency and monetary value."""
    found = [c for name in RFM for c in columns if c == name or c.endswith(f"__{name}")]
    if len(found) != len(RFM):
        raise KeyError(f"{SERVICE} must serve {RFM} for the RFM baseline; it serves {columns}")
    return found


def learners(ds: Dataset) -> list[churn_models.Learner]:
    """The model families; behind a BG/NBD step when the service serves its inputs."""
    has_btyd = all(name in ds.columns for name in btyd.INPUTS)
    return [
        churn_models.with_btyd(learner, ds.horizon_days)
        if has_btyd and not learner.rfm_only
        else learner
        for learner in churn_models.LEARNERS
    ]


def folds_of(ds: Dataset, train: pd.DataFrame, seed: int) -> list[churn_models.Fold]:
    """The rolling-origin folds inside the training rows (customers kept apart under
    `customer-time`); folds whose fit or validation rows lack a class are left out."""
    groups = train[ENTITY_KEY] if ds.split == "customer-time" else None
    out = []
    for origin, fit, valid in rolling_origin_folds(train[TIMESTAMP], groups, seed, FOLDS):
        y = train[LABEL].to_numpy()
        if len(set(y[fit])) == 2 and len(set(y[valid])) == 2:
            out.append(churn_models.Fold(origin, fit, valid))
    if not out:
        raise ValueError(
            "no rolling-origin fold has both classes in its fit and validation rows: too little "
            "data for a churn model (more customers, more days, or --split time)"
        )
    return out


def fit_all(
    ds: Dataset, seed: int, step: Callable[[str], None] | None = None
) -> tuple[dict[str, churn_models.Fitted], dict]:
    """Every model and the baseline: each setting scored on the rolling-origin folds, the best
    refitted on every training row; `step` hears of each learner done. Returns the fitted models
    and {"X", "y" by part, "folds", "selection" by learner}."""
    f = ds.frame
    parts = {s: f[f["split"] == s] for s in ("train", "test")}
    if ds.split == "customer-time":
        # Diagnostic only: test-period rows of customers the models trained on.
        seen = f[ENTITY_KEY].isin(parts["train"][ENTITY_KEY].unique())
        parts[SEEN] = f[(f["time_split"] == "test") & seen]
    X = {s: model_matrix(p, ds.columns) for s, p in parts.items()}
    y = {s: p[LABEL].to_numpy().astype(int) for s, p in parts.items()}
    folds = folds_of(ds, parts["train"].reset_index(drop=True), seed)
    rfm = rfm_columns(ds.columns)
    step = step or (lambda note: None)
    matrices = [(lr, X["train"][rfm] if lr.rfm_only else X["train"]) for lr in learners(ds)]
    fits = churn_models.fit_learners(matrices, y["train"], folds, seed)
    for learner, _ in matrices:
        step(f"fitted {learner.name}")
    mats = {"X": X, "y": y, "folds": folds, "selection": fits.selection, "parts": parts}
    return fits.fitted, mats | {"workers": fits.workers}


def run(
    data_dir: Path,
    horizon_days: int = 90,
    seed: int = 7,
    cutoff_freq: str = "MS",
    split: str = "customer-time",
    feature_store=None,
    echo: bool = True,
    wait: float = 0.0,
    service: str = SERVICE,
    cost_fn: float = calibrate.COST_FN,
    cost_fp: float = calibrate.COST_FP,
) -> dict:
    """Train, evaluate, save (holding the data directory's lock); returns the model card.
    `cost_fn` and `cost_fp` price a missed churner and an offer to a customer who stays: the
    API's label threshold minimises their total (training/calibration.py)."""
    costs = (float(cost_fn), float(cost_fp))
    with data_dir_lock(data_dir, "train churn", wait):
        return _train(
            data_dir, horizon_days, seed, cutoff_freq, split, feature_store, echo, service, costs
        )


# what progress counts: the dataset (labels, then the feature service's point-in-time read), four
# models, the evaluation, the plots and the saved artifacts
CHURN_STEPS = 8


def _train(
    data_dir, horizon_days, seed, cutoff_freq, split, feature_store, echo, service, costs
) -> dict:
    with progress("train churn", total=CHURN_STEPS, unit="steps") as bar:
        return _train_steps(
            data_dir,
            horizon_days,
            seed,
            cutoff_freq,
            split,
            feature_store,
            echo,
            bar.step,
            service,
            costs,
        )


def _train_steps(
    data_dir,
    horizon_days,
    seed,
    cutoff_freq,
    split,
    feature_store,
    echo,
    step,
    service=SERVICE,
    costs=(calibrate.COST_FN, calibrate.COST_FP),
):
    say = console.print if echo else (lambda *a, **k: None)
    t0 = time.perf_counter()
    ds = build_dataset(
        data_dir, horizon_days, cutoff_freq, feature_store, split, seed, step, service
    )
    f = ds.frame
    counts = f["split"].value_counts().to_dict()
    say(
        f"churn dataset: {len(f):,} rows at {f[TIMESTAMP].nunique()} cutoffs, "
        f"{len(ds.columns)} features, churn rate {f[LABEL].mean():.1%}; split {split}: "
        + ", ".join(f"{s} {counts.get(s, 0):,}" for s in ("train", "test"))
        + f", unused {int(f['split'].isna().sum()):,}"
        + f" ({time.perf_counter() - t0:.1f}s)"
    )
    for part in ("train", "test"):
        labels = f.loc[f["split"] == part, LABEL]
        if labels.nunique() < 2:
            raise ValueError(
                f"the {part} split has {len(labels)} rows and not both classes: too little data "
                f"for a churn model (more customers, more days, or --split time)"
            )
    fitted, mats = fit_all(ds, seed, step)
    X, y, sel = mats["X"], mats["y"], mats["selection"]
    candidates = [n for n in fitted if n != BASELINE]
    chosen = max(candidates, key=lambda n: sel[n].mean_auc)
    model = fitted[chosen]
    # Calibrated on the chosen setting's out-of-fold scores (the map chosen on the rolling
    # origins), then the API's label: the cut of least stated cost on those scores.
    oof = sel[chosen].oof
    held = ~np.isnan(oof)
    valid = [f.valid for f in mats["folds"]]
    method, tried = calibrate.choose(oof, y["train"], valid)
    model.calibrator = calibrate.fit(method, oof[held], y["train"][held])
    oof = np.where(held, model.calibrator(np.nan_to_num(oof)), np.nan)
    cut = calibrate.cost_threshold(y["train"][held], oof[held], *costs)
    evaluated = [s for s in ("test", SEEN) if s in X and len(X[s])]
    scores = {s: {n: m.predict(X[s]) for n, m in fitted.items()} for s in evaluated}
    metrics = {
        s: {n: classification_metrics(y[s], p) for n, p in scores[s].items()} for s in evaluated
    }
    metrics["cross_validation"] = {
        n: {"roc_auc": v.mean_auc, "fold_roc_auc": v.fold_auc} for n, v in sel.items()
    }
    cal = {
        "method": method,
        "fold_log_loss": tried,
        "fitted_rows": int(held.sum()),
        "chosen_by": "mean log loss on each rolling origin, each map fitted on the origins "
        "before it",
        "test_roc_auc_before": float(
            classification_metrics(y["test"], model.raw(X["test"]))["roc_auc"]
        ),
    }
    threshold = {
        "value": cut.threshold,
        "cost_false_negative": cut.cost_fn,
        "cost_false_positive": cut.cost_fp,
        "cost_per_row_out_of_fold": cut.cost_per_row,
        "cost_per_row_test": calibrate.cost_at(
            y["test"], scores["test"][chosen], cut.threshold, *costs
        ),
        # flagging nobody and flagging everybody, on test, for scale
        "cost_per_row_test_none": calibrate.cost_at(
            y["test"], scores["test"][chosen], np.inf, *costs
        ),
        "cost_per_row_test_all": calibrate.cost_at(
            y["test"], scores["test"][chosen], -np.inf, *costs
        ),
    }
    groups = mats["parts"]["test"][ENTITY_KEY].to_numpy()
    metrics["test_minus_baseline"] = {
        n: paired_auc_difference(
            y["test"], scores["test"][n], scores["test"][BASELINE], groups=groups, seed=seed
        )
        for n in candidates
    }
    step(f"evaluated, chose {chosen}")
    version = artifacts.new_version()
    out = artifacts.version_dir(data_dir, MODEL, version)
    curves = {n: calibration(y["test"], scores["test"][n]) for n in (chosen, BASELINE)}
    figs = plots.roc_pr(y["test"], scores["test"], out)
    figs.append(plots.calibration(curves, out))
    figs.append(
        plots.importance(
            churn_models.importances(model),
            out,
            f"{chosen}: importance ({churn_models.importance_kind(model)})",
        )
    )
    card = _card(ds, fitted, chosen, metrics, curves, threshold, seed, version, figs, mats)
    card["calibration"] = cal
    # What the monitor compares the API's served vectors and scores with (training/served_log.py):
    # the labelled rows as the model saw them, with out-of-sample scores only: the chosen
    # setting's out-of-fold scores on train rows (empty where a row was never held out), the final
    # model's on test rows.
    served_log.save_reference(
        out,
        model.columns,
        pd.concat([X["train"], X["test"]], ignore_index=True),
        np.concatenate([oof, scores["test"][chosen]]),
        seed,
    )
    saved = model.estimator
    if model.calibrator.method != "none":
        saved = calibrate.CalibratedModel(model.estimator, model.calibrator)
    # training time and memory, as the ranking card has them, and the fold workers' share
    card["cost"] = artifacts.run_cost(time.perf_counter() - t0, mats["workers"])
    artifacts.save(data_dir, MODEL, version, saved, card)
    step("saved")
    say(summary(card))
    say(f"saved {out} ({cost_line(card['cost'])})")
    return card


def cost_line(cost: dict) -> str:
    """'92.0s, peak RSS 1.2 GiB' and, with worker processes, their CPU and largest peak."""
    line = f"{cost['seconds']:.1f}s, peak RSS {cost['peak_rss_gib']} GiB"
    w = cost.get("workers")
    if w:
        line += (
            f"; {w['processes']} fold workers: {w['fit_cpu_seconds']:.0f} CPU s in fits, "
            f"peak RSS {w['peak_rss_gib']} GiB each at most"
        )
    return line


def _card(ds, fitted, chosen, metrics, curves, threshold, seed, version, figs, mats) -> dict:
    f = ds.frame
    fs_name = ds.service
    rows = {
        "split": ds.split,
        "labelled": int(len(f)),
        "unused": int(f["split"].isna().sum()),
    }
    rows |= {
        s: {
            "rows": int((f["split"] == s).sum()),
            "positives": int(f.loc[f["split"] == s, LABEL].sum()),
        }
        for s in ("train", "test")
    }
    train = mats["parts"]["train"]
    rows["folds"] = [
        {
            "origin": f.origin,
            "fit_rows": int(len(f.train)),
            "validation_rows": int(len(f.valid)),
            "validation_positives": int(train[LABEL].to_numpy()[f.valid].sum()),
        }
        for f in mats["folds"]
    ]
    window = {
        s: {"first_cutoff": g[TIMESTAMP].min(), "last_cutoff": g[TIMESTAMP].max()}
        for s, g in f.groupby("split")
    }
    return {
        "model": MODEL,
        "version": version,
        "created_at": pd.Timestamp.now(tz="UTC"),
        "code_version": artifacts.code_version(),
        "seed": seed,
        "task": "binary classification: churn within the horizon",
        "label": {
            "definition": "1 when a customer with >= 1 non-cancelled order before t places no "
            "non-cancelled order in [t, t + horizon)",
            "horizon_days": ds.horizon_days,
        },
        "feature_service": {
            "name": fs_name,
            "version": store.service_version(fs_name),
            "features": ds.service_features,
        },
        "input_columns": fitted[chosen].columns,
        "training_window": {
            "cutoff_freq": ds.cutoff_freq,
            "first_cutoff": f[TIMESTAMP].min(),
            "last_cutoff": f[TIMESTAMP].max(),
            "data_end": ds.data_end,
            "splits": window,
        },
        "rows": rows,
        "chosen": chosen,
        "chosen_by": f"mean {SELECT_BY} over {len(mats['folds'])} rolling-origin folds",
        "baseline": BASELINE,
        "baseline_columns": fitted[BASELINE].columns,
        "baseline_transform": "log1p of each column, then the logistic regression's pipeline",
        "hyper_parameters": {n: m.params for n, m in fitted.items()},
        # BG/NBD's four parameters, fitted on the training rows (None without the step)
        "btyd": churn_models.btyd_parameters(fitted[chosen]),
        "settings_tried": {n: v.tried for n, v in mats["selection"].items()},
        "threshold": threshold["value"],
        "threshold_rule": f"minimises {threshold['cost_false_negative']:g} x missed churners + "
        f"{threshold['cost_false_positive']:g} x offers to customers who stay, on the chosen "
        "model's out-of-fold calibrated scores",
        "threshold_costs": threshold,
        "metrics": metrics,
        "calibration_test": curves,
        "plots": [p.name for p in figs],
    }


def summary(card: dict) -> str:
    t = card["metrics"]["test"]
    cv = card["metrics"].get("cross_validation", {})
    lines = [
        f"churn models on test ({card['rows']['test']['rows']:,} rows; "
        f"chosen by {card['chosen_by']}):"
    ]
    for n, m in t.items():
        mark = " <- chosen" if n == card["chosen"] else ""
        folds = f"  (folds {cv[n]['roc_auc']:.3f})" if n in cv else ""
        lines.append(
            f"  {n:<20} ROC-AUC {m['roc_auc']:.3f}  PR-AUC {m['pr_auc']:.3f}  "
            f"log loss {m['log_loss']:.3f}{folds}{mark}"
        )
    for n, d in card["metrics"].get("test_minus_baseline", {}).items():
        lines.append(
            f"  ROC-AUC {n} - {card['baseline']}: {d['mean']:+.3f} (95% interval "
            f"{d['low']:+.3f} to {d['high']:+.3f}, paired bootstrap over customers)"
        )
    cal = card.get("calibration")
    if cal:
        lines.append(
            f"  calibration: {cal['method']} (chosen on the rolling origins by log loss: "
            + ", ".join(f"{m} {v:.4f}" for m, v in cal["fold_log_loss"].items())
            + f"; test ROC-AUC before it {cal['test_roc_auc_before']:.3f})"
        )
    tc = card.get("threshold_costs")
    if tc:
        lines.append(
            f"  threshold {tc['value']:.3f}: least cost at {tc['cost_false_negative']:g} per "
            f"missed churner, {tc['cost_false_positive']:g} per offer to a customer who stays "
            f"(out-of-fold {tc['cost_per_row_out_of_fold']:.3f} per customer; test "
            f"{tc['cost_per_row_test']:.3f}, against {tc['cost_per_row_test_none']:.3f} flagging "
            f"nobody and {tc['cost_per_row_test_all']:.3f} everybody)"
        )
    tried = card.get("settings_tried", {}).get(card["chosen"], [])
    ways = {
        use: max((t["mean_auc"] for t in tried if t.get("btyd") is use), default=None)
        for use in (True, False)
    }
    if None not in ways.values():
        lines.append(
            f"  BG/NBD step {'used' if card.get('btyd') else 'not used'}: the folds' best "
            f"{card['chosen']} scored ROC-AUC {ways[True]:.4f} with it, {ways[False]:.4f} without"
        )
    bg = card.get("btyd")
    if bg:
        lines.append(
            f"  BG/NBD step fitted on {bg['fit_rows']:,} training rows: r {bg['r']:.3f}, "
            f"alpha {bg['alpha']:.3f}, a {bg['a']:.3f}, b {bg['b']:.3f} (weeks)"
        )
    seen = card["metrics"].get(SEEN, {}).get(card["chosen"])
    if seen:
        lines.append(
            f"  (leakage check: on test-period rows of customers it trained on, the chosen model "
            f"scores ROC-AUC {seen['roc_auc']:.3f})"
        )
    return "\n".join(lines)
