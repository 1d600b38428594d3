"""The interface every feature family implements (one module per source in pipelines/families/).

A family module has, at its top:

    SOURCE = FeatureSource(...)          # pipelines.specs: its features, declared once
    INPUTS = (Input("orders", (...), lookback_days=90), ...)   # what it reads

and one pure function:

    def compute(tables: dict[str, pd.DataFrame], snapshots: Snapshots,
                prior: pd.DataFrame) -> pd.DataFrame

- `tables[name]` is the clean table read by `pipelines.run` (contract dtypes, only the declared
  columns). Event-like tables hold rows with time >= `snapshots.read_from(lookback_days)` (all rows
  in a historical run, or with `lookback_days=None`); change logs are always complete.
- `snapshots` (pipelines.windows.Snapshots) names the days to emit: `start_day .. end_day`.
- `prior` holds, for an incremental run, each entity's stored row as of `snapshots.prior_day`
  (the last row before `start_day`, in declared dtypes; empty in a historical run). Lifetime
  features seed from it, so an incremental day never re-reads all history.
- It returns candidate rows `[join_key, event_timestamp, *features]` with `event_timestamp` in
  `start .. end`: at least one row on every day where some feature of an entity changes, and one on
  the entity's first snapshot. Extra rows are fine: `pipelines.run` casts the frame to the
  declared dtypes (specs.conform), drops rows equal to the entity's previous row
  (windows.change_points, against `prior` too), stamps `created_timestamp` and writes.

Optionally `shard(tables, n) -> Iterable[dict[str, pd.DataFrame]]`: when entities are independent,
split the inputs into `n` entity shards; the runner computes and reduces each alone (bounded
memory) and concatenates the rows.

Optionally `SHARD_BY = {table: column, table: (parent_table, column)}`: how the Spark engine
(pipelines/spark/features.py) splits the inputs by entity: a table by its own entity column, or by
the shard of the parent row it references (order items by their order). Tables not named are read
whole by every shard. Families without it run whole, in one Spark task (a global step).

Optionally `emits(snapshots) -> bool`: False when none of `snapshots` is a snapshot day of the
source (a coarser grain than daily), so no stored row can change; an incremental run then reads
no input and only moves the watermark on.

Optionally `persist(data_dir, tables) -> None`: called before `compute` to record state a family
learns from data once (a vocabulary, a fitted model) under DIR/state/; `compute` stays pure.

Optionally `restore(data_dir, snapshots) -> object | None` and `carry(data_dir, tables, snapshots,
carried) -> None`, for a lifetime feature that cannot seed from `prior` (distinct counts over all
history): `restore` returns the state the family carried between runs, as of the run's start, or
None (none kept, or not as of a day early enough), in which case the run reads all history as a
historical run does. `carry` (after reading, before `compute`) folds the run's rows into it, writes
it under DIR/state/, and adds to `tables` what `compute` needs; `compute` stays pure and still
works from the full tables alone (what the tests call). The state must be usable as of any earlier
day (a late file restarts the run from an older day): keep when each item was first counted.

Values must be a function of raw rows with timestamp `< T` only (docs/point_in_time.md), and must
not depend on where the run started: an incremental run from day D gives exactly the rows a
historical run gives from day D on. Accumulate integers (windows.Streams) to make that exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from pipelines import order_versions
from pipelines.specs import FeatureSource
from pipelines.windows import EntityIndex, Snapshots


@dataclass(frozen=True)
class Input:
    """A clean table a family reads: which columns, and how far before the first snapshot."""

    table: str
    columns: tuple[str, ...]
    lookback_days: int | None = None  # None: all history


# The orders columns every family that reads orders needs: an order's versions (status, refunds
# and their time, updated_at) decide what counts at T, so they all read the same set.
ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "order_ts",
    "status",
    "total_amount",
    "discount_amount",
    "refunded_amount",
    "refund_ts",
    "updated_at",
)


def customer_parts(tables: dict[str, pd.DataFrame], n: int) -> dict[str, np.ndarray]:
    """Each row's customer shard in `0..n-1` (-1: an unknown customer) for the tables a
    customer-sharded family reads: customers and events by their own customer, an order's versions
    all with its first version's customer (whose order it is). Order items follow their order."""
    index = EntityIndex(tables["customers"]["customer_id"])

    def part(ids: pd.Series) -> np.ndarray:
        codes = index.codes(ids)
        return np.where(codes >= 0, codes % n, -1)

    parts = {"customers": part(tables["customers"]["customer_id"])}
    if "orders" in tables:
        orders = tables["orders"]
        first = order_versions.first_versions(orders).set_index("order_id")["customer_id"]
        parts["orders"] = part(orders["order_id"].map(first))
    if "events" in tables:
        parts["events"] = part(tables["events"]["customer_id"])
    return parts


class Family(Protocol):
    SOURCE: FeatureSource
    INPUTS: tuple[Input, ...]

    def compute(
        self, tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
    ) -> pd.DataFrame: ...
