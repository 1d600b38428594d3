"""The stream worker against the real Redis: a replay equals the batch recomputation, every accepted
event counts once online and lands once, bad events are quarantined with their rule, and neither
a SIGKILL mid-batch nor a Redis restart loses or doubles anything."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from pipelines.realtime import SOURCES
from streaming import landing
from streaming.log import RedisStreamLog
from tests.support.feast_support import claimed_redis_db
from tests.support.stream_support import (
    RedisServer,
    comparable,
    drained,
    expected_values,
    landed_event_ids,
    make_shop,
    make_worker,
    offline_values,
    online_values,
    quarantined,
    repo_config,
    send,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    return make_shop(tmp_path_factory.mktemp("stream-shop"))


@pytest.fixture
def db(redis_url):
    with claimed_redis_db(redis_url) as url:
        yield url


def fresh_data_dir(shop, tmp_path: Path) -> Path:
    """A copy of the shop's data directory: each test lands its own events."""
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(shop[0], data_dir)
    return data_dir


def check_exactly_once(config, data_dir: Path, url: str, stream: str, events: pd.DataFrame) -> None:
    """Online values equal the recomputation over the accepted events; each landed once."""
    landed = landed_event_ids(data_dir)
    assert sorted(landed) == sorted(events["event_id"]), "every accepted event lands exactly once"
    end = events["event_ts"].max()
    for name, source in SOURCES.items():
        want = expected_values(events, name, end)
        got = online_values(config, data_dir, name, want[source.join_key].tolist())
        assert comparable(got, name) == comparable(want, name), name


def test_replay_equals_batch_recomputation_and_reconciles(shop, db, tmp_path):
    data_dir = fresh_data_dir(shop, tmp_path)
    events = shop[1]
    config = repo_config(db, tmp_path / "registry.db")
    send(db, "t:ev", events)
    worker = make_worker(config, db, data_dir, "t:ev", batch_size=300)
    counters = worker.run(drained(db, "t:ev"))
    assert counters.accepted == len(events) and counters.quarantined == 0
    check_exactly_once(config, data_dir, db, "t:ev", events)

    # Reconciliation: `daily`'s landed stage seals the landing zone and ingests it (every event
    # once), and the batch side's offline rows of the real-time views, read through Feast at the
    # last event, equal what the stream wrote online.
    from pipelines.run import run as run_features
    from pipelines.storage import read_clean
    from shopfeast.daily import _landed

    assert "1 sealed: " + f"{len(events):,} events clean, 0 quarantined" == _landed(data_dir)
    assert sorted(read_clean(data_dir, "events")["event_id"]) == sorted(events["event_id"])
    assert not list(landing.sealed_dir(data_dir).iterdir()), "the sealed directory moved aside"
    run_features(data_dir, mode="historical", only=list(SOURCES), echo=False)
    end = events["event_ts"].max()
    for name, source in SOURCES.items():
        ids = sorted(events[source.join_key].dropna().unique().tolist())
        online = online_values(config, data_dir, name, ids)
        offline = offline_values(config, data_dir, name, ids, end)
        assert comparable(online, name) == comparable(offline, name), name


def test_seal_killed_midway_is_finished_by_the_next(tmp_path):
    """A seal that died after moving some parts: the next seal finishes it, each part once."""
    data_dir = tmp_path / "data"
    rows = [{"event_id": f"e{i}", "customer_id": "c1"} for i in range(6)]
    for k in range(3):
        part = landing.new_part_id()
        landing.write_tmp(data_dir, part, landing.raw_rows(rows[2 * k : 2 * k + 2]))
        landing.publish(data_dir, part)
    parts = sorted(landing.landing_dir(data_dir).glob("part-*.parquet"))
    work = landing.sealed_dir(data_dir) / ".20250101T000000000000.tmp"
    work.mkdir(parents=True)
    parts[0].rename(work / parts[0].name)  # killed after moving one part of three
    first = landing.seal(data_dir)
    assert first is not None and first.name != "20250101T000000000000"
    sealed = sorted(p for p in landing.sealed_dir(data_dir).iterdir())
    assert [p.name for p in sealed][0] == "20250101T000000000000" and len(sealed) == 2
    ids = [i for p in sealed for i in pd.read_parquet(p / "events.parquet")["event_id"]]
    assert sorted(ids) == sorted(r["event_id"] for r in rows)
    assert landing.seal(data_dir) is None


