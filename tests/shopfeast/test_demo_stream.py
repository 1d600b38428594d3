"""`make demo`'s streaming stage on a small trained shop (the whole demo is tests/shopfeast/
test_demo.py, heavy): the burst goes through a Redis Stream and the real worker into the embedded
(SQLite) online store, where plain `get_online_features` serves what the batch recomputation over
the customer's clean events and the accepted burst gives; the bad event is quarantined and not
landed; the burst's products become the customer's session candidates in the API's Scorer; the
stream's keys are gone afterwards; without a Redis the stage says why in one line."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd
import pytest
import redis

from featurestore import store as feast_store
from pipelines.realtime import EVENT_COLUMNS, SOURCES
from pipelines.storage import read_clean
from shopconfig.settings import Settings
from shopfeast import demo, demo_stream
from shopfeast.api_howto import example_ids
from tests.support.feast_support import claimed_redis_db
from tests.support.stream_support import comparable, expected_values, landed_event_ids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = 120


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """A small shop as the demo leaves it: ingested, features, applied and materialized
    (embedded), both models trained (the churn model on a 30-day horizon: 120 days of data)."""
    from pipelines import ingest
    from pipelines import run as features
    from shopfeast import generator
    from training import churn, ranking

    data = tmp_path_factory.mktemp("demo-stream") / "data"
    clock = pd.Timestamp(demo.START, tz="UTC") + pd.Timedelta(days=DAYS, hours=6)
    with contextlib.redirect_stdout(io.StringIO()):
        generator.run(
            out=data / "raw",
            customers=200,
            products=40,
            days=DAYS,
            seed=3,
            corrupt_fraction=0.0,
            start=demo.START,
            fmt="parquet",
            quiet=True,
        )
        assert ingest.run(raw_dir=data / "raw", data_dir=data, now=demo._iso(clock)) == 0
        features.run(data_dir=data, mode="incremental", echo=False)
        assert demo._register(data) == 0
        churn.run(data_dir=data, seed=3, horizon_days=30, echo=False)
        ranking.run(data_dir=data, seed=3, echo=False)
    return data


@pytest.fixture
def db(redis_url):
    with claimed_redis_db(redis_url) as url:
        yield url


def _typed(events: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(events)[list(EVENT_COLUMNS)]
    frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True)
    return frame


def test_burst_reaches_the_embedded_store_as_the_batch_recomputes_it(shop, db) -> None:
    customer = example_ids(shop)[0][0]
    clock = pd.Timestamp(demo.START, tz="UTC") + pd.Timedelta(days=DAYS, hours=6)
    at = demo_stream.burst_clock(shop, customer, clock)
    events = demo_stream.burst_events(shop, customer, at, seed=3)
    bad = [e for e in events if e["product_id"] == demo_stream.UNKNOWN_PRODUCT]
    good = [e for e in events if e["product_id"] != demo_stream.UNKNOWN_PRODUCT]
    assert len(bad) == 1 and len(good) == len(events) - 1
    store = feast_store.open_store("embedded", shop)
    pool = 200  # the whole candidate pool, ranked: where the session candidates are
    before = demo_stream.recommend(store, shop, customer, k=pool)

    burst = demo_stream.stream_burst(shop, store, events, db)

    c = burst.counters
    assert (c.accepted, c.quarantined, c.by_rule) == (len(good), 1, {"unknown_product": 1})
    assert sorted(landed_event_ids(shop)) == sorted(e["event_id"] for e in good)
    assert burst.landed and all(p.exists() for p in burst.landed)
    # nothing of the demo's stream is left on the (shared) Redis
    assert not list(redis.Redis.from_url(db).scan_iter(match="shopfeast:demo:*"))

    # online (plain get_online_features on SQLite) == the batch recomputation at the burst's end
    clean = read_clean(shop, "events", list(EVENT_COLUMNS))
    clean = clean[clean["customer_id"] == customer]
    burst_rows = _typed(good)
    everything = pd.concat([clean, burst_rows], ignore_index=True)
    end = burst_rows["event_ts"].max()
    for name, source in SOURCES.items():
        want = expected_values(everything, name, end)
        ids = sorted(set(burst_rows[source.join_key].dropna()))
        want = want[want[source.join_key].isin(ids)]
        refs = [f"{name}:{f.name}" for f in source.features]
        got = store.get_online_features(refs, [{source.join_key: i} for i in ids]).to_df()
        assert len(got) == len(ids)
        assert comparable(got, name) == comparable(want, name), name
        if name == "product_realtime":  # the burst alone: the batch's events are hours older
            views = sum(e["event_type"] == "product_view" for e in good)
            assert got["product_views_1h"].sum() == views

    # the API's Scorer on the embedded store now offers the burst's products from the session
    after = demo_stream.recommend(store, shop, customer, k=pool)
    viewed = {e["product_id"] for e in good if e["product_id"]}
    session = {i["product_id"] for i in after["items"] if i["source"] == "session"}
    assert viewed <= session, (viewed, session)
    assert len(demo_stream.side_by_side(before, after)) == 1 + max(
        len(before["items"]), len(after["items"])
    )


def test_no_redis_says_why_or_starts_a_private_one(tmp_path) -> None:
    dead = "redis://127.0.0.1:1/0"
    reason = demo_stream.reach_redis(dead, start=False)
    assert isinstance(reason, str) and f"no Redis answers at {dead}" in reason

    reached = demo_stream.reach_redis(dead, start=True)
    if isinstance(reached, str):
        pytest.skip(f"no redis-server here: {reached}")
    try:
        assert reached.url != dead and redis.Redis.from_url(reached.url).ping()
        assert "private redis-server" in reached.what
    finally:
        reached.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(reached.url, socket_connect_timeout=1).ping()


def test_demo_stage_prints_one_line_when_skipped(shop, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SHOPFEAST_STREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("PATH", "/nonexistent")  # no redis-server to start
    monkeypatch.setattr(demo_stream, "get_settings", Settings)  # not the process's cached one
    clock = pd.Timestamp(demo.START, tz="UTC") + pd.Timedelta(days=DAYS, hours=6)
    demo._stream(shop, clock, seed=3)
    out = capsys.readouterr().out
    assert "==> stream live events" in out
    skipped = [line for line in out.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "no Redis answers at redis://127.0.0.1:1/0" in skipped[0], out
