"""Resolve the data directory: --data-dir, else $SHOPFEAST_DATA_DIR, else ./data."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO = REPO_ROOT / "feature_repo"


def data_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("SHOPFEAST_DATA_DIR")
    return Path(env).resolve() if env else Path("data").resolve()
