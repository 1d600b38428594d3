"""shopfeast's settings: one typed object that every entry point resolves the same way.

The command line, the pipelines runner, training, serving, the notebooks and plain `feast` commands
run from `feature_repo/` all ask this module where the data directory is, which Feast profile to
open and with which environment, and what the services and models are called. Every variable is
prefixed `SHOPFEAST_` (see `.env.example`), read from the environment and from `.env`.

Redis and the registry are reached through the Feast profile: its `${REDIS_CONNECTION_STRING}` and
`${SHOPFEAST_REGISTRY_URL}` carry hosts, credentials and TLS, derived from the `REDIS_URL` and
`POSTGRES_DSN` that `make` exports when they are not set themselves (`profile_env`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse, urlunparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO = REPO_ROOT / "feature_repo"
DEFAULT_DATA_DIR = REPO_ROOT / "data"
DATA_DIR_ENV = "SHOPFEAST_DATA_DIR"

Profile = Literal["embedded", "redis", "spark"]
PROFILE_FILES: dict[str, str] = {
    "embedded": "feature_store.yaml",
    "redis": "profiles/redis.yaml",
    "spark": "profiles/spark.yaml",
}
SOURCE_FORMAT_ENV = "SHOPFEAST_SOURCE_FORMAT"  # "spark": feature_repo/ builds SparkSource views
SPARK_MASTER_ENV = "SHOPFEAST_SPARK_MASTER"
DEFAULT_SPARK_MASTER = "local[2]"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"

MIN_API_KEY_LENGTH = 16
# The longest id, anywhere: ingest quarantines longer ones (invalid_value), the API refuses them.
ID_MAX_LENGTH = 128


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHOPFEAST_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Data directory (default: the project's data/); models live in DIR/models.",
    )
    feature_repo: Path = Field(FEATURE_REPO, description="The Feast feature repo.")
    feast_profile: Path | None = Field(
        None,
        description="Feast yaml to serve from (default: the repo's profiles/redis.yaml, else its "
        "feature_store.yaml).",
    )
    models_dir: Path | None = Field(None, description="Default: DATA_DIR/models.")
    churn_model: str = "churn"
    ranking_model: str = "ranking"
    customer_service: str = "customer_360_v1"
    product_service: str = "product_360_v1"

    env: Literal["development", "production"] = Field(
        "development",
        description="production: the API key is required (start-up stops without one).",
    )
    api_key: SecretStr | None = Field(
        None, description="When set, every endpoint but /health and /ready needs X-API-Key."
    )
    # OAuth2 / OIDC bearer tokens (serving/auth.py): the issuer's public keys as a JWKS file.
    jwt_jwks_file: Path | None = Field(
        None, description="The issuer's JWKS document saved to a file; enables bearer JWTs."
    )
    jwt_issuer: str | None = Field(None, description="Required `iss` of bearer tokens.")
    jwt_audience: str | None = Field(None, description="Required `aud` of bearer tokens.")
    jwt_algorithms: list[str] = Field(
        ["RS256", "ES256", "EdDSA"], description="Signature algorithms accepted (never `none`)."
    )
    jwt_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf.")
    trusted_hosts: list[str] = Field(
        [], description='Host headers answered, e.g. ["api.shop.example", "*.shop.example"].'
    )
    audit_log: str | None = Field(
        None,
        description="Audit log path (JSON lines), or `off`; default DATA_DIR/logs/audit.jsonl "
        "in production, off in development.",
    )
    audit_max_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Rotate the audit log at.")
    audit_backups: int = Field(10, ge=1, description="Rotated audit files kept.")

    # What the API served, for the monitor (training/served_log.py): a sample of the model inputs
    # and scores, entity ids as keyed digests, under DATA_DIR/logs/served. Bounded: at most
    # max_rows_per_day rows per model and worker, rows_per_request of a ranking request, and
    # retention_days of days (churn labels mature after 90 days).
    served_log: bool = Field(True, description="Log a sample of served vectors and scores.")
    served_log_sample_rate: float = Field(1.0, ge=0, le=1, description="Share of requests logged.")
    served_log_max_rows_per_day: int = Field(20_000, ge=0)
    served_log_rows_per_request: int = Field(20, gt=0)
    served_log_retention_days: int = Field(120, gt=0)

    # Bounded time on a dead or hung Redis: added to the connection string unless it sets them.
    # asyncio measures them in wall time, waiting for the event loop included: under a full
    # load a healthy Redis's answer can wait a few hundred ms for its turn, so not much lower.
    redis_socket_timeout_s: float = Field(1.0, gt=0, le=30)
    redis_connect_timeout_s: float = Field(0.5, gt=0, le=30)
    ready_timeout_s: float = Field(2.0, gt=0, le=30)

    # Bounds on what one request may ask for.
    max_body_bytes: int = Field(64 * 1024, gt=0)
    max_batch_entities: int = Field(100, gt=0, le=10_000)
    max_k: int = Field(100, gt=0, le=1_000)
    max_historical_rows: int = Field(
        10_000, gt=0, le=1_000_000, description="ids x snapshots of one /features/historical call."
    )
    candidate_pool: int = Field(200, gt=0, le=2_000, description="Candidates scored per request.")

    # Product rows are shared by every request and change once a day: kept decoded in memory,
    # re-read in the background every catalog_refresh_s, never served older than max_stale_s.
    catalog_refresh_s: float = Field(300.0, gt=0)
    product_max_stale_s: float = Field(900.0, gt=0)
    # A dead or hung Redis is bounded by the socket timeouts above (about 0.3 s); this caps the
    # wall time of one request's reads, queueing included, so it must not cut off requests that
    # merely wait their turn under load.
    store_deadline_s: float = Field(5.0, gt=0, le=60, description="Cap on one request's reads.")

    # Upper bounds of raw numeric columns over the contract's defaults (pipelines/contract.py
    # UPPER_BOUNDS), "table.column" -> bound, e.g. '{"orders.total_amount": 1e6}'.
    value_bounds: dict[str, float] = Field(
        {}, description="Upper bounds of raw numeric columns (quarantined above: out_of_range)."
    )

    # The event stream (docs/streaming.md): where producers append and `shopfeast stream` reads.
    stream_key: str = Field("shopfeast:events", description="Redis Stream of shop events.")
    stream_group: str = Field("shopfeast-stream", description="Consumer group of the workers.")
    stream_redis_url: str | None = Field(
        None, description="Redis holding the stream (default: $REDIS_URL, else local)."
    )
    stream_batch_size: int = Field(500, gt=0, le=10_000, description="Entries per worker batch.")
    stream_claim_idle_s: float = Field(
        30.0, gt=0, description="Pending this long, an entry is claimed from its dead worker."
    )
    max_events_per_request: int = Field(500, gt=0, le=10_000, description="POST /events batch.")
    max_events_body_bytes: int = Field(512 * 1024, gt=0, description="POST /events body cap.")

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    log_level: str = "warning"

    def resolved_stream_redis_url(self) -> str:
        return self.stream_redis_url or os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)

    def problems(self) -> list[str]:
        """What stops start-up in this environment (empty when nothing does)."""
        found = []
        if self.jwt_jwks_file and not (self.jwt_issuer and self.jwt_audience):
            found.append(
                "SHOPFEAST_JWT_JWKS_FILE needs SHOPFEAST_JWT_ISSUER and SHOPFEAST_JWT_AUDIENCE "
                "(a token for another issuer or service must not pass)"
            )
        if bad := [a for a in self.jwt_algorithms if a.lower() == "none" or a.startswith("HS")]:
            found.append(f"SHOPFEAST_JWT_ALGORITHMS: {bad} are not public-key signatures")
        if self.jwt_jwks_file and not Path(self.jwt_jwks_file).is_file():
            found.append(f"SHOPFEAST_JWT_JWKS_FILE: {self.jwt_jwks_file} is not a file")
        if self.env != "production":
            return found
        key = self.api_key.get_secret_value() if self.api_key else ""
        short_key = bool(key) and len(key) < MIN_API_KEY_LENGTH
        if short_key or (not key and not self.jwt_jwks_file):
            found.append(
                f"SHOPFEAST_ENV=production needs SHOPFEAST_API_KEY of at least "
                f"{MIN_API_KEY_LENGTH} characters (every endpoint but /health and /ready "
                "checks it) or bearer tokens (SHOPFEAST_JWT_JWKS_FILE)"
            )
        return found

    @field_validator("data_dir", "feature_repo", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    def profile_path(self, profile: Profile) -> Path:
        """The yaml of a named profile in this settings' feature repo."""
        if profile not in PROFILE_FILES:
            raise ValueError(f"unknown profile {profile!r}; one of {sorted(PROFILE_FILES)}")
        return Path(self.feature_repo) / PROFILE_FILES[profile]

    def resolved_models_dir(self) -> Path:
        return Path(self.models_dir or Path(self.data_dir) / "models").resolve()

    def resolved_profile(self) -> Path:
        if self.feast_profile:
            return Path(self.feast_profile).resolve()
        redis = Path(self.feature_repo) / "profiles" / "redis.yaml"
        default = Path(self.feature_repo) / "feature_store.yaml"
        return (redis if redis.exists() else default).resolve()


