"""Training's only door to features: Feast's `get_historical_features` through a feature service.

A model asks for its service (`churn_model_v1`, `ranking_model_v2`), never for a hand-written list
of features, so training and serving read exactly the same columns. Rows come back in the entity
frame's order (Feast may reorder them; we restore it), one per entity row.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pandas as pd
from feast import FeatureService, FeatureStore

ROW_ID = "_row"


def open_store(data_dir: Path, repo_path: Path | None = None) -> FeatureStore:
    """The embedded store over `data_dir`, applied first if this data directory has no registry.

    `repo_path` is for a copy of the definitions (experiments); by default the project's profile.
    """
    from shopfeast import feast_ops

    data_dir = Path(data_dir).resolve()
    if repo_path is not None:
        os.environ["SHOPFEAST_DATA_DIR"] = str(data_dir)
        feast_ops.bound_duckdb(data_dir)
        return FeatureStore(repo_path=str(repo_path))
    registry = data_dir / "feast" / "registry.db"
    if not registry.exists() or _definitions_changed_since(registry):
        code = feast_ops.apply("embedded", data_dir, plan=False)
        if code:
            raise RuntimeError(f"feast apply failed (exit {code}) for {data_dir}")
    return feast_ops.open_store("embedded", data_dir)


def _definitions_changed_since(registry: Path) -> bool:
    """A definition in feature_repo/ newer than the embedded registry (a new service version after
    an upgrade): the registry is re-applied, as `make` rebuilds a target older than its inputs."""
    from shopfeast.paths import FEATURE_REPO

    built = registry.stat().st_mtime
    return any(
        f.stat().st_mtime > built
        for pattern in ("*.py", "*.yaml")
        for f in FEATURE_REPO.rglob(pattern)
        if "__pycache__" not in f.parts
    )


def service(store: FeatureStore, name: str) -> FeatureService:
    return store.get_feature_service(name)


def service_version(name: str) -> int | None:
    """`churn_model_v1` -> 1: the version is part of the service's name, one service per version."""
    m = re.search(r"_v(\d+)$", name)
    return int(m.group(1)) if m else None


def service_features(fs: FeatureService) -> list[str]:
    """`view:feature` references the service serves, in its order (for the model card)."""
    return [f"{p.name_to_use()}:{f.name}" for p in fs.feature_view_projections for f in p.features]


def historical(store: FeatureStore, entity_df: pd.DataFrame, service_name: str) -> pd.DataFrame:
    """Features as of each entity row's `event_timestamp`, same rows, same order as `entity_df`.

    Extra columns of the entity frame (labels, split markers) ride along untouched.
    """
    frame = entity_df.reset_index(drop=True).copy()
    frame[ROW_ID] = range(len(frame))
    fs = service(store, service_name)
    with warnings.catch_warnings():
        # ibis calls a DuckDB method DuckDB has deprecated: noise on every read, nothing to do.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        out = store.get_historical_features(entity_df=frame, features=fs).to_df()
    if len(out) != len(frame):
        raise RuntimeError(
            f"{service_name}: {len(frame)} entity rows in, {len(out)} out (the store must "
            "return one row per entity row)"
        )
    out = out.sort_values(ROW_ID).drop(columns=ROW_ID).reset_index(drop=True)
    return out
