"""`shopfeast features --engine spark`: the same families, run on Spark executors.

The families' pandas code is not rewritten: Spark moves the data and schedules the work.

The families that declare `SHARD_BY` (entities independent of each other: the customer families)
run together in three Spark jobs:
1. shuffle: Spark reads their clean inputs (the columns any of them reads, the time range the local
   engine reads) and writes every table split into `n` entity shards, in one job, under
   DIR/tmp/spark/in/_table=<t>/_shard=<k>/; a row's shard is `pmod(xxhash64(key), n)` of its
   entity (an order's versions take its first version's customer's shard, order items their
   order's); tables not named in `SHARD_BY` (the product
   catalogue) are read whole by every shard;
2. compute: one task per shard reads its shard's tables with pyarrow and runs the local engine's
   `compute_rows` for every sharded family on them (a shard of more than SHARD_ROWS input rows is
   cut again inside the task, as locally), writing the change-point rows and each entity's last
   row;
3. write: one task per (source, month) gathers that month's rows of every shard, sorts them by
   (event_timestamp, join key) and writes DIR/features/<source>/<YYYY-MM>.parquet as the local
   engine writes it, a run of whole days of at most `write_rows` rows at a time
   (pipelines/spark/months.py: the month's file is the same, the task does not grow with the
   shop); one task per source writes the latest-row file incremental runs start from, a run of
   entities at a time.

The families are sharded by their entity: the customer families by customer, then the product
families by product (an order goes to every product shard among its items). A product family's
global step is a Spark aggregation (pipelines/spark/cross_sections.py): product_stats' category
figures over every shard's (product, day) rows, product_copurchase's pair counts over all orders;
its results go back to the shards, which compute their own products' rows.

The declared views (pipelines/aggregate.py) declare `SHARD_BY` too: a customer or pair view is
split with the customer families (in their shuffle), a product view with the product families.
A row without the entity's key (an anonymous visitor's event, a page view, a guest's order) is
no shard's. The real-time views' sources are split by their entity on executors too
(pipelines/spark/realtime.py). A family without `SHARD_BY` (collection_stats) runs as one Spark
task that calls the local engine for that family, alongside the sharded ones; any that read
reviews run in one task, in order. The once-per-shop state (`persist`: a vocabulary, the review
topic model and NLP cache) is made on the driver first.

Executors read and write DIR directly: on a cluster DIR is a path every machine mounts. The build
is historical (every snapshot day); daily incremental runs stay on the local engine.
"""

from __future__ import annotations

import functools
import resource
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import realtime, sources
from pipelines import run as local
from pipelines.contract import TABLES
from pipelines.family import Input
from pipelines.lock import data_dir_lock
from pipelines.spark import cross_sections, months
from pipelines.spark import realtime as spark_realtime
from pipelines.specs import FeatureSource, to_arrow
from pipelines.storage import clean_dir, partition_time_column
from pipelines.windows import FeatureOverflow, Snapshots
from shopconfig.progress import progress
from shopconfig.settings import resolve_feature_repo

SHARD = "_shard"
TABLE = "_table"
OWNER = "_owner"


@dataclass(frozen=True)
class Plan:
    """What the sharded families' tasks need (pickled to the executors)."""

    data_dir: str
    families: tuple[str, ...]
    staging: str
    shards: int
    start_day: int
    end_day: int
    shard_rows: int
    feature_repo: str  # the driver's: executors read the same declared views
    write_rows: int = months.SLICE_ROWS  # rows a write task sorts at once


