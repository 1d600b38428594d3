"""Validate one raw table against the contract: every row gets exactly one verdict.

A row is clean, or quarantined under the FIRST rule it breaks in `contract.RULES` order. The rules
run in that order, each over the rows still clean, so "first occurrence kept" in the duplicate rules
means the first occurrence that passed every earlier rule.

- missing_required, unparseable: from the coercion of each column (pipelines/coerce.py);
- invalid_value .. future_timestamp: checks built from the contract (vocabularies, ranges, ids,
  the refund-vs-total check, the clock; `rule_checks`, from `VALUE_CHECKS`), evaluated column-wise
  as pandera's schema of the same checks would (`schema`; a test holds the two equal);
- duplicate_row, duplicate_id: 64-bit row and key hashes, within the batch and against the hashes of
  rows already clean from earlier batches;
- unknown_order/product/customer, before_signup: lookups into the clean rows of the referenced
  tables (this batch's, validated first per `INGEST_ORDER`, and earlier batches');
- bot_session: a session of at least BOT_MIN_EVENTS events at more than BOT_MAX_EVENTS_PER_SECOND
  on average (events / (last - first timestamp)): no person clicks 30 times in under 30 seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa_schema
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.coerce import Coerced, absent, coerce, to_text
from pipelines.contract import (
    EVENT_TYPES,
    EVENTS_NEEDING_PRODUCT,
    FUTURE_TOLERANCE_HOURS,
    ORDER_STATUSES,
    RULES,
    TABLES,
    UPPER_BOUNDS,
    Table,
)
from pipelines.readers import RawTable
from shopconfig.settings import ID_MAX_LENGTH

RULE_NAMES: tuple[str, ...] = tuple(RULES)
RULE_CODE: dict[str, int] = {r: i for i, r in enumerate(RULE_NAMES)}

BOT_MIN_EVENTS = 30
BOT_MAX_EVENTS_PER_SECOND = 1.0

# How free-text gender values map to the contract's four; anything else given is "other".
GENDERS: dict[str, tuple[str, ...]] = {
    "female": ("female", "f", "woman", "women", "w", "fem"),
    "male": ("male", "m", "man", "men"),
    "unknown": (
        "unknown",
        "u",
        "unspecified",
        "not specified",
        "prefer not to say",
        "n/a",
        "na",
        "none",
        "null",
        "nan",
        "?",
        "-",
    ),
}
MIN_BIRTH_YEAR = 1900

PANDAS_DTYPES = {
    "string": pd.StringDtype("pyarrow"),  # Arrow-backed: millions of ids without Python objects
    "timestamp": pd.DatetimeTZDtype("us", "UTC"),
    "int": pd.Int64Dtype(),
    "float": np.dtype("float64"),
    "bool": pd.BooleanDtype(),
}


@dataclass(frozen=True)
class ValueCheck:
    """A value rule on one column; `test` is vectorised and True where the value is fine."""

    table: str
    column: str
    rule: str
    test: Callable[[pd.Series], pd.Series]
    expect: str


def _ge0(s: pd.Series) -> pd.Series:
    return s >= 0


VALUE_CHECKS: tuple[ValueCheck, ...] = (
    ValueCheck(
        "orders",
        "status",
        "invalid_value",
        lambda s: s.isin(ORDER_STATUSES),
        "one of " + ", ".join(ORDER_STATUSES),
    ),
    ValueCheck(
        "events",
        "event_type",
        "invalid_value",
        lambda s: s.isin(EVENT_TYPES),
        "one of " + ", ".join(EVENT_TYPES),
    ),
    ValueCheck("products", "price", "negative_value", _ge0, ">= 0"),
    ValueCheck("orders", "total_amount", "negative_value", _ge0, ">= 0"),
    ValueCheck("orders", "discount_amount", "negative_value", _ge0, ">= 0"),
    ValueCheck("orders", "refunded_amount", "negative_value", _ge0, ">= 0"),
    ValueCheck("order_items", "quantity", "negative_value", lambda s: s > 0, "> 0"),
    ValueCheck("order_items", "unit_price", "negative_value", _ge0, ">= 0"),
    ValueCheck("order_items", "discount", "negative_value", _ge0, ">= 0"),
    ValueCheck("reviews", "rating", "rating_out_of_range", lambda s: s.between(1, 5), "in 1..5"),
)


# Control (Cc), format (Cf: zero-width space and joiners, BOM, bidi marks), line and paragraph
# separators, private-use code points: invisible, or different on every screen.
_BAD_ID_CHARS = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}]"
ID_EXPECT = f"an id of at most {ID_MAX_LENGTH} characters without control or invisible characters"


def valid_id(s: pd.Series) -> pd.Series:
    """Ids the API can look up and a person can tell apart (NFC normalisation is coercion's)."""
    arr = pa.array(s.array).cast(pa.string())
    bad = pc.or_(
        pc.greater(pc.utf8_length(arr), ID_MAX_LENGTH), pc.match_substring_regex(arr, _BAD_ID_CHARS)
    )
    return pd.Series(~_np_bool(bad), index=s.index)


def _np_bool(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow boolean -> numpy bool, null meaning False."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def id_columns(spec: Table) -> list[str]:
    return [c.name for c in spec.columns if c.kind == "string" and c.name.endswith("_id")]


def upper_bounds(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The contract's upper bounds with `overrides` ("table.column" -> bound) applied."""
    bounds = dict(UPPER_BOUNDS)
    for name, bound in (overrides or {}).items():
        table, _, column = name.partition(".")
        spec = TABLES.get(table)
        if spec is None or column not in spec.column_names:
            raise ValueError(f"value bound for unknown column {name!r} (table.column)")
        if next(c for c in spec.columns if c.name == column).kind not in ("int", "float"):
            raise ValueError(f"value bound for {name!r}: not a number column")
        bounds[name] = float(bound)
    return bounds


def _refund_ok(df: pd.DataFrame) -> pd.Series:
    return ~(df["refunded_amount"] > df["total_amount"]).fillna(False).astype(bool)


# Checks across columns of one row: (table, rule, test, columns named in the detail).
FRAME_CHECKS: tuple[tuple[str, str, Callable[[pd.DataFrame], pd.Series], tuple[str, ...]], ...] = (
    ("orders", "refund_exceeds_total", _refund_ok, ("refunded_amount", "total_amount")),
)


@dataclass(frozen=True)
class RuleCheck:
    """One check of the rules invalid_value .. future_timestamp: `test` is vectorised and True
    where a value is fine; on a column (`column`; nulls pass) or across a row (`column` None)."""

    column: str | None
    rule: str
    test: Callable


def rule_checks(
    spec: Table, now: pd.Timestamp, bounds: dict[str, float] | None = None
) -> list[RuleCheck]:
    """The value checks of a table's typed rows (vocabularies, ranges, ids, the clock), declared
    once: `validate` evaluates them, `schema` hands the same ones to pandera."""
    limit = now + pd.Timedelta(hours=FUTURE_TOLERANCE_HOURS)
    bounds = UPPER_BOUNDS if bounds is None else bounds
    ids = id_columns(spec)
    out = []
    for col in spec.columns:
        out += [
            RuleCheck(col.name, c.rule, c.test)
            for c in VALUE_CHECKS
            if c.table == spec.name and c.column == col.name
        ]
        if col.name in ids:
            out.append(RuleCheck(col.name, "invalid_value", valid_id))
        bound = bounds.get(f"{spec.name}.{col.name}")
        if bound is not None:
            out.append(RuleCheck(col.name, "out_of_range", lambda s, b=bound: s <= b))
        if col.kind == "timestamp":
            out.append(RuleCheck(col.name, "future_timestamp", lambda s, lim=limit: s <= lim))
    out += [RuleCheck(None, rule, test) for t, rule, test, _ in FRAME_CHECKS if t == spec.name]
    return out


def schema(
    spec: Table, now: pd.Timestamp, bounds: dict[str, float] | None = None
) -> pa_schema.DataFrameSchema:
    """The pandera schema of a table's typed rows: dtypes and `rule_checks`, each check named
    after its rule. The reference `validate`'s own evaluation is tested against (pandera costs
    ~10 ms per call in dtype checks and failure-case frames: too much for the stream's batches
    of a few hundred events)."""
    checks = rule_checks(spec, now, bounds)
    columns = {
        col.name: pa_schema.Column(
            PANDAS_DTYPES[col.kind],
            [pa_schema.Check(c.test, name=c.rule) for c in checks if c.column == col.name],
            nullable=True,
        )
        for col in spec.columns
    }
    frame = [pa_schema.Check(c.test, name=c.rule) for c in checks if c.column is None]
    return pa_schema.DataFrameSchema(columns, checks=frame, strict=True, ordered=True)


@dataclass
class Known:
    """Clean rows other tables point at: this batch's so far plus earlier batches'.

    Ids are unique Arrow string arrays (vectorised `is_in` / `index_in` lookups); times are int64
    microseconds aligned with them.
    """

    customer_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    signup_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # earliest
    product_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    order_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    order_ts_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, table: str, ids: pa.Array, times_us: np.ndarray | None = None) -> None:
        """Add clean rows of a referenced table."""
        ids = ids.cast(pa.string())
        if table == "products":
            self.product_ids = pc.unique(pa.concat_arrays([self.product_ids, ids]))
        elif table == "orders":  # an order's first order_ts over all its versions
            self.order_ids, self.order_ts_us = _earliest(
                self.order_ids, self.order_ts_us, ids, times_us
            )
        elif table == "customers":  # a customer's earliest signup over all profile versions
            self.customer_ids, self.signup_us = _earliest(
                self.customer_ids, self.signup_us, ids, times_us
            )


def _earliest(
    ids: pa.Array, times: np.ndarray, new_ids: pa.Array, new_times: np.ndarray
) -> tuple[pa.Array, np.ndarray]:
    """Unique ids with the earliest time of each, over both sets."""
    both = (
        pa.table({"id": pa.concat_arrays([ids, new_ids]), "t": np.concatenate([times, new_times])})
        .group_by("id", use_threads=False)
        .aggregate([("t", "min")])
    )
    return both["id"].combine_chunks(), both["t_min"].to_numpy()


def positions(ids: pd.Series, value_set: pa.Array) -> np.ndarray:
    """Position of each id in value_set, -1 where absent or null."""
    arr = pa.array(ids.array)
    pos = pc.index_in(arr, value_set=value_set.cast(arr.type))
    return pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def micros(s: pd.Series) -> np.ndarray:
    """A tz-aware microsecond Series as int64 (NaT as int64 min)."""
    return s.array.asi8


@dataclass
class Seen:
    """Hashes of the rows of one table already clean in earlier batches.

    Kept sorted, so judging a small batch against millions of earlier rows is a binary search (the
    stream worker judges a few hundred events at a time); `with_extra` adds a few more hashes
    without sorting again.
    """

    row_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    key_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    extra_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    extra_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))

    def __post_init__(self) -> None:
        self.row_hashes = np.sort(np.asarray(self.row_hashes, np.uint64))
        self.key_hashes = np.sort(np.asarray(self.key_hashes, np.uint64))

    def with_extra(self, rows: np.ndarray, keys: np.ndarray) -> Seen:
        """These hashes and a few more (unsorted), sharing the sorted arrays."""
        out = Seen.__new__(Seen)
        out.row_hashes, out.key_hashes = self.row_hashes, self.key_hashes
        out.extra_rows = np.concatenate([self.extra_rows, np.asarray(rows, np.uint64)])
        out.extra_keys = np.concatenate([self.extra_keys, np.asarray(keys, np.uint64)])
        return out

    def rows_seen(self, hashes: np.ndarray) -> np.ndarray:
        return _member(hashes, self.row_hashes) | np.isin(hashes, self.extra_rows)

    def keys_seen(self, hashes: np.ndarray) -> np.ndarray:
        return _member(hashes, self.key_hashes) | np.isin(hashes, self.extra_keys)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


