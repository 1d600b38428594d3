"""Turn raw values (text, or whatever type a parquet/JSON writer chose) into the contract's types.

Each column comes out as an Arrow array of its contract type plus two masks: `missing` (no value
given: null, blank, or a null token such as `NaN` in a non-text column) and `unparseable` (a value
was given but cannot be read as the column's kind). Everything is vectorised in Arrow; pandas'
ISO 8601 parser only sees the rare timestamps Arrow's strict parser refuses, so a clean column of
millions of timestamps costs milliseconds.

Readings accepted, as the contract says:
- timestamps: ISO 8601 (`2025-03-01`, `2025-03-01T10:00:00`, `...Z`, `...+02:00`, fractions),
  without an offset meaning UTC; or epoch numbers, the unit told by magnitude (seconds below 1e11,
  then milliseconds, microseconds below 1e17, nanoseconds);
- ids (string columns named `*_id`): a number's decimal text, so `12346.0` becomes `12346`;
- ints: `3`, `3.0`; floats: decimal or scientific notation (no thousands separators or currency);
- bools: true/false, t/f, yes/no, y/n, 1/0 (any case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contract import ARROW_TYPES, Kind

TS = ARROW_TYPES["timestamp"]
NULL_TOKENS = ["", "nan", "null", "none", "na", "n/a", "nat"]
TRUE_TOKENS = ["true", "t", "yes", "y", "1", "1.0"]
FALSE_TOKENS = ["false", "f", "no", "n", "0", "0.0"]

_INT_RE = r"^[+-]?\d+(\.0*)?$"
_FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ID_FLOAT_RE = r"^([+-]?\d+)\.0*$"
# What Arrow's own ISO 8601 cast reads: a full date-time with an offset, or a naive date(-time).
_ISO_OFFSET_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
_OFFSET_TAIL_RE = r"(Z|[+-]\d{2}:?\d{2})$"
_ISO_NAIVE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?)?$"
# Epoch magnitude thresholds: |v| below 1e11 is seconds (until year 5138), and so on.
_EPOCH_UNITS = ((1e11, 1_000_000.0), (1e14, 1_000.0), (1e17, 1.0), (np.inf, 0.001))
_SLICE = 1 << 16
_BATCH_ROWS = 1 << 20  # coerce in pieces of about this many rows (readers give small chunks)


@dataclass
class Coerced:
    values: pa.Array
    missing: np.ndarray
    unparseable: np.ndarray


def coerce(arr: pa.ChunkedArray | pa.Array, kind: Kind, column: str) -> Coerced:
    """Coerce one column, chunk by chunk (a string column may exceed one Arrow array's 2 GB)."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    parts = [_coerce_array(c, kind, column) for c in _regroup(chunks)]
    if not parts:
        return Coerced(pa.array([], ARROW_TYPES[kind]), np.zeros(0, bool), np.zeros(0, bool))
    return Coerced(
        pa.chunked_array([p.values for p in parts], ARROW_TYPES[kind]),
        np.concatenate([p.missing for p in parts]),
        np.concatenate([p.unparseable for p in parts]),
    )


def _regroup(chunks: list[pa.Array]) -> list[pa.Array]:
    """Merge small chunks (CSV blocks) into pieces of ~_BATCH_ROWS rows: fewer kernel calls."""
    groups: list[list[pa.Array]] = [[]]
    rows = 0
    for c in chunks:
        if not len(c):
            continue
        if rows >= _BATCH_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(c)
        rows += len(c)
    return [g[0] if len(g) == 1 else pa.concat_arrays(g) for g in groups if g]


def absent(n: int, kind: Kind) -> Coerced:
    """A contract column the file does not have: all missing."""
    return Coerced(pa.nulls(n, ARROW_TYPES[kind]), np.ones(n, bool), np.zeros(n, bool))


def to_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The original value as text, for the quarantine (text stays byte for byte what it was)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = pc.cast(arr, t.value_type)
        t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_floating(t):
        # Keep `12346.0` recognisable as a float (Arrow would print `12346`).
        vals = arr.to_numpy(zero_copy_only=False)
        return pa.array(
            [None if v is None else repr(float(v)) for v in vals],
            pa.string(),
            mask=pc.is_null(arr).to_numpy(zero_copy_only=False),
        )
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())


def _coerce_array(arr: pa.Array, kind: Kind, column: str) -> Coerced:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = pc.cast(arr, t.value_type)
        t = arr.type
    if pa.types.is_large_string(t):
        arr = pc.cast(arr, pa.string())
        t = arr.type
    if pa.types.is_string(t):
        text = _trim(arr)
        if kind == "string":
            return _string_from_text(text, column)
        missing = _np(
            pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), pa.array(NULL_TOKENS)))
        )
        return {
            "timestamp": _timestamp_from_text,
            "int": _int_from_text,
            "float": _float_from_text,
            "bool": _bool_from_text,
        }[kind](text, missing)
    return _coerce_native(arr, kind, column)


