"""What the API served, kept for the monitor: a bounded sample of model inputs and scores.

    DIR/logs/served/<model>/day=YYYY-MM-DD/part-<pid>-<seq>.parquet   the log (serving)
    DIR/logs/served/.key                                              the digest key (0600)
    DIR/models/<model>/<version>/served_reference.parquet              training's side

One row per scored entity (churn: the customer; ranking: a sampled candidate of the request):
when, the request, the model and version, a keyed digest of the entity ids (HMAC-SHA256 with the
data directory's own key: never the ids themselves, and not reversible without the key), the
model's input columns exactly as the model saw them (`x:<column>`) and the score. The monitor
compares these with the same columns of the model's test set (`served_reference.parquet`), and
joins matured churn predictions to their labels by digesting the clean customer ids with the same
key.

Shared by serving (writes), training (the reference sample) and monitoring (reads), so it lives
below all three. Feast's own feature logging (FeatureService(logging_config=...) and
`FeatureStore.write_logged_features`) was read and not used: only its Go feature server produces
logs (the Python SDK's reads log nothing), the schema is the feature service's raw features with
the entity keys in clear and no model score, and a size bound is not part of it (a sample rate
only). docs/monitoring.md says more.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import models_dir

FEATURE_PREFIX = "x:"
SCORE = "score"
RANK = "rank"
SERVED_AT = "served_at"
KEY_COLUMNS = {"customer_id": "customer_key", "product_id": "product_key"}
REFERENCE_FILE = "served_reference.parquet"
REFERENCE_ROWS = 5_000
DAY_PREFIX = "day="

log = logging.getLogger("shopfeast.served_log")


def log_root(data_dir: Path) -> Path:
    return Path(data_dir) / "logs" / "served"


def model_dir(data_dir: Path, model: str) -> Path:
    return log_root(data_dir) / model


def load_key(data_dir: Path, create: bool = True) -> bytes | None:
    """The data directory's digest key; created (0600, exclusively: several workers may race)
    on first use when `create`."""
    path = log_root(data_dir) / ".key"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won
        time.sleep(0.05)
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


def digest(key: bytes, ids: Sequence) -> list[str]:
    """Keyed digests of entity ids (128 bits of HMAC-SHA256, hex); None stays None."""
    done: dict = {}
    out = []
    for i in ids:
        if i is None:
            out.append(None)
            continue
        d = done.get(i)
        if d is None:
            d = done[i] = hmac.digest(key, str(i).encode("utf-8"), "sha256")[:16].hex()
        out.append(d)
    return out


@dataclass
class Bounds:
    """How much is kept: a share of requests, at most so many rows a day per model and process,
    at most so many rows of one ranking request, for so many days (labels mature after 90)."""

    sample_rate: float = 1.0
    max_rows_per_day: int = 20_000
    rows_per_request: int = 20
    retention_days: int = 120
    flush_rows: int = 1_000
    flush_seconds: float = 60.0


@dataclass
class _Day:
    day: str = ""
    rows: int = 0


@dataclass
class _Chunk:
    """One request's kept rows, as handed over (a frame is built only when written)."""

    served_at: datetime
    request_id: str
    version: str
    feature_service: str
    keys: dict[str, list]
    scores: np.ndarray
    ranks: np.ndarray | None
    columns: tuple[str, ...]
    matrix: np.ndarray


def _frame(chunks: list[_Chunk], key: bytes) -> pd.DataFrame:
    """Many requests' rows as one frame, built column-wise (a frame per request would cost the
    serving process a millisecond each)."""
    sizes = [len(c.scores) for c in chunks]

    def repeat(values) -> list:
        return [v for v, n in zip(values, sizes, strict=True) for _ in range(n)]

    out: dict = {
        SERVED_AT: pd.DatetimeIndex(repeat([c.served_at for c in chunks])),
        "request_id": repeat([c.request_id for c in chunks]),
        "model_version": repeat([c.version for c in chunks]),
        "feature_service": repeat([c.feature_service for c in chunks]),
    }
    for name in chunks[0].keys:
        out[name] = digest(key, [i for c in chunks for i in c.keys[name]])
    out[SCORE] = np.concatenate([c.scores for c in chunks])
    if chunks[0].ranks is not None:
        out[RANK] = np.concatenate([c.ranks for c in chunks])
    matrix = np.vstack([c.matrix for c in chunks])
    for j, col in enumerate(chunks[0].columns):
        out[FEATURE_PREFIX + col] = matrix[:, j]
    return pd.DataFrame(out)