@dataclass
class Outcome:
    """One raw table, validated: typed rows (all of them), one rule code per row (-1 = clean)."""

    spec: Table
    raw: RawTable
    typed: pa.Table  # contract columns and types, every row in file order
    code: np.ndarray
    details: pd.Series  # detail text, indexed by quarantined row
    row_hash: np.ndarray
    key_hash: np.ndarray | None

    @property
    def clean(self) -> np.ndarray:
        return self.code < 0

    def clean_rows(self) -> pa.Table:
        """The clean rows (no copy when every row is clean)."""
        return self.typed if self.clean.all() else self.typed.filter(pa.array(self.clean))

    def by_rule(self) -> dict[str, int]:
        counts = np.bincount(self.code[self.code >= 0], minlength=len(RULE_NAMES))
        return {RULE_NAMES[i]: int(c) for i, c in enumerate(counts) if c}


class Verdicts:
    """Rule codes per row; a rule only reaches rows that no earlier rule took."""

    def __init__(self, n: int) -> None:
        self.code = np.full(n, -1, dtype=np.int8)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._last = -1

    @property
    def alive(self) -> np.ndarray:
        return self.code < 0

    def flag(
        self, rule: str, mask: np.ndarray, detail: str | Callable[[np.ndarray], Sequence[str]]
    ) -> None:
        code = RULE_CODE[rule]
        assert code >= self._last, f"rule {rule} applied out of RULES order"
        self._last = code
        idx = np.flatnonzero(np.asarray(mask, dtype=bool) & self.alive)
        if not len(idx):
            return
        self.code[idx] = code
        texts = [detail] * len(idx) if isinstance(detail, str) else list(detail(idx))
        self._parts.append((idx, np.asarray(texts, dtype=object)))

    def details(self) -> pd.Series:
        if not self._parts:
            return pd.Series([], dtype=object, index=pd.Index([], dtype=np.int64))
        idx = np.concatenate([p[0] for p in self._parts])
        return pd.Series(np.concatenate([p[1] for p in self._parts]), index=idx).sort_index()


