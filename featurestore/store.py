"""The one way shopfeast opens Feast: profiles, `apply` (plan first), `materialize`, `open_store`.

Three profiles share one set of definitions (feature_repo/):

- `embedded`: feature_repo/feature_store.yaml (SQLite online, DuckDB offline, file registry under
  DATA_DIR/feast/); nothing to run;
- `redis`: feature_repo/profiles/redis.yaml (Redis online, PostgreSQL SQL registry, DuckDB
  offline, shopfeast's chunked materialization engine);
- `spark`: feature_repo/profiles/spark.yaml (the redis profile with Feast's Spark offline store
  over the same parquet files; docs/scaling.md).

The yaml files read their hosts and paths from the environment; `shopconfig.settings.profile_env`
fills what is missing from the variables `make` exports (REDIS_URL, POSTGRES_DSN) and the data
directory. `apply` runs Feast's own CLI in a subprocess (Feast imports the repo's modules and
changes the working directory, which must not leak into a long-lived process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ibis
import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig, load_repo_config

from featurestore import TYPECHECKS, quiet
from featurestore.errors import StoreConfigError
from pipelines.lock import data_dir_lock
from pipelines.spark import session as spark_session
from shopconfig.progress import progress
from shopconfig.settings import (
    FEATURE_REPO,
    PROFILE_FILES,
    Profile,
    Settings,
    profile_env,
    resolve_data_dir,
)

PROFILES: dict[str, Path] = {name: FEATURE_REPO / rel for name, rel in PROFILE_FILES.items()}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _prepare(profile: Profile, data_dir: Path) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {sorted(PROFILES)}")
    os.environ.update(profile_env(profile, data_dir))
    if profile == "spark":  # Feast starts the SparkSession: Java and Python decided before it
        spark_session.prepare_env()
    (Path(data_dir) / "feast").mkdir(parents=True, exist_ok=True)


def open_store(
    profile: Profile = "embedded",
    data_dir: Path | None = None,
    *,
    ensure_applied: bool = True,
    offline_store: str | None = None,
) -> FeatureStore:
    """A FeatureStore over `data_dir` (default: the settings' data directory) with a profile:
    what the command line, training, notebooks and tests open.

    `offline_store` replaces the profile's offline store type (`duckdb`: Feast's own, which
    shopfeast's ASOF store replaced; what the benchmark and the tests compare it with).

    On the embedded profile the registry is applied first when it is missing or older than the
    definitions in feature_repo/ (a new service version after an upgrade), as `make` rebuilds a
    target older than its inputs (`ensure_applied=False` skips that). The redis profile's
    registry is applied by `shopfeast apply` (CI), never implicitly.
    """
    quiet.install()
    root = resolve_data_dir(data_dir)
    if ensure_applied and profile == "embedded":
        registry = root / "feast" / "registry.db"
        if not registry.exists() or _definitions_changed_since(registry):
            code = apply("embedded", root, plan=False)
            if code:
                raise StoreConfigError(f"feast apply failed (exit {code}) for {root}")
    _prepare(profile, root)
    bound_duckdb(root)
    if offline_store is None:
        return FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=PROFILES[profile])
    config = load_repo_config(FEATURE_REPO, PROFILES[profile])
    config.offline_config = {"type": offline_store}
    return FeatureStore(repo_path=str(FEATURE_REPO), config=config)


def open_serving_store(settings: Settings) -> FeatureStore:
    """The store a long-running API serves from, with the server's safety settings applied.

    The profile yaml (by default the redis profile) is read as Feast reads it, `${VAR}` expanded
    from the environment (`profile_env`). Then two things are set for a long-running server:

    - Redis socket and connect timeouts, and no client-side retry with back-off (redis-py's
      default retries three times with up to seconds of back-off): a dead Redis must cost a
      request a bounded fraction of a second, never a hanging worker. Values already in the
      connection string win (`password=`, `ssl=true`, `db=` and timeouts stay the operator's).
    - The registry cache refreshes in a background thread, so a request never waits on PostgreSQL.
    """
    config = serving_config(settings)
    try:
        return FeatureStore(repo_path=str(config.repo_path), config=config)
    except Exception as exc:
        raise StoreConfigError(
            f"cannot open the feature store ({type(exc).__name__}: {exc}); "
            "is the registry reachable?"
        ) from exc


def serving_config(settings: Settings) -> RepoConfig:
    profile = settings.resolved_profile()
    if not profile.exists():
        raise StoreConfigError(f"Feast profile {profile} not found (set SHOPFEAST_FEAST_PROFILE)")
    env = profile_env("redis", Path(settings.data_dir))
    raw = yaml.safe_load(expand_vars(profile.read_text(), env))
    online = raw.get("online_store")
    if isinstance(online, dict) and online.get("type") == "redis":
        online["connection_string"] = with_timeouts(
            str(online.get("connection_string", "localhost:6379")),
            settings.redis_socket_timeout_s,
            settings.redis_connect_timeout_s,
        )
    registry = raw.get("registry")
    if isinstance(registry, dict) and registry.get("registry_type") == "sql":
        registry.setdefault("cache_mode", "thread")
    try:
        config = RepoConfig(**raw)
    except Exception as exc:
        raise StoreConfigError(f"Feast profile {profile} is not valid: {exc}") from exc
    config.repo_path = Path(settings.feature_repo).resolve()
    return config


def expand_vars(text: str, env: dict[str, str]) -> str:
    """`${VAR}` and `$VAR` from `env`, unknown ones left as they are (os.path.expandvars' rule)."""
    return re.sub(
        r"\$(\w+|\{(\w+)\})", lambda m: env.get(m.group(2) or m.group(1), m.group(0)), text
    )


def with_timeouts(connection_string: str, socket_timeout: float, connect_timeout: float) -> str:
    """Add timeout and retry options to a Feast Redis connection string unless it has them."""
    parts = [p for p in connection_string.split(",") if p]
    given = {p.split("=", 1)[0].strip() for p in parts if "=" in p}
    extra = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": "null",
    }
    parts += [f"{k}={v}" for k, v in extra.items() if k not in given]
    return ",".join(parts)


def _definitions_changed_since(registry: Path) -> bool:
    built = registry.stat().st_mtime
    return any(
        f.stat().st_mtime > built
        for pattern in ("*.py", "*.yaml")
        for f in FEATURE_REPO.rglob(pattern)
        if "__pycache__" not in f.parts
    )


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
    spill = Path(data_dir) / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    limit = os.environ.get("SHOPFEAST_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT)
    ibis.set_backend(ibis.duckdb.connect(memory_limit=limit, temp_directory=str(spill)))
    _duckdb_bound = True


def feast_cli(
    profile: Profile, args: Sequence[str], data_dir: Path, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run Feast's CLI (`feast -f <profile yaml> ...`) from feature_repo/, as a person would
    (with shopfeast's filters of Feast's false warnings, featurestore/quiet.py)."""
    _prepare(profile, data_dir)
    cmd = [sys.executable, "-m", "featurestore.quiet", "-f", str(PROFILES[profile]), *args]
    return subprocess.run(
        cmd,
        cwd=FEATURE_REPO,
        env={**profile_env(profile, data_dir), TYPECHECKS: "1"},  # declarations type-checked
        text=True,
        capture_output=capture,
        check=False,
    )


def exec_feast_cli(profile: Profile, args: Sequence[str], data_dir: Path) -> None:
    """Become Feast's CLI (`feast -f <profile yaml> ...`, as feast_cli runs it) in this process:
    for a long-running server (`feast ui`), so a signal to the process reaches the server itself
    and leaves no orphaned child behind. Does not return."""
    _prepare(profile, data_dir)
    cmd = [sys.executable, "-m", "featurestore.quiet", "-f", str(PROFILES[profile]), *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(FEATURE_REPO)
    os.execve(sys.executable, cmd, profile_env(profile, data_dir))


def feast_plan(profile: Profile, data_dir: Path, check: bool = False) -> int:
    """What `feast apply` would change (featurestore/plan.py: Feast's plan without its false
    "Updated" after a materialization); with `check`, exit code 1 when anything would."""
    _prepare(profile, data_dir)
    cmd = [sys.executable, "-m", "featurestore.plan", "-f", str(PROFILES[profile])]
    return subprocess.run(
        [*cmd, *(["--check"] if check else [])],
        cwd=FEATURE_REPO,
        env={**profile_env(profile, data_dir), TYPECHECKS: "1"},
        check=False,
    ).returncode


def apply(profile: Profile, data_dir: Path, plan: bool = True, wait: float = 0.0) -> int:
    """The plan (what would change), then `feast apply`; returns the exit code."""
    with (
        data_dir_lock(data_dir, f"apply --profile {profile}", wait),
        progress(f"apply {profile}", total=2 if plan else 1, unit="steps") as bar,
    ):
        if plan:
            code = feast_plan(profile, data_dir)
            if code:
                return code
            bar.step("plan")
        code = feast_cli(profile, ["apply"], data_dir).returncode
        bar.step("feast apply")
        return code


def serve_registry(profile: Profile, data_dir: Path, host: str, port: int) -> None:
    """Feast's REST registry server (featurestore/registry_api.py) over a profile's registry."""
    from featurestore.registry_api import serve  # same layer; imported here for grpc's cost

    serve(open_store(profile, data_dir), host=host, port=port)


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
    wait: float = 0.0,
) -> MaterializeResult:
    """Bring the online store up to `end` (default now), holding the data directory's lock.

    A view never materialized before (or every view with `full`) is loaded from the epoch:
    Feast's `materialize-incremental` would start a view without a TTL one year back, and a
    change-point row older than that is still the current value. Afterwards runs are
    incremental from the last end.
    """
    with data_dir_lock(data_dir, f"materialize --profile {profile}", wait):
        return _materialize(profile, data_dir, end, full, views)


def _materialize(
    profile: Profile,
    data_dir: Path,
    end: datetime | None,
    full: bool,
    views: Sequence[str] | None,
) -> MaterializeResult:
    end = (end or datetime.now(UTC)).astimezone(UTC)
    store = open_store(profile, data_dir)
    names = set(views) if views else None
    chosen = [v for v in store.list_feature_views() if names is None or v.name in names]
    first = [v.name for v in chosen if full or v.most_recent_end_time is None]
    rest = [v.name for v in chosen if v.name not in first]
    # One call for the views loaded from the epoch and one for the rest: the chunked engine runs
    # the views of a call side by side (`parallel_views`) over one DuckDB database; the bar
    # counts views as each call returns.
    with progress(f"materialize {profile}", total=len(chosen), unit="views") as bar:
        if first:
            store.materialize(EPOCH, end, feature_views=first)
            for name in first:
                bar.step(f"{name} (from the epoch)")
        if rest:
            store.materialize_incremental(end, feature_views=rest)
            for name in rest:
                bar.step(name)
    return MaterializeResult(full=first, incremental=rest, end=end)
