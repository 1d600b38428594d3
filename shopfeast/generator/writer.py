"""Write the shop: one file per table (`<table>.parquet|.csv|.jsonl`) and `_meta/` beside them.

Parquet keeps the contract's types (UTC microsecond timestamps); CSV and JSON lines hold ISO 8601
UTC text (`2025-03-01T14:22:05.123000Z`). Output is byte-identical for the same inputs: no wall
clock, fixed row-group size, single-writer files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from pipelines.contract import TABLES

FORMATS = ("parquet", "csv", "jsonl")
META_DIR = "_meta"
ROW_GROUP = 1_000_000
CHUNK = 500_000


def clear(out: Path) -> None:
    """Remove earlier generator output in `out` (only table files and _meta, nothing else)."""
    for name in TABLES:
        for path in out.glob(f"{name}.*"):
            if path.is_file():
                path.unlink()
    meta = out / META_DIR
    if meta.exists():
        for path in meta.iterdir():
            if path.is_file():
                path.unlink()


def _as_text(table: pa.Table) -> pa.Table:
    cols = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type):
            col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ")
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def write_table(table: pa.Table, out: Path, name: str, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    path = out / f"{name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP)
    elif fmt == "csv":
        with pcsv.CSVWriter(path, _as_text(table.slice(0, 0)).schema) as w:
            for start in range(0, table.num_rows, CHUNK):
                w.write_table(_as_text(table.slice(start, CHUNK)))
    else:
        with path.open("w", encoding="utf-8") as fh:
            for start in range(0, table.num_rows, CHUNK):
                frame = _as_text(table.slice(start, CHUNK)).to_pandas(
                    types_mapper=lambda t: pd.Int64Dtype() if pa.types.is_integer(t) else None
                )
                frame = _json_types(frame, table.schema, name)
                text = frame.to_json(
                    orient="records", lines=True, force_ascii=False, double_precision=10
                )
                fh.write(text if text.endswith("\n") else text + "\n")
    return path


def _json_types(frame: pd.DataFrame, schema: pa.Schema, name: str) -> pd.DataFrame:
    """Numbers and booleans stay JSON numbers and booleans in a column that corruption made text
    (only the injected unparseable values remain strings)."""
    kinds = {c.name: c.kind for c in TABLES[name].columns}
    for col in frame.columns:
        kind = kinds.get(col)
        if not pa.types.is_string(schema.field(col).type) or kind not in ("int", "float", "bool"):
            continue
        text = frame[col]
        if kind == "bool":
            parsed = text.map({"true": True, "false": False})
        else:
            parsed = pd.to_numeric(text, errors="coerce")
            if kind == "int":
                parsed = parsed.astype("Int64")
        frame[col] = parsed.astype(object).where(parsed.notna(), text)
    return frame


def write_meta(
    out: Path,
    manifest: pd.DataFrame,
    info: dict,
    truth: dict[str, pd.DataFrame],
    manifest_schema: pa.Schema,
) -> None:
    meta = out / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(manifest, schema=manifest_schema, preserve_index=False),
        meta / "corruptions.parquet",
    )
    for name, frame in truth.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), meta / f"{name}.parquet")
    (meta / "generator.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