def validate(
    raw: RawTable,
    now: pd.Timestamp,
    known: Known,
    seen: Seen,
    bounds: dict[str, float] | None = None,
    rows_only: bool = False,
) -> Outcome:
    """Coerce, normalise and judge every row of one raw table (`bounds`: upper_bounds()).

    `rows_only`: only the rules one row shows on its own (missing_required .. future_timestamp),
    for a caller without the shop's state (the API's POST /events); no hashes are computed.
    """
    spec = TABLES[raw.file.table]
    n = raw.num_rows
    coerced = {
        c.name: (
            coerce(raw.data[c.name], c.kind, c.name)
            if c.name in raw.data.column_names
            else absent(n, c.kind)
        )
        for c in spec.columns
    }
    df = _frame(spec, coerced)
    normalise(spec, df, now)
    v = Verdicts(n)
    orig = _Original(raw)

    for col in spec.required_columns:
        v.flag("missing_required", coerced[col].missing, f"{col}: missing")
    if spec.name == "events":
        needs = df["event_type"].isin(EVENTS_NEEDING_PRODUCT).to_numpy(bool)
        v.flag(
            "missing_required",
            needs & coerced["product_id"].missing,
            lambda idx: [
                f"product_id: missing (required for {t})" for t in df["event_type"].to_numpy()[idx]
            ],
        )
    for c in spec.columns:
        v.flag(
            "unparseable",
            coerced[c.name].unparseable,
            lambda idx, c=c: [f"{c.name}={t!r}: not a {c.kind}" for t in orig(c.name, idx)],
        )
    _schema_rules(spec, df, now, v, UPPER_BOUNDS if bounds is None else bounds)
    typed = to_arrow(spec, df)
    if rows_only:
        return Outcome(spec, raw, typed, v.code, v.details(), np.zeros(n, np.uint64), None)
    row_hash, key_hash = hashes(spec, typed)
    _duplicate_rules(spec, df, v, row_hash, key_hash, seen)
    _reference_rules(spec, df, v, known)
    if spec.name == "events":
        _bot_sessions(df, v)
    return Outcome(spec, raw, typed, v.code, v.details(), row_hash, key_hash)


