"""The global steps of product-sharded families, as Spark aggregations (DataFrame API).

product_stats' category figures are cross-sections: at each snapshot day, over every product of a
category. Each product shard writes its (product, day) rows (`cross_section_rows`: category,
price, popularity_30d); Spark aggregates all of them here and writes, under `given/`:

- `category_figures/`: one row per (day, category): the count, popularity sum, lowest, highest
  and median price (read whole by every shard: days x categories rows);
- `price_pct_in_category/_shard=<k>/`: each (product, day)'s price percentile in its category
  (the share of the category's priced products at or below its price), split by the product's
  shard (read back by that shard only).

The arithmetic is the local engine's (pipelines/families/product_stats.py `_category_figures`,
pandas): counts and sums in integers; min, max and median over the non-null prices, the median
of an even count the mean of the two middle prices (Spark's `percentile(0.5)`: 0.5 a + 0.5 b, the
same double as (a + b) / 2); the percentile `rank(method="max") / non-null count`, a window over
the (day, category) ordered by price whose range frame takes the ties in. Equal value for value:
tests/pipelines/test_spark_features.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

SHARD = "_shard"

SCHEMAS = {
    "product_stats": pa.schema(
        [
            ("product_id", pa.string()),
            ("day", pa.int64()),
            ("category", pa.string()),
            ("price", pa.float64()),
            ("popularity", pa.int64()),
        ]
    ),
}


# What each family's aggregation hands back (read in these types, empty ones included).
GIVEN = {
    "product_stats": {
        "category_figures": pa.schema(
            [
                ("day", pa.int64()),
                ("category", pa.string()),
                ("category_product_count", pa.int64()),
                ("category_popularity_30d", pa.int64()),
                ("category_price_min", pa.float64()),
                ("category_price_max", pa.float64()),
                ("category_price_median", pa.float64()),
            ]
        ),
        "price_pct_in_category": pa.schema(
            [
                ("product_id", pa.string()),
                ("day", pa.int64()),
                ("product_price_pct_in_category", pa.float64()),
            ]
        ),
    },
    "product_copurchase": {
        "copurchase_pair_ids": pa.schema(
            [("a", pa.string()), ("b", pa.string()), ("day", pa.int64()), ("n", pa.int64())]
        ),
        "copurchase_buyer_ids": pa.schema(
            [("a", pa.string()), ("day", pa.int64()), ("n", pa.int64())]
        ),
    },
}


def schema(family: str) -> pa.Schema:
    return SCHEMAS[family]


def aggregate(spark, family: str, rows: Path, given: Path) -> None:
    """Aggregate every shard's cross-section rows of `family` (parquet under `rows`, partitioned
    by shard) into the tables its shards read back from `given`."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    files = sorted(str(p) for p in rows.rglob("*.parquet")) if rows.exists() else []
    wanted = from_arrow_schema(SCHEMAS[family])
    if not files:
        df = spark.createDataFrame([], wanted).withColumn(SHARD, F.lit(0))
    else:
        df = spark.read.schema(wanted).option("basePath", str(rows)).parquet(*files)
        df = df.withColumn(SHARD, F.col(SHARD).cast("int"))
    _write(_category_figures(df), given)


def _write(frames: dict, given: Path) -> None:
    for name, (frame, per_shard) in frames.items():
        out = str(given / name)
        if per_shard:
            frame.repartition(SHARD).write.mode("overwrite").partitionBy(SHARD).parquet(out)
        else:
            frame.coalesce(1).write.mode("overwrite").parquet(out)


def _category_figures(df) -> dict:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by = ["day", "category"]
    figures = df.groupBy(*by).agg(
        F.count(F.lit(1)).alias("category_product_count"),
        F.sum("popularity").cast("long").alias("category_popularity_30d"),
        F.min("price").alias("category_price_min"),
        F.max("price").alias("category_price_max"),
        F.percentile(F.col("price"), F.lit(0.5)).alias("category_price_median"),
    )
    group = Window.partitionBy(*by)
    upto = group.orderBy("price").rangeBetween(Window.unboundedPreceding, Window.currentRow)
    pct = df.select(
        "product_id",
        "day",
        SHARD,
        F.when(F.col("price").isNull(), F.lit(None).cast("double"))
        .otherwise(F.count("price").over(upto) / F.count("price").over(group))
        .alias("product_price_pct_in_category"),
    )
    return {"category_figures": (figures, False), "price_pct_in_category": (pct, True)}


