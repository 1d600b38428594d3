"""Reach the Redis and PostgreSQL that tests and the redis profile need, or start local ones.

Order of preference: the configured REDIS_URL / POSTGRES_DSN if reachable; else, when they point at
this machine and the server binaries exist, start a local server (kept under .services/); else stop
with a message that says what is missing. Prints the environment to use as `export` lines.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".services"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def say(msg: str) -> None:
    print(f"[services] {msg}", file=sys.stderr)


def redis_ok(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping())
    except Exception:
        return False


def pg_ok(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


def wait_for(check, what: str, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    say(f"{what} did not answer within {seconds:.0f}s")
    return False


def is_local(host: str | None) -> bool:
    return host in (None, "", "localhost", "127.0.0.1", "::1")


def start_redis(url: str) -> bool:
    u = urlparse(url)
    binary = shutil.which("redis-server")
    if not is_local(u.hostname) or not binary:
        return False
    STATE.mkdir(exist_ok=True)
    port = str(u.port or 6379)
    say(f"starting a local redis-server on port {port}")
    subprocess.run(
        [
            binary,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            port,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(STATE),
            "--logfile",
            str(STATE / "redis.log"),
        ],
        check=False,
    )
    return wait_for(lambda: redis_ok(url), "redis-server")


def start_postgres(dsn: str) -> bool:
    u = urlparse(dsn)
    if not is_local(u.hostname):
        return False
    # A Debian-packaged cluster that is installed but stopped (the CI machines' kind).
    if shutil.which("pg_ctlcluster") and glob.glob("/etc/postgresql/*/main"):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        say(f"starting the PostgreSQL {version} cluster 'main'")
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
        )
        if wait_for(lambda: pg_ok(dsn), "PostgreSQL"):
            return True
    # Otherwise a private cluster under .services/pg (initdb refuses to run as root).
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl) or os.geteuid() == 0:
        return False
    data = STATE / "pg"
    port = str(u.port or 5432)
    user = u.username or "postgres"
    if not data.exists():
        STATE.mkdir(exist_ok=True)
        say("creating a private PostgreSQL cluster under .services/pg")
        subprocess.run(
            [initdb, "-D", str(data), "-U", user, "--auth=trust"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(STATE / "pg.log"),
            "-o",
            f"-p {port} -k {STATE} -h 127.0.0.1",
            "start",
        ],
        check=False,
    )
    if not wait_for(lambda: pg_ok(dsn.replace(u.path, "/postgres")), "PostgreSQL"):
        return False
    db = (u.path or "/test").lstrip("/")
    subprocess.run(
        [shutil.which("createdb") or "createdb", "-h", "127.0.0.1", "-p", port, "-U", user, db],
        check=False,
        stderr=subprocess.DEVNULL,
    )
    return pg_ok(dsn)


def main() -> int:
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    pg_dsn = os.environ.get("POSTGRES_DSN", DEFAULT_PG)
    missing = []
    if not (redis_ok(redis_url) or start_redis(redis_url)):
        missing.append(f"Redis at {redis_url} (set REDIS_URL, or install redis-server)")
    if not (pg_ok(pg_dsn) or start_postgres(pg_dsn)):
        missing.append(f"PostgreSQL at {pg_dsn} (set POSTGRES_DSN, or install PostgreSQL)")
    if missing:
        say("cannot reach: " + "; ".join(missing))
        return 1
    say(f"redis {redis_url} and postgres {pg_dsn} are up")
    print(f"export REDIS_URL={redis_url}")
    print(f"export POSTGRES_DSN={pg_dsn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