def _frame(spec: Table, coerced: dict[str, Coerced]) -> pd.DataFrame:
    """The typed values as a DataFrame; the Arrow arrays are handed over (only masks stay)."""
    table = pa.table({name: c.values for name, c in coerced.items()})
    for c in coerced.values():
        c.values = None  # type: ignore[assignment]  # let to_pandas free them as it goes
    df = table.to_pandas(types_mapper=_pandas_type, split_blocks=True, self_destruct=True)
    del table
    for col in spec.columns:  # empty tables come out as object
        if df[col.name].dtype != PANDAS_DTYPES[col.kind]:
            df[col.name] = df[col.name].astype(PANDAS_DTYPES[col.kind])
    return df


def _pandas_type(t: pa.DataType):
    if pa.types.is_string(t):
        return PANDAS_DTYPES["string"]
    if pa.types.is_integer(t):
        return PANDAS_DTYPES["int"]
    if pa.types.is_boolean(t):
        return PANDAS_DTYPES["bool"]
    return None


def normalise(spec: Table, df: pd.DataFrame, now: pd.Timestamp) -> None:
    """The contract's normalisations and defaults, in place (none of them rejects a row)."""
    for name in ("status", "event_type"):  # vocabularies compare case-insensitively
        if name in df:
            df[name] = df[name].str.lower()
    if spec.name == "customers":
        df["gender"] = normalise_gender(df["gender"])
        year = df["birth_year"]
        df["birth_year"] = year.where((year >= MIN_BIRTH_YEAR) & (year <= now.year))
        df["updated_at"] = df["updated_at"].fillna(df["signup_ts"])
    elif spec.name == "products":
        df["category"] = df["category"].fillna("unknown")
        df["updated_at"] = df["updated_at"].fillna(df["created_at"])
        df["is_active"] = df["is_active"].fillna(True)
    elif spec.name == "product_collections":
        df["in_collection"] = df["in_collection"].fillna(True)
    elif spec.name == "orders":
        df["discount_amount"] = df["discount_amount"].fillna(0.0)
        df["refunded_amount"] = df["refunded_amount"].fillna(0.0)
        df["updated_at"] = df["updated_at"].fillna(df["order_ts"])
    elif spec.name == "order_items":
        df["discount"] = df["discount"].fillna(0.0)


