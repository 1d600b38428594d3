"""What incremental ingest remembers between batches, under DIR/state/ingest/.

    manifest.json                     batches so far: their files' content hashes and counts
    <table>/part-<batch>.parquet      per clean row: its row hash, its key hash, and the columns
                                      other tables look up (ids, signup_ts, order_ts)

This is enough to judge a new batch (duplicates against earlier batches, references to rows clean
in earlier batches, the order_ts that order_items carry) without opening a clean table. It can
always be rebuilt from the clean tables (`rebuild`), which is what happens if the row hash function
changes (a DuckDB upgrade).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.contract import CONTRACT_VERSION, INGEST_ORDER, TABLES, Table
from pipelines.validate import PANDAS_DTYPES, Known, Outcome, Seen, hashes, to_arrow

# The contract version is part of it: v1.1 keys orders by (order_id, updated_at), so a state
# written under v1 is rebuilt from the clean tables.
HASH_FUNCTION = f"duckdb-{duckdb.__version__}-hash-contract-{CONTRACT_VERSION}"
MANIFEST_FORMAT = 1

# Columns kept per clean row, besides the hashes, for the tables others reference.
REFERENCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "signup_ts"),
    "products": ("product_id",),
    "orders": ("order_id", "order_ts"),
}


def ingest_state_dir(data_dir: Path) -> Path:
    return storage.state_dir(data_dir) / "ingest"


def batch_id(seq: int) -> str:
    return f"b{seq:06d}"


@dataclass
class State:
    data_dir: Path
    manifest: dict = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> State:
        path = ingest_state_dir(data_dir) / "manifest.json"
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest.setdefault("format", MANIFEST_FORMAT)
        manifest.setdefault("hash_function", HASH_FUNCTION)
        manifest.setdefault("batches", [])
        state = cls(Path(data_dir), manifest)
        if manifest["batches"] and manifest["hash_function"] != HASH_FUNCTION:
            rebuild(state.data_dir)
            state.manifest["hash_function"] = HASH_FUNCTION
            state.save_manifest()
        return state

    @property
    def first(self) -> bool:
        return not self.manifest["batches"]

    def next_batch(self) -> str:
        return batch_id(len(self.manifest["batches"]) + 1)

    def ingested_in(self, sha256: str) -> str | None:
        """The batch that already ingested a file with this content, if any."""
        for batch in self.manifest["batches"]:
            if any(f["sha256"] == sha256 for f in batch["files"].values()):
                return batch["batch"]
        return None

    def table_state(self, table: str) -> pd.DataFrame:
        path = ingest_state_dir(self.data_dir) / table
        if not path.exists() or not any(path.glob("*.parquet")):
            return pd.DataFrame()
        return pq.read_table(path).to_pandas(types_mapper=_string_type)

    def seen(self, table: str) -> Seen:
        df = self.table_state(table)
        if df.empty:
            return Seen()
        keys = df["_key_hash"].dropna().to_numpy(np.uint64) if "_key_hash" in df else None
        return Seen(
            df["_row_hash"].to_numpy(np.uint64),
            keys if keys is not None else np.zeros(0, np.uint64),
        )

    def known(self) -> Known:
        known = Known()
        for table in REFERENCE_COLUMNS:
            path = ingest_state_dir(self.data_dir) / table
            if path.exists() and any(path.glob("*.parquet")):
                add_known(known, table, pq.read_table(path))
        return known

    def add_batch(self, entry: dict) -> None:
        self.manifest["batches"].append(entry)

    def advance_horizon(self, as_of: pd.Timestamp | None) -> bool:
        """Record that the exports are complete up to `as_of` (kept: the latest); True if later."""
        if as_of is None:
            return False
        current = horizon_of(self.manifest)
        if current is not None and as_of <= current:
            return False
        self.manifest["as_of"] = as_of.isoformat()
        return True

    def save_manifest(self) -> None:
        path = ingest_state_dir(self.data_dir) / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2))
        os.replace(tmp, path)


def _string_type(t: pa.DataType):
    return PANDAS_DTYPES["string"] if pa.types.is_string(t) else None


def add_known(known: Known, table: str, rows: pa.Table) -> None:
    """Add clean rows (or their state rows) of a referenced table to `known`."""
    cols = REFERENCE_COLUMNS[table]
    ids = rows[cols[0]].combine_chunks()
    times = rows[cols[1]].cast(pa.int64()).to_numpy() if len(cols) > 1 else None
    if len(ids):
        known.add(table, ids, times)


def state_rows(
    spec: Table, rows: pa.Table, row_hash: np.ndarray, key_hash: np.ndarray | None
) -> pa.Table:
    """The state kept for some clean rows of a table."""
    cols: dict[str, pa.Array] = {"_row_hash": pa.array(row_hash, pa.uint64())}
    if key_hash is not None:
        has_key = np.ones(rows.num_rows, bool)
        for c in spec.key:
            has_key &= rows[c].is_valid().to_numpy(zero_copy_only=False)
        cols["_key_hash"] = pa.array(key_hash, pa.uint64(), mask=~has_key)
    for c in REFERENCE_COLUMNS.get(spec.name, ()):
        cols[c] = rows[c]
    return pa.table(cols)


def outcome_state(outcome: Outcome, clean: pa.Table) -> pa.Table:
    mask = outcome.clean
    key = None if outcome.key_hash is None else outcome.key_hash[mask]
    return state_rows(outcome.spec, clean, outcome.row_hash[mask], key)


def rebuild(data_dir: Path) -> None:
    """Recompute every table's state from its clean rows (one file per table)."""
    for table in INGEST_ORDER:
        spec = TABLES[table]
        df = storage.read_clean(data_dir, table, columns=spec.column_names)
        if table == "orders":  # clean rows from before v1.1 have no updated_at: the default
            df["updated_at"] = df["updated_at"].fillna(df["order_ts"])
        rows = to_arrow(spec, df.astype({c.name: PANDAS_DTYPES[c.kind] for c in spec.columns}))
        row, key = hashes(spec, rows)
        out = ingest_state_dir(data_dir) / table
        shutil.rmtree(out, ignore_errors=True)
        if rows.num_rows:
            out.mkdir(parents=True)
            pq.write_table(state_rows(spec, rows, row, key), out / "part-rebuilt.parquet")


def horizon_of(manifest: dict) -> pd.Timestamp | None:
    value = manifest.get("as_of")
    return pd.Timestamp(value).tz_convert("UTC") if value else None


def horizon(data_dir: Path) -> pd.Timestamp | None:
    """The instant the ingested exports are declared complete up to (`ingest --as-of`), if any:
    snapshots run to it even on days without rows, so windows empty out."""
    path = ingest_state_dir(data_dir) / "manifest.json"
    return horizon_of(json.loads(path.read_text())) if path.exists() else None
