"""`--corrupt-fraction`: inject bad rows for every quarantine rule and record where they went.

Bad rows are NEW rows inserted at random positions, never damaged good ones, so no good row depends
on a bad one: a bad order has no lines, a bad customer or product is referenced by nothing, a copy
(duplicate_row / duplicate_id) comes after its original (ingest keeps the first occurrence), a bot
is a new anonymous session of 40 events 0.2 s apart. Each bad row breaks its own rule and no rule
before it in `contract.RULES` (ingest reports the first rule a row breaks), so the quarantine can be
predicted exactly: the manifest `(table, row, rule, detail)` lists every bad row by its 0-based data
row in the written file.

Unparseable values are text in a typed column. Parquet cannot hold text in a number or timestamp
column, so a corrupted table writes the affected columns as strings (the contract accepts ISO text
timestamps and decimal text numbers); every other column keeps its type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contract import RULES
from shopfeast.generator.config import Span

# Which rules each table can break (order_items has no key and no time; only events have bots).
TABLE_RULES: dict[str, tuple[str, ...]] = {
    "customers": (
        "missing_required",
        "unparseable",
        "future_timestamp",
        "duplicate_row",
        "duplicate_id",
    ),
    "products": (
        "missing_required",
        "unparseable",
        "negative_value",
        "future_timestamp",
        "duplicate_row",
        "duplicate_id",
    ),
    "orders": (
        "missing_required",
        "unparseable",
        "invalid_value",
        "negative_value",
        "out_of_range",
        "refund_exceeds_total",
        "future_timestamp",
        "duplicate_row",
        "duplicate_id",
        "unknown_customer",
        "before_signup",
    ),
    "order_items": (
        "missing_required",
        "unparseable",
        "negative_value",
        "out_of_range",
        "duplicate_row",
        "unknown_order",
        "unknown_product",
    ),
    "events": (
        "missing_required",
        "unparseable",
        "invalid_value",
        "future_timestamp",
        "duplicate_row",
        "duplicate_id",
        "unknown_product",
        "unknown_customer",
        "bot_session",
    ),
    "reviews": (
        "missing_required",
        "unparseable",
        "rating_out_of_range",
        "future_timestamp",
        "duplicate_row",
        "duplicate_id",
        "unknown_product",
        "unknown_customer",
    ),
}
BOT_EVENTS = 40
BOT_GAP_S = 0.2
FUTURE_YEARS = 80  # far beyond any ingest clock, yet independent of the wall clock (determinism)
NOT_A_DATE = "not a date"
NOT_A_NUMBER = "twelve"
HUGE_AMOUNT = 1.7e308  # finite: what overflowed the feature arithmetic before upper bounds
HUGE_QUANTITY = 2**63 - 1

MANIFEST_SCHEMA = pa.schema(
    [("table", pa.string()), ("row", pa.int64()), ("rule", pa.string()), ("detail", pa.string())]
)


@dataclass
class Bad:
    """Bad rows for one rule: contract columns (values may be text), plus placement constraints."""

    rows: pd.DataFrame
    rule: str
    detail: list[str]
    after: np.ndarray  # index of the good row each bad row must follow, -1 for anywhere
    block: np.ndarray | None = None  # rows sharing a block stay together, in order (bot sessions)


class Injector:
    """Builds the bad rows of every table from the good tables."""

    def __init__(self, tables: dict[str, pa.Table], span: Span, rng: np.random.Generator):
        self.tables = tables
        self.span = span
        self.rng = rng
        self.counter = 0

    # -- helpers -------------------------------------------------------------------------------
    def new_ids(self, prefix: str, k: int) -> list[str]:
        start = self.counter
        self.counter += k
        return [f"{prefix}{i + 1:06d}" for i in range(start, start + k)]

    def sample(
        self, table: str, k: int, where: pa.Array | None = None
    ) -> tuple[pd.DataFrame, np.ndarray]:
        t = self.tables[table]
        pool = (
            np.flatnonzero(where.to_numpy(zero_copy_only=False))
            if where is not None
            else (np.arange(t.num_rows))
        )
        if len(pool) == 0:
            pool = np.arange(t.num_rows)
        idx = np.sort(self.rng.choice(pool, size=k, replace=len(pool) < k))
        return t.take(pa.array(idx)).to_pandas(types_mapper=_object_mapper), idx

    def future(self, k: int) -> list[pd.Timestamp]:
        base = self.span.end + pd.DateOffset(years=FUTURE_YEARS)
        return [base + pd.Timedelta(days=float(d)) for d in self.rng.uniform(0, 300, k)]

    def variants(self, k: int, n: int) -> np.ndarray:
        return np.arange(k) % n

    # -- copies (any table) -----------------------------------------------------------------------
    def duplicate_row(self, table: str, k: int) -> Bad:
        rows, idx = self.sample(table, k)
        return Bad(rows, "duplicate_row", ["exact copy"] * k, idx)

    def duplicate_id(
        self, table: str, k: int, change: str, new_value: Callable[[pd.Series], pd.Series]
    ) -> Bad:
        rows, idx = self.sample(table, k)
        rows[change] = new_value(rows[change])
        return Bad(rows, "duplicate_id", [f"same key, {change} changed"] * k, idx)

    def fresh(self, rows: pd.DataFrame, rule: str, detail: list[str]) -> Bad:
        return Bad(rows, rule, detail, np.full(len(rows), -1))


def _object_mapper(t: pa.DataType):
    if pa.types.is_timestamp(t):
        return pd.ArrowDtype(t)
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def _set(rows: pd.DataFrame, column: str, values) -> pd.DataFrame:
    """Replace a column by values (a scalar is repeated) kept as Python objects."""
    seq = list(values) if pd.api.types.is_list_like(values) else [values] * len(rows)
    rows[column] = pd.Series(seq, index=rows.index, dtype=object)
    return rows


def _customers(inj: Injector, rule: str, k: int) -> Bad:
    if rule == "duplicate_row":
        return inj.duplicate_row("customers", k)
    if rule == "duplicate_id":
        return inj.duplicate_id(
            "customers",
            k,
            "country",
            lambda s: pd.Series(
                np.where(s.to_numpy() == "NL", "DE", "NL"), index=s.index, dtype=object
            ),
        )
    rows, _ = inj.sample("customers", k)
    rows = _set(rows, "customer_id", inj.new_ids("CX", k))
    v = inj.variants(k, 2)
    if rule == "missing_required":
        rows.loc[v == 0, "customer_id"] = None
        rows = _set(rows, "signup_ts", np.where(v == 1, None, rows["signup_ts"].astype(object)))
        return inj.fresh(
            rows, rule, ["customer_id is null" if x == 0 else "signup_ts is null" for x in v]
        )
    if rule == "unparseable":
        rows = _set(rows, "signup_ts", NOT_A_DATE)
        return inj.fresh(rows, rule, [f"signup_ts = {NOT_A_DATE!r}"] * k)
    if rule == "future_timestamp":
        when = inj.future(k)
        rows = _set(rows, "signup_ts", when)
        rows = _set(rows, "updated_at", when)
        return inj.fresh(rows, rule, ["signup_ts far in the future"] * k)
    raise KeyError(rule)


def _products(inj: Injector, rule: str, k: int) -> Bad:
    if rule == "duplicate_row":
        return inj.duplicate_row("products", k)
    if rule == "duplicate_id":
        return inj.duplicate_id("products", k, "price", lambda s: s + 1.0)
    rows, _ = inj.sample("products", k)
    rows = _set(rows, "product_id", inj.new_ids("PX", k))
    v = inj.variants(k, 2)
    if rule == "missing_required":
        col = np.where(v == 0, "name", "price")
        rows.loc[v == 0, "name"] = None
        rows = _set(rows, "price", np.where(v == 1, None, rows["price"].astype(object)))
        return inj.fresh(rows, rule, [f"{c} is null" for c in col])
    if rule == "unparseable":
        rows = _set(rows, "price", np.where(v == 0, NOT_A_NUMBER, rows["price"].astype(object)))
        rows = _set(
            rows, "created_at", np.where(v == 1, NOT_A_DATE, rows["created_at"].astype(object))
        )
        return inj.fresh(
            rows,
            rule,
            [f"price = {NOT_A_NUMBER!r}" if x == 0 else f"created_at = {NOT_A_DATE!r}" for x in v],
        )
    if rule == "negative_value":
        rows["price"] = -rows["price"].abs() - 1.0
        return inj.fresh(rows, rule, ["negative price"] * k)
    if rule == "future_timestamp":
        when = inj.future(k)
        rows = _set(rows, "created_at", when)
        rows = _set(rows, "updated_at", when)
        return inj.fresh(rows, rule, ["created_at far in the future"] * k)
    raise KeyError(rule)


def _orders(inj: Injector, rule: str, k: int) -> Bad:
    t = inj.tables["orders"]
    if rule == "duplicate_row":
        return inj.duplicate_row("orders", k)
    if rule == "duplicate_id":
        return inj.duplicate_id("orders", k, "total_amount", lambda s: s + 1.0)
    completed = pc.and_(pc.equal(t["status"], "completed"), pc.is_valid(t["customer_id"]))
    rows, _ = inj.sample("orders", k, completed)
    rows = _set(rows, "order_id", inj.new_ids("OX", k))
    rows["refunded_amount"] = 0.0
    rows = _set(rows, "refund_ts", None)
    rows["status"] = "completed"
    v = inj.variants(k, 3)
    if rule == "missing_required":
        cols = np.array(["order_ts", "status", "total_amount"])[v]
        for c in ("order_ts", "status", "total_amount"):
            rows = _set(rows, c, np.where(cols == c, None, rows[c].astype(object)))
        return inj.fresh(rows, rule, [f"{c} is null" for c in cols])
    if rule == "unparseable":
        rows = _set(rows, "order_ts", np.where(v != 1, NOT_A_DATE, rows["order_ts"].astype(object)))
        rows = _set(
            rows,
            "total_amount",
            np.where(v == 1, NOT_A_NUMBER, rows["total_amount"].astype(object)),
        )
        return inj.fresh(
            rows,
            rule,
            [
                f"total_amount = {NOT_A_NUMBER!r}" if x == 1 else f"order_ts = {NOT_A_DATE!r}"
                for x in v
            ],
        )
    if rule == "invalid_value":
        rows["status"] = "shipped"
        return inj.fresh(rows, rule, ["status = 'shipped'"] * k)
    if rule == "negative_value":
        rows["total_amount"] = -rows["total_amount"].abs() - 1.0
        return inj.fresh(rows, rule, ["negative total_amount"] * k)
    if rule == "out_of_range":  # finite, non-negative, beyond the contract's upper bound
        rows["total_amount"] = HUGE_AMOUNT
        return inj.fresh(rows, rule, [f"total_amount = {HUGE_AMOUNT:g}"] * k)
    if rule == "refund_exceeds_total":
        rows["status"] = "refunded"
        rows["refunded_amount"] = rows["total_amount"] + 10.0
        rows = _set(rows, "refund_ts", [ts + pd.Timedelta(hours=1) for ts in rows["order_ts"]])
        return inj.fresh(rows, rule, ["refunded_amount = total_amount + 10"] * k)
    if rule == "future_timestamp":
        rows = _set(rows, "order_ts", inj.future(k))
        return inj.fresh(rows, rule, ["order_ts far in the future"] * k)
    if rule == "unknown_customer":
        rows = _set(rows, "customer_id", inj.new_ids("CU", k))
        return inj.fresh(rows, rule, ["customer_id not in customers"] * k)
    if rule == "before_signup":
        c = inj.tables["customers"]
        first = pc.equal(c["signup_ts"], c["updated_at"])
        who, _ = inj.sample("customers", k, first)
        rows = _set(rows, "customer_id", who["customer_id"])
        days = inj.rng.uniform(1, 60, k)
        early = [
            ts - pd.Timedelta(days=float(d)) for ts, d in zip(who["signup_ts"], days, strict=True)
        ]
        rows = _set(rows, "order_ts", early)
        return inj.fresh(rows, rule, ["order_ts 1-60 days before the customer's signup"] * k)
    raise KeyError(rule)


def _order_items(inj: Injector, rule: str, k: int) -> Bad:
    if rule == "duplicate_row":
        return inj.duplicate_row("order_items", k)
    rows, _ = inj.sample("order_items", k)
    v = inj.variants(k, 2)
    if rule == "missing_required":
        cols = np.array(["product_id", "quantity"])[v]
        rows = _set(rows, "product_id", np.where(v == 0, None, rows["product_id"].astype(object)))
        rows = _set(rows, "quantity", np.where(v == 1, None, rows["quantity"].astype(object)))
        return inj.fresh(rows, rule, [f"{c} is null" for c in cols])
    if rule == "unparseable":
        rows = _set(rows, "quantity", np.where(v == 0, "two", rows["quantity"].astype(object)))
        rows = _set(
            rows, "unit_price", np.where(v == 1, NOT_A_NUMBER, rows["unit_price"].astype(object))
        )
        return inj.fresh(
            rows,
            rule,
            ["quantity = 'two'" if x == 0 else f"unit_price = {NOT_A_NUMBER!r}" for x in v],
        )
    if rule == "negative_value":
        rows["quantity"] = np.where(v == 0, 0, rows["quantity"])
        rows["unit_price"] = np.where(v == 1, -rows["unit_price"].abs() - 1.0, rows["unit_price"])
        return inj.fresh(
            rows, rule, ["quantity = 0" if x == 0 else "negative unit_price" for x in v]
        )
    if rule == "out_of_range":
        rows["quantity"] = np.where(v == 0, HUGE_QUANTITY, rows["quantity"])
        rows["unit_price"] = np.where(v == 1, HUGE_AMOUNT, rows["unit_price"])
        return inj.fresh(
            rows,
            rule,
            [
                f"quantity = {HUGE_QUANTITY}" if x == 0 else f"unit_price = {HUGE_AMOUNT:g}"
                for x in v
            ],
        )
    if rule == "unknown_order":
        rows = _set(rows, "order_id", inj.new_ids("OU", k))
        return inj.fresh(rows, rule, ["order_id not in orders"] * k)
    if rule == "unknown_product":
        rows = _set(rows, "product_id", inj.new_ids("PU", k))
        return inj.fresh(rows, rule, ["product_id not in products"] * k)
    raise KeyError(rule)


def _events(inj: Injector, rule: str, k: int) -> Bad:
    t = inj.tables["events"]
    if rule == "duplicate_row":
        return inj.duplicate_row("events", k)
    if rule == "duplicate_id":
        return inj.duplicate_id(
            "events",
            k,
            "device_type",
            lambda s: pd.Series(
                np.where(s.to_numpy() == "desktop", "tablet", "desktop"),
                index=s.index,
                dtype=object,
            ),
        )
    if rule == "bot_session":
        return _bots(inj, k)
    rows, _ = inj.sample("events", k, pc.equal(t["event_type"], "product_view"))
    rows = _set(rows, "event_id", inj.new_ids("EX", k))
    rows = _set(rows, "session_id", inj.new_ids("SX", k))  # alone in its session
    v = inj.variants(k, 3)
    if rule == "missing_required":
        cols = np.array(["session_id", "event_type", "event_ts"])[v]
        for c in ("session_id", "event_type", "event_ts"):
            rows = _set(rows, c, np.where(cols == c, None, rows[c].astype(object)))
        return inj.fresh(rows, rule, [f"{c} is null" for c in cols])
    if rule == "unparseable":
        rows = _set(rows, "event_ts", NOT_A_DATE)
        return inj.fresh(rows, rule, [f"event_ts = {NOT_A_DATE!r}"] * k)
    if rule == "invalid_value":
        rows["event_type"] = "click"
        return inj.fresh(rows, rule, ["event_type = 'click'"] * k)
    if rule == "future_timestamp":
        rows = _set(rows, "event_ts", inj.future(k))
        return inj.fresh(rows, rule, ["event_ts far in the future"] * k)
    if rule == "unknown_product":
        rows = _set(rows, "product_id", inj.new_ids("PU", k))
        return inj.fresh(rows, rule, ["product_id not in products"] * k)
    if rule == "unknown_customer":
        rows = _set(rows, "customer_id", inj.new_ids("CU", k))
        return inj.fresh(rows, rule, ["customer_id not in customers"] * k)
    raise KeyError(rule)


def _bots(inj: Injector, k: int) -> Bad:
    """Whole sessions of BOT_EVENTS page and product views BOT_GAP_S apart, anonymous."""
    t = inj.tables["events"]
    n_sessions = max(1, round(k / BOT_EVENTS))
    n = n_sessions * BOT_EVENTS
    rows, _ = inj.sample("events", n, pc.equal(t["event_type"], "product_view"))
    block = np.repeat(np.arange(n_sessions), BOT_EVENTS)
    step = np.tile(np.arange(BOT_EVENTS), n_sessions)
    start = inj.span.start + pd.to_timedelta(
        inj.rng.uniform(0, inj.span.days - 1, n_sessions), unit="D"
    )
    ts = pd.DatetimeIndex(start[block]).round("ms") + pd.to_timedelta(step * BOT_GAP_S, unit="s")
    page = step % 4 == 0
    rows = _set(rows, "event_id", inj.new_ids("EB", n))
    rows = _set(rows, "session_id", np.array(inj.new_ids("SB", n_sessions), dtype=object)[block])
    rows = _set(rows, "customer_id", None)
    rows = _set(rows, "event_ts", list(ts))
    rows = _set(rows, "event_type", np.where(page, "page_view", "product_view"))
    rows = _set(rows, "product_id", np.where(page, None, rows["product_id"].astype(object)))
    rows = _set(rows, "page_context", np.where(page, "category", "product_page"))
    rows = _set(rows, "search_query", None)
    rows = _set(rows, "device_type", "desktop")
    detail = [f"bot session of {BOT_EVENTS} events {BOT_GAP_S}s apart"] * n
    return Bad(rows, "bot_session", detail, np.full(n, -1), block)


def _reviews(inj: Injector, rule: str, k: int) -> Bad:
    if rule == "duplicate_row":
        return inj.duplicate_row("reviews", k)
    if rule == "duplicate_id":
        return inj.duplicate_id("reviews", k, "rating", lambda s: s % 5 + 1)
    rows, _ = inj.sample("reviews", k)
    rows = _set(rows, "review_id", inj.new_ids("RX", k))
    v = inj.variants(k, 3)
    if rule == "missing_required":
        cols = np.array(["product_id", "rating", "review_ts"])[v]
        for c in ("product_id", "rating", "review_ts"):
            rows = _set(rows, c, np.where(cols == c, None, rows[c].astype(object)))
        return inj.fresh(rows, rule, [f"{c} is null" for c in cols])
    if rule == "unparseable":
        rows = _set(rows, "rating", np.where(v != 1, "five", rows["rating"].astype(object)))
        rows = _set(
            rows, "review_ts", np.where(v == 1, NOT_A_DATE, rows["review_ts"].astype(object))
        )
        return inj.fresh(
            rows, rule, [f"review_ts = {NOT_A_DATE!r}" if x == 1 else "rating = 'five'" for x in v]
        )
    if rule == "rating_out_of_range":
        bad = np.array([0.0, 6.0, 7.0, 10.0])[np.arange(k) % 4]
        rows["rating"] = bad
        return inj.fresh(rows, rule, [f"rating = {r:g}" for r in bad])
    if rule == "future_timestamp":
        rows = _set(rows, "review_ts", inj.future(k))
        return inj.fresh(rows, rule, ["review_ts far in the future"] * k)
    if rule == "unknown_product":
        rows = _set(rows, "product_id", inj.new_ids("PU", k))
        return inj.fresh(rows, rule, ["product_id not in products"] * k)
    if rule == "unknown_customer":
        rows = _set(rows, "customer_id", inj.new_ids("CU", k))
        return inj.fresh(rows, rule, ["customer_id not in customers"] * k)
    raise KeyError(rule)


MAKERS: dict[str, Callable[[Injector, str, int], Bad]] = {
    "customers": _customers,
    "products": _products,
    "orders": _orders,
    "order_items": _order_items,
    "events": _events,
    "reviews": _reviews,
}


def inject(
    tables: dict[str, pa.Table], fraction: float, span: Span, rng: np.random.Generator
) -> tuple[dict[str, pa.Table], pd.DataFrame]:
    """Tables with bad rows inserted, and the manifest (table, row, rule, detail)."""
    assert set(r for rules in TABLE_RULES.values() for r in rules) == set(RULES)
    out, manifests = dict(tables), []
    if fraction <= 0:
        return out, pd.DataFrame({f.name: pd.Series(dtype=object) for f in MANIFEST_SCHEMA})
    inj = Injector(tables, span, rng)
    for name, rules in TABLE_RULES.items():
        good = tables[name]
        if good.num_rows == 0:
            continue
        per_rule = max(1, round(fraction * good.num_rows / len(rules)))
        bads = [MAKERS[name](inj, rule, per_rule) for rule in rules]
        out[name], manifest = _merge(name, good, bads, rng)
        manifests.append(manifest)
    manifest = pd.concat(manifests, ignore_index=True)
    return out, manifest


def _merge(
    name: str, good: pa.Table, bads: list[Bad], rng: np.random.Generator
) -> tuple[pa.Table, pd.DataFrame]:
    """Insert bad rows among good ones; text-typed columns where a bad value is text."""
    n = good.num_rows
    rows = pd.concat([b.rows for b in bads], ignore_index=True)
    text_cols = {
        c
        for c in rows.columns
        if not pa.types.is_string(good.schema.field(c).type)
        and rows[c].map(lambda v: isinstance(v, str)).any()
    }
    columns = []
    for f in good.schema:
        values = rows[f.name].tolist()
        if f.name in text_cols:
            columns.append(
                pa.concat_arrays(
                    [_text(good[f.name].combine_chunks()), _text_values(values, f.type)]
                )
            )
        else:
            bad_arr = pa.array([None if _isnull(v) else v for v in values], type=f.type)
            columns.append(pa.concat_arrays([good[f.name].combine_chunks(), bad_arr]))
    fields = [pa.field(f.name, pa.string() if f.name in text_cols else f.type) for f in good.schema]
    merged = pa.Table.from_arrays(columns, schema=pa.schema(fields))

    # placement: good row i at key i; a bad row anywhere, or after its original
    after = np.concatenate([b.after for b in bads]).astype(np.float64)
    lo = np.where(after >= 0, after + 0.5, -0.5)
    key_bad = lo + rng.random(len(after)) * (n + 0.5 - lo)
    seq = np.zeros(len(after))
    offset = 0
    for b in bads:  # keep a block (bot session) together and in order
        if b.block is not None:
            sl = slice(offset, offset + len(b.rows))
            first_of_block = pd.Series(key_bad[sl]).groupby(b.block).transform("first")
            key_bad[sl] = first_of_block.to_numpy()
            seq[sl] = np.arange(len(b.rows))
        offset += len(b.rows)
    key = np.concatenate([np.arange(n, dtype=np.float64), key_bad])
    order = np.lexsort((np.concatenate([np.zeros(n), seq + 1]), key))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    manifest = (
        pd.DataFrame(
            {
                "table": name,
                "row": position[n:],
                "rule": np.concatenate([[b.rule] * len(b.rows) for b in bads]),
                "detail": np.concatenate([b.detail for b in bads]),
            }
        )
        .sort_values("row", kind="stable")
        .reset_index(drop=True)
    )
    return merged.take(pa.array(order)), manifest


def _isnull(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v))


def _text(arr: pa.Array) -> pa.Array:
    """A typed column as a CSV would hold it: ISO UTC timestamps, plain numbers, true/false."""
    if pa.types.is_timestamp(arr.type):
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%SZ")
    return arr.cast(pa.string())


def _text_values(values: list, typ: pa.DataType) -> pa.Array:
    typed = pa.array([None if isinstance(v, str) or _isnull(v) else v for v in values], type=typ)
    text = _text(typed).to_pylist()
    return pa.array(
        [v if isinstance(v, str) else t for v, t in zip(values, text, strict=True)],
        type=pa.string(),
    )
