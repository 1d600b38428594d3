"""`shopfeast daily` on a small generated shop: ingest -> features -> materialize under one lock,
one summary, one exit code. The online values are checked against the feature source's parquet
(the latest change-point row per customer), not against what daily reports."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pandas as pd
import pytest

from featurestore.store import open_store
from pipelines import realtime
from pipelines.lock import BUSY_EXIT, LOCK_FILE
from pipelines.sources import sources
from shopfeast import daily, generator

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("daily") / "raw"
    generator.run(
        out=raw, customers=40, products=15, days=40, seed=5, fmt="parquet", quiet=True
    )  # fmt: skip
    return raw


def _rows(out: str) -> dict[str, str]:
    """stage -> its summary row."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] in ("ingest", "landed", "features", "materialize", "monitor"):
            rows[cells[0]] = line
    return rows


def test_daily_runs_every_stage_and_is_repeatable(shop, tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("SHOPFEAST_DATA_DIR", str(data))
    assert daily.run(shop, data) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert "exit 0" in out
    assert " ok " in rows["ingest"] and "batch b000001" in rows["ingest"]
    n = len(sources())  # the families, the declared views (feature_repo/aggregations.yaml) and
    batch = n - len(realtime.SOURCES)  # the real-time views (rewritten whole, not counted here)
    assert " ok " in rows["features"] and f"{batch} of {batch} sources moved on" in rows["features"]
    assert "skipped" in rows["landed"] and "nothing landed" in rows["landed"]  # no stream ran
    assert " ok " in rows["materialize"] and f"{n} views" in rows["materialize"]
    # a 40-day shop is too short for the monitor's reference (90-day warm-up): noted, not failed
    assert "skipped" in rows["monitor"] and "could not run: reference" in rows["monitor"]

    # the online store serves each customer's latest change point
    src = pd.read_parquet(data / "features" / "customer_activity")
    latest = src.sort_values("event_timestamp").groupby("customer_id").tail(1)
    ids = sorted(latest["customer_id"])[:5]
    store = open_store("embedded", data)
    online = store.get_online_features(
        features=["customer_activity:lifetime_orders"],
        entity_rows=[{"customer_id": i} for i in ids],
    ).to_dict()
    want = latest.set_index("customer_id").loc[ids, "lifetime_orders"].astype(int).tolist()
    assert online["lifetime_orders"] == want
    # and each (customer, product) pair that happened its latest row of the declared pair view
    pairs = pd.read_parquet(data / "features" / "customer_product_history")
    last = pairs.sort_values("event_timestamp").groupby(["customer_id", "product_id"]).tail(1)
    last = last.sort_values(["customer_id", "product_id"]).head(5)
    online = store.get_online_features(
        features=["customer_product_history:pair_orders_lifetime"],
        entity_rows=last[["customer_id", "product_id"]].to_dict("records"),
    ).to_dict()
    assert online["pair_orders_lifetime"] == last["pair_orders_lifetime"].astype(int).tolist()

    # the same batch again: nothing new, no error, the day still materializes
    assert daily.run(shop, data) == 0
    rows = _rows(capsys.readouterr().out)
    assert "already ingested" in rows["ingest"] and "up to date" in rows["features"]
    assert " ok " in rows["materialize"] and "from the epoch" not in rows["materialize"]

    # asked to fail on the monitor's checks, a monitor that cannot run fails the day
    assert daily.run(shop, data, fail_on="quality") == 2
    rows = _rows(capsys.readouterr().out)
    assert "failed" in rows["monitor"] and "exit 2: could not run" in rows["monitor"]


def test_a_bad_batch_stops_with_its_exit_code(shop, tmp_path, capsys) -> None:
    bad = tmp_path / "raw"
    bad.mkdir()
    for f in shop.iterdir():
        if f.is_file() and not f.name.startswith("orders."):
            (bad / f.name).write_bytes(f.read_bytes())
    data = tmp_path / "data"
    assert daily.run(bad, data) == 2
    out, err = capsys.readouterr()
    rows = _rows(out)
    assert "failed" in rows["ingest"] and "missing required table 'orders'" in err
    assert "not run: ingest failed" in rows["features"] and "exit 2" in out
    assert not (data / "features").exists()


def test_a_busy_data_directory_is_exit_75(shop, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another writer (a separate open file, like a process)
        assert daily.run(shop, data) == BUSY_EXIT
    finally:
        os.close(fd)
    assert "is busy" in capsys.readouterr().err
    assert not (data / "clean").exists()