@dataclass
class ServedLog:
    """The API's writer: `append` is cheap (a random draw, a few array copies); rows are buffered
    and written as a parquet part when the buffer is full or old, in a thread of their own."""

    data_dir: Path
    bounds: Bounds = field(default_factory=Bounds)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    _buffers: dict = field(default_factory=dict)
    _counts: dict = field(default_factory=dict)
    _writers: list = field(default_factory=list)
    _days: dict = field(default_factory=dict)
    _first: dict = field(default_factory=dict)
    _key: bytes | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0
    dropped: int = 0
    errors: int = 0

    def append(
        self,
        model: str,
        version: str,
        feature_service: str,
        entities: dict[str, Sequence],
        columns: Sequence[str],
        matrix: np.ndarray,
        scores: np.ndarray,
        ranks: np.ndarray | None = None,
        now: datetime | None = None,
    ) -> int:
        """Log one request's scored rows (a sample of them); returns the rows kept. Never raises
        for the log's own trouble (a full or read-only disk): the answer matters more."""
        try:
            return self._append(
                model, version, feature_service, entities, columns, matrix, scores, ranks, now
            )
        except OSError as exc:
            self._warn(exc)
            return 0

    def _append(
        self, model, version, feature_service, entities, columns, matrix, scores, ranks, now
    ) -> int:
        b = self.bounds
        if b.sample_rate < 1.0 and self.rng.random() >= b.sample_rate:
            return 0
        now = now or datetime.now(UTC)
        n = len(scores)
        rows = np.arange(n)
        if n > b.rows_per_request:
            rows = np.sort(self.rng.choice(n, b.rows_per_request, replace=False))
        with self._lock:
            day = self._days.setdefault(model, _Day())
            today = now.strftime("%Y-%m-%d")
            if day.day != today:
                day.day, day.rows = today, self._rows_on_disk(model, today)
                self._prune(model, now)
            room = b.max_rows_per_day - day.rows
            if room <= 0:
                self.dropped += len(rows)
                return 0
            rows = rows[:room]
            day.rows += len(rows)
            if self._key is None:
                self._key = load_key(self.data_dir)
            keys = {}  # raw ids stay in memory: digested by the writer, off the request's path
            for name, ids in entities.items():
                ids = list(ids)
                keys[KEY_COLUMNS.get(name, name)] = [ids[i] for i in rows]
            chunk = _Chunk(
                now,
                uuid.uuid4().hex,
                version,
                feature_service,
                keys,
                np.asarray(scores, dtype=np.float64)[rows],
                None if ranks is None else np.asarray(ranks, dtype=np.int32)[rows],
                tuple(columns),
                np.asarray(matrix, dtype=np.float64)[rows],
            )
            k = (model, today)
            self._buffers.setdefault(k, []).append(chunk)
            self._counts[k] = self._counts.get(k, 0) + len(rows)
            self._first.setdefault(k, time.monotonic())
            due = [
                k
                for k in self._buffers
                if self._counts[k] >= b.flush_rows
                or time.monotonic() - self._first[k] >= b.flush_seconds
                or k[1] != today
            ]
            batches = [(k, self._take(k)) for k in due]
        if batches:
            writer = threading.Thread(target=self._write, args=(batches,), daemon=True)
            self._writers = [w for w in self._writers if w.is_alive()] + [writer]
            writer.start()
        return len(rows)

    def flush(self) -> None:
        """Write everything buffered, now, and wait for the writes under way (at shutdown)."""
        with self._lock:
            batches = [(k, self._take(k)) for k in list(self._buffers)]
            writers = list(self._writers)
        self._write(batches)
        for w in writers:
            w.join()

    def _take(self, k) -> list[_Chunk]:
        self._first.pop(k, None)
        self._counts.pop(k, None)
        return self._buffers.pop(k)

    def _warn(self, exc: OSError) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning("served log: %s (%d rows dropped so far)", exc, self.errors)

    def _write(self, batches) -> None:
        try:
            self._write_parts(batches)
        except OSError as exc:
            self._warn(exc)

    def _write_parts(self, batches) -> None:
        for (model, day), parts in batches:
            if not parts:
                continue
            # one frame per model version's columns (a new version may have other inputs)
            groups: dict = {}
            for c in parts:
                groups.setdefault((c.columns, c.ranks is not None, tuple(c.keys)), []).append(c)
            frame = pd.concat([_frame(g, self._key) for g in groups.values()], ignore_index=True)
            frame[SERVED_AT] = pd.to_datetime(frame[SERVED_AT], utc=True)
            folder = model_dir(self.data_dir, model) / f"{DAY_PREFIX}{day}"
            folder.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._seq += 1
                name = f"part-{os.getpid()}-{self._seq:06d}-{uuid.uuid4().hex[:6]}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
            os.replace(tmp, folder / name)  # a reader never sees half a part

    def _rows_on_disk(self, model: str, day: str) -> int:
        folder = model_dir(self.data_dir, model) / f"{DAY_PREFIX}{day}"
        if not folder.is_dir():
            return 0
        return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("part-*.parquet"))

    def _prune(self, model: str, now: datetime) -> None:
        oldest = (now - timedelta(days=self.bounds.retention_days)).strftime("%Y-%m-%d")
        root = model_dir(self.data_dir, model)
        if not root.is_dir():
            return
        for folder in root.glob(f"{DAY_PREFIX}*"):
            if folder.name[len(DAY_PREFIX) :] < oldest:
                shutil.rmtree(folder, ignore_errors=True)


