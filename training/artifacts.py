"""Where a trained model goes and what travels with it.

    DIR/models/<model>/<version>/model.joblib       the fitted estimator (sklearn API)
    DIR/models/<model>/<version>/model_card.json    what it is, what it saw, how good it is
    DIR/models/<model>/<version>/*.png              plots a person would rather look at
    DIR/models/<model>/latest.json                  the pointer the API loads

The pointer is written last and atomically (write then rename), so a reader never sees a version
whose files are half written. `load` is the one reader (the API loads its models with it at
start-up): a missing pointer or model file is an `ArtifactError` saying which file and what to run.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
from scipy.special import expit

from pipelines.storage import models_dir

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"
LATEST = "latest.json"


class ArtifactError(RuntimeError):
    """A model cannot be loaded (missing pointer or file, a card that does not fit the model)."""


def code_version(repo: Path | None = None) -> str:
    """The git commit the code came from, `+dirty` when the work tree has uncommitted changes."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "training", "pipelines", "feature_repo"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def run_cost(seconds: float, workers: dict | None = None) -> dict:
    """A card's `cost`: the run's wall time so far and this process's peak resident set (Linux
    reports ru_maxrss in KiB); `workers` adds what worker processes reported of theirs."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(peak / 2**30, 2)} | (
        {"workers": workers} if workers else {}
    )


def release_free_memory() -> None:
    """Hand freed memory back to the system: the C heap's free pages (glibc's `malloc_trim`)
    and Arrow's pool's unused memory. Freed memory stays in glibc's arenas, those of worker
    threads above all: after the every-query training read on the 1M-line shop (made on a
    thread) 2.6 GiB of it, on which the next step's peak then stacked. Called between big
    steps; glibc's part is skipped where the C library has no such call."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    pa.default_memory_pool().release_unused()


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library (not in musl)
    except (OSError, AttributeError):
        return None


def new_version() -> str:
    """A sortable version name: the UTC time of training."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def version_dir(data_dir: Path, model: str, version: str) -> Path:
    path = models_dir(data_dir) / model / version
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(data_dir: Path, model: str, version: str, estimator: Any, card: dict) -> Path:
    """Write the model and its card, then move the `latest` pointer to them."""
    path = version_dir(data_dir, model, version)
    joblib.dump(estimator, path / MODEL_FILE)
    (path / CARD_FILE).write_text(json.dumps(card, indent=2, default=_jsonable) + "\n")
    pointer = {
        "model": model,
        "version": version,
        "model_path": str(path / MODEL_FILE),
        "card_path": str(path / CARD_FILE),
        "feature_service": card.get("feature_service", {}).get("name"),
        "input_columns": card.get("input_columns"),
        **({"threshold": card["threshold"]} if "threshold" in card else {}),
    }
    latest = models_dir(data_dir) / model / LATEST
    tmp = latest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(pointer, indent=2) + "\n")
    os.replace(tmp, latest)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    estimator: Any
    input_columns: tuple[str, ...]
    feature_service: str
    threshold: float | None = None
    card: dict = field(default_factory=dict, repr=False)
    # the estimator's own probabilities in closed form, when load() proved them equal
    closed_form: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    # Both take the float matrix as it is, columns in `input_columns` order: a DataFrame would
    # cost sklearn's input checks milliseconds per request (see `_use_arrays`).
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, one per row of X."""
        if self.closed_form is not None:
            return self.closed_form(X)
        return self.estimator.predict_proba(X)[:, 1]

    def score(self, X: np.ndarray) -> np.ndarray:
        """Ranking score (higher is better), one per row of X."""
        return np.asarray(self.estimator.predict(X), dtype=float)