def run(
    data_dir: Path,
    spark,
    only: list[str] | None = None,
    echo: bool = True,
    shards: int | None = None,
    shard_rows: int = local.SHARD_ROWS,
    stats: dict | None = None,
    wait: float = 0.0,
    write_rows: int = months.SLICE_ROWS,
) -> list[local.Outcome]:
    """Build every registered source historically on `spark` (a SparkSession).

    `shards` fixes the number of customer shards (default: Spark's parallelism, or more so that a
    shard holds at most `shard_rows` input rows). `stats`, when given, receives the sharded
    stages' seconds (`stages`) and one entry per (shard, family) (`shards`: input rows, seconds,
    the Python worker's peak RSS), what docs/scaling.md sizes a cluster from. A write task sorts
    at most about `write_rows` rows at once (pipelines/spark/months.py). Holds the data
    directory's lock as the local engine does (waiting up to `wait` seconds)."""
    data_dir = Path(data_dir).resolve()
    with data_dir_lock(data_dir, "features --engine spark", wait):
        outcomes = _run(data_dir, spark, only, echo, shards, shard_rows, stats, write_rows)
        if not only or set(only) & set(realtime.SOURCES):
            # the real-time views' offline sources, rewritten whole from the clean events as the
            # local engine does (printed, not returned, there too), by entity shard on executors
            _run_realtime(data_dir, spark, shards, stats, echo, write_rows)
        return outcomes


def _run_realtime(data_dir: Path, spark, shards, stats, echo: bool, write_rows: int) -> None:
    t0 = time.perf_counter()
    files = {t: local._clean_files(data_dir, t) for t in TABLES}
    span = local._data_span(data_dir, files)
    staging = data_dir / "tmp" / "spark-realtime"
    with progress("real-time views spark", total=3, unit="stages") as bar:
        written = spark_realtime.run(
            spark, data_dir, staging, shards, stats=stats, step=bar.step, write_rows=write_rows
        )
    local._save_realtime_stamp(data_dir, files)
    for name in realtime.SOURCES:
        days = span if span else (None, None)
        outcome = local.Outcome(name, written[name], time.perf_counter() - t0, *days)
        if echo:
            print(outcome.line(), flush=True)


