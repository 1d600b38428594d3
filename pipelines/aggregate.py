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
Orders are a change log (contract v1.1): a snapshot at T reads each order as in force at T
(pipelines.order_versions.in_force): its newest version as of T, with its first version's
`order_ts` and `customer_id`, and the refund of its newest version whose refund is known (never a
refund before its `refund_ts`). A row is then visible on the days `[max(enter, from), min(enter +
W, until))` of each of its steps, with that step's values: a cancellation makes a filtered count
drop on the day after it, a refund changes a sum on the day after its `refund_ts`, and an
older version arriving late never hides a newer one. Order items carry their order's columns in
force. A table of orders with one version each and no refund read is one step per order.

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
from pipelines.order_versions import NEVER, first_versions, in_force, single_versions
from pipelines.predicate import Predicate
from pipelines.specs import STRING, FeatureSource
from pipelines.windows import (
    MICRO,
    EntityIndex,
    Snapshots,
    Streams,
    check_exact,
    day_ts,
    duration_us,
    entry_day,
    fixed,
    pack,
    unpack,
)

PAIR_SEP = "\x1f"  # customer_id, product_id packed into one id (sorts as the pair does)
_NEVER = NEVER
REFUND_COLUMNS = ("refunded_amount", "refund_ts")


class DeclaredFamily:
    """A declared view as a family module: `SOURCE`, `INPUTS`, `compute`."""

    def __init__(self, view: DeclaredView) -> None:
        self.view = view
        self.SOURCE: FeatureSource = view.feature_source()
        self.INPUTS: tuple[Input, ...] = inputs(view)
        self.__name__ = f"declared:{view.name}"
        # the Spark engine's split (pipelines/spark/features.py), as `shard` splits locally: a
        # pair view with the customer families, a product view with the product families
        self.SHARD_GROUP = "product" if view.entity == "product" else "customer"
        split = PRODUCT_SPLIT if view.entity == "product" else CUSTOMER_SPLIT
        read = {i.table for i in self.INPUTS}
        self.SHARD_BY = {t: key for t, key in split.items() if t in read}

    def compute(
        self, tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
    ) -> pd.DataFrame:
        return compute(self.view, tables, snapshots)

    def shard(self, tables: dict[str, pd.DataFrame], n: int) -> Iterator[dict[str, pd.DataFrame]]:
        """Split by customer (customer and pair views) or product: entities are independent."""
        key = "product_id" if self.view.entity == "product" else "customer_id"
        codes = {name: _hash_part(t[key], n) for name, t in tables.items() if key in t.columns}
        orders = tables.get("orders")
        if key == "customer_id" and orders is not None and not single_versions(orders):
            # an order's versions stay together, with its first version's customer
            first = first_versions(orders)
            at = pc.index_in(_arrow(orders["order_id"]), value_set=_arrow(first["order_id"]))
            at = at.to_numpy(zero_copy_only=False).astype(np.int64)
            codes["orders"] = _hash_part(first["customer_id"], n)[at]
        for k in range(n):
            part = {name: t[codes[name] == k] for name, t in tables.items() if name in codes}
            if "order_items" in tables and "order_items" not in part:  # items of the orders
                items, orders = tables["order_items"], part["orders"]
                mine = pc.is_in(_arrow(items["order_id"]), value_set=_arrow(orders["order_id"]))
                part["order_items"] = items[mine.to_numpy(zero_copy_only=False)]
            for name, t in tables.items():  # orders reached through a shard's items: all kept
                part.setdefault(name, t)
            yield part


