"""Feast operations for people and CI: profiles, `apply` (plan first), `materialize`, open a store.

Two profiles share one set of definitions (feature_repo/):

- `embedded`: feature_repo/feature_store.yaml (SQLite online, DuckDB offline, file registry under
  DATA_DIR/feast/); nothing to run;
- `redis`: feature_repo/profiles/redis.yaml (Redis online, PostgreSQL SQL registry, DuckDB
  offline, shopfeast's chunked materialization engine).

The yaml files read their hosts and paths from the environment; `profile_env` fills what is
missing from the variables `make` exports (REDIS_URL, POSTGRES_DSN) and the data directory.
`apply` runs Feast's own CLI in a subprocess (Feast imports the repo's modules and changes the
working directory, which must not leak into a long-lived process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse, urlunparse

from shopfeast.paths import FEATURE_REPO

Profile = Literal["embedded", "redis"]
PROFILES: dict[str, Path] = {
    "embedded": FEATURE_REPO / "feature_store.yaml",
    "redis": FEATURE_REPO / "profiles" / "redis.yaml",
}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def redis_connection_string(url: str) -> str:
    """redis[s]://[user:password@]host:port/db -> Feast's `host:port,db=N[,password=..]`."""
    u = urlparse(url)
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}", f"db={(u.path or '/0')[1:] or 0}"]
    if u.username:
        parts.append(f"username={u.username}")
    if u.password:
        parts.append(f"password={u.password}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def registry_url(dsn: str) -> str:
    """A libpq-style PostgreSQL URL -> the SQLAlchemy URL (psycopg 3) of Feast's SQL registry."""
    u = urlparse(dsn)
    scheme = "postgresql+psycopg" if u.scheme in ("postgres", "postgresql") else u.scheme
    return urlunparse(u._replace(scheme=scheme))


def profile_env(profile: Profile, data_dir: Path, base: dict[str, str] | None = None) -> dict:
    """The environment a profile's yaml expands: data dir always, hosts unless already set."""
    env = dict(os.environ if base is None else base)
    env["SHOPFEAST_DATA_DIR"] = str(Path(data_dir).resolve())
    if profile == "redis":
        env.setdefault(
            "REDIS_CONNECTION_STRING",
            redis_connection_string(env.get("REDIS_URL", DEFAULT_REDIS_URL)),
        )
        env.setdefault(
            "SHOPFEAST_REGISTRY_URL", registry_url(env.get("POSTGRES_DSN", DEFAULT_POSTGRES_DSN))
        )
    return env


def _prepare(profile: Profile, data_dir: Path) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {sorted(PROFILES)}")
    os.environ.update(profile_env(profile, data_dir))
    (Path(data_dir) / "feast").mkdir(parents=True, exist_ok=True)


def open_store(profile: Profile = "embedded", data_dir: Path | None = None):
    """A FeatureStore over `data_dir` with a profile (what training and serving call)."""
    from feast import FeatureStore

    from shopfeast import feast_quiet
    from shopfeast.paths import data_dir as resolve

    feast_quiet.install()
    root = resolve(data_dir)
    _prepare(profile, root)
    bound_duckdb(root)
    return FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=PROFILES[profile])


DUCKDB_MEMORY_LIMIT = "4GB"
_duckdb_bound = False


def bound_duckdb(data_dir: Path) -> None:
    """Give Feast's DuckDB offline store a memory limit and a place to spill, once per process.

    Feast runs its point-in-time joins on ibis's default DuckDB connection, and DuckDB's default
    limit is 80% of the machine's memory: training the ranker held 8 GiB on the demo shop and
    21 GiB (of 24) on the 100k-customer one. With a limit DuckDB spills what does not fit to
    `DIR/tmp/duckdb` (the same results; 2 GiB cost the demo's ranker 12% more time).
    `SHOPFEAST_DUCKDB_MEMORY_LIMIT` sets it (DuckDB's syntax: `4GB`, `500MB`).
    """
    global _duckdb_bound
    if _duckdb_bound:
        return
    import ibis

    spill = Path(data_dir) / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    limit = os.environ.get("SHOPFEAST_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT)
    ibis.set_backend(ibis.duckdb.connect(memory_limit=limit, temp_directory=str(spill)))
    _duckdb_bound = True


def feast_cli(
    profile: Profile, args: Sequence[str], data_dir: Path, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run Feast's CLI (`feast -f <profile yaml> ...`) from feature_repo/, as a person would
    (with shopfeast's filters of Feast's false warnings, shopfeast/feast_quiet.py)."""
    _prepare(profile, data_dir)
    cmd = [sys.executable, "-m", "shopfeast.feast_quiet", "-f", str(PROFILES[profile]), *args]
    return subprocess.run(
        cmd,
        cwd=FEATURE_REPO,
        env=profile_env(profile, data_dir),
        text=True,
        capture_output=capture,
        check=False,
    )


def apply(profile: Profile, data_dir: Path, plan: bool = True) -> int:
    """`feast plan` (what would change), then `feast apply`; returns the exit code."""
    if plan:
        code = feast_cli(profile, ["plan"], data_dir).returncode
        if code:
            return code
    return feast_cli(profile, ["apply"], data_dir).returncode


@dataclass
class MaterializeResult:
    full: list[str]
    incremental: list[str]
    end: datetime


def materialize(
    profile: Profile,
    data_dir: Path,
    end: datetime | None = None,
    full: bool = False,
    views: Sequence[str] | None = None,
) -> MaterializeResult:
    """Bring the online store up to `end` (default now).

    A view never materialized before (or every view with `full`) is loaded from the epoch:
    Feast's `materialize-incremental` would start a view without a TTL one year back, and a
    change-point row older than that is still the current value. Afterwards runs are
    incremental from the last end.
    """
    end = (end or datetime.now(UTC)).astimezone(UTC)
    store = open_store(profile, data_dir)
    names = set(views) if views else None
    chosen = [v for v in store.list_feature_views() if names is None or v.name in names]
    first = [v.name for v in chosen if full or v.most_recent_end_time is None]
    rest = [v.name for v in chosen if v.name not in first]
    if first:
        store.materialize(EPOCH, end, feature_views=first)
    if rest:
        store.materialize_incremental(end, feature_views=rest)
    return MaterializeResult(full=first, incremental=rest, end=end)
