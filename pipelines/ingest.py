"""`shopfeast ingest RAW_DIR`: raw files in, clean canonical parquet and a quarantine out.

Every row read ends in exactly one place, the clean tables or the quarantine (with the one rule it
broke, its original text, source file and row number), and the validation report says so per
table: rows_in = clean + quarantined. Tables are validated in `INGEST_ORDER`, so references point at
rows that are clean in this batch or an earlier one.

A batch is all-or-nothing: outputs are staged under DIR/.staging/ and moved into place only when
every table has been read, then the state manifest is written last. A batch whose files were all
ingested before (same content hashes) changes nothing. Fatal input problems raise `IngestError`
and the command exits 2 with a message naming the file and column.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table as RichTable

from pipelines import storage
from pipelines.coerce import to_text
from pipelines.contract import (
    ARROW_TYPES,
    CONTRACT_VERSION,
    FUTURE_TOLERANCE_HOURS,
    INGEST_ORDER,
    TABLES,
    Table,
)
from pipelines.ingest_state import (
    REFERENCE_COLUMNS,
    State,
    add_known,
    ingest_state_dir,
    outcome_state,
)
from pipelines.lock import BUSY_EXIT, DataDirBusy, data_dir_lock
from pipelines.readers import (
    FORMATS,
    IngestError,
    RawFile,
    check_required_columns,
    discover,
    file_sha256,
    header,
    read,
)
from pipelines.validate import RULE_NAMES, Known, Outcome, upper_bounds, validate
from shopconfig.progress import console as results_console
from shopconfig.progress import progress
from shopconfig.settings import get_settings

STAGING = ".staging"


def run(
    raw_dir: Path,
    data_dir: Path,
    now: str | None = None,
    wait: float = 0.0,
    bounds: dict[str, float] | None = None,
    encoding: str = "utf-8",
    as_of: str | None = None,
) -> int:
    """Ingest one batch; 0 when done (quarantined rows included), 2 on a fatal input problem,
    BUSY_EXIT when another writer held the data directory for longer than `wait` seconds.
    `bounds` override the contract's upper bounds (default: SHOPFEAST_VALUE_BOUNDS)."""
    console = results_console()
    try:
        clock = parse_now(now)
        limits = _bounds(get_settings().value_bounds if bounds is None else bounds)
        with data_dir_lock(data_dir, f"ingest {raw_dir}", wait):
            report = ingest(
                Path(raw_dir),
                Path(data_dir),
                clock,
                console,
                limits,
                encoding=encoding,
                as_of=parse_as_of(as_of, clock),
            )
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DataDirBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BUSY_EXIT
    if report is not None:
        print_summary(report, console, Path(data_dir))
    return 0


def _bounds(overrides: dict[str, float]) -> dict[str, float]:
    try:
        return upper_bounds(overrides)
    except ValueError as exc:
        raise IngestError(f"SHOPFEAST_VALUE_BOUNDS: {exc}") from exc


def parse_now(now: str | None) -> pd.Timestamp:
    """The clock of the future_timestamp rule: --now (ISO 8601, UTC without offset) or the wall."""
    if now is None:
        return pd.Timestamp.now(tz="UTC")
    try:
        ts = pd.Timestamp(now)
    except ValueError as exc:
        raise IngestError(f"--now: cannot read {now!r} as an ISO 8601 timestamp") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def parse_as_of(as_of: str | None, now: pd.Timestamp) -> pd.Timestamp | None:
    """--as-of: the instant the export is complete up to (not after the clock's tolerance)."""
    if as_of is None:
        return None
    try:
        ts = pd.Timestamp(as_of)
    except ValueError as exc:
        raise IngestError(f"--as-of: cannot read {as_of!r} as an ISO 8601 timestamp") from exc
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts > now + pd.Timedelta(hours=FUTURE_TOLERANCE_HOURS):
        raise IngestError(f"--as-of {ts.isoformat()} is later than the clock ({now.isoformat()})")
    return ts


