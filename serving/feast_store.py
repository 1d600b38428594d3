"""Open the one FeatureStore the API serves from, with serving's safety settings applied.

The profile yaml (by default feature_repo/profiles/redis.yaml) is read as Feast reads it, `${VAR}`
expanded from the environment, where hosts not set come from REDIS_URL / POSTGRES_DSN as for every
other command (shopfeast.feast_ops.profile_env). Then two things are set for a long-running
server:

- Redis socket and connect timeouts, and no client-side retry with back-off (redis-py's default
  retries three times with up to seconds of back-off): a dead Redis must cost a request a bounded
  fraction of a second, never a hanging worker. Values already in the connection string win, so
  an operator can still tune them there, along with `password=`, `ssl=true` and `db=`.
- The registry cache refreshes in a background thread, so a request never waits on PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from serving.errors import StartupError
from serving.settings import Settings
from shopfeast.feast_ops import profile_env


def load_config(settings: Settings) -> RepoConfig:
    profile = settings.resolved_profile()
    if not profile.exists():
        raise StartupError(f"Feast profile {profile} not found (set SHOPFEAST_FEAST_PROFILE)")
    env = profile_env("redis", Path(settings.data_dir))
    raw = yaml.safe_load(_expand(profile.read_text(), env))
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
        raise StartupError(f"Feast profile {profile} is not valid: {exc}") from exc
    config.repo_path = Path(settings.feature_repo).resolve()
    return config


def _expand(text: str, env: dict[str, str]) -> str:
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


def open_store(settings: Settings) -> FeatureStore:
    config = load_config(settings)
    try:
        return FeatureStore(repo_path=str(config.repo_path), config=config)
    except Exception as exc:
        raise StartupError(
            f"cannot open the feature store ({type(exc).__name__}: {exc}); "
            "is the registry reachable?"
        ) from exc
