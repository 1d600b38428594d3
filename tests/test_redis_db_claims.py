"""The test runs' Redis database claims (tests.support.feast_support.claimed_redis_db) on the real
Redis: a held claim outlives its TTL because it is renewed, and a run killed with SIGKILL (no
`finally`) frees its database within the TTL instead of holding it for hours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from tests.support.feast_support import LOCK_PREFIX, claimed_redis_db, with_redis_db

pytestmark = pytest.mark.integration

HOLDER = """
import sys, time
from tests.support.feast_support import claimed_redis_db
with claimed_redis_db(sys.argv[1], ttl_seconds=1) as url:
    print(url.rsplit("/", 1)[1], flush=True)
    time.sleep(60)
"""


def _held(admin: redis.Redis) -> set[int]:
    return {int(k.rsplit(b":", 1)[1]) for k in admin.scan_iter(f"{LOCK_PREFIX}*".encode())}


def test_a_claim_is_renewed_while_held_and_freed_on_exit(redis_url):
    admin = redis.Redis.from_url(with_redis_db(redis_url, 0))
    with claimed_redis_db(redis_url, ttl_seconds=1) as url:
        db = int(url.rsplit("/", 1)[1])
        time.sleep(2.5)  # over twice the TTL: only the renewals keep it
        assert db in _held(admin)
    assert db not in _held(admin)


def test_a_killed_run_frees_its_database_within_the_ttl(redis_url):
    admin = redis.Redis.from_url(with_redis_db(redis_url, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        db = int(child.stdout.readline())
        time.sleep(2.5)
        assert db in _held(admin)  # alive past its TTL: renewed
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 5
        while db in _held(admin) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert db not in _held(admin)
    finally:
        child.kill()
        child.wait(10)