# How the Spark engine splits a declared view's tables: by customer (customer and pair views;
# an order's versions with its first version's customer, order items with their order) or by
# product (an order to every shard among its items).
CUSTOMER_SPLIT: dict[str, str | tuple[str, str]] = {
    "customers": "customer_id",
    "orders": "customer_id",
    "events": "customer_id",
    "reviews": "customer_id",
    "order_items": ("orders", "order_id"),
}
PRODUCT_SPLIT: dict[str, str | tuple[str, str]] = {
    "products": "product_id",
    "order_items": "product_id",
    "events": "product_id",
    "reviews": "product_id",
    "orders": ("order_items", "order_id"),
}


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
    if "orders" in columns:  # its versions' times, to read each order as in force at T
        extra = ["refund_ts"] if reads_refunds(view) else []
        need("orders", ["order_id", "order_ts", "updated_at", *extra], lookback["orders"][0])
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


def reads_refunds(view: DeclaredView) -> bool:
    """Whether a feature reads an order's refund (then a refund becoming known is a change)."""
    return any(
        c in REFUND_COLUMNS
        for agg in view.features
        if agg.source in ("orders", "order_items")
        for c in _read_columns(agg)
    )


def _read_columns(agg: Aggregation) -> list[str]:
    cols = [agg.column] if agg.column else []
    for p in (agg.filter, agg.where):
        if p is not None:
            cols += list(p.columns)
    return list(dict.fromkeys(cols))


# --- rows ---------------------------------------------------------------------------------------