def normalise_gender(s: pd.Series) -> pd.Series:
    low = s.str.lower()
    out = pd.Series("other", index=s.index, dtype=PANDAS_DTYPES["string"])
    for value, spellings in GENDERS.items():
        out[low.isin(spellings).to_numpy(bool)] = value
    out[s.isna().to_numpy()] = "unknown"
    return out


class _Original:
    """The raw text of a column at some rows, for details (computed only for flagged rows)."""

    def __init__(self, raw: RawTable) -> None:
        self.data = raw.data

    def __call__(self, column: str, idx: np.ndarray) -> list[str | None]:
        if column not in self.data.column_names:
            return [None] * len(idx)
        return to_text(self.data[column].take(pa.array(idx))).to_pylist()


def _schema_rules(
    spec: Table, df: pd.DataFrame, now: pd.Timestamp, v: Verdicts, bounds: dict[str, float]
) -> None:
    """Rules invalid_value .. future_timestamp: `rule_checks` evaluated on the typed frame as
    pandera would (a column check sees the non-null values; the first failing column in contract
    order names the detail), without its per-call cost."""
    fails: dict[str, list[tuple[str | None, np.ndarray]]] = {}
    for rule, column, rows in check_failures(spec, df, now, bounds):
        fails.setdefault(rule, []).append((column, rows))
    frame_rules = {rule: cols for t, rule, _, cols in FRAME_CHECKS if t == spec.name}
    for rule in RULE_NAMES:
        for column, rows in _in_contract_order(spec, fails.get(rule, [])):
            mask = np.zeros(len(df), bool)
            mask[rows] = True
            if column is None:
                cols = frame_rules[rule]
                v.flag(
                    rule,
                    mask,
                    lambda idx, cols=cols: [
                        " > ".join(f"{c}={_fmt(df[c].iat[i])}" for c in cols) for i in idx
                    ],
                )
                continue
            expect = _expectation(spec, column, rule, now, bounds)
            v.flag(
                rule,
                mask,
                lambda idx, col=column, e=expect: [
                    f"{col}={_fmt(df[col].iat[i])}: must be {e}" for i in idx
                ],
            )


def check_failures(
    spec: Table, df: pd.DataFrame, now: pd.Timestamp, bounds: dict[str, float] | None = None
) -> list[tuple[str, str | None, np.ndarray]]:
    """(rule, column or None, rows) of every `rule_checks` check some rows fail; what pandera's
    lazy validation of `schema` reports as failure cases."""
    wrong = [c.name for c in spec.columns if df[c.name].dtype != PANDAS_DTYPES[c.kind]]
    if wrong or list(df.columns) != spec.column_names:  # a bug in coercion, not bad input
        raise RuntimeError(f"{spec.name}: schema mismatch after coercion: {wrong or df.columns}")
    out = []
    for check in rule_checks(spec, now, bounds):
        if check.column is None:
            bad = np.flatnonzero(~np.asarray(check.test(df), dtype=bool))
        else:
            s = df[check.column]
            rows = np.flatnonzero(s.notna().to_numpy(bool))
            if not len(rows):
                continue
            values = s if len(rows) == len(s) else s.iloc[rows]
            bad = rows[~np.asarray(check.test(values), dtype=bool)]
        if len(bad):
            out.append((check.rule, check.column, bad))
    return out


