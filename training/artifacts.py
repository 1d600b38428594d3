"""Where a trained model goes and what travels with it.

    DIR/models/<model>/<version>/model.joblib       the fitted estimator (sklearn API)
    DIR/models/<model>/<version>/model_card.json    what it is, what it saw, how good it is
    DIR/models/<model>/<version>/*.png              plots a person would rather look at
    DIR/models/<model>/latest.json                  the pointer the API loads

The pointer is written last and atomically (write then rename), so a reader never sees a version
whose files are half written.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from pipelines.storage import models_dir

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"
LATEST = "latest.json"


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


def load_latest(data_dir: Path, model: str) -> tuple[Any, dict]:
    """The estimator and card the `latest` pointer names (what the API does at start-up)."""
    latest = models_dir(data_dir) / model / LATEST
    if not latest.exists():
        raise FileNotFoundError(
            f"no trained {model} model: {latest} is missing (run `shopfeast train {model}`)"
        )
    pointer = json.loads(latest.read_text())
    card = json.loads(Path(pointer["card_path"]).read_text())
    return joblib.load(pointer["model_path"]), card


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
