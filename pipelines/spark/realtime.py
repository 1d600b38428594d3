"""The real-time views' offline sources (`customer_session`, `product_realtime`) on executors.

Every row of these views is one entity's own (pipelines/realtime.py: an entity's events in a
window ending at one of its events), so they split like the customer families, without a global
step: one Spark job writes the clean events twice, by customer for customer_session and by product
for product_realtime (only the events the view reads: an entity's key set; for products the three
counted event types), each into `n` shards `pmod(xxhash64(key), n)`; one task per (view, shard)
runs the local engine's `realtime.compute` on its events and writes its rows; then a few tasks
write each view's months (`YYYY-MM.parquet`, sorted by (event_timestamp, key), as
`realtime.write_sources` writes them) into a staging folder the driver swaps in. The driver never
holds a view's rows, and a task holds about `rows_per_shard` events.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import realtime, storage
from pipelines.contract import TABLES
from pipelines.spark import months
from pipelines.specs import TIMESTAMP_FIELD, conform, to_arrow
from pipelines.storage import clean_dir

SHARD = "_shard"
TABLE = "_table"
ROWS_PER_SHARD = 2_000_000  # events per task: realtime.write_sources' part size
PART_ROW_GROUP = 128_000  # a shard part's row groups: what a write task's time filter skips by


def run(
    spark,
    data_dir: Path,
    staging: Path,
    shards: int | None = None,
    rows_per_shard: int = ROWS_PER_SHARD,
    stats: dict | None = None,
    step=lambda note: None,
    write_rows: int = months.SLICE_ROWS,
) -> dict[str, int]:
    """Rewrite both views' sources from the clean events; returns the rows written per view.
    `stats` receives the stages' seconds and one entry per (shard, view), as the families'."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    t0 = time.perf_counter()
    sc = spark.sparkContext
    shutil.rmtree(staging, ignore_errors=True)
    schema = TABLES["events"].arrow_schema()
    files = sorted(str(p) for p in clean_dir(data_dir, "events").rglob("*.parquet"))
    events = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    n = shards or max(sc.defaultParallelism, -(-events // rows_per_shard))
    stages: dict[str, float] = {}
    done: list[dict] = []
    try:
        if files:
            df = spark.read.schema(from_arrow_schema(schema)).parquet(*files)
            df = df.select(*realtime.EVENT_COLUMNS)
            stacked = None
            for name, source in realtime.SOURCES.items():
                key = F.col(source.join_key)
                part = df.where(key.isNotNull())
                if name == "product_realtime":  # the only events it counts
                    part = part.where(F.col("event_type").isin(*realtime.PRODUCT_EVENTS))
                part = part.withColumn(SHARD, F.pmod(F.xxhash64(key), F.lit(n)))
                part = part.withColumn(TABLE, F.lit(name))
                stacked = part if stacked is None else stacked.unionByName(part)
            (
                stacked.repartition(n, SHARD)
                .write.mode("overwrite")
                .partitionBy(TABLE, SHARD)
                .parquet(str(staging / "in"))
            )
            stages["realtime shuffle"] = time.perf_counter() - t0
            step(f"real-time views: events into {n} shards")
            t = time.perf_counter()
            jobs = [(str(staging), name, k) for name in realtime.SOURCES for k in range(n)]
            done = sc.parallelize(jobs, len(jobs)).map(_shard_task).collect()
            stages["realtime compute"] = time.perf_counter() - t
            step("real-time views: compute")
        else:  # no events: both views empty
            step("real-time views: no events")
            step("real-time views: no events")
        t = time.perf_counter()
        written = {}
        jobs = []
        for name, source in realtime.SOURCES.items():
            folder = source.path(data_dir)
            target = folder.with_name(folder.name + ".staging")
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            done_months = sorted({m for d in done if d["view"] == name for m in d["months"]})
            jobs += [(str(staging), name, m, str(target), write_rows) for m in done_months]
            written[name] = sum(d["rows"] for d in done if d["view"] == name)
        if jobs:
            tasks = min(len(jobs), 2 * sc.defaultParallelism)
            batches = [jobs[i::tasks] for i in range(tasks)]
            sc.parallelize(batches, tasks).map(lambda b: [_write_task(j) for j in b]).collect()
        for source in realtime.SOURCES.values():  # swapped in whole, as the local engine does
            folder = source.path(data_dir)
            shutil.rmtree(folder, ignore_errors=True)
            folder.with_name(folder.name + ".staging").replace(folder)
        stages["realtime write"] = time.perf_counter() - t
        step("real-time views: write")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if stats is not None:
        stats.setdefault("stages", {}).update(stages)
        stats.setdefault("shards", []).extend(
            {"family": d["view"], "shard": d["shard"], **{x: d[x] for x in SHARD_STATS}}
            for d in done
        )
    return written


SHARD_STATS = ("input_rows", "seconds", "worker_peak_rss_mib")


def _events(staging: Path, name: str, k: int) -> pd.DataFrame:
    """Shard k's events for view `name`, in the contract dtypes `storage.read_clean` gives."""
    schema = TABLES["events"].arrow_schema()
    schema = pa.schema([schema.field(c) for c in realtime.EVENT_COLUMNS])
    folder = staging / "in" / f"{TABLE}={name}" / f"{SHARD}={k}"
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.exists() else []
    if not files:
        table = schema.empty_table()
    else:
        table = ds.dataset(files, format="parquet").to_table(columns=list(realtime.EVENT_COLUMNS))
    return table.cast(schema).to_pandas(types_mapper=storage._types_mapper)


def _shard_task(args) -> dict:
    """View `name`'s rows on shard k, written as one part for the write tasks."""
    staging, name, k = args
    t0 = time.perf_counter()
    source = realtime.SOURCES[name]
    events = _events(Path(staging), name, k)
    input_rows = len(events)
    rows = realtime.compute(name, events)
    del events
    rows[source.created_timestamp_column] = rows[TIMESTAMP_FIELD]
    # in time order, so that a write task's time filter reads only its own row groups
    table = to_arrow(source, conform(source, rows)).sort_by(TIMESTAMP_FIELD)
    folder = Path(staging) / name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{k:05d}.parquet", row_group_size=PART_ROW_GROUP)
    stamps = pd.DatetimeIndex(rows[TIMESTAMP_FIELD]).tz_localize(None)
    return {
        "view": name,
        "shard": k,
        "rows": len(rows),
        "months": sorted(set(stamps.strftime("%Y-%m"))),
        "input_rows": input_rows,
        "seconds": time.perf_counter() - t0,
        "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _write_task(args) -> int:
    """One month of a view from every shard's part, sorted as `realtime.write_sources` sorts."""
    staging, name, month, target, write_rows = args
    source = realtime.SOURCES[name]
    parts = sorted(str(p) for p in (Path(staging) / name).glob("*.parquet"))
    return months.write_month(
        parts,
        source.arrow_schema(),
        month,
        TIMESTAMP_FIELD,
        [source.join_key],
        Path(target) / f"{month}.parquet",
        slice_rows=write_rows,
    )
