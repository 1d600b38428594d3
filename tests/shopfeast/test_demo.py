"""`make demo` end to end on a small shop: every stage runs, nothing is left implicit or noisy.

The demo is the first thing a shop's data team runs; this runs it as they do (the CLI, in its own
process, on a fresh data directory) and checks what it leaves behind, not only its exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

STAGES = (
    "==> generate a demo shop",
    "==> ingest into",
    "==> build feature sources",
    "==> register and materialize",
    "==> train the churn model",
    "==> train the recommendation ranker",
    "==> the API",
    "==> monitor the demo store",
    "==> monitor a shifted twin",
    "==> stream live events for customer",
)


@pytest.mark.slow
@pytest.mark.heavy  # make test-heavy
def test_demo_runs_every_stage_and_leaves_a_working_store(tmp_path) -> None:
    env = {**os.environ, "SHOPFEAST_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    args = ["demo", "--customers", "300", "--products", "60", "--days", "365", "--seed", "3"]
    run = subprocess.run(
        [sys.executable, "-m", "shopfeast.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    positions = [out.find(stage) for stage in STAGES]
    assert -1 not in positions and positions == sorted(positions), out[-3000:]
    for noise in ("Traceback", "Could not validate FileSource", "experimental feature"):
        assert noise not in out
    assert "curl -s -X POST http://127.0.0.1:8000/recommendations" in out
    # the streaming stage ran (a Redis answers or redis-server starts in the test environment)
    assert "8 accepted, 1 quarantined (1 unknown_product)" in out, out[-3000:]
    assert "after the burst" in out and "skipped:" not in out

    # the monitor's two reports: the demo store (every check, no alert in quality, freshness and
    # skew) and its shifted twin (drift alerts on what the shift moved)
    clean = json.loads((tmp_path / "reports" / "monitoring" / "latest.json").read_text())
    assert clean["report_html"] in out.replace("\n", "")
    for check in ("quality", "freshness", "skew"):
        assert clean["summary"][check]["status"] in ("ok", "warn"), clean["summary"]
    twin = json.loads((tmp_path / "shifted" / "reports" / "monitoring" / "latest.json").read_text())
    assert twin["summary"]["drift"]["status"] == "alert"
    shifted = {"customer_activity.sessions_30d", "product_stats.product_price"}
    assert shifted & set(twin["summary"]["drift"]["alerting"])

    # what it leaves behind: a quarantine report, a registry, an online store, two models
    report = json.loads((tmp_path / "reports" / "validation_report.json").read_text())
    assert report
    for model in ("churn", "ranking"):
        pointer = json.loads((tmp_path / "models" / model / "latest.json").read_text())
        assert pointer["feature_service"] in ("churn_model_v2", "ranking_model_v3")
    from featurestore import store as feast_store
    from pipelines.sources import sources

    store = feast_store.open_store("embedded", tmp_path)
    views = {v.name: v for v in store.list_feature_views()}
    # every declared source: the daily views, the declared ones and the two real-time ones
    assert set(views) == set(sources()) and all(v.most_recent_end_time for v in views.values())
    churn = json.loads((tmp_path / "models" / "churn" / "latest.json").read_text())
    online = store.get_online_features(
        store.get_feature_service(churn["feature_service"]),
        {"customer_id": _some_customers(tmp_path), "event_timestamp": [datetime.now(UTC)] * 5},
    ).to_dict()
    assert any(v is not None for v in online["orders_30d"]), online


def _some_customers(data_dir) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(data_dir / "features" / "customer_activity")
    return sorted(frame["customer_id"].unique())[:5]