def _bad_events(events: pd.DataFrame) -> tuple[list[dict], dict[str, str]]:
    """Broken copies of real events, each with the rule it must get (by event_id)."""
    base = events.iloc[:40].to_dict("records")
    bad, rules = [], {}

    def add(i: int, rule: str, **change) -> None:
        e = {**base[i], "event_id": f"bad-{i}", **change}
        bad.append(e)
        rules[e["event_id"]] = rule

    add(0, "unknown_product", event_type="product_view", product_id="P-nope")
    add(1, "unknown_customer", customer_id="C-nope")
    add(2, "future_timestamp", event_ts="2031-01-01T00:00:00Z")
    add(3, "invalid_value", event_type="hover")
    add(4, "unparseable", event_ts="yesterday")
    add(5, "missing_required", session_id=None)
    add(6, "missing_required", event_type="add_to_cart", product_id=None)
    # A second event with an id already used, other values; and an exact copy of an event.
    dup = {**base[7], "event_id": base[8]["event_id"], "session_id": "S-other"}
    bad.append(dup)
    rules[f"dup:{base[8]['event_id']}"] = "duplicate_id"
    copy = dict(base[9])
    bad.append(copy)
    rules[f"copy:{base[9]['event_id']}"] = "duplicate_row"
    no_id = {**base[10]}
    no_id.pop("event_id")
    bad.append(no_id)
    rules["noid"] = "missing_required"
    # A bot: 35 product views 0.2 s apart in one session.
    t0 = pd.Timestamp("2025-01-05T03:00:00Z")
    product = events["product_id"].dropna().iloc[0]
    for k in range(35):
        e = {
            **base[0],
            "event_id": f"bot-{k}",
            "session_id": "S-bot",
            "event_type": "product_view",
            "product_id": product,
            "event_ts": (t0 + pd.Timedelta(milliseconds=200 * k)).isoformat(),
        }
        bad.append(e)
        rules[e["event_id"]] = "bot_session"
    return bad, rules


def test_bad_events_are_quarantined_with_their_rule(shop, db, tmp_path):
    data_dir = fresh_data_dir(shop, tmp_path)
    good = shop[1].iloc[:40]
    bad, rules = _bad_events(shop[1])
    config = repo_config(db, tmp_path / "registry.db")
    send(db, "t:q", good)
    send(db, "t:q", bad)
    worker = make_worker(config, db, data_dir, "t:q", batch_size=500)
    counters = worker.run(drained(db, "t:q"))
    assert counters.accepted == len(good)
    q = quarantined(db, "t:q")
    assert len(q) == len(bad)
    got = {}
    for fields in q:
        eid = fields.get("event_id")
        if eid is None:
            key = "noid"
        elif eid.startswith(("bad-", "bot-")):
            key = eid
        elif fields.get("session_id") == "S-other":
            key = f"dup:{eid}"
        else:
            key = f"copy:{eid}"
        got[key] = fields["_rule"]
        assert fields["_detail"], fields
    assert got == rules
    check_exactly_once(config, data_dir, db, "t:q", good)


# --- crashes ------------------------------------------------------------------------------------


def _worker_paused_at(stage: str, config, url: str, data_dir: Path, stream: str, ready) -> None:
    """A worker process that stops dead at `stage` of its first batch (then gets SIGKILL)."""
    worker = make_worker(config, url, data_dir, stream, batch_size=200, consumer="doomed")

    def hook(at: str) -> None:
        if at == stage:
            ready.set()
            time.sleep(3600)

    worker.hook = hook
    worker.run(lambda: False)


