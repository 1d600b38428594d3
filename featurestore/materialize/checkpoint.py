"""Resumable materialization: the last join key written of an unfinished window, on disk.

Rows stream in join-key order and a chunk is recorded only after Redis acknowledged it, so after
a crash the next run of the same view skips the keys already written (re-reading, for them, only
rows newer than the interrupted window's end). A finished window removes its file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path


@dataclass
class Checkpoint:
    start: str  # ISO instants of the interrupted window
    end: str
    last_key: str
    rows: int

    @property
    def start_time(self) -> datetime:
        return datetime.fromisoformat(self.start)

    @property
    def end_time(self) -> datetime:
        return datetime.fromisoformat(self.end)


class CheckpointStore:
    def __init__(self, root: Path, project: str) -> None:
        self.root = Path(root)
        self.project = project

    def _path(self, view: str) -> Path:
        return self.root / f"{self.project}__{view}.json"

    def load(self, view: str) -> Checkpoint | None:
        path = self._path(view)
        if not path.exists():
            return None
        return Checkpoint(**json.loads(path.read_text()))

    def save(self, view: str, checkpoint: Checkpoint) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(view)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(checkpoint)))
        os.replace(tmp, path)

    def clear(self, view: str) -> None:
        self._path(view).unlink(missing_ok=True)
