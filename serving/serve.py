"""`shopfeast serve`: check what start-up needs, then run uvicorn on the app factory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from serving.errors import StartupError
from shopconfig.settings import Settings
from training.artifacts import ArtifactError, check


def run(
    host: str | None = None, port: int | None = None, workers: int = 1, data_dir: Path | None = None
) -> int:
    import uvicorn

    if data_dir is not None:  # one place for workers to read it from: the environment
        os.environ["SHOPFEAST_DATA_DIR"] = str(data_dir)
    settings = Settings()
    try:  # a missing key or model stops here with one line, before any worker starts
        if problems := settings.problems():
            raise StartupError("; ".join(problems))
        for name in (settings.churn_model, settings.ranking_model):
            check(settings.resolved_models_dir(), name)
    except (StartupError, ArtifactError) as exc:
        print(f"shopfeast serve: cannot start: {exc}", file=sys.stderr)
        return 1
    bind = host or settings.host
    open_api = settings.api_key is None and settings.jwt_jwks_file is None
    if open_api and bind not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"shopfeast serve: warning: listening on {bind} with no SHOPFEAST_API_KEY: anyone "
            "who reaches it can read features (SHOPFEAST_ENV=production requires a key)",
            file=sys.stderr,
        )
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=bind,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0
