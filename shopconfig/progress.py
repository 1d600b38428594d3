"""Progress of long work, and consoles that never wrap: what every stage prints through.

`progress(label, total, unit)` is a context manager with `advance(n, note)`, `step(note)` and
`grow(n)` (more work found on the way). Where it is drawn depends on standard error:

- a terminal: a rich progress bar with done/total, elapsed time and ETA (one live display per
  process: a stage run inside another, as in `shopfeast daily` or the demo, adds its own bar);
- not a terminal (cron, CI, a pipe, a log file): plain lines, at most one every
  `SHOPFEAST_PROGRESS_INTERVAL_S` seconds (default 10; work shorter than that prints only its
  last line), and one when it ends, never wrapped, e.g.
  `[train ranking] 5/12 steps (42%) 31s elapsed, ETA 43s: product grid 3/6`.

`SHOPFEAST_PROGRESS=live|plain|off` overrides the choice. Progress goes to standard error, so
standard output keeps only the commands' results and summaries.

`console()` is the rich Console the commands print their results with: on a terminal rich's own;
elsewhere no terminal width applies (rich assumes 80 columns and wrapped log lines mid-sentence),
so lines are never wrapped and tables take their natural width.

This is the lowest layer (shopconfig) because every layer's long work reports through it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

NO_WRAP_WIDTH = 10_000  # "no terminal": wide enough that rich never wraps a line
DEFAULT_INTERVAL_S = 10.0


def console(stderr: bool = False) -> Console:
    """A Console for results: rich's on a terminal, never wrapping elsewhere."""
    stream = sys.stderr if stderr else sys.stdout
    if _isatty(stream):
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, width=NO_WRAP_WIDTH, soft_wrap=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def mode() -> str:
    chosen = os.environ.get("SHOPFEAST_PROGRESS", "auto").strip().lower()
    if chosen in ("live", "plain", "off"):
        return chosen
    return "live" if _isatty(sys.stderr) else "plain"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SHOPFEAST_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Task:
    """One piece of long work: `total` units (None: unknown), `done` so far."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self.note = ""
        self.started = time.monotonic()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        self._show(final=False)

    def step(self, note: str) -> None:
        """One unit done, and what comes next (or what was just done)."""
        self.advance(1, note)

    def grow(self, n: int) -> None:
        """More work than announced (found on the way)."""
        self.total = (self.total or 0) + n
        self._show(final=False)

    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.started
        if final:
            return f"[{self.label}] done: {self.done} {self.unit} in {_duration(elapsed)}"
        text = f"[{self.label}] {self.done}"
        if self.total:
            text += f"/{self.total} {self.unit} ({min(self.done / self.total, 1):.0%})"
        else:
            text += f" {self.unit}"
        text += f" {_duration(elapsed)} elapsed"
        if self.total and 0 < self.done < self.total:
            eta = elapsed / self.done * (self.total - self.done)
            text += f", ETA {_duration(eta)}"
        return text + (f": {self.note}" if self.note else "")

    def _show(self, final: bool) -> None:  # drawn by the mode's subclass
        pass


class _PlainTask(Task):
    def __init__(self, label: str, total: int | None, unit: str, interval: float) -> None:
        super().__init__(label, total, unit)
        self.interval = interval
        self.last = self.started  # the first line after one interval: short work stays quiet

    def _show(self, final: bool) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.interval:
            self.last = now
            print(self.line(final), file=sys.stderr, flush=True)


class _LiveTask(Task):
    def __init__(self, label: str, total: int | None, unit: str, bar: Progress) -> None:
        super().__init__(label, total, unit)
        self.bar = bar
        self.id: TaskID = bar.add_task(label, total=total, note="")

    def _show(self, final: bool) -> None:
        self.bar.update(self.id, completed=self.done, total=self.total, note=self.note)


_live: Progress | None = None
_live_users = 0


@contextmanager
def progress(label: str, total: int | None = None, unit: str = "steps") -> Iterator[Task]:
    """Report the progress of `total` units of work named `label` (see the module's doc)."""
    global _live, _live_users
    chosen = mode()
    if chosen == "off":
        yield Task(label, total, unit)
        return
    if chosen == "plain":
        task = _PlainTask(label, total, unit, _interval())
        yield task
        task._show(final=True)
        return
    if _live is None:
        _live = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(stderr=True),
        )
        _live.start()
    _live_users += 1
    live = _LiveTask(label, total, unit, _live)
    try:
        yield live
    finally:
        if live.total is None:
            _live.update(live.id, total=live.done)
        _live_users -= 1
        if _live_users == 0:
            _live.stop()
            _live = None