def _in_contract_order(
    spec: Table, fails: list[tuple[str | None, np.ndarray]]
) -> list[tuple[str | None, np.ndarray]]:
    """One rule's failures: the frame checks first, then columns in contract order (a column
    with two checks of one rule: their rows together)."""
    order = {name: i for i, name in enumerate(spec.column_names)}
    merged: dict[str | None, list[np.ndarray]] = {}
    for column, rows in fails:
        merged.setdefault(column, []).append(rows)
    keys = sorted(merged, key=lambda c: -1 if c is None else order[c])
    return [(c, np.unique(np.concatenate(merged[c]))) for c in keys]


def _expectation(
    spec: Table, col: str, rule: str, now: pd.Timestamp, bounds: dict[str, float]
) -> str:
    if rule == "future_timestamp":
        return f"<= {now + pd.Timedelta(hours=FUTURE_TOLERANCE_HOURS)}"
    if rule == "out_of_range":
        return f"<= {bounds[f'{spec.name}.{col}']:g}"
    if rule == "invalid_value" and col in id_columns(spec):
        return ID_EXPECT
    return next(
        c.expect
        for c in VALUE_CHECKS
        if c.table == spec.name and c.column == col and c.rule == rule
    )


def _fmt(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


@functools.cache
def _duckdb() -> duckdb.DuckDBPyConnection:
    """One in-memory connection per process (connecting costs ~0.1 s)."""
    return duckdb.connect()


def to_arrow(spec: Table, df: pd.DataFrame) -> pa.Table:
    """Typed rows as an Arrow table with the contract's schema (strings are not copied)."""
    schema = pa.schema([spec.arrow_schema().field(c) for c in spec.column_names])
    table = pa.Table.from_pandas(df[spec.column_names], preserve_index=False)
    return table.cast(schema).replace_schema_metadata(None)


def hashes(spec: Table, table: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
    """64-bit hashes of each row's contract values and of its key (DuckDB's hash, vectorised).

    Hashes are taken over the typed, normalised values, so `12346.0` in a CSV and 12346 in a
    parquet file are the same row. They are stable for a DuckDB version; the state records it.
    """
    table = table.select(spec.column_names)
    con = _duckdb()
    con.register("t", table)
    cols = ", ".join(f'"{c}"' for c in spec.column_names)
    sql = f"SELECT hash({cols}) AS r"
    if spec.key:
        sql += ", hash(" + ", ".join(f'"{c}"' for c in spec.key) + ") AS k"
    try:
        out = con.execute(sql + " FROM t").fetchnumpy()
    finally:
        con.unregister("t")
    row = np.asarray(out["r"], dtype=np.uint64)
    key = np.asarray(out["k"], dtype=np.uint64) if spec.key else None
    return row, key


def _duplicate_rules(
    spec: Table,
    df: pd.DataFrame,
    v: Verdicts,
    row_hash: np.ndarray,
    key_hash: np.ndarray | None,
    seen: Seen,
) -> None:
    """duplicate_row then duplicate_id: keep the first clean occurrence, earlier batches first."""
    v.flag(
        "duplicate_row",
        *_repeats(
            v.alive,
            row_hash,
            seen.rows_seen,
            lambda i: "exact copy of row " + i,
            "exact copy of a row already clean from an earlier batch",
        ),
    )
    if key_hash is None:
        return
    has_key = df[list(spec.key)].notna().all(axis=1).to_numpy()
    mask, detail = _repeats(
        v.alive & has_key,
        key_hash,
        seen.keys_seen,
        lambda i: "already used by row " + i + " with other values",
        "already clean from an earlier batch with other values",
    )
    key_text = _key_text(spec, df)
    v.flag(
        "duplicate_id",
        mask,
        lambda idx: [f"{key_text(i)} {d}" for i, d in zip(idx, detail(idx), strict=True)],
    )


def _repeats(
    eligible: np.ndarray,
    h: np.ndarray,
    before: Callable[[np.ndarray], np.ndarray],
    within_text: Callable[[pd.Series], pd.Series],
    earlier_text: str,
) -> tuple[np.ndarray, Callable[[np.ndarray], Sequence[str]]]:
    """Rows whose hash was seen in an earlier batch or on an earlier eligible row of this one."""
    rows = np.flatnonzero(eligible)
    hs = h[rows]
    earlier = before(hs)
    within = pd.Series(hs).duplicated().to_numpy()
    mask = np.zeros(len(h), bool)
    mask[rows[earlier | within]] = True
    in_before = np.zeros(len(h), bool)
    in_before[rows[earlier]] = True

    def detail(idx: np.ndarray) -> Sequence[str]:
        first = pd.Series(rows[~within], index=hs[~within])  # each hash's first eligible row
        text = within_text(first.reindex(h[idx]).astype(str).reset_index(drop=True))
        return np.where(in_before[idx], earlier_text, text.to_numpy(object)).tolist()

    return mask, detail


def _key_text(spec: Table, df: pd.DataFrame) -> Callable[[int], str]:
    def text(i: int) -> str:
        return ", ".join(f"{c}={_fmt(df[c].iat[i])}" for c in spec.key)

    return text


def _reference_rules(spec: Table, df: pd.DataFrame, v: Verdicts, known: Known) -> None:
    """unknown_order, unknown_product, unknown_customer, before_signup, in RULES order."""
    refs = []
    if spec.name == "order_items":
        refs.append(("unknown_order", "order_id", known.order_ids))
    if "product_id" in df and spec.name != "products":
        refs.append(("unknown_product", "product_id", known.product_ids))
    if "customer_id" in df and spec.name != "customers":
        refs.append(("unknown_customer", "customer_id", known.customer_ids))
    pos: dict[str, np.ndarray] = {}
    for rule, col, value_set in refs:
        ids = df[col]
        pos[col] = positions(ids, value_set)
        mask = ids.notna().to_numpy(bool) & (pos[col] < 0)
        v.flag(
            rule,
            mask,
            lambda idx, col=col, ids=ids: [
                f"{col}={ids.iat[i]!r}: not a clean {col.removesuffix('_id')}" for i in idx
            ],
        )
    if spec.name == "orders":
        at = pos["customer_id"]
        signup = known.signup_us[np.maximum(at, 0)] if len(known.signup_us) else np.zeros_like(at)
        order = micros(df["order_ts"])
        mask = (at >= 0) & df["order_ts"].notna().to_numpy(bool) & (order < signup)
        v.flag(
            "before_signup",
            mask,
            lambda idx: [
                f"order_ts={df['order_ts'].iat[i].isoformat()} < signup_ts="
                f"{pd.Timestamp(signup[i], unit='us', tz='UTC').isoformat()}"
                for i in idx
            ],
        )


def _bot_sessions(df: pd.DataFrame, v: Verdicts) -> None:
    alive = np.flatnonzero(v.alive)
    if not len(alive):
        return
    codes, _ = pd.factorize(df["session_id"].iloc[alive])
    ts = df["event_ts"].iloc[alive].astype("int64").to_numpy()
    # per session (codes 0..k-1, each present): events, first and last time (a pandas groupby
    # cost ~1.7 ms per stream batch of 100, most of it fixed)
    size = np.bincount(codes)
    starts = np.r_[0, np.cumsum(size)[:-1]]
    in_order = ts[np.argsort(codes, kind="stable")]
    span = (np.maximum.reduceat(in_order, starts) - np.minimum.reduceat(in_order, starts)) / 1e6
    bot = (size >= BOT_MIN_EVENTS) & (size > BOT_MAX_EVENTS_PER_SECOND * span)
    if not bot.any():
        return
    session = np.full(len(df), -1)
    session[alive] = codes
    mask = np.zeros(len(df), bool)
    mask[alive[bot[codes]]] = True
    v.flag(
        "bot_session",
        mask,
        lambda idx: [
            f"session_id={df['session_id'].iat[i]!r}: {size[session[i]]} events in "
            f"{span[session[i]]:.1f}s"
            for i in idx
        ],
    )
