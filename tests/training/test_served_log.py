"""The served log's bounds and privacy: what the API keeps of what it scored, and no more."""

from __future__ import annotations

import hashlib
import hmac
import stat
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from training import served_log
from training.served_log import Bounds, ServedLog

COLUMNS = ["orders_30d", "spend_90d", "is_new"]
T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)


def _churn(log: ServedLog, i: int, now: datetime = T0) -> int:
    x = np.array([[i, i * 2.5, i % 2]], dtype=float)
    return log.append(
        "churn",
        "v1",
        "churn_model_v1",
        {"customer_id": [f"C{i:07d}"]},
        COLUMNS,
        x,
        [i / 100],
        now=now,
    )


def test_rows_are_what_was_scored_with_digests_for_ids(tmp_path) -> None:
    log = ServedLog(tmp_path)
    for i in range(30):
        assert _churn(log, i, T0 + timedelta(seconds=i)) == 1
    log.flush()
    frame = served_log.read(tmp_path, "churn")
    assert len(frame) == 30
    assert frame["score"].tolist() == [i / 100 for i in range(30)]
    assert frame["x:spend_90d"].tolist() == [i * 2.5 for i in range(30)]
    assert (frame["model_version"] == "v1").all()
    key_file = served_log.log_root(tmp_path) / ".key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    expected = [
        hmac.new(key, f"C{i:07d}".encode(), hashlib.sha256).hexdigest()[:32] for i in range(30)
    ]
    assert frame["customer_key"].tolist() == expected
    # no id in clear anywhere in the log's files
    for part in served_log.model_dir(tmp_path, "churn").rglob("*.parquet"):
        raw = part.read_bytes()
        assert not any(f"C{i:07d}".encode() in raw for i in range(30))
    # a second writer (another worker) uses the same key
    other = ServedLog(tmp_path)
    _churn(other, 3, T0 + timedelta(minutes=5))
    other.flush()
    again = served_log.read(tmp_path, "churn")
    late = again[again[served_log.SERVED_AT] == pd.Timestamp(T0 + timedelta(minutes=5))]
    assert late["customer_key"].tolist() == [expected[3]]
    # read() bounds by time
    window = served_log.read(
        tmp_path, "churn", T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    )
    assert window["score"].tolist() == [i / 100 for i in range(10, 20)]


def test_a_day_holds_at_most_max_rows_even_across_restarts(tmp_path) -> None:
    bounds = Bounds(max_rows_per_day=25, flush_rows=10)
    log = ServedLog(tmp_path, bounds)
    kept = sum(_churn(log, i) for i in range(40))
    log.flush()
    assert kept == 25 and log.dropped == 15
    restarted = ServedLog(tmp_path, bounds)  # counts what the day already holds on disk
    assert _churn(restarted, 99) == 0
    assert _churn(restarted, 99, T0 + timedelta(days=1)) == 1
    restarted.flush()
    days = served_log.read(tmp_path, "churn")[served_log.SERVED_AT].dt.strftime("%d").tolist()
    assert days.count("01") == 25 and days.count("02") == 1


def test_a_ranking_request_keeps_a_sample_of_its_candidates_with_their_ranks(tmp_path) -> None:
    log = ServedLog(tmp_path, Bounds(rows_per_request=20), rng=np.random.default_rng(1))
    n = 200
    scores = np.linspace(1, 0, n)
    ranks = np.arange(1, n + 1)
    x = np.column_stack([np.arange(n), np.zeros(n), np.ones(n)]).astype(float)
    ids = [f"P{i:07d}" for i in range(n)]
    kept = log.append(
        "ranking",
        "v2",
        "ranking_model_v2",
        {"customer_id": ["C0000001"] * n, "product_id": ids},
        COLUMNS,
        x,
        scores,
        ranks,
        now=T0,
    )
    log.flush()
    frame = served_log.read(tmp_path, "ranking")
    assert kept == len(frame) == 20 and frame["request_id"].nunique() == 1
    rows = frame["x:orders_30d"].astype(int).to_numpy()  # which candidates were kept
    assert len(set(rows)) == 20 and rows.max() > 100  # a sample, not the top of the list
    assert np.allclose(frame["score"], scores[rows]) and (frame["rank"] == ranks[rows]).all()
    assert frame["customer_key"].nunique() == 1 and frame["product_key"].nunique() == 20


def test_sample_rate_and_retention(tmp_path) -> None:
    log = ServedLog(
        tmp_path, Bounds(sample_rate=0.25, retention_days=30), rng=np.random.default_rng(7)
    )
    kept = sum(_churn(log, i) for i in range(2000))
    assert 400 < kept < 600
    log.flush()
    old_day = served_log.model_dir(tmp_path, "churn") / "day=2025-04-01"
    assert old_day.is_dir() is False
    old_day.mkdir(parents=True)
    (old_day / "part-1-000001-aaaaaa.parquet").write_bytes(b"")
    fresh = ServedLog(tmp_path, Bounds(retention_days=30))
    _churn(fresh, 1, T0 + timedelta(days=1))  # a new day prunes what is past retention
    assert not old_day.exists()
    assert (served_log.model_dir(tmp_path, "churn") / "day=2025-06-01").is_dir()


def test_reference_sample_is_bounded(tmp_path) -> None:
    n = served_log.REFERENCE_ROWS + 500
    matrix = pd.DataFrame({c: np.arange(n, dtype=float) for c in COLUMNS})
    path = served_log.save_reference(tmp_path, COLUMNS, matrix, np.arange(n) / n, seed=3)
    ref = pd.read_parquet(path)
    assert len(ref) == served_log.REFERENCE_ROWS
    assert list(ref.columns) == [f"x:{c}" for c in COLUMNS] + ["score"]
    assert np.allclose(ref["score"], ref["x:orders_30d"] / n)  # rows kept whole


def test_a_log_that_cannot_write_never_fails_the_answer(tmp_path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    log = ServedLog(blocked, Bounds(flush_rows=1))  # DIR/logs cannot be made under a file
    assert _churn(log, 1) == 0 and log.errors == 1
    log.flush()
