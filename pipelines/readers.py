"""Find and read the raw files of a batch, losing nothing.

A raw directory holds one file per contract table, named `<table>.csv|.parquet|.jsonl` (CSV and
JSON lines may be gzip-compressed). CSV and JSON lines are read with every column as text, so
`007`, `12346.0` or a broken date reach the validator exactly as written. Parquet keeps the types
its writer gave (a timestamp column stays a timestamp): the coercion step accepts either, and the
quarantine renders a typed value as text. Only the contract's columns are read; the names of
the others are reported, never their values (they may hold PII).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.contract import TABLES, Table

# Suffix -> format. Longest suffixes first so `orders.csv.gz` is not taken for `.gz`.
FORMATS: dict[str, str] = {
    ".csv.gz": "csv",
    ".jsonl.gz": "jsonl",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
}


JSON_KEY_SAMPLE = 10_000  # lines whose keys name a JSON lines file's columns


class IngestError(Exception):
    """A fatal input problem: the run stops with exit code 2 and this message."""


@dataclass
class RawFile:
    table: str
    path: Path
    format: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(".gz")


@dataclass
class RawTable:
    """The contract columns of one raw file, in file order (row i is data row i of the file)."""

    file: RawFile
    data: pa.Table
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return self.data.num_rows


def split_name(name: str) -> tuple[str, str] | None:
    """`orders.csv.gz` -> ("orders", "csv"); None for a name that is not a raw table file."""
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], fmt
    return None


def discover(raw_dir: Path) -> tuple[dict[str, RawFile], list[str]]:
    """The table files of a raw directory, and notes on everything ignored there."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise IngestError(f"{raw_dir}: not a directory")
    found: dict[str, list[RawFile]] = {}
    notes: list[str] = []
    for path in sorted(raw_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            notes.append(f"ignored folder {path.name}/")
            continue
        parsed = split_name(path.name)
        if parsed is None or parsed[0] not in TABLES:
            notes.append(f"ignored file {path.name} (not a contract table file)")
            continue
        table, fmt = parsed
        found.setdefault(table, []).append(RawFile(table, path, fmt))
    for table, files in found.items():
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise IngestError(f"{table}: {len(files)} files ({names}); expected exactly one")
    return {t: fs[0] for t, fs in found.items()}, notes


def file_sha256(path: Path) -> str:
    """Content hash of a raw file: what makes re-ingesting the same export a no-op."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_required_columns(spec: Table, file: RawFile, columns: list[str]) -> None:
    for name in spec.required_columns:
        if name not in columns:
            raise IngestError(f"{file.name}: missing required column '{name}'")


def header(file: RawFile) -> list[str] | None:
    """Column names without reading the data (None when only a full read can tell: JSON lines)."""
    try:
        if file.format == "parquet":
            return pq.read_schema(file.path).names
        if file.format == "csv":
            opener = gzip.open if file.compressed else open
            with opener(file.path, "rt", encoding="utf-8-sig", newline="") as fh:
                first = next(csv.reader(fh), None)
            if first is None:
                raise IngestError(f"{file.name}: cannot read: the file is empty (no header)")
            return [c.strip() for c in first]
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable file
        raise IngestError(f"{file.name}: cannot read: {_reason(exc)}") from exc
    return None


def read(file: RawFile) -> RawTable:
    """Read one raw file; raise IngestError naming the file when it cannot be read at all."""
    spec = TABLES[file.table]
    try:
        if file.format == "csv":
            table, names = _read_csv(file, spec)
        elif file.format == "parquet":
            table, names = _read_parquet(file, spec)
        else:
            table, names = _read_jsonl(file, spec)
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable file
        raise IngestError(f"{file.name}: cannot read: {_reason(exc)}") from exc
    if table.num_rows or file.format != "jsonl":  # JSON lines without a line name no columns
        check_required_columns(spec, file, names)
    ignored = [n for n in names if n not in spec.column_names]
    return RawTable(file, table, ignored)


def _read_csv(file: RawFile, spec: Table) -> tuple[pa.Table, list[str]]:
    names = header(file) or []
    dupes = sorted({n for n in names if names.count(n) > 1 and n in spec.column_names})
    if dupes:
        raise IngestError(f"{file.name}: column '{dupes[0]}' appears more than once")
    wanted = [n for n in spec.column_names if n in names]
    table = pacsv.read_csv(
        pa.input_stream(str(file.path), compression="gzip" if file.compressed else None),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        # Quoted values may span lines (review bodies); everything stays text, "" stays "".
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in wanted},
            include_columns=wanted,
            strings_can_be_null=False,
        ),
    )
    return table, names


def _read_parquet(file: RawFile, spec: Table) -> tuple[pa.Table, list[str]]:
    names = pq.read_schema(file.path).names
    wanted = [n for n in spec.column_names if n in names]
    return pq.read_table(file.path, columns=wanted), names


def _read_jsonl(file: RawFile, spec: Table) -> tuple[pa.Table, list[str]]:
    """DuckDB's JSON reader with every contract column as text: a number stays `12346.0`, a nested
    value its JSON text, whatever type other lines give the same column (bad rows do exactly that).

    Column names come from the first lines (enough to name ignored columns), and from every line
    only when a required column has no value at all (absent: fatal, or present and all null).
    Anything DuckDB refuses (a line that is not a JSON object, a byte-order mark, broken JSON) goes
    to the line-by-line reader, which either reads it or names the exact line.
    """
    path = str(file.path).replace("'", "''")
    cols = ", ".join(f"'{c}': 'VARCHAR'" for c in spec.column_names)
    objects = f"read_json_objects('{path}', format='newline_delimited')"
    try:
        with duckdb.connect() as con:
            table = con.sql(
                f"SELECT * FROM read_json('{path}', format='newline_delimited', records=true, "
                f"columns={{{cols}}})"
            ).to_arrow_table()
            names = _json_keys(con, f"(SELECT json FROM {objects} LIMIT {JSON_KEY_SAMPLE})")
            empty = [
                c
                for c in spec.required_columns
                if c not in names and table[c].null_count == table.num_rows
            ]
            if empty and table.num_rows:
                names = _json_keys(con, objects)
    except duckdb.Error:
        return _read_jsonl_python(file, spec)
    present = [c for c in spec.column_names if c in names or table[c].null_count < len(table)]
    names += [c for c in present if c not in names]
    return table.select(present), names


def _json_keys(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    rows = con.sql(f"SELECT DISTINCT unnest(json_keys(json)) FROM {source}").fetchall()
    return sorted(k for (k,) in rows)


def _read_jsonl_python(file: RawFile, spec: Table) -> tuple[pa.Table, list[str]]:
    wanted = spec.column_names
    cols: dict[str, list[str | None]] = {n: [] for n in wanted}
    seen: dict[str, None] = {}
    opener = gzip.open if file.compressed else open
    with opener(file.path, "rb") as fh:
        for lineno, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8-sig"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                msg = f"{file.name}: line {lineno}: not valid JSON ({exc.msg})"
                raise IngestError(msg) from exc
            if not isinstance(obj, dict):
                raise IngestError(f"{file.name}: line {lineno}: not a JSON object")
            for key in obj:
                seen.setdefault(key, None)
            for n in wanted:
                cols[n].append(_json_text(obj.get(n)))
    present = [n for n in wanted if n in seen]
    table = pa.table({n: pa.array(cols[n], pa.string()) for n in present})
    return table, list(seen)


def _json_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