def ingest(
    raw_dir: Path,
    data_dir: Path,
    now: pd.Timestamp,
    console: Console | None = None,
    bounds: dict[str, float] | None = None,
    encoding: str = "utf-8",
    as_of: pd.Timestamp | None = None,
) -> dict | None:
    """Ingest the batch in raw_dir into data_dir; the report, or None if it was ingested before.

    `bounds` override the contract's upper bounds ("table.column" -> bound); `encoding` is that of
    CSV files; `as_of` the instant the export is complete up to (features run snapshots to it)."""
    console = console or Console(quiet=True)
    bounds = upper_bounds(bounds)
    started = time.perf_counter()
    files, notes = discover(raw_dir, encoding)
    state = State.load(data_dir)
    if state.first:
        for name in INGEST_ORDER:
            if TABLES[name].required and name not in files:
                suffixes = ", ".join(FORMATS)
                raise IngestError(
                    f"{raw_dir}: missing required table '{name}' "
                    f"(expected {name} with one of {suffixes})"
                )
    if not files:
        raise IngestError(f"{raw_dir}: no table files ({', '.join(INGEST_ORDER)})")

    todo: dict[str, tuple[RawFile, str]] = {}
    skipped: dict[str, dict] = {}
    for name, file in files.items():
        sha = file_sha256(file.path)
        earlier = state.ingested_in(sha)
        if earlier:
            skipped[name] = {"file": file.name, "sha256": sha, "ingested_in": earlier}
        else:
            todo[name] = (file, sha)
    if not todo:
        batches = sorted({s["ingested_in"] for s in skipped.values()})
        if state.advance_horizon(as_of):  # no new rows, but the export says time went on
            state.save_manifest()
            console.print(
                f"{raw_dir}: already ingested (batch {', '.join(batches)}); "
                f"complete up to {as_of.isoformat()} now",
                soft_wrap=True,
            )
            return None
        console.print(
            f"{raw_dir}: already ingested (batch {', '.join(batches)}); nothing to do",
            soft_wrap=True,
        )
        return None
    for info in skipped.values():
        notes.append(f"{info['file']}: already ingested in batch {info['ingested_in']}, skipped")
    for file, _ in todo.values():  # fail fast on a missing column before any heavy work
        cols = header(file)
        if cols is not None:
            check_required_columns(TABLES[file.table], file, cols)

    batch = state.next_batch()
    _remove_orphans(data_dir, batch)
    stage = data_dir / STAGING / batch
    shutil.rmtree(stage, ignore_errors=True)
    try:
        tables = _ingest_tables(todo, state, data_dir, stage, batch, now, console, notes, bounds)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _commit(stage, data_dir)

    report = {
        "contract_version": CONTRACT_VERSION,
        "batch": batch,
        "raw_dir": str(Path(raw_dir).resolve()),
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "now": now.isoformat(),
        "as_of": as_of.isoformat() if as_of is not None else None,
        "upper_bounds": bounds,
        "source_files": {
            n: {"file": f.name, "format": f.format, "sha256": sha, "bytes": f.path.stat().st_size}
            for n, (f, sha) in todo.items()
        },
        "skipped_files": skipped,
        "notes": notes,
        "tables": tables,
        "totals": {
            k: sum(t[k] for t in tables.values()) for k in ("rows_in", "clean", "quarantined")
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    _write_report(data_dir, report)
    state.add_batch(
        {
            "batch": batch,
            "ingested_at": report["ingested_at"],
            "raw_dir": report["raw_dir"],
            "as_of": report["as_of"],
            "files": {
                n: {
                    "file": f.name,
                    "sha256": sha,
                    **{k: tables[n][k] for k in ("rows_in", "clean", "quarantined")},
                }
                for n, (f, sha) in todo.items()
            },
        }
    )
    state.advance_horizon(as_of)
    state.save_manifest()  # the commit point: from here on the batch counts as ingested
    return report


def _ingest_tables(
    todo: dict[str, tuple[RawFile, str]],
    state: State,
    data_dir: Path,
    stage: Path,
    batch: str,
    now: pd.Timestamp,
    console: Console,
    notes: list[str],
    bounds: dict[str, float],
) -> dict[str, dict]:
    known = state.known()
    tables: dict[str, dict] = {}
    with progress("ingest", total=sum(n in todo for n in INGEST_ORDER), unit="tables") as bar:
        for name in INGEST_ORDER:
            if name not in todo:
                continue
            file, _ = todo[name]
            t0, cpu0 = time.perf_counter(), time.process_time()
            raw = read(file)
            t1 = time.perf_counter()
            if not raw.num_rows:
                notes.append(f"{file.name}: no data rows (a header only, or empty)")
            if raw.ignored_columns:
                notes.append(
                    f"{file.name}: ignored columns not in the contract: "
                    + ", ".join(raw.ignored_columns)
                )
            outcome = validate(raw, now, known, state.seen(name), bounds)
            clean = outcome.clean_rows()
            if name in REFERENCE_COLUMNS:
                add_known(known, name, clean)
            t2 = time.perf_counter()
            _write_outcome(outcome, clean, known, stage, batch)
            t3 = time.perf_counter()
            clean = int(outcome.clean.sum())
            stats = {
                "file": file.name,
                "rows_in": raw.num_rows,
                "clean": clean,
                "quarantined": raw.num_rows - clean,
                "by_rule": outcome.by_rule(),
                "ignored_columns": raw.ignored_columns,
                "seconds": {
                    "read": round(t1 - t0, 3),
                    "validate": round(t2 - t1, 3),
                    "write": round(t3 - t2, 3),
                    "total": round(t3 - t0, 3),
                    "cpu": round(time.process_time() - cpu0, 3),  # all threads; wall on a busy box
                },
                "rows_per_second": round(raw.num_rows / max(t3 - t0, 1e-9)),
            }
            tables[name] = stats
            console.print(
                f"  {name}: {raw.num_rows:,} rows, {clean:,} clean, "
                f"{stats['quarantined']:,} quarantined ({t3 - t0:.1f}s)",
                soft_wrap=True,
            )
            bar.step(f"{name}: {raw.num_rows:,} rows")
            del raw, outcome, clean
    notes.extend(_cascade_notes(tables))
    return tables


# A table whose rows all failed to arrive makes every row pointing at it a cascade.
_CASCADES = (
    ("order_items", "unknown_order", "orders"),
    ("order_items", "unknown_product", "products"),
    ("orders", "unknown_customer", "customers"),
)


def _cascade_notes(tables: dict[str, dict]) -> list[str]:
    """Say why a rule took rows when the table it points at came without clean rows."""
    notes = []
    for table, rule, parent in _CASCADES:
        hit = tables.get(table, {}).get("by_rule", {}).get(rule, 0)
        if hit and parent in tables and tables[parent]["clean"] == 0:
            notes.append(
                f"{tables[table]['file']}: {hit:,} rows quarantined as {rule}: "
                f"{tables[parent]['file']} of this batch has no clean rows"
            )
    return notes


def _write_outcome(
    outcome: Outcome, clean: pa.Table, known: Known, stage: Path, batch: str
) -> None:
    spec = outcome.spec
    if spec.name == "order_items":  # clean items carry their (clean) order's timestamp
        ids = clean["order_id"].combine_chunks()
        at = pc.index_in(ids, value_set=known.order_ids).to_numpy(zero_copy_only=False)
        order_ts = pa.array(known.order_ts_us[at.astype(np.int64)], pa.int64())
        clean = clean.append_column(
            spec.arrow_schema().field("order_ts"), order_ts.cast(ARROW_TYPES["timestamp"])
        )
    if clean.num_rows:
        write_clean(spec, clean, stage, batch)
        state_path = stage / ingest_state_dir(Path()) / spec.name / f"part-{batch}.parquet"
        state_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(outcome_state(outcome, clean), state_path)
    if (~outcome.clean).any():
        path = storage.quarantine_dir(stage, spec.name) / f"part-{batch}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(quarantine_rows(outcome, batch), path)


def write_clean(spec: Table, table: pa.Table, root: Path, batch: str) -> list[Path]:
    """Write clean rows: one file per UTC day for event-like tables, one file for change logs."""
    out = storage.clean_dir(root, spec.name)
    col = storage.partition_time_column(spec)
    if not spec.partitioned:
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.sort_by(col), out / f"part-{batch}.parquet")
        return [out / f"part-{batch}.parquet"]
    days = np.floor_divide(table[col].cast(pa.int64()).to_numpy(), 86_400_000_000)
    if len(days) > 1 and (np.diff(days) < 0).any():  # exports are usually in time order already
        order = np.argsort(days, kind="stable")
        table, days = table.take(pa.array(order)), days[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(days)) + 1])
    ends = np.append(starts[1:], len(days))
    paths = []
    for s, e in zip(starts, ends, strict=True):
        day = (np.datetime64(int(days[s]), "D")).astype(str)
        path = out / f"{storage.DAY_PARTITION}={day}" / f"part-{batch}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(s, e - s), path)
        paths.append(path)
    return paths


