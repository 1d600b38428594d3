"""The landing zone: every accepted stream event, as raw contract rows for the next batch ingest.

    DIR/landing/events/part-<uuid>.parquet         landed (committed) parts
    DIR/landing/events/.part-<uuid>.parquet.tmp    written, not yet known to be committed
    DIR/landing/sealed/<stamp>/events.parquet      parts gathered into a raw directory (`seal`)
    DIR/landing/ingested/<stamp>/events.parquet    ... once `shopfeast daily` has ingested it

A part is written to its temporary name and fsynced; the worker's commit transaction in Redis
records its uuid (with the acknowledgement of its entries); only then is it renamed. A worker that
dies before the commit leaves a temporary file no one renames (its entries are redelivered and
land in another part); one that dies between the commit and the rename leaves a recorded uuid,
and a worker renames the file (`recover`: when it starts, at each claim round and when it
stops). So each accepted event lands exactly once. `seal` moves the landed parts into one raw
directory that `shopfeast ingest` takes (and `shopfeast daily` seals and ingests them after the
day's batch).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contract import EVENTS
from pipelines.lock import data_dir_lock


def landing_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "landing" / "events"


def sealed_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "landing" / "sealed"


def new_part_id() -> str:
    return uuid.uuid4().hex


def tmp_path(data_dir: Path, part: str) -> Path:
    return landing_dir(data_dir) / f".part-{part}.parquet.tmp"


def final_path(data_dir: Path, part: str) -> Path:
    return landing_dir(data_dir) / f"part-{part}.parquet"


def write_tmp(data_dir: Path, part: str, rows: pa.Table) -> Path:
    """Write a part under its temporary name, durably (fsync of the file)."""
    path = tmp_path(data_dir, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pq.write_table(rows, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def publish(data_dir: Path, part: str) -> None:
    """Rename a committed part into place (idempotent: a second caller finds it done). A peer's
    `recover` may have published it first, and a `seal` may already have moved it on; a committed
    part is only ever written once, so a missing temporary file means exactly that."""
    src, dst = tmp_path(data_dir, part), final_path(data_dir, part)
    try:
        os.replace(src, dst)
    except FileNotFoundError:
        return
    _fsync_dir(dst.parent)


def discard(data_dir: Path, part: str) -> None:
    """A part whose commit was refused (its entries were claimed): never to be published."""
    tmp_path(data_dir, part).unlink(missing_ok=True)


def recover(data_dir: Path, committed: Callable[[list[str]], list[bool]]) -> list[str]:
    """Publish the temporary parts whose commit was recorded; returns their ids."""
    folder = landing_dir(data_dir)
    if not folder.exists():
        return []
    parts = [
        p.name[len(".part-") : -len(".parquet.tmp")] for p in folder.glob(".part-*.parquet.tmp")
    ]
    done = [p for p, ok in zip(parts, committed(parts), strict=True) if ok] if parts else []
    for part in done:
        publish(data_dir, part)
    return done


def raw_rows(fields: list[dict[str, str]]) -> pa.Table:
    """Accepted entries as raw rows: the events contract's columns as text (nulls where absent)."""
    return pa.table(
        {c: pa.array([f.get(c) for f in fields], pa.string()) for c in EVENTS.column_names}
    )


def seal(data_dir: Path, wait: float = 0.0) -> Path | None:
    """Gather the landed parts into a new raw directory for `shopfeast ingest`; None if none.

    A writer of the data directory like ingest: it holds DIR's lock (re-entered inside `daily`
    and the demo). Crash-safe: the parts are first moved (one rename each) into
    `sealed/.<stamp>.tmp/`, so a part is either still landed or in exactly one sealed directory;
    a seal killed midway is finished by the next one. Workers keep landing new parts meanwhile
    (they never take the lock: see docs/streaming.md, "The data directory")."""
    with data_dir_lock(data_dir, "stream --seal", wait):
        for unfinished in sorted(sealed_dir(data_dir).glob(".*.tmp")):
            _finish(unfinished)
        parts = sorted(landing_dir(data_dir).glob("part-*.parquet"))
        if not parts:
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        work = sealed_dir(data_dir) / f".{stamp}.tmp"
        work.mkdir(parents=True)
        for p in parts:
            os.replace(p, work / p.name)
        _fsync_dir(work)
        _fsync_dir(landing_dir(data_dir))
        return _finish(work)


def _finish(work: Path) -> Path | None:
    """`sealed/.<stamp>.tmp/part-*.parquet` -> `sealed/<stamp>/events.parquet` (idempotent)."""
    out = work.parent / work.name[1 : -len(".tmp")]
    parts = sorted(work.glob("part-*.parquet"))
    if not parts and not (work / "events.parquet").exists():  # killed right after mkdir
        work.rmdir()
        return None
    if not (work / "events.parquet").exists():  # else: written from all the parts already
        table = pa.concat_tables([pq.read_table(p) for p in parts])
        tmp = work / ".events.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, work / "events.parquet")
    for p in parts:
        p.unlink()
    os.replace(work, out)
    _fsync_dir(out.parent)
    return out


def ingested_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "landing" / "ingested"


def mark_ingested(data_dir: Path, sealed: Path) -> Path:
    """A sealed directory the batch ingest has taken, moved aside (kept: the raw record)."""
    out = ingested_dir(data_dir) / sealed.name
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(sealed, out)
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
