"""`shopfeast daily RAW_BATCH_DIR`: the day's job in one command, for cron.

ingest the batch -> ingest the events `shopfeast stream` landed (sealed, then ingested: each
exactly once) -> bring the feature sources up to date (incremental) -> materialize the online
store -> monitor (`shopfeast monitor`: quality, freshness, drift, skew). All of it under one
lock of the data directory (the stages take it again re-entrantly: no other writer can slip in
between), then a one-screen summary (a line per stage: ok / failed / skipped, its time and what it
did) and one exit code: 0 when every stage ran, else the first failing stage's (2 a fatal input
problem in the batch or nothing to monitor, 1 a monitor check named in `--fail-on` alerted or
anything else failed, 75 the data directory busy). A batch ingested before is not an error: its
stages say so and the day's features and materialization still run (an `--as-of` moves on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from featurestore import store as feast_store
from monitoring.run import main as monitor_main
from pipelines import ingest
from pipelines import run as features
from pipelines.lock import BUSY_EXIT, DataDirBusy, data_dir_lock
from pipelines.storage import reports_dir
from shopconfig.progress import console as results_console
from streaming import landing

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class Stage:
    name: str
    status: str = SKIPPED
    seconds: float = 0.0
    detail: str = ""
    code: int = 0


def run(
    raw_dir: Path,
    data_dir: Path,
    profile: str = "embedded",
    as_of: str | None = None,
    encoding: str = "utf-8",
    wait: float = 0.0,
    fail_on: str | None = None,
) -> int:
    """Run the day's stages; print the summary; the exit code (see the module's doc)."""
    console = results_console()
    stages = [
        Stage("ingest"),
        Stage("landed"),
        Stage("features"),
        Stage("materialize"),
        Stage("monitor"),
    ]
    started = time.perf_counter()
    try:
        with data_dir_lock(data_dir, f"daily {raw_dir}", wait):
            _run_stages(stages, Path(raw_dir), Path(data_dir), profile, as_of, encoding, fail_on)
    except DataDirBusy as exc:
        results_console(stderr=True).print(f"error: {exc}", soft_wrap=True)
        return BUSY_EXIT
    code = next((s.code for s in stages if s.status == FAILED), 0)
    console.print(summary(stages, data_dir, code, time.perf_counter() - started))
    return code


def _run_stages(
    stages: list[Stage], raw_dir: Path, data_dir: Path, profile, as_of, encoding, fail_on
) -> None:
    steps: dict[str, Callable[[], str]] = {
        "ingest": lambda: _ingest(raw_dir, data_dir, as_of, encoding),
        "landed": lambda: _landed(data_dir),
        "features": lambda: _features(data_dir),
        "materialize": lambda: _materialize(data_dir, profile),
        "monitor": lambda: _monitor(data_dir, profile, fail_on),
    }
    for stage in stages:
        step = steps.get(stage.name)
        if step is None:
            continue
        t0 = time.perf_counter()
        try:
            stage.detail = step()
            stage.status = OK
        except StageSkipped as exc:
            stage.status, stage.detail = SKIPPED, str(exc)
        except StageFailed as exc:
            stage.status, stage.code, stage.detail = FAILED, exc.code, str(exc)
        except Exception as exc:  # one line in the summary; the stage's own output came before
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            stage.status, stage.code = FAILED, 1
            stage.detail = f"{type(exc).__name__}: {first}"
        stage.seconds = time.perf_counter() - t0
        if stage.status == FAILED:
            for later in stages[stages.index(stage) + 1 :]:
                later.detail = f"not run: {stage.name} failed"
            return


class StageFailed(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class StageSkipped(RuntimeError):
    """The stage could not run, and that is no failure of the day (the message says why)."""


def _ingest(raw_dir: Path, data_dir: Path, as_of: str | None, encoding: str) -> str:
    report_path = reports_dir(data_dir) / "validation_report.json"
    before = report_path.stat().st_mtime_ns if report_path.exists() else None
    code = ingest.run(raw_dir=raw_dir, data_dir=data_dir, as_of=as_of, encoding=encoding)
    if code:
        raise StageFailed(f"exit {code} (the line above says why)", code)
    after = report_path.stat().st_mtime_ns if report_path.exists() else None
    if after is None or after == before:
        return "already ingested: no new rows"
    report = json.loads(report_path.read_text())
    t = report["totals"]
    return (
        f"batch {report['batch']}: {t['rows_in']:,} rows, {t['clean']:,} clean, "
        f"{t['quarantined']:,} quarantined"
    )


def _landed(data_dir: Path) -> str:
    """The stream's landing zone into the batch side (docs/streaming.md, "Reconciliation"): seal
    the landed parts, ingest every sealed directory not yet ingested, then move it to
    `landing/ingested/` (a run killed before the move finds the file ingested already)."""
    landing.seal(data_dir)
    todo = sorted(p for p in landing.sealed_dir(data_dir).glob("[!.]*") if p.is_dir())
    if not todo:
        raise StageSkipped("nothing landed")
    clean = quarantined = 0
    for raw in todo:
        report_path = reports_dir(data_dir) / "validation_report.json"
        before = report_path.stat().st_mtime_ns if report_path.exists() else None
        code = ingest.run(raw_dir=raw, data_dir=data_dir)
        if code:
            raise StageFailed(f"{raw.name}: exit {code} (the line above says why)", code)
        if report_path.exists() and report_path.stat().st_mtime_ns != before:
            totals = json.loads(report_path.read_text())["totals"]
            clean += totals["clean"]
            quarantined += totals["quarantined"]
        landing.mark_ingested(data_dir, raw)
    return f"{len(todo)} sealed: {clean:,} events clean, {quarantined:,} quarantined"


def _features(data_dir: Path) -> str:
    outcomes = features.run(data_dir=data_dir, mode="incremental")
    moved = [o for o in outcomes if o.start_day is not None]
    if not moved:
        return "up to date"
    rows = sum(o.rows for o in moved)
    return f"{len(moved)} of {len(outcomes)} sources moved on, {rows:,} change-point rows"


def _materialize(data_dir: Path, profile: str) -> str:
    result = feast_store.materialize(profile=profile, data_dir=data_dir)
    views = len(result.full) + len(result.incremental)
    kind = f", {len(result.full)} from the epoch" if result.full else ""
    return f"{profile}: {views} views up to {result.end:%Y-%m-%d %H:%M} UTC{kind}"


def _monitor(data_dir: Path, profile: str, fail_on: str | None) -> str:
    """The monitor's own output, then its statuses. Without `--fail-on` it only informs: a
    monitor that cannot run (too short a history for its reference) is noted, not a failure."""
    console = results_console()
    console.record = True  # to find the monitor's own error line
    code = monitor_main(data_dir=data_dir, profile=profile, fail_on=fail_on, console=console)
    said = [x for x in console.export_text().splitlines() if x.startswith("error: ")]
    reason = said[-1].removeprefix("error: ") if said else ""
    latest = reports_dir(data_dir) / "monitoring" / "latest.json"
    statuses = ""
    if code != 2 and latest.exists():
        out = json.loads(latest.read_text())
        statuses = ", ".join(
            f"{name} {s['status']}" + (f" ({s['alerts']} alerts)" if s.get("alerts") else "")
            for name, s in out.get("summary", {}).items()
        )
    if code == 2 and not fail_on:
        raise StageSkipped(f"could not run: {reason}")
    if code:
        what = "a check named in --fail-on alerted" if code == 1 else f"could not run: {reason}"
        raise StageFailed(f"exit {code}: {what}" + (f"; {statuses}" if statuses else ""), code)
    return statuses or "done"


def summary(stages: list[Stage], data_dir: Path, code: int, seconds: float) -> Table:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = Table(title=f"shopfeast daily {data_dir} ({when}): exit {code}, {seconds:.0f}s")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("what")
    for s in stages:
        shown = f"{s.seconds:.1f}s" if s.seconds else "-"
        table.add_row(s.name, s.status, shown, s.detail)
    return table
