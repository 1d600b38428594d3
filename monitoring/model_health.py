"""Model health when labels mature: the churn predictions the API served, scored against what
happened.

A churn prediction served at t is about [t, t + horizon) (the card's horizon, 90 days by default),
so its label exists once the clean orders reach t + horizon. The served log (training/served_log.py)
keeps the prediction with a keyed digest of the customer id; the clean customers' ids are digested
with the same key to find who it was, and the label is computed by the training label's own
definition at t (training/labels.py `labels_at`): a customer with an order before t who placed none
in [t, t + horizon). One prediction per customer and day counts (the day's last: a client retrying
or refreshing a page must not weigh more).

The realised ROC-AUC is compared with the model card's test figure: a drop of the threshold's size
that chance does not explain (Hanley and McNeil's standard error of both AUCs, one-sided z) is a
warning or an alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.order_versions import latest_versions
from pipelines.storage import models_dir, read_clean
from training import served_log
from training.artifacts import CARD_FILE
from training.evaluation import classification_metrics
from training.labels import ENTITY_KEY, LABEL, TIMESTAMP, data_end, labels_at

MODEL = "churn"


@dataclass(frozen=True)
class HealthThresholds:
    """ROC-AUC drop from the card's test figure (warn / alert) with its one-sided z, and the
    least evidence judged: matured, labelled predictions and customers of each class."""

    warn_drop: float = 0.03
    alert_drop: float = 0.05
    warn_z: float = 1.645  # p < 0.05
    alert_z: float = 2.326  # p < 0.01
    min_predictions: int = 100
    min_per_class: int = 10


def check(data_dir: Path, th: HealthThresholds) -> dict:
    served = served_log.read(data_dir, MODEL)
    if served.empty:
        return {
            "not_run": f"no churn predictions logged under {served_log.model_dir(data_dir, MODEL)}"
        }
    key = served_log.load_key(data_dir, create=False)
    if key is None:
        return {"not_run": f"no digest key at {served_log.log_root(data_dir) / '.key'}"}
    orders = latest_versions(
        read_clean(
            data_dir, "orders", ["order_id", "customer_id", "order_ts", "status", "updated_at"]
        )
    )
    if orders.empty:
        return {"not_run": f"no clean orders under {data_dir}"}
    customers = read_clean(data_dir, "customers", ["customer_id", "signup_ts"])
    end = data_end(orders)
    ids = customers[ENTITY_KEY].dropna().astype(str).unique()
    who = dict(zip(served_log.digest(key, ids), ids, strict=True))
    results, notes = [], {}
    for version, rows in served.groupby("model_version", sort=True):
        card_path = models_dir(data_dir) / MODEL / str(version) / CARD_FILE
        if not card_path.exists():
            notes[str(version)] = f"no model card at {card_path}"
            continue
        card = json.loads(card_path.read_text())
        r = _judge(rows, card, who, orders, customers, end, th)
        if r.get("note"):
            notes[str(version)] = r["note"]
        else:
            results.append(r)
    out: dict = {"data_end": end.isoformat(), "results": results, "versions": notes}
    if not results:
        out["not_run"] = "; ".join(f"{v}: {n}" for v, n in notes.items())
    return out


def _judge(rows, card, who, orders, customers, end, th: HealthThresholds) -> dict:
    version = str(card.get("version"))
    horizon = pd.Timedelta(days=int(card["label"]["horizon_days"]))
    chosen = card["chosen"]
    test = card["metrics"]["test"][chosen]
    frame = pd.DataFrame(
        {
            ENTITY_KEY: rows["customer_key"].map(who),
            TIMESTAMP: rows[served_log.SERVED_AT],
            "score": rows[served_log.SCORE].to_numpy(np.float64),
        }
    )
    unknown = int(frame[ENTITY_KEY].isna().sum())
    frame = frame.dropna(subset=[ENTITY_KEY])
    frame["day"] = frame[TIMESTAMP].dt.floor("D")
    frame = frame.sort_values(TIMESTAMP).drop_duplicates([ENTITY_KEY, "day"], keep="last")
    served = len(frame)
    matured = frame[frame[TIMESTAMP] + horizon <= end]
    labelled = labels_at(orders, customers, matured, horizon, end)
    base = {
        "model": MODEL,
        "version": version,
        "horizon_days": horizon.days,
        "predictions": {
            "served": served,
            "matured": int(len(matured)),
            "labelled": int(len(labelled)),
            "unknown_customer": unknown,
        },
        "first_matures": (frame[TIMESTAMP].min() + horizon).isoformat() if served else None,
    }
    y = labelled[LABEL].to_numpy(int) if len(labelled) else np.array([], int)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if len(y) < th.min_predictions or min(pos, neg) < th.min_per_class:
        when = base["first_matures"] or "?"
        base["note"] = (
            f"{len(y)} matured, labelled predictions ({pos} churned, {neg} not; at least "
            f"{th.min_predictions} and {th.min_per_class} of each needed); the first served "
            f"matures at {when[:10]}, labels need the orders up to t + {horizon.days} d "
            f"(data ends {end:%Y-%m-%d})"
        )
        return base
    realised = classification_metrics(y, labelled["score"].to_numpy(np.float64))
    test_auc = float(test["roc_auc"])
    test_rows = int(card["rows"]["test"]["rows"])
    test_pos = int(card["rows"]["test"]["positives"])
    se = float(
        np.hypot(
            auc_se(realised["roc_auc"], pos, neg),
            auc_se(test_auc, test_pos, test_rows - test_pos),
        )
    )
    drop = test_auc - realised["roc_auc"]
    z = drop / se if se > 0 else 0.0
    status = "ok"
    if drop >= th.alert_drop and z >= th.alert_z:
        status = "alert"
    elif drop >= th.warn_drop and z >= th.warn_z:
        status = "warn"
    return base | {
        "status": status,
        "roc_auc": round(realised["roc_auc"], 6),
        "test_roc_auc": round(test_auc, 6),
        "drop": round(drop, 6),
        "z": round(z, 3),
        "se": round(se, 6),
        "positive_rate": round(realised["positive_rate"], 6),
        "test_positive_rate": round(test_pos / max(test_rows, 1), 6),
        "pr_auc": round(realised["pr_auc"], 6),
        "log_loss": round(realised["log_loss"], 6),
        "brier": round(realised["brier"], 6),
        "test_metrics": {
            k: test[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier") if k in test
        },
        "served_from": frame[TIMESTAMP].min().isoformat(),
        "matured_until": matured[TIMESTAMP].max().isoformat() if len(matured) else None,
    }


def auc_se(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of an ROC-AUC from its class counts."""
    if positives < 1 or negatives < 1:
        return float("inf")
    a = min(max(auc, 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (
        positives * negatives
    )
    return float(np.sqrt(max(var, 0.0)))