def quarantine_rows(outcome: Outcome, batch: str) -> pa.Table:
    """Rejected rows: the contract columns as their original text, plus why and where from."""
    idx = np.flatnonzero(~outcome.clean)
    take = pa.array(idx)
    data = outcome.raw.data
    cols: dict[str, pa.Array] = {}
    for name in outcome.spec.column_names:
        cols[name] = (
            to_text(data[name].take(take))
            if name in data.column_names
            else pa.nulls(len(idx), pa.string())
        )
    cols["_rule"] = pa.array([RULE_NAMES[c] for c in outcome.code[idx]], pa.string())
    cols["_detail"] = pa.array(outcome.details.reindex(idx).tolist(), pa.string())
    cols["_source_file"] = pa.array([outcome.raw.file.name] * len(idx), pa.string())
    cols["_row"] = pa.array(idx, pa.int64())
    cols["_batch"] = pa.array([batch] * len(idx), pa.string())
    return pa.table(
        {k: pa.array(v) if isinstance(v, pa.ChunkedArray) else v for k, v in cols.items()}
    )


def _remove_orphans(data_dir: Path, batch: str) -> None:
    """Files of a batch number that never committed (a run killed after moving outputs)."""
    for root in (
        storage.clean_dir(data_dir, ""),
        storage.quarantine_dir(data_dir, ""),
        ingest_state_dir(data_dir),
    ):
        if root.exists():
            for path in root.rglob(f"part-{batch}.parquet"):
                path.unlink()