def read(data_dir: Path, model: str, start=None, end=None) -> pd.DataFrame:
    """The served rows of `model` in [start, end) (all when unbounded); empty without a log.
    Parts of different model versions may have different columns: missing ones are null."""
    root = model_dir(data_dir, model)
    files = sorted(root.glob(f"{DAY_PREFIX}*/part-*.parquet")) if root.is_dir() else []
    if start is not None or end is not None:
        lo = pd.Timestamp(start).strftime("%Y-%m-%d") if start is not None else ""
        hi = pd.Timestamp(end).strftime("%Y-%m-%d") if end is not None else "9999"
        files = [f for f in files if lo <= f.parent.name[len(DAY_PREFIX) :] <= hi]
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame[SERVED_AT] = pd.to_datetime(frame[SERVED_AT], utc=True)
    if start is not None:
        frame = frame[frame[SERVED_AT] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame[SERVED_AT] < pd.Timestamp(end)]
    return frame.reset_index(drop=True)


def save_reference(
    folder: Path, columns: Sequence[str], matrix: pd.DataFrame, scores: np.ndarray, seed: int
) -> Path:
    """Training's side of the comparison: up to REFERENCE_ROWS rows of the model's labelled
    rows, its input columns as the model saw them and the model's scores where they are out of
    sample (NaN where only an in-sample score exists: sharper than any the model will serve)."""
    frame = pd.DataFrame(
        {FEATURE_PREFIX + c: np.asarray(matrix[c], dtype=np.float64) for c in columns}
    )
    frame[SCORE] = np.asarray(scores, dtype=np.float64)
    if len(frame) > REFERENCE_ROWS:
        frame = frame.sample(REFERENCE_ROWS, random_state=seed)
    path = Path(folder) / REFERENCE_FILE
    frame.reset_index(drop=True).to_parquet(path, index=False)
    return path


def load_reference(data_dir: Path, model: str, version: str) -> pd.DataFrame | None:
    path = models_dir(data_dir) / model / version / REFERENCE_FILE
    return pd.read_parquet(path) if path.exists() else None
