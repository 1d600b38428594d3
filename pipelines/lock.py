"""One writer at a time per data directory: `data_dir_lock(DIR, "ingest", wait=0)`.

Every command that writes a data directory (ingest, features, materialize, train, `daily` and
`stream --seal`; not a running stream worker, which only lands parts in its own folder:
docs/streaming.md) holds an exclusive `flock` on `DIR/.lock` for its whole run. The kernel drops
the lock when the holder exits, however it exits (kill -9 included), so a lock is never left behind;
the file also holds who has it (pid, host, command, since), which a second run prints when it stops,
and which a run that finds it still filled in (its writer died without a clean release) reports as
recovered.

Nested use in one process (the demo runs ingest, then features, ...) is free: the process that
holds a directory's lock takes it again without waiting.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE = ".lock"
POLL_S = 0.2
BUSY_EXIT = 75  # the exit code of a command that found the directory busy (sysexits EX_TEMPFAIL)


class DataDirBusy(RuntimeError):
    """Another process holds the data directory's lock (and the wait, if any, ran out)."""

    def __init__(self, data_dir: Path, holder: dict | None, waited: float) -> None:
        self.data_dir, self.holder, self.waited = data_dir, holder, waited
        super().__init__(describe_busy(data_dir, holder, waited))


def describe_busy(data_dir: Path, holder: dict | None, waited: float) -> str:
    wait = f" (waited {waited:.0f}s)" if waited >= 1 else ""
    return (
        f"{data_dir} is busy: {_who(holder)}{wait}; try again when it has finished, "
        "or pass --wait SECONDS"
    )


def _who(holder: dict | None) -> str:
    """`shopfeast ingest raw` (pid 123 on host, since 2026-01-01T00:00:00+00:00)."""
    if not holder:
        return "locked by another process"
    return (
        f"locked by `{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
    )


@dataclass
class _Held:
    fd: int
    depth: int


_held: dict[str, _Held] = {}
_guard = threading.Lock()


@contextmanager
def data_dir_lock(data_dir: Path, command: str, wait: float = 0.0) -> Iterator[None]:
    """Hold DIR's writer lock for the block; wait up to `wait` seconds for it, else DataDirBusy."""
    root = Path(data_dir).resolve()
    key = str(root)
    with _guard:
        if key in _held:
            _held[key].depth += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _guard:
                _held[key].depth -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = _acquire(root, wait)
    stale = _read(fd)
    if stale:
        print(
            f"note: {root}: recovered the lock left by `{stale.get('command', '?')}` "
            f"(pid {stale.get('pid', '?')} on {stale.get('host', '?')}, since "
            f"{stale.get('since', '?')}), which did not finish",
            file=sys.stderr,
        )
    _write(fd, command)
    with _guard:
        _held[key] = _Held(fd, 1)
    try:
        yield
    finally:
        with _guard:
            del _held[key]
        # Released cleanly: the file goes (a waiter holding the old inode notices, see _acquire).
        os.unlink(root / LOCK_FILE)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(root: Path, wait: float) -> int:
    """An fd of DIR/.lock holding the exclusive flock, within `wait` seconds."""
    path = root / LOCK_FILE
    started = time.monotonic()
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            info = _read(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        else:
            if _same_file(fd, path):
                return fd
            os.close(fd)  # the holder unlinked it as we locked it: take the new file
            continue
        waited = time.monotonic() - started
        if waited >= wait:
            raise DataDirBusy(root, info, waited)
        if not told:
            print(f"waiting up to {wait:.0f}s for {root}: {_who(info)}", file=sys.stderr)
            told = True
        time.sleep(min(POLL_S, max(wait - waited, 0.01)))


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def holder(data_dir: Path) -> dict | None:
    """Who holds DIR's lock now (None when nobody does)."""
    path = Path(data_dir) / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else None
    except (OSError, ValueError):
        return None


def _write(fd: int, command: str) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