@dataclass
class Rows:
    """A source table's rows keyed by entity: code `e`, entry day, timestamp (us), columns, and
    the days `[start, until)` on which a row holds these values (an order's step; other rows:
    from their entry day for ever)."""

    frame: pd.DataFrame
    e: np.ndarray
    enter: np.ndarray
    ts: np.ndarray
    start: np.ndarray
    until: np.ndarray
    _masks: dict
    _days: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    _all_plain: bool | None = None

    @property
    def all_plain(self) -> bool:
        if self._all_plain is None:
            self._all_plain = bool(self.plain.all())
        return self._all_plain

    @property
    def plain(self) -> np.ndarray:
        """Rows whose values never change (visible from their entry day on, as sent)."""
        return (self.start == self.enter) & (self.until >= _NEVER)

    def end(self, window: int | None) -> np.ndarray:
        """The day each row stops being read by a window of `window` days (lifetime: None)."""
        return self.until if window is None else np.minimum(self.until, self.enter + window)

    def days(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(entity, day) of each group of rows starting together, and each row's group."""
        if self._days is None:
            uniq, inverse = np.unique(pack(self.e, self.start), return_inverse=True)
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
    placed = in_force(tables["orders"], reads_refunds(view))  # each order's steps (v1.1)
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
        enter = entry_day(ts).astype(np.int64)
        if "_from" in frame:
            start = np.maximum(frame["_from"].to_numpy(np.int64), enter)
            until = frame["_until"].to_numpy(np.int64)
        else:
            start, until = enter, np.full(len(frame), _NEVER, np.int64)
        rows[table] = Rows(frame, e[keep], enter, duration_us(ts), start, until, {})

    streams = Streams()
    alive_from = first_day
    if view.entity == "customer_product":  # a pair exists once a feature read one of its rows
        alive_from = np.full(len(index), _NEVER, np.int64)
        for agg in view.features:
            r = rows[agg.source]
            m = r.mask(agg) & (r.start < r.end(agg.window_days))
            np.minimum.at(alive_from, r.e[m], r.start[m])
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
        key = col[m].reset_index(drop=True)
        _distinct(s, agg.name, r.e[m], key, r.start[m], r.end(w)[m])
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
    """Sum rows per (entity, day) they start and stop being read; register those as deltas.

    Sums per day are taken in float64 (np.bincount): each is checked to stay below 2**53 in
    magnitude (FeatureOverflow otherwise), so it is exact, as Streams.evaluate checks its runs."""
    entity, day, group = r.days()
    end = r.end(w)
    ok = r.start < end
    sums = _group_sums(group, len(day), values, ok)
    used = _used(sums)
    s.add(entity[used], day[used], **{k: v[used] for k, v in sums.items()})
    if w is not None and r.all_plain:  # every row leaves `w` days after it entered
        s.add(entity[used], day[used] + w, **{k: -v[used] for k, v in sums.items()})
        return
    stops = ok & (end < _NEVER)
    if not stops.any():
        return
    uniq, inverse = np.unique(pack(r.e[stops], end[stops]), return_inverse=True)
    sums = _group_sums(inverse.ravel(), len(uniq), {k: v[stops] for k, v in values.items()})
    used = _used(sums)
    entity, day = unpack(uniq[used])
    s.add(entity, day, **{k: -v[used] for k, v in sums.items()})


def _group_sums(
    group: np.ndarray, n: int, values: dict[str, np.ndarray], keep: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    out = {}
    for name, v in values.items():
        w = np.asarray(v, np.float64)
        if keep is not None:
            w = np.where(keep, w, 0.0)
        check_exact(name, np.bincount(group, weights=np.abs(w), minlength=n))
        out[name] = np.rint(np.bincount(group, weights=w, minlength=n)).astype(np.int64)
    return out


def _used(sums: dict[str, np.ndarray]) -> np.ndarray:
    used = np.zeros(len(next(iter(sums.values()))), bool)
    for v in sums.values():
        used |= v != 0
    return used


def _distinct(
    s: Streams, name: str, e: np.ndarray, key: pd.Series, start: np.ndarray, end: np.ndarray
) -> None:
    """Distinct keys per entity: each (entity, key)'s days `[start, end)` merged into intervals,
    +1 where one begins and -1 where it ends."""
    codes = pd.factorize(key)[0].astype(np.int64)
    ok = (start < end) & (codes >= 0)
    f = pd.DataFrame({"e": e[ok], "k": codes[ok], "a": start[ok], "b": end[ok]})
    f = f.sort_values(["e", "k", "a"], kind="stable")
    e, k, a, b = (f[c].to_numpy(np.int64) for c in ("e", "k", "a", "b"))
    if len(a) == 0:
        s.add(e, a, **{name: a})
        return
    same = np.r_[False, (e[1:] == e[:-1]) & (k[1:] == k[:-1])]
    pair = np.cumsum(~same)
    reach = pd.Series(b).groupby(pair).cummax().to_numpy()  # furthest end so far, per key
    new = ~same | (a > np.r_[np.int64(0), reach[:-1]])  # touching intervals merge
    starts = np.flatnonzero(new)
    stop = np.maximum.reduceat(b, starts)
    s.add(e[starts], a[starts], **{name: np.ones(len(starts), np.int64)})
    fin = stop < _NEVER
    s.add(e[starts][fin], stop[fin], **{name: -np.ones(int(fin.sum()), np.int64)})


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

_DAY_CAP = (1 << 20) - 1  # beyond every snapshot day (pack's stride)


@dataclass
class _Sparse:
    """min/max over rows that never change: per (entity, entry day) extremes, a sparse table
    over each window (log2(W) levels), or a running extreme per entity for a lifetime."""

    op: str
    window: int | None
    keys: np.ndarray  # packed (entity, entry day), sorted, unique
    levels: list[np.ndarray]

    @classmethod
    def build(cls, op: str, window: int | None, e, day, values) -> _Sparse:
        key = pack(e, day)
        order = np.lexsort((values, key))
        key, values = key[order], values[order]
        uniq, first = np.unique(key, return_index=True)
        pick = first if op == "min" else np.r_[first[1:], len(key)] - 1
        daily = values[pick] if len(key) else values
        if window is None:  # running extreme per entity
            running = pd.Series(daily).groupby(unpack(uniq)[0], sort=False)
            levels = [(running.cummax() if op == "max" else running.cummin()).to_numpy()]
        else:
            levels = _sparse_table(daily, window, op)
        return cls(op, window, uniq, levels)

    def at(self, entity: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(entity)
        if len(self.keys) == 0:
            return np.zeros(n, self.levels[0].dtype), np.zeros(n, bool)
        hi = np.searchsorted(self.keys, pack(entity, day), side="right")
        first = np.zeros(n, np.int64) if self.window is None else day - self.window + 1
        lo = np.searchsorted(self.keys, pack(entity, first), side="left")
        ok = hi > lo
        if self.window is None:  # the running extreme on the latest day of this entity
            return self.levels[0][np.maximum(hi - 1, 0)], ok
        lo, hi = np.where(ok, lo, 0), np.where(ok, hi, 1)  # empty windows: any valid index
        k = np.floor(np.log2(hi - lo)).astype(np.int64)
        out = np.zeros(n, self.levels[0].dtype)
        op = np.maximum if self.op == "max" else np.minimum
        for level in np.unique(k):
            sel = k == level
            table = self.levels[level]
            out[sel] = op(table[lo[sel]], table[hi[sel] - (1 << level)])
        return out, ok


@dataclass
class _Extreme:
    """One min/max/last feature: `regular` answers for rows that never change; the steps of
    orders that change (versions, refunds: few) are each matched to the query days they cover."""

    op: str
    regular: _Sparse
    e: np.ndarray  # the changing rows' steps: entity, days [start, end), value
    start: np.ndarray
    end: np.ndarray
    values: np.ndarray
    decode: object  # values -> output values (with a null mask)

    def at(self, entity: np.ndarray, day: np.ndarray):
        out, ok = self.regular.at(entity, day)
        if len(self.e) and len(entity):
            q = pack(entity, day)
            order = None
            if np.any(q[1:] < q[:-1]):
                order = np.argsort(q, kind="stable")
                q = q[order]
            lo = np.searchsorted(q, pack(self.e, self.start), side="left")
            hi = np.searchsorted(q, pack(self.e, np.minimum(self.end, _DAY_CAP)), side="left")
            counts = np.maximum(hi - lo, 0)
            total = int(counts.sum())
            if total:
                offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
                idx = np.repeat(lo, counts) + offsets
                if order is not None:
                    idx = order[idx]
                vals = np.repeat(self.values, counts)
                if self.values.dtype.kind == "f":
                    fill = -np.inf if self.op == "max" else np.inf
                else:
                    info = np.iinfo(np.int64)
                    fill = info.min if self.op == "max" else info.max
                best = np.full(len(entity), fill, dtype=self.values.dtype)
                (np.maximum if self.op == "max" else np.minimum).at(best, idx, vals)
                hit = np.zeros(len(entity), bool)
                hit[idx] = True
                op = np.maximum if self.op == "max" else np.minimum
                merged = np.where(ok, op(out.astype(best.dtype), best), best)
                out = np.where(hit, merged, out.astype(best.dtype))
                ok = ok | hit
        return self.decode(out, ok)


def _extreme(agg: Aggregation, r: Rows, s: Streams) -> _Extreme:
    col = r.frame[agg.column]
    w = agg.window_days
    end = r.end(w)
    m = r.mask(agg) & col.notna().to_numpy() & (r.start < end)
    values, decode = _ranks(col[m].reset_index(drop=True), agg.dtype)
    e, start, end, ts, plain = r.e[m], r.start[m], end[m], r.ts[m], r.plain[m]
    op = agg.function
    if op == "last":  # the latest row (ties: the largest value): the max of (time, value) ranks
        order = np.lexsort((values, ts))
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        by_rank = values[order]

        def decode(x, ok, by_rank=by_rank, inner=decode):
            x = np.clip(np.asarray(x, np.int64), 0, max(len(by_rank) - 1, 0))
            return inner(by_rank[x] if len(by_rank) else np.zeros(len(x), by_rank.dtype), ok)

        values, op = rank, "max"
    s.points(e, start)
    fin = end < _NEVER
    s.points(e[fin], end[fin])
    regular = _Sparse.build(op, w, e[plain], start[plain], values[plain])
    odd = ~plain
    return _Extreme(op, regular, e[odd], start[odd], end[odd], values[odd], decode)


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