@lru_cache
def get_settings() -> Settings:
    """The process's settings, built once (tests build their own and pass them to create_app)."""
    return Settings()


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """--data-dir when given, else $SHOPFEAST_DATA_DIR (or `.env`), else the project's data/.

    Built fresh on each call (not the cached `get_settings`), so a changed environment counts.
    """
    if explicit:
        return Path(explicit).expanduser().resolve()
    return Settings().data_dir


def resolve_feature_repo(explicit: str | Path | None = None) -> Path:
    """The feature repo (declarations, Feast definitions): explicit, else $SHOPFEAST_FEATURE_REPO
    (or `.env`), else the project's feature_repo/. Built fresh on each call, like the data dir."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    return Path(Settings().feature_repo)


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
    env[DATA_DIR_ENV] = str(Path(data_dir).resolve())
    # Which DataSource class the definitions build: the Spark offline store reads SparkSources.
    env[SOURCE_FORMAT_ENV] = "spark" if profile == "spark" else "file"
    if profile == "spark":
        env.setdefault(SPARK_MASTER_ENV, DEFAULT_SPARK_MASTER)
    if profile in ("redis", "spark"):
        env.setdefault(
            "REDIS_CONNECTION_STRING",
            redis_connection_string(env.get("REDIS_URL", DEFAULT_REDIS_URL)),
        )
        env.setdefault(
            "SHOPFEAST_REGISTRY_URL", registry_url(env.get("POSTGRES_DSN", DEFAULT_POSTGRES_DSN))
        )
    return env