def _commit(stage: Path, data_dir: Path) -> None:
    """Move the staged outputs into the data directory (whole new folders in one rename)."""
    if stage.exists():
        for child in sorted(stage.iterdir()):
            _merge_move(child, data_dir / child.name)
        stage.rmdir()
    staging = data_dir / STAGING
    if staging.exists() and not any(staging.iterdir()):
        staging.rmdir()


def _merge_move(src: Path, dst: Path) -> None:
    if not dst.exists() or src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    for child in sorted(src.iterdir()):
        _merge_move(child, dst / child.name)
    src.rmdir()


def _write_report(data_dir: Path, report: dict) -> None:
    reports = storage.reports_dir(data_dir)
    (reports / "history").mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    (reports / "history" / f"validation_report-{report['batch']}.json").write_text(text)
    tmp = reports / "validation_report.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, reports / "validation_report.json")


def print_summary(report: dict, console: Console, data_dir: Path) -> None:
    """The report as a table a person reads at a glance."""
    table = RichTable(title=f"ingest batch {report['batch']} (now = {report['now'][:19]})")
    table.add_column("table")
    for col in ("rows in", "clean", "quarantined"):
        table.add_column(col, justify="right")
    table.add_column("by rule", overflow="fold")
    for name, t in report["tables"].items():
        rules = sorted(t["by_rule"].items(), key=lambda kv: -kv[1])
        table.add_row(
            name,
            f"{t['rows_in']:,}",
            f"{t['clean']:,}",
            f"{t['quarantined']:,}",
            "\n".join(f"{r} {n:,}" for r, n in rules) or "-",
        )
    tot = report["totals"]
    table.add_row(
        "total",
        f"{tot['rows_in']:,}",
        f"{tot['clean']:,}",
        f"{tot['quarantined']:,}",
        "",
        style="bold",
    )
    console.print(table)
    for note in report["notes"]:
        console.print(f"note: {note}", soft_wrap=True)
    path = storage.reports_dir(data_dir) / "validation_report.json"
    console.print(f"report: {path} ({report['seconds']:.1f}s)", soft_wrap=True)