def _trim(text: pa.Array) -> pa.Array:
    """Strip surrounding whitespace; no copy of the column when there is none (the usual case)."""
    trimmed = pc.utf8_trim_whitespace(text)
    changed = pc.any(pc.not_equal(pc.binary_length(trimmed), pc.binary_length(text))).as_py()
    return trimmed if changed else text


def _np(mask: pa.Array) -> np.ndarray:
    """Arrow boolean -> numpy bool, null meaning False."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _result(values: pa.Array, missing: np.ndarray, kind: Kind) -> Coerced:
    """Values with nulls where nothing was readable; unparseable = given but not read."""
    values = values.cast(ARROW_TYPES[kind])
    unparseable = ~missing & _np(pc.is_null(values))
    return Coerced(values, missing, unparseable)


def _string_from_text(text: pa.Array, column: str) -> Coerced:
    missing = _np(pc.or_kleene(pc.is_null(text), pc.equal(text, "")))
    values = _where(~missing, text) if missing.any() else text
    if column.endswith("_id"):
        if pc.any(pc.match_substring(values, ".")).as_py():
            values = pc.replace_substring_regex(values, _ID_FLOAT_RE, r"\1")
        # One spelling per id: `é` typed as one code point or as `e` + a combining accent is the
        # same customer (NFC). Pure ASCII, the usual case, is already normal.
        if not pc.all(pc.string_is_ascii(values)).as_py():
            values = pc.utf8_normalize(values, "NFC")
    return Coerced(values, missing, np.zeros(len(text), bool))


def _where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """Null out values where mask is False."""
    return pc.if_else(pa.array(mask), values, pa.nulls(len(values), values.type))


def _try_cast(text: pa.Array, missing: np.ndarray, target: pa.DataType) -> pa.Array | None:
    """Arrow's strict cast of every given value at once: the fast path for a clean column."""
    try:
        return pc.cast(_where(~missing, text) if missing.any() else text, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _int_from_text(text: pa.Array, missing: np.ndarray) -> Coerced:
    fast = _try_cast(text, missing, pa.int64())
    if fast is not None:
        return _result(fast, missing, "int")
    ok = ~missing & _np(pc.match_substring_regex(text, _INT_RE))
    digits = pc.replace_substring_regex(_where(ok, text), r"^\+|\.0*$", "")
    try:
        values = pc.cast(digits, pa.int64())
    except pa.ArrowInvalid:  # beyond int64
        values = pa.array(
            pd.to_numeric(pd.Series(digits.to_pylist(), dtype=object), errors="coerce"),
            pa.float64(),
            from_pandas=True,
        )
        values = _int_from_float(values)
    return _result(values, missing, "int")


def _float_from_text(text: pa.Array, missing: np.ndarray) -> Coerced:
    fast = _try_cast(text, missing, pa.float64())
    if fast is not None:
        return _result(_finite(fast), missing, "float")
    ok = ~missing & _np(pc.match_substring_regex(text, _FLOAT_RE))
    values = pc.cast(_where(ok, text), pa.float64())
    return _result(_finite(values), missing, "float")


def _bool_from_text(text: pa.Array, missing: np.ndarray) -> Coerced:
    low = pc.utf8_lower(text)
    is_true = pc.is_in(low, pa.array(TRUE_TOKENS))
    is_false = pc.is_in(low, pa.array(FALSE_TOKENS))
    values = pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
    return _result(values, missing, "bool")


def _timestamp_from_text(text: pa.Array, missing: np.ndarray) -> Coerced:
    given = np.flatnonzero(~missing)
    if len(given):
        # Try Arrow's cast for the form of the first value (a failing cast can cost a full pass).
        first = text[int(given[0])].as_py()
        target = TS if re.search(_OFFSET_TAIL_RE, first) else pa.timestamp("us")
        fast = _try_cast(text, missing, target)
        if fast is not None:
            fast = fast if target.tz else pc.assume_timezone(fast, "UTC")
            return _result(fast, missing, "timestamp")
    n = len(text)
    micros = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    rest = np.flatnonzero(~missing)  # rows not read yet, shrinking stage by stage
    for regex, target in ((_ISO_OFFSET_RE, TS), (_ISO_NAIVE_RE, pa.timestamp("us"))):
        if not len(rest):
            break
        sub = text if len(rest) == n else text.take(pa.array(rest))
        sel = _np(pc.match_substring_regex(sub, regex))
        done = np.zeros(len(rest), dtype=bool)
        # Arrow's cast fails as a whole on one impossible date (2025-02-30): cast in slices so
        # that only the slice holding it is left to pandas, value by value.
        for lo in range(0, len(rest), _SLICE) if sel.any() else ():
            part = sel[lo : lo + _SLICE]
            if not part.any():
                continue
            try:
                parsed = pc.cast(_where(part, sub.slice(lo, _SLICE)), target)
            except pa.ArrowInvalid:
                continue
            got = pc.fill_null(parsed.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            rows = rest[lo : lo + _SLICE][part]
            micros[rows], valid[rows] = got[part], True
            done[lo : lo + _SLICE] = part
        rest = rest[~done]
    if len(rest):  # epoch seconds / milliseconds / ...
        sub = text.take(pa.array(rest))
        numeric = _np(pc.match_substring_regex(sub, _FLOAT_RE))
        if numeric.any():
            nums = pc.cast(_where(numeric, sub), pa.float64()).to_numpy(zero_copy_only=False)
            rows = rest[numeric]
            micros[rows], valid[rows] = _epoch_micros(nums[numeric])
            rest = rest[~numeric]
    if len(rest):  # other ISO 8601 forms (no seconds, hour-only offsets, ...), value by value
        parsed = pd.to_datetime(
            pd.Series(text.take(pa.array(rest)).to_pylist(), dtype=object),
            format="ISO8601",
            utc=True,
            errors="coerce",
        )
        ok = parsed.notna().to_numpy()
        micros[rest[ok]] = parsed[ok].astype("datetime64[us, UTC]").astype("int64").to_numpy()
        valid[rest[ok]] = True
    values = pa.array(micros, pa.int64(), mask=~valid).cast(TS)
    return _result(values, missing, "timestamp")


def _epoch_micros(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers (unit by magnitude) -> int64 microseconds, and which were representable."""
    a = np.abs(v)
    factor = np.select([a < lim for lim, _ in _EPOCH_UNITS], [f for _, f in _EPOCH_UNITS])
    with np.errstate(invalid="ignore", over="ignore"):
        us = np.round(v * factor)
        ok = np.isfinite(us) & (np.abs(us) < 2**62)
    return np.where(ok, us, 0).astype(np.int64), ok


def _finite(values: pa.Array) -> pa.Array:
    arr = values.to_numpy(zero_copy_only=False)
    return pa.array(arr, pa.float64(), mask=~np.isfinite(arr))


def _int_from_float(values: pa.Array) -> pa.Array:
    arr = values.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & (np.floor(arr) == arr) & (np.abs(arr) < 2**63)
    return pa.array(np.where(ok, arr, 0).astype(np.int64), pa.int64(), mask=~ok)


def _coerce_native(arr: pa.Array, kind: Kind, column: str) -> Coerced:
    """Typed input (parquet, JSON): convert without a detour through text where possible."""
    t = arr.type
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        arr = arr.cast(pa.float64())
        nan = _np(pc.is_nan(arr))
        arr = _where(~nan, arr)
    missing = _np(pc.is_null(arr))
    n = len(arr)
    if kind == "string":
        if pa.types.is_floating(arr.type):
            whole = _int_from_float(arr)  # 12346.0 -> "12346"
            text = pc.if_else(
                pc.is_null(whole), pc.cast(arr, pa.string()), pc.cast(whole, pa.string())
            )
        else:
            text = to_text(arr)
        return _string_from_text(_trim(text), column)
    if kind == "timestamp":
        if pa.types.is_timestamp(t):
            values = arr if t.tz else pc.assume_timezone(arr, "UTC")
            return _result(values.cast(TS, safe=False), missing, kind)
        if pa.types.is_date(t):
            return _result(arr.cast(pa.timestamp("us")).cast(TS), missing, kind)
        if numeric:
            nums = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
            if pa.types.is_integer(t):
                nums = arr.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
            m, ok = _epoch_micros(np.nan_to_num(nums))
            return _result(pa.array(m, pa.int64(), mask=~ok | missing).cast(TS), missing, kind)
    elif kind == "int":
        if pa.types.is_integer(t):
            return _result(arr.cast(pa.int64(), safe=False), missing, kind)
        if pa.types.is_floating(arr.type):
            return _result(_int_from_float(arr), missing, kind)
    elif kind == "float":
        if numeric:
            return _result(_finite(arr.cast(pa.float64())), missing, kind)
    elif kind == "bool":
        if pa.types.is_boolean(t):
            return _result(arr, missing, kind)
        if numeric:
            f = arr.cast(pa.float64())
            values = pc.if_else(
                pc.equal(f, 1.0),
                True,
                pc.if_else(pc.equal(f, 0.0), False, pa.scalar(None, pa.bool_())),
            )
            return _result(values, missing, kind)
    # Anything else (a bool where a number belongs, a nested value): given but unreadable.
    return Coerced(pa.nulls(n, ARROW_TYPES[kind]), missing, ~missing)