@pytest.mark.parametrize("stage", ["online", "landed", "committed"])
def test_sigkill_mid_batch_loses_and_doubles_nothing(shop, db, tmp_path, stage):
    data_dir = fresh_data_dir(shop, tmp_path)
    events = shop[1].iloc[:500]
    config = repo_config(db, tmp_path / "registry.db")
    send(db, "t:k", events)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_worker_paused_at, args=(stage, config, db, data_dir, "t:k", ready))
    proc.start()
    try:
        assert ready.wait(60), "the worker never reached the stage"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    # A second worker claims what the first left pending, and finishes the stream.
    survivor = make_worker(
        config,
        db,
        data_dir,
        "t:k",
        batch_size=200,
        consumer="survivor",
        claim_idle_ms=100,
        claim_every_s=0.1,
    )
    survivor.run(drained(db, "t:k", settle_s=0.5))
    check_exactly_once(config, data_dir, db, "t:k", events)


def _worker_committing_late(config, url: str, data_dir: Path, stream: str, landed, go, done):
    """A worker that holds its first batch at `landed` until `go`, then commits it and stops
    dead before renaming its part (then gets SIGKILL)."""
    worker = make_worker(config, url, data_dir, stream, batch_size=200, consumer="late")

    def hook(at: str) -> None:
        if at == "landed":
            landed.set()
            go.wait(60)
        elif at == "committed":
            done.set()
            time.sleep(3600)

    worker.hook = hook
    worker.run(lambda: False)


def test_a_peer_killed_after_its_commit_is_published_by_a_running_worker(shop, db, tmp_path):
    """A worker killed between its commit and its rename, while another one runs: the part is
    acknowledged, so nothing is left to claim, and the running worker's start-up recovery came
    before the commit. The running worker still publishes it before it stops (two-consumer runs
    stopped by SIGTERM lost sight of such a part until some worker started again)."""
    data_dir = fresh_data_dir(shop, tmp_path)
    events = shop[1].iloc[:500]
    config = repo_config(db, tmp_path / "registry.db")
    send(db, "t:late", events)
    ctx = multiprocessing.get_context("fork")
    landed, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    proc = ctx.Process(
        target=_worker_committing_late, args=(config, db, data_dir, "t:late", landed, go, done)
    )
    proc.start()
    try:
        assert landed.wait(60), "the late worker never landed its batch"
        running = make_worker(
            config,
            db,
            data_dir,
            "t:late",
            batch_size=200,
            consumer="running",
            claim_idle_ms=3_600_000,  # never claims: the late worker's batch stays its own
            claim_every_s=3600,
        )
        result: dict[str, object] = {}
        thread = threading.Thread(
            target=lambda: result.update(c=running.run(drained(db, "t:late", settle_s=0.5)))
        )
        thread.start()
        time.sleep(1.0)  # the running worker has started (and recovered nothing) before the commit
        go.set()
        assert done.wait(60), "the late worker never committed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    thread.join(120)
    assert not thread.is_alive() and "c" in result
    assert not list(landing.landing_dir(data_dir).glob(".part-*.parquet.tmp")), (
        "a part left unpublished"
    )
    check_exactly_once(config, data_dir, db, "t:late", events)


def test_a_slow_worker_whose_entries_were_claimed_commits_nothing(shop, db, tmp_path):
    """A worker alive but slow past the claim time (a long GC pause, a loaded host): another one
    claims its entries and commits them; the slow one's commit is then refused as a whole, so
    nothing lands or is quarantined twice."""
    data_dir = fresh_data_dir(shop, tmp_path)
    events = shop[1].iloc[:150]
    bad, _ = _bad_events(shop[1])
    config = repo_config(db, tmp_path / "registry.db")
    send(db, "t:z", events)
    send(db, "t:z", bad[:5])
    slow = make_worker(config, db, data_dir, "t:z", batch_size=500, consumer="slow")
    fast = make_worker(
        config, db, data_dir, "t:z", consumer="fast", claim_idle_ms=100, claim_every_s=0.0
    )

    def pause(at: str) -> None:
        if at == "landed":  # online written, part on disk, not committed: the other one claims
            time.sleep(0.3)
            fast.run(drained(db, "t:z"))

    slow.hook = pause
    entries = slow.log.read_new("slow", 500, 50)
    assert len(entries) == len(events) + 5
    assert slow.process(entries) is None, "the slow worker's commit is fenced off"
    assert fast.counters.accepted == len(events) and fast.counters.quarantined == 5
    assert len(quarantined(db, "t:z")) == 5
    assert not list(landing.landing_dir(data_dir).glob(".part-*")), "the refused part is gone"
    check_exactly_once(config, data_dir, db, "t:z", events)


