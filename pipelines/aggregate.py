"""The engine behind declared aggregations (pipelines/declarations.py): one family per view.

A declared view behaves exactly like a hand-written family (pipelines/family.py): it has a
`SOURCE`, its `INPUTS` and a pure `compute`, so `pipelines.run` builds it historically or
incrementally with the same watermarks and writes it in the same layout, and featurestore turns its
`SOURCE` into a Feast view like any other.

How each function is computed on the window machinery (pipelines/windows.py): a row stamped `ts`
is visible from `enter = floor_day(ts) + 1` to `enter + W - 1` (lifetime: for ever), i.e. in
`[T - W, T)`.
- count, sum, mean, share: integer deltas (`Streams.window`), rows summed per (entity, day) first;
  sums of floats in micro-units (exact, six decimals), means and shares divided at the end;
- count_distinct: each key's visibility intervals merged (`Streams.distinct`);
- min, max: a range query over the rows of each (entity, day), on every day the window can change
  (a row entering or leaving): a sparse table over the window (log2(W) levels), a running
  extreme per entity for lifetime;
- last: the latest row's value (ties on the timestamp: the largest value), null once it left the
  window (every older row left before it).
Orders are read as placed: an order's first version (contract v1.1 keeps later versions, refunds,
cancellations and edits, as a change log). That is the rule the families use for what was bought;
what follows an order's later versions (spend with refunds known late, orders cancelled afterwards)
is the families' (pipelines/order_versions.py).

Null values of the column are skipped (count counts non-null values when given a column); an entity
that exists has 0 for counts and sums, null for means, shares, min, max and last of nothing.

Entities: a customer exists from its first snapshot after signup, a product after its first
catalog row (pipelines.existence), as for the families; a (customer, product) pair exists from
the first snapshot after its first row passing the view's filter, so only pairs that happened get
rows (what keeps the online store small); the feature store reads a pair it never saw as zeros.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contract import TABLES
from pipelines.declarations import TIME_COLUMN, Aggregation, DeclaredView
from pipelines.existence import customer_first_day, product_first_day
from pipelines.family import Input
from pipelines.order_versions import first_versions
from pipelines.predicate import Predicate
from pipelines.specs import STRING, FeatureSource
from pipelines.windows import (
    MICRO,
    EntityIndex,
    Snapshots,
    Streams,
    day_ts,
    duration_us,
    entry_day,
    fixed,
    pack,
    unpack,
)

PAIR_SEP = "\x1f"  # customer_id, product_id packed into one id (sorts as the pair does)
_NEVER = np.iinfo(np.int64).max // 4


class DeclaredFamily:
    """A declared view as a family module: `SOURCE`, `INPUTS`, `compute`."""

    def __init__(self, view: DeclaredView) -> None:
        self.view = view
        self.SOURCE: FeatureSource = view.feature_source()
        self.INPUTS: tuple[Input, ...] = inputs(view)
        self.__name__ = f"declared:{view.name}"

    def compute(
        self, tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
    ) -> pd.DataFrame:
        return compute(self.view, tables, snapshots)

    def shard(self, tables: dict[str, pd.DataFrame], n: int) -> Iterator[dict[str, pd.DataFrame]]:
        """Split by customer (customer and pair views) or product: entities are independent."""
        key = "product_id" if self.view.entity == "product" else "customer_id"
        codes = {name: _hash_part(t[key], n) for name, t in tables.items() if key in t.columns}
        for k in range(n):
            part = {name: t[codes[name] == k] for name, t in tables.items() if name in codes}
            if "order_items" in tables and "order_items" not in part:  # items of the orders
                items, orders = tables["order_items"], part["orders"]
                mine = pc.is_in(_arrow(items["order_id"]), value_set=_arrow(orders["order_id"]))
                part["order_items"] = items[mine.to_numpy(zero_copy_only=False)]
            for name, t in tables.items():  # orders reached through a shard's items: all kept
                part.setdefault(name, t)
            yield part


# --- what to read -------------------------------------------------------------------------------


def inputs(view: DeclaredView) -> tuple[Input, ...]:
    """The clean tables and columns a view reads, each as far back as its longest window."""
    columns: dict[str, list[str]] = {}
    lookback: dict[str, list[int | None]] = {}

    def need(table: str, cols: list[str], days: int | None) -> None:
        columns.setdefault(table, [])
        for c in cols:
            if c not in columns[table]:
                columns[table].append(c)
        lookback.setdefault(table, []).append(days)

    keys = list(view.keys)
    for agg in view.features:
        used = [*keys, TIME_COLUMN[agg.source], *_read_columns(agg)]
        days = agg.window_days
        if agg.source in ("events", "reviews"):
            need(agg.source, used, days)
            continue
        item_cols = {c.name for c in TABLES["order_items"].clean_columns()}
        if agg.source == "orders" and "product_id" not in keys:
            need("orders", used, days)
            continue
        # order items, or orders reached through them: items (with the order's timestamp), and
        # the order's own columns joined on order_id
        need("order_items", ["order_id", "product_id", "order_ts"], days)
        own = item_cols if agg.source == "order_items" else {"order_id", "product_id", "order_ts"}
        need("order_items", [c for c in used if c in own], days)
        order_cols = [c for c in used if c not in own or c == "order_id"]
        need("orders", ["order_id", *[c for c in order_cols if c != "order_ts"]], days)
    if "orders" in columns:  # its versions' times, to read each order as placed
        need("orders", ["order_id", "order_ts", "updated_at"], lookback["orders"][0])
    if view.entity == "customer":
        need("customers", ["customer_id", "signup_ts", "updated_at"], None)
    if view.entity == "product":
        need("products", ["product_id", "updated_at", "created_at"], None)
    out = []
    for table in TABLES:  # contract order
        if table in columns:
            days = lookback[table]
            out.append(Input(table, tuple(columns[table]), None if None in days else max(days)))
    return tuple(out)


def _read_columns(agg: Aggregation) -> list[str]:
    cols = [agg.column] if agg.column else []
    for p in (agg.filter, agg.where):
        if p is not None:
            cols += list(p.columns)
    return list(dict.fromkeys(cols))


# --- rows ---------------------------------------------------------------------------------------


@dataclass
class Rows:
    """A source table's rows keyed by entity: code `e`, entry day, timestamp (us), columns."""

    frame: pd.DataFrame
    e: np.ndarray
    enter: np.ndarray
    ts: np.ndarray
    _masks: dict
    _days: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def days(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(entity, day) of each group of rows entering together, and each row's group."""
        if self._days is None:
            uniq, inverse = np.unique(pack(self.e, self.enter), return_inverse=True)
            entity, day = unpack(uniq)
            self._days = (entity, day, inverse.ravel())
        return self._days

    def mask(self, agg: Aggregation) -> np.ndarray:
        """Rows a feature reads (its and its view's filter)."""
        return self.where(agg.filter)

    def where(self, p: Predicate | None) -> np.ndarray:
        """Rows for which a predicate holds (computed once per predicate)."""
        if p is None:
            return np.ones(len(self.e), bool)
        if p.text not in self._masks:
            self._masks[p.text] = p.mask(self.frame)
        return self._masks[p.text]


def _source_rows(view: DeclaredView, table: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows of `table` with the columns the view may read (order columns joined)."""
    keys = view.keys
    if table in ("events", "reviews"):
        return tables[table]
    placed = first_versions(tables["orders"])  # each order as placed (contract v1.1)
    if table == "orders" and "product_id" not in keys:
        return placed
    items = tables["order_items"]
    if table == "orders":  # each (order, product) once
        items = items[["order_id", "product_id", "order_ts"]].drop_duplicates(
            ["order_id", "product_id"]
        )
    orders = placed.drop(columns=["order_ts"], errors="ignore")
    if len(items):  # items carry their order's timestamp: older orders cannot match
        mine = pc.is_in(_arrow(orders["order_id"]), value_set=_arrow(items["order_id"]))
        orders = orders[mine.to_numpy(zero_copy_only=False)]
    return items.merge(orders, on="order_id", how="inner")


def _entity_ids(view: DeclaredView, frame: pd.DataFrame) -> pd.Series:
    if view.entity != "customer_product":
        return frame[view.keys[0]]
    return pair_ids(frame["customer_id"], frame["product_id"])


def pair_ids(customer: pd.Series, product: pd.Series) -> pd.Series:
    """(customer_id, product_id) as one id; null when either is."""
    joined = pc.binary_join_element_wise(
        _arrow(customer), _arrow(product), PAIR_SEP, null_handling="emit_null"
    )
    return pd.Series(pd.arrays.ArrowStringArray(joined.cast(pa.large_string())))


def split_pairs(ids: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = pc.split_pattern(_arrow(ids), PAIR_SEP, max_splits=1)
    first, second = pc.list_element(parts, 0), pc.list_element(parts, 1)
    return (
        pd.Series(pd.arrays.ArrowStringArray(first.cast(pa.large_string()))),
        pd.Series(pd.arrays.ArrowStringArray(second.cast(pa.large_string()))),
    )


def _hash_part(ids: pd.Series, n: int) -> np.ndarray:
    """A shard number in 0..n-1 for each id (stable across runs and tables); -1 for a null."""
    hashed = pd.util.hash_array(ids.astype(object).to_numpy()) % np.uint64(n)
    return np.where(ids.isna().to_numpy(), -1, hashed.astype(np.int64))


def _arrow(col: pd.Series) -> pa.Array:
    return pa.array(col.astype(STRING).array, type=pa.large_string()).cast(pa.string())


# --- compute ------------------------------------------------------------------------------------


def compute(
    view: DeclaredView, tables: dict[str, pd.DataFrame], snapshots: Snapshots
) -> pd.DataFrame:
    """Candidate rows of a declared view for `snapshots` (see pipelines/family.py)."""
    frames = {t: _source_rows(view, t, tables).reset_index(drop=True) for t in view.tables}
    index, first_day = _entities(view, tables, frames)
    rows = {}
    for table, frame in frames.items():
        e = index.codes(_entity_ids(view, frame))
        keep = e >= 0
        frame = frame[keep].reset_index(drop=True)
        ts = frame[TIME_COLUMN[table]]
        rows[table] = Rows(frame, e[keep], entry_day(ts), duration_us(ts), {})

    streams = Streams()
    alive_from = first_day
    if view.entity == "customer_product":  # a pair exists once a feature read one of its rows
        alive_from = np.full(len(index), _NEVER, np.int64)
        for agg in view.features:
            r = rows[agg.source]
            m = r.mask(agg)
            np.minimum.at(alive_from, r.e[m], r.enter[m])
    has = alive_from < _NEVER
    streams.points(np.flatnonzero(has), alive_from[has])

    later: list[tuple[Aggregation, _Extreme]] = []
    for agg in view.features:
        r = rows[agg.source]
        if agg.function in ("min", "max", "last"):
            later.append((agg, _extreme(agg, r, streams)))
        else:
            _stream(agg, r, streams)
    acc = streams.evaluate(snapshots.start_day, snapshots.end_day)
    alive = acc.day >= alive_from[acc.entity]
    entity, day = acc.entity[alive], acc.day[alive]
    v = {k: a[alive] for k, a in acc.values.items()}

    ids = index.lookup(entity)
    out = pd.DataFrame(index=range(len(entity)))
    if view.entity == "customer_product":
        out["customer_id"], out["product_id"] = split_pairs(ids)
    else:
        out[view.keys[0]] = ids
    out["event_timestamp"] = day_ts(day)
    for agg in view.features:
        if agg.function in ("min", "max", "last"):
            continue
        out[agg.name] = _value(agg, v)
    for agg, ext in later:
        out[agg.name] = ext.at(entity, day)
    return out[[*view.keys, "event_timestamp", *(a.name for a in view.features)]]


def _entities(
    view: DeclaredView, tables: dict[str, pd.DataFrame], frames: dict[str, pd.DataFrame]
) -> tuple[EntityIndex, np.ndarray]:
    if view.entity == "customer":
        index = EntityIndex(tables["customers"]["customer_id"])
        return index, customer_first_day(tables["customers"], index)
    if view.entity == "product":
        index = EntityIndex(tables["products"]["product_id"])
        return index, product_first_day(tables["products"], index)
    ids = pd.concat([_entity_ids(view, f) for f in frames.values()], ignore_index=True)
    index = EntityIndex(ids)
    return index, np.full(len(index), _NEVER, np.int64)


def _stream(agg: Aggregation, r: Rows, s: Streams) -> None:
    """Register a count/sum/mean/share/count_distinct feature's deltas."""
    m = r.mask(agg)
    w = agg.window_days
    if agg.function == "count_distinct":
        col = r.frame[agg.column]
        m = m & col.notna().to_numpy()
        s.distinct(agg.name, r.e[m], col[m].reset_index(drop=True), r.enter[m], w)
        return
    if agg.function == "share":
        hit = m & r.where(agg.where)
        _daily(s, r, w, {f"{agg.name}:num": hit.astype(np.int64), f"{agg.name}:den": m})
        return
    if agg.function == "count":
        if agg.column:
            m = m & r.frame[agg.column].notna().to_numpy()
        _daily(s, r, w, {agg.name: m.astype(np.int64)})
        return
    col = r.frame[agg.column]
    present = m & col.notna().to_numpy()
    values = fixed(col) if agg.column_kind == "float" else _ints(col)
    values = np.where(present, values, 0)
    if agg.function == "sum":
        _daily(s, r, w, {agg.name: values})
    else:  # mean
        _daily(s, r, w, {f"{agg.name}:sum": values, f"{agg.name}:n": present.astype(np.int64)})


def _ints(col: pd.Series) -> np.ndarray:
    """An int or bool column as integers (nulls 0)."""
    return col.astype("Int64").fillna(0).to_numpy(np.int64)


def _daily(s: Streams, r: Rows, w: int | None, values: dict[str, np.ndarray]) -> None:
    """Sum rows per (entity, entry day) and register them as one window of deltas."""
    entity, day, group = r.days()
    sums = {
        k: np.rint(
            np.bincount(group, weights=np.asarray(v, np.float64), minlength=len(day))
        ).astype(np.int64)
        for k, v in values.items()
    }
    used = np.zeros(len(day), bool)
    for v in sums.values():
        used |= v != 0
    s.window(entity[used], day[used], w, **{k: v[used] for k, v in sums.items()})


def _value(agg: Aggregation, v: dict[str, np.ndarray]) -> np.ndarray:
    name = agg.name
    if agg.function in ("count", "count_distinct"):
        return v[name]
    if agg.function == "sum":
        return v[name] / MICRO if agg.dtype == "float64" else v[name]
    if agg.function == "share":
        return _ratio(v[f"{name}:num"], v[f"{name}:den"])
    total = v[f"{name}:sum"] / (MICRO if agg.column_kind == "float" else 1)
    return _ratio(total, v[f"{name}:n"])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(len(num), np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


# --- min, max, last -----------------------------------------------------------------------------


@dataclass
class _Extreme:
    """Per-(entity, day) values of one min/max/last feature, ready for range queries."""

    function: str
    window: int | None
    keys: np.ndarray  # packed (entity, entry day), sorted, unique
    levels: list[np.ndarray]  # sparse table (windowed min/max) or [running/daily values]
    decode: object  # ranks -> output values

    def at(self, entity: np.ndarray, day: np.ndarray):
        n = len(entity)
        if len(self.keys) == 0:
            return self.decode(np.zeros(n, np.int64), np.zeros(n, bool))
        hi = np.searchsorted(self.keys, pack(entity, day), side="right")
        if self.window is None:  # running extreme / the latest day's value, if of this entity
            lo = np.searchsorted(self.keys, pack(entity, np.zeros(n, np.int64)), side="left")
        else:
            lo = np.searchsorted(self.keys, pack(entity, day - self.window + 1), side="left")
        ok = hi > lo
        last = np.maximum(hi - 1, 0)
        if self.function == "last" or self.window is None:
            return self.decode(self.levels[0][last], ok)
        lo, hi = np.where(ok, lo, 0), np.where(ok, hi, 1)  # empty windows: any valid index
        length = hi - lo
        k = np.floor(np.log2(length)).astype(np.int64)
        out = np.zeros(n, self.levels[0].dtype)
        op = np.maximum if self.function == "max" else np.minimum
        for level in np.unique(k):
            sel = k == level
            table = self.levels[level]
            a = table[lo[sel]]
            b = table[hi[sel] - (1 << level)]
            out[sel] = op(a, b)
        return self.decode(out, ok)


def _extreme(agg: Aggregation, r: Rows, s: Streams) -> _Extreme:
    col = r.frame[agg.column]
    m = r.mask(agg) & col.notna().to_numpy()
    e, enter, ts = r.e[m], r.enter[m], r.ts[m]
    values, decode = _ranks(col[m].reset_index(drop=True), agg.dtype)
    s.points(e, enter)
    if agg.window_days is not None:
        s.points(e, enter + agg.window_days)
    key = pack(e, enter)
    # Sorted by day and value (for last: by time, then value), each day's row to keep is the
    # group's last (max, last: the latest row, ties to the largest value) or first (min).
    by = (values, ts, key) if agg.function == "last" else (values, key)
    order = np.lexsort(by)
    key, values = key[order], values[order]
    uniq, first = np.unique(key, return_index=True)
    pick = first if agg.function == "min" else np.r_[first[1:], len(key)] - 1
    daily = values[pick] if len(key) else values
    if agg.function == "last":
        levels = [daily]
    elif agg.window_days is None:  # running extreme per entity
        running = pd.Series(daily).groupby(unpack(uniq)[0], sort=False)
        levels = [(running.cummax() if agg.function == "max" else running.cummin()).to_numpy()]
    else:
        levels = _sparse_table(daily, agg.window_days, agg.function)
    return _Extreme(agg.function, agg.window_days, uniq, levels, decode)


def _sparse_table(values: np.ndarray, span: int, function: str) -> list[np.ndarray]:
    """levels[j][i] = extreme of values[i : i + 2**j] (as far as the array reaches)."""
    op = np.maximum if function == "max" else np.minimum
    levels = [values]
    j = 1
    while (1 << j) <= span and (1 << j) <= len(values):
        prev, half = levels[-1], 1 << (j - 1)
        nxt = prev.copy()
        nxt[: len(prev) - half] = op(prev[: len(prev) - half], prev[half:])
        levels.append(nxt)
        j += 1
    return levels


def _ranks(col: pd.Series, dtype: str):
    """Values as sortable numbers, and the function that turns them back (with a null mask)."""
    if dtype == "string":
        names, codes = np.unique(col.astype(object).to_numpy(), return_inverse=True)

        def decode(x, ok):
            out = pd.Series(pd.NA, index=range(len(x)), dtype=STRING)
            if ok.any():
                out[ok] = names[x[ok]]
            return out

        return codes.astype(np.int64), decode
    if dtype == "unix_timestamp":

        def decode(x, ok):
            out = pd.Series(pd.to_datetime(x, unit="us", utc=True)).astype("datetime64[us, UTC]")
            return out.where(ok)

        return duration_us(col), decode
    if dtype == "bool":

        def decode(x, ok):
            return pd.Series(pd.array(x.astype(bool), dtype="boolean")).where(ok)

        return col.astype("boolean").to_numpy(np.int64), decode
    if dtype == "int64":

        def decode(x, ok):
            return pd.Series(pd.array(x, dtype="Int64")).where(ok)

        return col.astype("Int64").to_numpy(np.int64), decode

    def decode(x, ok):
        return np.where(ok, x, np.nan)

    return col.astype("float64").to_numpy(), decode
