"""What the API served against what the model was tested on: its input columns and its scores.

The API keeps a bounded sample of the rows it scored (training/served_log.py); training keeps the
same columns of the model's test set with the model's out-of-sample scores
(`served_reference.parquet` next to the card). Each input column and the score is compared with
drift's statistics (PSI on the reference's quantile bins with a null bin, KS at the distinct
entities): a served column that moved is either the world moving since the test period or serving
building a column differently from training (an encoding, a default, a missing feature: the skew
that the online/offline comparison cannot see, because it happens after the read).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring import stats
from pipelines.storage import models_dir
from training import served_log
from training.artifacts import ArtifactError, check

MODELS = ("churn", "ranking")


@dataclass(frozen=True)
class ServedThresholds:
    """PSI warn / alert as drift's defaults; a window with fewer served entities is not judged."""

    warn: float = 0.1
    alert: float = 0.25
    min_entities: int = 100


def check_models(
    data_dir: Path, start: pd.Timestamp, end: pd.Timestamp, th: ServedThresholds
) -> dict:
    results, notes = [], {}
    for model in MODELS:
        try:
            pointer, _, card_path = check(models_dir(data_dir), model)
        except ArtifactError as exc:
            notes[model] = f"no model: {exc}"
            continue
        version = str(pointer.get("version"))
        ref = served_log.load_reference(data_dir, model, version)
        if ref is None:
            notes[model] = (
                f"{model} {version} has no {served_log.REFERENCE_FILE} (trained before the served "
                "log existed): retrain to compare"
            )
            continue
        if not served_log.model_dir(data_dir, model).is_dir():
            notes[model] = (
                f"nothing served: no log under {served_log.model_dir(data_dir, model)} (the API "
                "writes it, SHOPFEAST_SERVED_LOG)"
            )
            continue
        cur = served_log.read(data_dir, model, start, end)
        if not cur.empty:
            cur = cur[cur["model_version"] == version]
        key = "customer_key" if model == "churn" else "request_id"
        n_cur = int(cur[key].nunique()) if not cur.empty else 0
        if n_cur < th.min_entities:
            notes[model] = (
                f"{n_cur} {'customers' if model == 'churn' else 'requests'} served by {model} "
                f"{version} in {start:%Y-%m-%d}..{end:%Y-%m-%d} (at least {th.min_entities} "
                "needed to judge)"
            )
            continue
        results += compare(model, version, ref, cur, len(ref), n_cur, th)
    results.sort(key=lambda r: (-(r["psi"] or 0.0), r["model"], r["feature"]))
    order = {"alert": 0, "warn": 1, "ok": 2}
    results.sort(key=lambda r: order.get(r["status"], 3))
    out: dict = {
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "results": results,
        "models": notes,
    }
    if not results:
        out["not_run"] = "; ".join(f"{m}: {n}" for m, n in notes.items()) or "no model"
    return out


def compare(
    model: str,
    version: str,
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    n_ref: int,
    n_cur: int,
    th: ServedThresholds,
) -> list[dict]:
    """One result per input column and the score; `n_*` the independent observations (the
    reference's rows; distinct customers for churn, requests for ranking: a request's candidates
    share a customer)."""
    columns = [c for c in ref.columns if c.startswith(served_log.FEATURE_PREFIX)]
    out = []
    for col in [served_log.SCORE, *columns]:
        r = ref[col].to_numpy(np.float64)
        n_r = n_ref
        if col == served_log.SCORE:  # out-of-sample scores only (training/served_log.py)
            r = r[~np.isnan(r)]
            n_r = len(r)
        c = (
            cur[col].to_numpy(np.float64)
            if col in cur.columns
            else np.full(len(cur), np.nan)  # serving never sent it
        )
        b = stats.bin_numeric(r, c)
        value = stats.psi(b.ref, b.cur)
        p = stats.p_value(b, n_r, n_cur)
        status = "ok"
        if p is not None and value >= th.alert and p < 0.01:
            status = "alert"
        elif p is not None and value >= th.warn and p < 0.05:
            status = "warn"
        name = col.removeprefix(served_log.FEATURE_PREFIX)
        out.append(
            {
                "model": model,
                "version": version,
                "feature": name,
                "status": status,
                "psi": round(value, 6),
                "p_value": p,
                "test": "ks",
                "rows": {"reference": int(len(r)), "served": int(len(c))},
                "entities": {"reference": n_r, "served": n_cur},
                "null_share": {
                    "reference": _share(np.isnan(r)),
                    "served": _share(np.isnan(c)),
                },
                "parts": {
                    "value": {
                        "bins": b.labels,
                        "ref_counts": b.ref.tolist(),
                        "cur_counts": b.cur.tolist(),
                    }
                },
                **b.extra,
            }
        )
    return out


def _share(mask: np.ndarray) -> float | None:
    return round(float(mask.mean()), 6) if len(mask) else None
