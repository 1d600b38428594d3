"""Skew's column comparison (`skew.differ`) against mismatches worked out by hand, and against the
value-by-value rule (`skew.same`) on random columns of every kind it meets, nulls mixed in."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring import skew

T = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

# (online column, offline column, rows that differ), worked out by hand
CASES = {
    "floats": (
        [1.0, None, 2.0, float("nan"), 3.0, 1e-13, 5, 7.0, float("inf"), 1e20],
        [1.0 + 1e-12, float("nan"), None, None, 3.5, 0.0, 5.0, 7.000001, float("inf"), 1e20 + 1e5],
        [2, 4, 7],  # 1e-12 relative is close, NaN is null, 1e-13 is within 1e-12 absolute
    ),
    "strings": (
        ["a", None, "b", "c", float("nan"), "d"],
        ["a", float("nan"), "B", None, None, "d "],
        [2, 3, 5],
    ),
    "times": (
        [T, None, T + timedelta(microseconds=900_000), T, pd.Timestamp(T) + pd.Timedelta(1)],
        [pd.Timestamp(T), pd.NaT, pd.Timestamp(T), pd.NaT, pd.Timestamp(T)],
        [3],  # whole seconds: 0.9 s later is the same second, 1 ns too
    ),
    "naive times are UTC": (
        [T, T],
        [pd.Timestamp("2025-06-01 12:00:00"), pd.Timestamp("2025-06-01 12:00:01")],
        [1],
    ),
    "string lists": (
        [["p1", "p2"], None, [], ["p1"], ["p1", "p2"], ["x", None], None],
        [
            np.array(["p1", "p2"], dtype=object),
            None,
            None,
            ["p1", "p2"],
            ["p2", "p1"],
            np.array(["x", None], dtype=object),
            [],
        ],  # fmt: skip
        [2, 3, 4, 6],  # an empty list is not a null one; order matters
    ),
    "float lists": (
        [[1.0, 2.0], [1.0, float("nan")], [0.5]],
        [np.array([1.0, 2.0 + 1e-8]), np.array([1.0, np.nan]), np.array([0.25])],
        [0, 2],  # 1e-8 on 2.0 is 5e-9 relative: beyond 1e-9
    ),
    "bool next to numbers goes value by value": (
        [True, False, True, None],
        [1.0, 0.0, 0.0, None],
        [2],
    ),
    "all null": ([None, None], [float("nan"), None], []),
    "numbers as strings are not numbers": (["1", "2.0"], [1.0, 2.0], [0, 1]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_differ_finds_the_rows_worked_out_by_hand(case: str) -> None:
    online, offline, expected = CASES[case]
    assert np.flatnonzero(skew.differ(online, offline)).tolist() == expected
    assert [
        i for i, (a, b) in enumerate(zip(online, offline, strict=True)) if not skew.same(a, b)
    ] == expected


def _value(kind: str, rng: random.Random):
    r = rng.random()
    if r < 0.1:
        return rng.choice([None, float("nan"), pd.NaT] if kind == "time" else [None, float("nan")])
    if kind == "float":
        return rng.choice([0.0, 1.0, -2.5, 1e-13, 3.0000000001, 7, 1e300, float("inf")])
    if kind == "string":
        return rng.choice(["a", "b", "", "ab"])
    if kind == "time":
        t = T + timedelta(seconds=rng.choice([0, 1, 59]), microseconds=rng.choice([0, 1, 999_999]))
        return t if rng.random() < 0.5 else pd.Timestamp(t)
    items = [_value(kind.split("_")[0], rng) for _ in range(rng.randint(0, 3))]
    return np.array(items, dtype=object) if rng.random() < 0.5 else items


@pytest.mark.parametrize("kind", ["float", "string", "time", "float_list", "string_list"])
def test_differ_equals_the_value_by_value_rule_on_random_columns(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(30):
        n = rng.randint(0, 60)
        online = [_value(kind, rng) for _ in range(n)]
        # offline: mostly the same values (re-typed as the offline frame holds them), some not
        offline = [_value(kind, rng) if rng.random() < 0.3 else _as_offline(v) for v in online]
        expected = [not skew.same(a, b) for a, b in zip(online, offline, strict=True)]
        assert skew.differ(online, offline).tolist() == expected
        assert sum(expected) == sum(
            not _same_by_hand(a, b) for a, b in zip(online, offline, strict=True)
        )


def _as_offline(v):
    if isinstance(v, list):
        return np.array(v, dtype=object)
    if isinstance(v, datetime) and not isinstance(v, pd.Timestamp):
        return pd.Timestamp(v)
    if isinstance(v, float) and abs(v) < 1e15 and v == int(v):
        return int(v)
    return v


def _same_by_hand(a, b) -> bool:
    """The rule as the docstring states it, written apart from the code."""

    def null(v):
        return v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v))

    if null(a) or null(b):
        return null(a) and null(b)
    if isinstance(a, (list, np.ndarray)):
        a, b = list(a), list(b)
        return len(a) == len(b) and all(_same_by_hand(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return math.floor(pd.Timestamp(a).value / 1e9) == math.floor(pd.Timestamp(b).value / 1e9)
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