def check(models_dir: Path, name: str) -> tuple[dict, Path, Path]:
    """The pointer, model file and card of `name`, or ArtifactError saying what is missing."""
    pointer_path = Path(models_dir) / name / LATEST
    if not pointer_path.exists():
        raise ArtifactError(
            f"model '{name}' not found: {pointer_path} is missing "
            f"(train it with `shopfeast train {name}`, or set "
            f"SHOPFEAST_MODELS_DIR / SHOPFEAST_DATA_DIR)"
        )
    try:
        pointer = json.loads(pointer_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model '{name}': cannot read {pointer_path}: {exc}") from exc
    version = str(pointer.get("version", ""))
    model_path = _resolve(pointer_path.parent / version, pointer.get("model_path", MODEL_FILE))
    if not model_path.exists():
        raise ArtifactError(
            f"model '{name}' version {version}: model file {model_path} is "
            f"missing (retrain with `shopfeast train {name}`)"
        )
    card_path = _resolve(pointer_path.parent / version, pointer.get("card_path", CARD_FILE))
    return pointer, model_path, card_path


def load(models_dir: Path, name: str) -> LoadedModel:
    """Load `name` from `models_dir` through its latest pointer, or stop with a clear message."""
    pointer, model_path, card_path = check(models_dir, name)
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    try:
        estimator = joblib.load(model_path)
    except Exception as exc:  # a truncated or foreign file
        raise ArtifactError(f"model '{name}': cannot load {model_path}: {exc}") from exc
    columns = pointer.get("input_columns") or card.get("input_columns")
    service = pointer.get("feature_service") or (card.get("feature_service") or {}).get("name")
    if not columns or not service:
        raise ArtifactError(
            f"model '{name}': its pointer names no input_columns or "
            "feature_service; retrain with the current `shopfeast train`"
        )
    # a calibrated churn model (training/calibration.py) wraps the fitted estimator
    inner = getattr(estimator, "estimator", estimator)
    _use_arrays(inner, list(columns), name)
    _single_threaded(inner)
    threshold = pointer.get("threshold", card.get("threshold"))
    closed_form = linear_closed_form(inner, len(columns))
    if closed_form is not None and inner is not estimator:
        closed_form = _then(closed_form, estimator.calibrator)
    return LoadedModel(
        name=name,
        version=str(pointer.get("version", "unknown")),
        estimator=estimator,
        input_columns=tuple(columns),
        feature_service=service,
        threshold=None if threshold is None else float(threshold),
        card=card,
        closed_form=closed_form,
    )


def _then(
    first: Callable[[np.ndarray], np.ndarray], then: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    return lambda X: then(first(X))


def _resolve(version_dir: Path, value: str) -> Path:
    """The version's folder next to the pointer is where its files are (so a models folder
    copied elsewhere still works); the pointer's absolute path only when that folder is absent."""
    p = Path(value)
    return version_dir / p.name if version_dir.is_dir() or not p.is_absolute() else p


def _use_arrays(estimator: Any, columns: list[str], name: str) -> None:
    """Check the card's columns are the ones the estimator was fitted on, in the same order,
    then let it take plain arrays.

    sklearn remembers the fitted DataFrame's column names and checks every input against them
    (and warns on an array). Serving builds its matrix in the card's column order, so once the
    two orders are proved equal here, the names have nothing left to check.
    """
    steps = [estimator, *(s for _, s in getattr(estimator, "steps", None) or [])]
    for est in steps:
        fitted = getattr(est, "feature_names_in_", None)
        if fitted is None:
            continue
        if [str(c) for c in fitted] != columns:
            raise ArtifactError(
                f"model '{name}': the card's input_columns differ from the "
                "columns the estimator was fitted on; retrain it"
            )
        if "feature_names_in_" in vars(est):  # a Pipeline's is a view of its first step's
            del est.feature_names_in_
    if callable(getattr(estimator, "get_booster", None)):
        names = estimator.get_booster().feature_names
        if names is not None and list(names) != columns:
            raise ArtifactError(
                f"model '{name}': the card's input_columns differ from the "
                "booster's feature names; retrain it"
            )


def _single_threaded(estimator: Any) -> None:
    """One request scores a handful of rows: thread pools cost more than they save."""
    steps = getattr(estimator, "steps", None)
    for est in [estimator, *(s for _, s in steps or [])]:
        if hasattr(est, "n_jobs"):
            try:
                est.set_params(n_jobs=1)
            except (ValueError, TypeError):
                est.n_jobs = 1


def linear_closed_form(
    estimator: Any, n_inputs: int, rows: int = 512, seed: int = 0
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The positive-class probability of a fitted median-imputer -> standard-scaler -> binary
    logistic-regression Pipeline (the churn trainer's linear candidate) as numpy arithmetic.

    sklearn spends about 0.28 ms validating the input of each step for one row, the closed form
    5 us. It is used only after it reproduced the estimator's own `predict_proba` on random rows
    (missing values included) to 1e-12; any other estimator, or a mismatch, keeps sklearn's path.
    (sklearn is imported here, not at the top: `shopfeast serve` checks the artifacts first.)
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 3:
        return None
    imputer, scaler, model = (step for _, step in estimator.steps)
    if not (
        type(imputer) is SimpleImputer
        and type(scaler) is StandardScaler
        and type(model) is LogisticRegression
        and not imputer.add_indicator
        and imputer.missing_values is not None
        and np.isnan(imputer.missing_values)
        and len(model.classes_) == 2
        and model.coef_.shape == (1, n_inputs)
        and imputer.statistics_.shape == (n_inputs,)
    ):
        return None
    fill = np.asarray(imputer.statistics_, dtype=float)
    mean = np.zeros(n_inputs) if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=float)
    scale = np.ones(n_inputs) if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=float)
    coef = np.asarray(model.coef_[0], dtype=float)
    intercept = float(model.intercept_[0])

    def probability(X: np.ndarray) -> np.ndarray:
        X = np.where(np.isnan(X), fill, X)
        return expit(((X - mean) / scale) @ coef + intercept)

    rng = np.random.default_rng(seed)
    X = mean + rng.standard_normal((rows, n_inputs)) * np.where(scale > 0, scale, 1.0) * 2
    X[rng.random(X.shape) < 0.2] = np.nan
    try:
        same = np.allclose(probability(X), estimator.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    except Exception:  # noqa: BLE001 - any failure keeps sklearn's own path
        return None
    return probability if same else None