def test_redis_restart_loses_and_doubles_nothing(shop, tmp_path):
    data_dir = fresh_data_dir(shop, tmp_path)
    events = shop[1].iloc[:600]
    server = RedisServer(tmp_path)
    server.start()
    try:
        config = repo_config(server.url, tmp_path / "registry.db")
        ctx = multiprocessing.get_context("fork")
        done = ctx.Event()

        def serve() -> None:
            worker = make_worker(
                config, server.url, data_dir, "t:r", batch_size=100, retry_max_s=0.2
            )
            worker.run(done.is_set)

        proc = ctx.Process(target=serve)
        proc.start()
        send(server.url, "t:r", events.iloc[:400])
        # once the worker has read its first batch, freeze it there so that Redis restarts
        # under it mid-stream however fast it is (a fixed sleep let a quick worker drain all)
        log = RedisStreamLog(redis.Redis.from_url(server.url), "t:r")
        deadline = time.monotonic() + 60
        while log.backlog()["lag"] >= 400 and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGSTOP)
        backlog = log.backlog()
        assert backlog["lag"] + backlog["pending"] > 0, "the restart must come mid-stream"
        server.stop()
        time.sleep(0.5)
        server.start()
        os.kill(proc.pid, signal.SIGCONT)
        send(server.url, "t:r", events.iloc[400:])
        stop = drained(server.url, "t:r", settle_s=0.5)
        deadline = time.monotonic() + 60
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.1)
        done.set()
        proc.join(30)
        assert proc.exitcode == 0
        check_exactly_once(config, data_dir, server.url, "t:r", events)
    finally:
        server.kill()


def test_the_command_with_two_consumers_survives_a_sigkill_and_stops_on_sigterm(shop, tmp_path):
    """`shopfeast stream --consumers 2` as an operator runs it: one consumer process is killed
    at whatever it was doing, the other claims its entries; SIGTERM stops the rest cleanly (exit
    0); every accepted event once online and once landed."""
    import subprocess
    import sys

    import psutil

    from shopconfig.settings import redis_connection_string

    data_dir = fresh_data_dir(shop, tmp_path)
    events = shop[1]
    server = RedisServer(tmp_path)
    server.start()
    env = {
        **os.environ,
        "SHOPFEAST_DATA_DIR": str(data_dir),
        "REDIS_URL": server.url,
        "REDIS_CONNECTION_STRING": redis_connection_string(server.url),
        "SHOPFEAST_STREAM_REDIS_URL": server.url,
        "SHOPFEAST_STREAM_KEY": "t:cli",
        "SHOPFEAST_STREAM_BATCH_SIZE": "100",
        "SHOPFEAST_STREAM_CLAIM_IDLE_S": "1",
    }
    cmd = [sys.executable, "-m", "shopfeast.cli", "stream", "--consumers", "2"]
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        landed = landing.landing_dir(data_dir)
        send(server.url, "t:cli", events.iloc[:200])  # both consumers up and writing
        deadline = time.monotonic() + 300  # two processes importing Feast on a loaded machine
        while not list(landed.glob("part-*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.1)
        children = [
            c
            for c in psutil.Process(parent.pid).children()
            if "resource_tracker" not in " ".join(c.cmdline())
        ]
        assert len(children) == 2 and list(landed.glob("part-*.parquet"))
        send(server.url, "t:cli", events.iloc[200:])
        time.sleep(0.3)
        children[0].kill()  # SIGKILL, mid-stream
        stop = drained(server.url, "t:cli", settle_s=0.5)
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stop(), "the survivor claimed and finished the stream"
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=60)
        assert parent.returncode == 0, out
        assert "stream worker" in out and "quarantined" in out  # the survivor's closing line
        config = repo_config(server.url, tmp_path / "registry.db")
        check_exactly_once(config, data_dir, server.url, "t:cli", events)
    finally:
        if parent.poll() is None:
            parent.kill()
        server.kill()
