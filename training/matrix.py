"""From a frame of feature values (what Feast returns, offline or online) to a model's input matrix.

Training (`model_matrix`, a DataFrame) and serving (`to_matrix`, columns of one request) build the
same numbers from the input columns stored on the model card, so the columns, their order and their
types cannot drift apart between the two. `model_matrix` converts column by column through pandas,
about 50 us per column: fine for a training set, most of a request's budget for 80 columns, so
`to_matrix` converts a column of plain numbers in one numpy call and only odd columns per value.
Which columns a model
may use is decided from the feature service's result, never from a hand-written list: numbers and
flags are used as they are; timestamps (their ages come from on-demand views), arrays and ids are
not model inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes


def usable_columns(
    frame: pd.DataFrame, exclude: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Numeric and boolean columns, in the frame's order, minus the excluded ones (keys, labels)."""
    keep = []
    for name in frame.columns:
        if name in exclude:
            continue
        s = frame[name]
        numeric = ptypes.is_numeric_dtype(s) and not ptypes.is_datetime64_any_dtype(s)
        if ptypes.is_bool_dtype(s) or numeric or (s.dtype == object and _all_scalar_numbers(s)):
            keep.append(name)
    return keep


def model_matrix(
    frame: pd.DataFrame, columns: list[str], dtype=np.float64, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """Float matrix (`dtype`) in exactly `columns` order; missing columns and values become NaN.

    Filled column by column into one column-major array that becomes the frame's single block
    without a copy (a frame from a dict of columns stacks them: a second copy of 300,000 x 52).
    `rows`, a boolean mask over the frame's rows: the matrix of those rows only, numbered from 0,
    what `model_matrix(frame[rows].reset_index(drop=True), ...)` gives without that copy of the
    whole selection (one column's selection at a time)."""
    n = len(frame) if rows is None else int(np.count_nonzero(rows))
    out = np.empty((n, len(columns)), dtype=dtype, order="F")
    for j, name in enumerate(columns):
        if name not in frame.columns:
            out[:, j] = np.nan
            continue
        column = frame[name]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
            values = column.to_numpy(dtype=dtype)  # the same numbers, no object pass
            out[:, j] = values if rows is None else values[rows]
        else:
            if rows is not None:
                column = column[rows]
            out[:, j] = pd.to_numeric(column.astype("object"), errors="coerce").astype(float)
    index = frame.index if rows is None else pd.RangeIndex(n)
    return pd.DataFrame(out, index=index, columns=columns, copy=False)


def _all_scalar_numbers(s: pd.Series) -> bool:
    """An object column of plain numbers and None (how some stores hand back nullable ints)."""
    sample = s.dropna().head(50)
    return len(sample) > 0 and all(
        isinstance(v, (int, float, np.number, bool, np.bool_)) for v in sample
    )


def to_matrix(columns: Mapping[str, Sequence[Any]], names: Sequence[str], n: int) -> np.ndarray:
    nan_column = [math.nan] * n
    try:  # every column plain numbers, flags or None: one numpy call for the whole matrix
        return np.array([columns.get(name, nan_column) for name in names], dtype=float).T
    except (TypeError, ValueError):
        pass
    X = np.full((n, len(names)), np.nan)
    for j, name in enumerate(names):
        col = columns.get(name)
        if col is None:
            continue
        try:
            X[:, j] = np.asarray(col, dtype=float)
        except (TypeError, ValueError):
            X[:, j] = [_number(v) for v in col]
    return X


def _number(v: Any) -> float:
    """One value as `pd.to_numeric(errors="coerce")` would read it; NaN when it is no number."""
    if v is None or isinstance(v, (list, tuple, dict, np.ndarray)):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