def given(root: Path, family: str, k: int) -> dict[str, pd.DataFrame]:
    """What the family's aggregation wrote for shard k: each table whole, or its shard's part."""
    out = {}
    for name, wanted in GIVEN[family].items():
        folder = root / name
        part = folder / f"{SHARD}={k}"
        if any(folder.glob(f"{SHARD}=*")):
            files = sorted(str(p) for p in part.glob("*.parquet")) if part.exists() else []
        else:
            files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.exists() else []
        table = (
            ds.dataset(files, format="parquet").to_table(columns=wanted.names).cast(wanted)
            if files
            else wanted.empty_table()
        )
        out[name] = table.to_pandas()
    return out


# --- product_copurchase: pair and buyer counts over all orders ----------------------------------

DAY_US = 86_400_000_000


def copurchase_counts(frames: dict, shards: int, through: int | None, given: Path) -> None:
    """n(a, b) and n(a) as product_copurchase counts them (`count` with nothing carried), as
    running counts at each grain day where they grow up to `through`, by product id, split by
    the shard of `a` (the shuffle's `pmod(xxhash64(product_id), shards)`).

    A buyer is the customer, or for a guest the order ("c"/"g" prefixed ids never meet); its
    lines are the (buyer, product, order) of orders not cancelled as placed (the first version)
    with a known product; a pair (a < b) of a buyer's lines within 30 days of each other counts
    from the later line's time, the buyer counted once per pair from the earliest such time (its
    grain day: the Monday on or after the day after it)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.families import product_copurchase as family

    orders, items, products = frames["orders"], frames["order_items"], frames["products"]
    when = F.coalesce(F.col("updated_at"), F.col("order_ts"))
    placed = (
        orders.groupBy("order_id")
        .agg(F.min_by(F.struct("customer_id", "order_ts", "status"), when).alias("v"))
        .select("order_id", "v.*")
        .where(F.col("status") != F.lit("cancelled"))
    )
    known = products.select("product_id").distinct()
    lines = (
        items.select("order_id", "product_id")
        .join(known, "product_id", "left_semi")
        .join(placed, "order_id")
        .select(
            F.coalesce(
                F.concat(F.lit("c"), F.col("customer_id")), F.concat(F.lit("g"), F.col("order_id"))
            ).alias("u"),
            F.col("product_id").alias("p"),
            "order_id",
            F.unix_micros(F.col("order_ts")).alias("us"),
        )
        .dropDuplicates(["u", "p", "order_id"])
    )

    def grain(us):  # snap_up(entry day): the Monday on or after the day after `us`
        day = F.floor(us / F.lit(DAY_US)).cast("long") + 1
        return day + F.pmod(F.lit(family.ANCHOR_DAY) - day, F.lit(family.GRAIN_DAYS))

    def running(counted, keys):  # per key and grain day: buyers first counted, then cumulated
        w = Window.partitionBy(*keys).orderBy("day").rowsBetween(Window.unboundedPreceding, 0)
        out = counted.groupBy(*keys, "day").agg(F.count(F.lit(1)).alias("k"))
        return out.select(*keys, "day", F.sum("k").over(w).cast("long").alias("n"))

    limit = family.TOGETHER_DAYS * DAY_US
    left = lines.select("u", F.col("p").alias("a"), F.col("us").alias("us_a"))
    right = lines.select("u", F.col("p").alias("b"), F.col("us").alias("us_b"))
    together = (
        left.join(right, "u")
        .where((F.col("a") < F.col("b")) & (F.abs(F.col("us_a") - F.col("us_b")) < F.lit(limit)))
        .groupBy("u", "a", "b")
        .agg(F.min(F.greatest("us_a", "us_b")).alias("us"))
        .select("a", "b", grain(F.col("us")).alias("day"))
    )
    bought = (
        lines.groupBy("u", "p")
        .agg(F.min("us").alias("us"))
        .select(F.col("p").alias("a"), grain(F.col("us")).alias("day"))
    )
    if through is not None:
        together = together.where(F.col("day") <= F.lit(through))
        bought = bought.where(F.col("day") <= F.lit(through))
    pairs = running(together, ["a", "b"])
    both = pairs.unionByName(pairs.select(F.col("b").alias("a"), F.col("a").alias("b"), "day", "n"))

    def shard(df):
        return df.withColumn(SHARD, F.pmod(F.xxhash64(F.col("a")), F.lit(shards)))

    _write(
        {
            "copurchase_pair_ids": (shard(both), True),
            "copurchase_buyer_ids": (shard(running(bought, ["a"])), True),
        },
        given,
    )