def _run(data_dir, spark, only, echo, shards, shard_rows, stats, write_rows) -> list[local.Outcome]:
    repo = str(resolve_feature_repo())  # passed to the tasks: an executor's environment may
    # name another feature repo (or none) than the driver's
    fams = sources.families(repo=Path(repo))
    if only:
        fams = {k: v for k, v in fams.items() if k in only}
    files = {t: local._clean_files(data_dir, t) for t in TABLES}
    span = local._data_span(data_dir, files)
    if span is None:
        return [local.Outcome(name, 0, 0.0, None, None) for name in fams]
    sharded = {k: m for k, m in fams.items() if hasattr(m, "SHARD_BY")}
    whole = [k for k in fams if k not in sharded]
    groups: dict[str, dict[str, ModuleType]] = {}  # by entity: customer shards, product shards
    for name, module in sharded.items():  # a declared pair view goes with the customers
        groups.setdefault(getattr(module, "SHARD_GROUP", module.SOURCE.entity), {})[name] = module
    outcomes: dict[str, local.Outcome] = {}
    staging = data_dir / "tmp" / "spark"
    shutil.rmtree(staging, ignore_errors=True)
    # shuffle, compute, write per group (and the cross-section pass and its aggregation); global
    steps = sum(3 + _crossing(g) for g in groups.values()) + (1 if whole else 0)
    snapshots = Snapshots(int(span[0]), int(span[1]), True)
    for module in sharded.values():
        local._wipe(module.SOURCE.path(data_dir))
        if hasattr(module, "carry_path"):  # counts carried between local incremental runs: not
            # kept by this engine, so the next incremental run recounts from all history
            module.carry_path(data_dir).unlink(missing_ok=True)
        if hasattr(module, "persist"):  # once-per-shop state (a vocabulary, the review NLP
            # cache): on the driver, before any task (a global-step family may share it)
            wanted = getattr(module, "PERSIST_INPUTS", None)
            module.persist(
                data_dir,
                {
                    i.table: local._read_input(data_dir, i, snapshots)
                    for i in module.INPUTS
                    if wanted is None or i.table in wanted
                },
            )
    try:
        with (
            progress("features spark", total=steps, unit="stages") as bar,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            pending = []

            def alongside() -> None:  # global-step families: submitted once the shuffle is done
                if whole and not pending:
                    pending.append(
                        pool.submit(_run_whole, spark, data_dir, whole, files, span, repo)
                    )

            try:
                for entity, modules in groups.items():
                    done = _run_sharded(
                        spark,
                        data_dir,
                        staging / entity,
                        modules,
                        files,
                        span,
                        shards,
                        shard_rows,
                        repo,
                        stats,
                        alongside,
                        bar.step,
                        write_rows,
                    )
                    outcomes.update(done)
            finally:
                alongside()  # (started even when the sharded families failed: waited for here)
            if pending:
                outcomes.update({o.source: o for o in pending[0].result()})
                bar.step("families with a global step")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if echo:
        for name in fams:
            print(outcomes[name].line(), flush=True)
    return [outcomes[name] for name in fams]


def _crossing(modules: dict[str, ModuleType]) -> int:
    """Extra stages of `modules`' global steps: a cross-section (pass one, then a Spark
    aggregation) counts two, an aggregation of the inputs (co-purchase pairs) one."""
    return sum(
        2 if hasattr(m, "cross_section_rows") else 1
        for name, m in modules.items()
        if name in cross_sections.GIVEN
    )


# --- global-step families: the local engine in one task ---------------------------------------


def _groups(names: list[str], repo: str) -> list[list[str]]:
    """Families that read reviews share the review NLP state: one task runs them in order."""
    fams = sources.families(repo=Path(repo))
    reviews = [n for n in names if any(i.table == "reviews" for i in fams[n].INPUTS)]
    return ([reviews] if reviews else []) + [[n] for n in names if n not in reviews]


def _run_whole(
    spark, data_dir: Path, names: list[str], files, span, repo: str
) -> list[local.Outcome]:
    groups = _groups(names, repo)
    rdd = spark.sparkContext.parallelize(
        [(str(data_dir), g, files, span, repo) for g in groups], len(groups)
    )
    rdd.setName("shopfeast: families with a global step")
    return [o for done in _raised(rdd.map(_whole_task).collect()) for o in done]


def _task(fn):
    """A task whose FeatureOverflow comes back as its result, for the driver to raise as the
    local engine does (raised in the task, Spark would retry it and hand the driver a Py4J error
    carrying the worker's traceback instead of the one-line refusal)."""

    @functools.wraps(fn)
    def run(args):
        try:
            return fn(args)
        except FeatureOverflow as exc:
            return exc

    return run


def _raised(results: list) -> list:
    for result in results:
        if isinstance(result, FeatureOverflow):
            raise result
    return results


@_task
def _whole_task(args) -> list[local.Outcome]:
    data_dir, names, files, span, repo = args
    fams = sources.families(repo=Path(repo))
    out = []
    for name in names:
        t0 = time.perf_counter()
        outcome = local._run_family(Path(data_dir), fams[name], "historical", files, span)
        outcome.seconds = time.perf_counter() - t0
        out.append(outcome)
    return out


# --- sharded families --------------------------------------------------------------------------


def shard_keys(modules: dict[str, ModuleType]) -> dict[str, str | tuple[str, str]]:
    """How every sharded table is split: the families must agree (all split by customer)."""
    keys: dict[str, str | tuple[str, str]] = {}
    for name, module in modules.items():
        for table, key in module.SHARD_BY.items():
            if keys.setdefault(table, key) != key:
                raise ValueError(
                    f"{name} splits {table} by {key!r}, another family by {keys[table]!r}"
                )
    return keys


def _run_sharded(
    spark,
    data_dir: Path,
    staging: Path,
    modules: dict[str, ModuleType],
    files,
    span: tuple[int, int],
    shards: int | None,
    shard_rows: int,
    repo: str,
    stats: dict | None = None,
    after_shuffle=lambda: None,
    step=lambda note: None,
    write_rows: int = months.SLICE_ROWS,
) -> dict[str, local.Outcome]:
    """Every sharded family at once: one shuffle of their inputs, one task per shard computing
    every family on it, then the (family, month) files written by a few tasks. `after_shuffle`
    is called when the shuffle is done (the global-step families start then: in local mode they
    would otherwise hold every core while the shuffle waits); `step(note)` after each stage.

    A family with `cross_section_rows` (product_stats: figures over every product of a category)
    takes two passes: each shard writes its cross-section rows, Spark aggregates them
    (pipelines/spark/cross_sections.py), and the compute pass reads the result back in its
    tables. Stage names in `stats` start with the entity ("product shuffle")."""
    t0 = time.perf_counter()
    entity = staging.name
    first_day, end_day = span
    snapshots = Snapshots(int(first_day), int(end_day), True)
    keys = shard_keys(modules)
    columns: dict[str, list[str]] = {}  # the union of what the families read of each table
    for module in modules.values():
        for spec in module.INPUTS:
            if spec.table in keys:
                seen = columns.setdefault(spec.table, [])
                seen += [c for c in spec.columns if c not in seen]
    specs = [Input(t, tuple(c)) for t, c in columns.items()]
    n = shards or max(
        spark.sparkContext.defaultParallelism, -(-_rows(data_dir, specs) // shard_rows)
    )
    frames = {s.table: _read(spark, data_dir, s, snapshots) for s in specs}
    _shuffle(frames, keys, n, staging / "in")
    stages = {f"{entity} shuffle": time.perf_counter() - t0}
    step(f"{entity} shuffle into {n} shards")
    after_shuffle()
    plan = Plan(
        str(data_dir),
        tuple(modules),
        str(staging),
        n,
        first_day,
        end_day,
        shard_rows,
        repo,
        write_rows,
    )
    sc = spark.sparkContext
    for name in modules:
        if name in cross_sections.GIVEN and not hasattr(modules[name], "cross_section_rows"):
            # a global step over the inputs themselves (co-purchase pair counts)
            t = time.perf_counter()
            days = grain_days_of(modules[name], first_day, end_day)
            through = int(days[-1]) if len(days) else None
            cross_sections.copurchase_counts(frames, n, through, staging / name / "given")
            stages[f"{name} aggregation"] = time.perf_counter() - t
            step(f"{name} aggregation")
    for name, module in modules.items():
        if not hasattr(module, "cross_section_rows"):
            continue
        t = time.perf_counter()
        sc.parallelize([(plan, name, k) for k in range(n)], n).map(_cross_task).collect()
        stages[f"{name} cross-section rows"] = time.perf_counter() - t
        step(f"{name} cross-section rows")
        t = time.perf_counter()
        cross_sections.aggregate(spark, name, staging / name / "cross", staging / name / "given")
        stages[f"{name} cross-section aggregation"] = time.perf_counter() - t
        step(f"{name} cross-section aggregation")
    t = time.perf_counter()
    done = _raised(sc.parallelize([(plan, k) for k in range(n)], n).map(_shard_task).collect())
    stages[f"{entity} compute"] = time.perf_counter() - t
    step(f"{entity} compute")
    t = time.perf_counter()
    jobs = []
    for name in modules:
        months = sorted({m for d in done for m in d[name]["months"]})
        jobs += [(plan, name, m) for m in months] + [(plan, name, None)]  # None: latest rows
    # a few tasks, each writing several months (a task per month is mostly scheduling overhead)
    tasks = min(len(jobs), 2 * sc.defaultParallelism)
    batches = [jobs[i::tasks] for i in range(tasks)]
    sc.parallelize(batches, tasks).map(lambda batch: [_write_task(j) for j in batch]).collect()
    stages[f"{entity} write"] = time.perf_counter() - t
    step(f"{entity} write")
    if stats is not None:
        stats.setdefault("stages", {}).update(stages)
        stats.setdefault("shards", []).extend(
            {"family": name, "shard": k, **{x: d[name][x] for x in SHARD_STATS}}
            for k, d in enumerate(done)
            for name in modules
        )
    seconds = time.perf_counter() - t0
    out = {}
    for name, module in modules.items():
        inputs = {i.table: files[i.table] for i in module.INPUTS}
        local._save_state(data_dir, module.SOURCE, end_day, inputs)
        rows = sum(d[name]["rows"] for d in done)
        out[name] = local.Outcome(name, rows, seconds, snapshots.start_day, snapshots.end_day)
    return out


def _rows(data_dir: Path, specs: list[Input]) -> int:
    """Input rows from the parquet footers (no Spark job; time filters not applied)."""
    total = 0
    for spec in specs:
        for f in clean_dir(data_dir, spec.table).rglob("*.parquet"):
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def _read(spark, data_dir: Path, spec: Input, snapshots: Snapshots):
    """A clean table as the local engine reads it (pipelines.run._read_input), in Spark."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    table = TABLES[spec.table]
    schema = table.arrow_schema()
    wanted = from_arrow_schema(pa.schema([schema.field(c) for c in spec.columns]))
    path = clean_dir(data_dir, spec.table)
    if not path.exists() or not any(path.rglob("*.parquet")):
        return spark.createDataFrame([], wanted)
    df = spark.read.schema(from_arrow_schema(schema)).parquet(
        *sorted(str(p) for p in path.rglob("*.parquet"))
    )
    start = None if table.change_log else snapshots.read_from(spec.lookback_days)
    end = None if table.change_log else snapshots.end
    col = F.col(partition_time_column(table))
    if start is not None:
        df = df.where(col >= F.lit(start.to_pydatetime()))
    if end is not None:
        df = df.where(col < F.lit(end.to_pydatetime()))
    return df.select(*spec.columns)


def _shuffle(frames: dict, keys: dict, n: int, root: Path) -> None:
    """Every table split into `n` entity shards, in one Spark job: the tables are stacked (by
    column name, a `_table` column saying whose row it is) and written partitioned by
    (`_table`, `_shard`); a reader takes its table's columns back."""
    from pyspark.sql import functions as F

    keyed = {}
    for table, key in keys.items():
        if isinstance(key, str):
            df = frames[table]
            owner = F.col(key)
            if table == "orders" and {"order_id", "updated_at", "order_ts"} <= set(df.columns):
                # an order's versions stay together, with its first version's customer (whose
                # order it is: pipelines.order_versions), whatever a later version says
                when = F.coalesce(F.col("updated_at"), F.col("order_ts"))
                first = df.groupBy("order_id").agg(F.min_by(key, when).alias(OWNER))
                df, owner = df.join(first, on="order_id", how="inner"), F.col(OWNER)
            # a row without the entity (an anonymous visitor's event, a page view for products,
            # a guest's order) is no entity's: dropped, as the local `shard` hooks drop it
            # (xxhash64 of a null is the seed, so they all went to one shard)
            df = df.where(owner.isNotNull())
            df = df.withColumn(SHARD, F.pmod(F.xxhash64(owner), F.lit(n)))
            keyed[table] = df.drop(OWNER) if OWNER in df.columns else df
    for table, key in keys.items():
        if not isinstance(key, str):  # (parent table, column): the parent row's shard
            parent, column = key
            # every shard a parent row of it is in: an order goes to each product shard among
            # its items (to its one customer shard when split by customer)
            shard_of = keyed[parent].select(column, SHARD).dropDuplicates([column, SHARD])
            keyed[table] = frames[table].join(shard_of, on=column, how="inner")
    stacked = None
    for table, df in keyed.items():
        df = df.withColumn(TABLE, F.lit(table))
        stacked = df if stacked is None else stacked.unionByName(df, allowMissingColumns=True)
    (
        stacked.repartition(n, SHARD)
        .write.mode("overwrite")
        .partitionBy(TABLE, SHARD)
        .parquet(str(root))
    )


def _staged(root: Path, spec: Input, k: int) -> pd.DataFrame:
    schema = TABLES[spec.table].arrow_schema()
    schema = pa.schema([schema.field(c) for c in spec.columns])
    folder = root / f"{TABLE}={spec.table}" / f"{SHARD}={k}"
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.exists() else []
    if not files:
        return local.from_schema(schema.empty_table())
    table = ds.dataset(files, format="parquet").to_table(columns=list(spec.columns))
    return local.from_schema(table.cast(schema))


SHARD_STATS = ("input_rows", "seconds", "worker_peak_rss_mib")


@_task
def _shard_task(args) -> dict[str, dict]:
    """Every sharded family's change-point rows on shard k, and each entity's last row."""
    plan, k = args
    fams = sources.families(repo=Path(plan.feature_repo))
    data_dir, staging = Path(plan.data_dir), Path(plan.staging)
    snapshots = Snapshots(plan.start_day, plan.end_day, True)
    out = {}
    for name in plan.families:
        module = fams[name]
        source: FeatureSource = module.SOURCE
        t0 = time.perf_counter()
        tables = _shard_tables(plan, module, k)
        input_rows = sum(len(t) for t in tables.values())
        if hasattr(module, "attach"):  # state `persist` recorded on the driver (review scores)
            module.attach(data_dir, tables)
        if name in cross_sections.GIVEN:  # the Spark aggregation's results
            tables.update(cross_sections.given(staging / name / "given", name, k))
        rows = local.compute_rows(module, tables, snapshots, shard_rows=plan.shard_rows)
        del tables
        folder = staging / name
        (folder / "out").mkdir(parents=True, exist_ok=True)
        (folder / "latest").mkdir(parents=True, exist_ok=True)
        table = to_arrow(source, rows).sort_by(
            [(source.timestamp_field, "ascending"), *((k, "ascending") for k in source.join_keys)]
        )
        part = f"part-{k:05d}.parquet"
        pq.write_table(table, folder / "out" / part, row_group_size=local.ROW_GROUP_ROWS)
        pq.write_table(to_arrow(source, local._last_rows(source, rows)), folder / "latest" / part)
        stamps = pd.DatetimeIndex(rows[source.timestamp_field]).tz_localize(None)
        out[name] = {
            "rows": len(rows),
            "months": sorted(set(stamps.strftime("%Y-%m"))),
            "input_rows": input_rows,
            "seconds": time.perf_counter() - t0,
            "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    return out


def grain_days_of(module: ModuleType, start_day: int, end_day: int):
    """The snapshot days of a family on a coarser grain (product_copurchase's Mondays)."""
    return module.grain_days(start_day, end_day)


def _shard_tables(plan: Plan, module: ModuleType, k: int) -> dict[str, pd.DataFrame]:
    """A family's input tables on shard k: its sharded tables from the shuffle, the rest whole."""
    snapshots = Snapshots(plan.start_day, plan.end_day, True)
    tables = {}
    for spec in module.INPUTS:
        if spec.table in getattr(module, "GLOBAL_INPUTS", ()):
            continue  # read by the family's Spark aggregation only
        if spec.table in module.SHARD_BY:
            tables[spec.table] = _staged(Path(plan.staging) / "in", spec, k)
        else:
            tables[spec.table] = local._read_input(Path(plan.data_dir), spec, snapshots)
    return tables


def _cross_task(args) -> int:
    """A family's cross-section rows on shard k, written chunk by chunk under
    <staging>/<family>/cross/_shard=k/ for the Spark aggregation."""
    plan, name, k = args
    module = sources.families(repo=Path(plan.feature_repo))[name]
    tables = _shard_tables(plan, module, k)
    snapshots = Snapshots(plan.start_day, plan.end_day, True)
    folder = Path(plan.staging) / name / "cross" / f"{SHARD}={k}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = 0
    for i, chunk in enumerate(module.cross_section_rows(tables, snapshots)):
        if len(chunk):
            table = pa.Table.from_pandas(
                chunk, schema=cross_sections.schema(name), preserve_index=False
            )
            pq.write_table(table, folder / f"chunk-{i:05d}.parquet")
            rows += len(chunk)
    return rows


def _write_task(args) -> int:
    """One month's file of a source (as pipelines.run._write), or its latest-row file."""
    plan, name, month = args
    source: FeatureSource = sources.families(repo=Path(plan.feature_repo))[name].SOURCE
    data_dir, staging = Path(plan.data_dir), Path(plan.staging) / name
    schema = source.arrow_schema()
    if month is None:
        path = local._latest_path(data_dir, source)
        path.parent.mkdir(parents=True, exist_ok=True)
        return months.write_latest(
            sorted(str(p) for p in (staging / "latest").glob("*.parquet")),
            schema,
            list(source.join_keys),
            source.timestamp_field,
            path,
            slice_rows=plan.write_rows,
        )
    parts = sorted(str(p) for p in (staging / "out").glob("*.parquet"))
    path = source.path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return months.write_month(
        parts,
        schema,
        month,
        source.timestamp_field,
        list(source.join_keys),
        path / f"{month}.parquet",
        row_group_size=local.ROW_GROUP_ROWS,
        slice_rows=plan.write_rows,
        compression="zstd",
    )
