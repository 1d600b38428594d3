"""Find and read the raw files of a batch, losing nothing.

A raw directory holds one file per contract table, named `<table>.csv|.parquet|.jsonl` (CSV and
JSON lines may be gzip-compressed). CSV and JSON lines are read with every column as text, so
`007`, `12346.0` or a broken date reach the validator exactly as written. Parquet keeps the types
its writer gave (a timestamp column stays a timestamp): the coercion step accepts either, and the
quarantine renders a typed value as text. Only the contract's columns are read; the names of
the others are reported, never their values (they may hold PII).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import re
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
    encoding: str = "utf-8"  # of CSV text (JSON lines are UTF-8 by definition)

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


def discover(raw_dir: Path, encoding: str = "utf-8") -> tuple[dict[str, RawFile], list[str]]:
    """The table files of a raw directory, and notes on everything ignored there."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise IngestError(f"{raw_dir}: not a directory")
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise IngestError(f"--encoding: unknown encoding {encoding!r}") from exc
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
        if not path.is_file():  # a FIFO or a device would block the read, or never end
            raise IngestError(f"{path.name}: not a regular file; ingest reads regular files only")
        found.setdefault(table, []).append(RawFile(table, path, fmt, encoding))
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
            # Undecodable bytes further down are the full read's to report, with their line.
            with opener(
                file.path, "rt", encoding=_text_encoding(file), errors="replace", newline=""
            ) as fh:
                first = next(csv.reader(fh), None)
            if first is None:
                raise IngestError(f"{file.name}: cannot read: the file is empty (no header)")
            if any("\ufffd" in c for c in first):
                raise IngestError(f"{file.name}: line 1 (the header): {_not_text(file)}")
            return [c.strip() for c in first]
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable file
        raise IngestError(f"{file.name}: cannot read: {_reason(exc)}") from exc
    return None


def _text_encoding(file: RawFile) -> str:
    """utf-8-sig reads UTF-8 with or without a byte-order mark."""
    return "utf-8-sig" if codecs.lookup(file.encoding).name == "utf-8" else file.encoding


def _not_text(file: RawFile) -> str:
    hint = "; pass --encoding (e.g. --encoding latin-1) if the file uses another one"
    return f"not valid {file.encoding} text" + (hint if file.encoding == "utf-8" else "")


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
        if file.format == "csv":  # the parser's message may quote the row: find it ourselves
            raise IngestError(f"{file.name}: {_located(file) or _csv_reason(exc)}") from exc
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
    encoding = codecs.lookup(file.encoding).name
    table = pacsv.read_csv(
        pa.input_stream(str(file.path), compression="gzip" if file.compressed else None),
        read_options=pacsv.ReadOptions(
            column_names=names, skip_rows=1, encoding="utf8" if encoding == "utf-8" else encoding
        ),
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


def _located(file: RawFile) -> str | None:
    try:
        return csv_problem(file)
    except Exception:  # noqa: BLE001 - an unreadable stream (bad gzip): the parser's reason
        return None


def csv_problem(file: RawFile) -> str | None:
    """Where a CSV file stops being readable, as `line N[, column 'c']: what`, never a value.

    Only called after the fast parser failed (its messages quote the offending row, and a row may
    hold e-mail addresses): a second, plain pass finds the first physical line that is not text
    in the file's encoding, then the first record whose field count differs from the header's.
    """
    opener = gzip.open if file.compressed else open
    names: list[str] | None = None
    with opener(file.path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode(_text_encoding(file) if lineno == 1 else file.encoding)
            except UnicodeDecodeError:
                column = _column_at(file, lineno)
                where = f", column '{column}'" if column else ""
                return f"line {lineno}{where}: {_not_text(file)}"
    with opener(file.path, "rt", encoding=_text_encoding(file), newline="") as fh:
        reader = csv.reader(fh)
        start = 1
        try:
            for record in reader:
                if names is None:
                    names = record
                elif record and len(record) != len(names):
                    return f"line {start}: {len(record)} fields where the header has {len(names)}"
                start = reader.line_num + 1
        except csv.Error as exc:
            return f"line {start}: not valid CSV ({str(exc).split(':')[0]})"
    return None


def _column_at(file: RawFile, lineno: int) -> str | None:
    """The header name of the field holding the first undecodable byte of a physical line."""
    opener = gzip.open if file.compressed else open
    with opener(file.path, "rt", encoding=file.encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None) or []
        for record in reader:
            if reader.line_num >= lineno:
                for i, value in enumerate(record):
                    if "\ufffd" in value:
                        return header[i].strip() if i < len(header) else None
                return None
    return None


def _csv_reason(exc: Exception) -> str:
    """The parser's reason without the row it may quote (`got 2: "C1","jane@..."`)."""
    return "cannot read: " + re.sub(r"(got \d+)\b.*", r"\1", _reason(exc))
