"""The Spark engine's month writer against one sort of the whole month (what it replaced, and
what the local engine writes): the same rows in the same order, the same row groups, in slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.spark import months

SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("event_timestamp", pa.timestamp("us", "UTC")),
        ("n", pa.int64()),
        ("ids", pa.list_(pa.string())),
    ]
)


def _parts(tmp_path, rng, shards: int = 4, rows: int = 3_000) -> list[str]:
    """Shard parts of one source over three months, each in time order as the shard tasks write
    them; a few (key, time) pairs repeat so that the tie order is visible."""
    start = pd.Timestamp("2025-01-01", tz="UTC").value // 1000
    span = 90 * months.DAY_US
    busy = pd.Timestamp("2025-02-10", tz="UTC").value // 1000  # one day far above the slice size
    paths = []
    for k in range(shards):
        ts = np.concatenate(
            [start + rng.integers(0, span, rows), busy + rng.integers(0, months.DAY_US, rows // 2)]
        )
        ts[:40] = ts[40:80]  # repeated times
        keys = rng.choice([f"c{i}" for i in range(50)], len(ts))
        keys[:40] = keys[40:80]  # ... of the same customers: ties on (time, key)
        table = pa.table(
            {
                "customer_id": keys,
                "event_timestamp": pa.array(ts, pa.timestamp("us", "UTC")),
                "n": np.arange(len(ts)) + k * 1_000_000,  # where each row came from
                "ids": [[f"p{i % 7}"] * (i % 3) for i in range(len(ts))],
            },
            schema=SCHEMA,
        ).sort_by("event_timestamp")
        path = tmp_path / f"part-{k:05d}.parquet"
        pq.write_table(table, path, row_group_size=500)
        paths.append(str(path))
    return paths


def _whole_month(parts, month, path, row_group_size):
    """The write the slices replace: the month read at once, sorted, written at once."""
    lo = pd.Timestamp(f"{month}-01", tz="UTC")
    hi = lo + pd.offsets.MonthBegin(1)
    table = (
        ds.dataset(parts, format="parquet", schema=SCHEMA)
        .to_table(filter=months._within("event_timestamp", lo, hi))
        .sort_by([("event_timestamp", "ascending"), ("customer_id", "ascending")])
    )
    pq.write_table(table, path, row_group_size=row_group_size, compression="zstd")


@pytest.mark.parametrize("slice_rows", [1, 97, 1_000, 10**9])
@pytest.mark.parametrize("row_group_size", [None, 128])
def test_slices_write_the_whole_month_file(tmp_path, slice_rows, row_group_size):
    parts = _parts(tmp_path, np.random.default_rng(slice_rows))
    for month in ["2025-01", "2025-02", "2025-03"]:
        want, got = tmp_path / f"want-{month}.parquet", tmp_path / f"{month}.parquet"
        _whole_month(parts, month, want, row_group_size or months.PYARROW_ROW_GROUP)
        rows = months.write_month(
            parts,
            SCHEMA,
            month,
            "event_timestamp",
            ["customer_id"],
            got,
            row_group_size=row_group_size,
            slice_rows=slice_rows,
            compression="zstd",
        )
        a, b = pq.read_table(want), pq.read_table(got)
        assert rows == len(a) > 0
        assert b.equals(a)  # the same rows, in the same order (the "n" column says whose)
        ma, mb = pq.ParquetFile(want).metadata, pq.ParquetFile(got).metadata
        assert [mb.row_group(i).num_rows for i in range(mb.num_row_groups)] == [
            ma.row_group(i).num_rows for i in range(ma.num_row_groups)
        ]
        assert not list(tmp_path.glob(".*.tmp"))


def test_slices_are_whole_days_within_the_bound(tmp_path):
    parts = _parts(tmp_path, np.random.default_rng(3))
    data = ds.dataset(parts, format="parquet", schema=SCHEMA)
    lo = pd.Timestamp("2025-02-01", tz="UTC")
    hi = lo + pd.offsets.MonthBegin(1)
    slices = list(months._slices(data, "event_timestamp", lo, hi, 1_000))
    assert slices[0][0] == lo and slices[-1][1] == hi
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))  # no gap, no overlap
    busy = pd.Timestamp("2025-02-10", tz="UTC")
    for start, end in slices:
        assert start == start.normalize() and (end == hi or end == end.normalize())
        rows = data.count_rows(filter=months._within("event_timestamp", start, end))
        # at most the bound, unless the slice is the one busy day alone (6,000+ rows)
        assert rows <= 1_000 or (start, end) == (busy, busy + pd.Timedelta(days=1))
    assert len(slices) > 3


@pytest.mark.parametrize("slice_rows", [1, 5, 40, 10**9])
@pytest.mark.parametrize("keys", [["customer_id"], ["customer_id", "product_id"]])
def test_latest_rows_in_runs_of_entities_are_one_sort(tmp_path, slice_rows, keys):
    """Each shard's latest rows (its own entities), written as one sort of them all would be;
    a customer's pairs stay in one run, a row without a key goes last."""
    rng = np.random.default_rng(slice_rows)
    schema = pa.schema(
        [*((k, pa.string()) for k in keys), SCHEMA.field("event_timestamp"), ("n", pa.int64())]
    )
    parts = []
    for k in range(3):
        customers = [f"c{i}" for i in range(60) if i % 3 == k]  # an entity in one shard
        rows = [
            {"customer_id": c, "product_id": f"p{j}", "n": k * 1000 + i * 10 + j}
            for i, c in enumerate(customers)
            for j in range(int(rng.integers(1, 4)) if len(keys) == 2 else 1)
        ]
        if k == 1:
            rows.append({"customer_id": None, "product_id": "p0", "n": -1})
        table = pa.table(
            {
                **{key: [r[key] for r in rows] for key in keys},
                "event_timestamp": pa.array(
                    rng.integers(0, 10**12, len(rows)), pa.timestamp("us", "UTC")
                ),
                "n": [r["n"] for r in rows],
            },
            schema=schema,
        )
        parts.append(str(tmp_path / f"part-{k:05d}.parquet"))
        pq.write_table(table.take(rng.permutation(len(table))), parts[-1])
    want = tmp_path / "want.parquet"
    order = [*((k, "ascending") for k in keys), ("event_timestamp", "ascending")]
    whole = ds.dataset(parts, format="parquet", schema=schema).to_table().sort_by(order)
    pq.write_table(whole, want, compression="zstd")
    got = tmp_path / "latest.parquet"
    rows = months.write_latest(parts, schema, keys, "event_timestamp", got, slice_rows=slice_rows)
    assert rows == len(whole) > 60
    assert pq.read_table(got).equals(pq.read_table(want))
    assert pq.read_table(got).column(keys[0])[-1].as_py() is None  # the keyless row last
