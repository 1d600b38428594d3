"""Row filters of declared aggregations: a small, safe boolean language over a table's columns.

A filter is written as a Python expression (`status != 'cancelled' and discount_amount > 0`) but
never run as Python: it is parsed with `ast`, every node is checked against a whitelist, each
column against the table's columns, and the types are inferred, so a typo, an unknown column or a
filter that is not a boolean is an error before any data is read. The checked tree is then
evaluated column-wise with pandas.

The language:
- column names of the table; literals: strings, numbers, True, False;
- comparisons `== != < <= > >=` (chains allowed), `in` / `not in` a list or tuple of literals,
  `is None` / `is not None`;
- `and`, `or`, `not`; arithmetic `+ - * /` and unary minus on numbers.

Nulls follow SQL: a comparison with a missing value is unknown, `not unknown` is unknown,
`unknown and False` is False, `unknown or True` is True; a row is kept only when the filter is
True. `is None` is the way to ask for missing values.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

Kind = str  # "bool", "number", "string", "timestamp"
# Contract column kinds (pipelines.contract) as the kinds of this language.
CONTRACT_KINDS: dict[str, Kind] = {
    "string": "string",
    "timestamp": "timestamp",
    "int": "number",
    "float": "number",
    "bool": "bool",
}

_COMPARE = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class PredicateError(ValueError):
    """A filter that cannot be used; the message is one line and names the problem."""


@dataclass(frozen=True)
class Predicate:
    """A checked boolean expression over some columns of a table."""

    text: str
    tree: ast.expr
    columns: tuple[str, ...]  # the columns it reads, in order of first use

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """True where the row passes (unknown counts as False)."""
        value = _eval(self.tree, frame.reset_index(drop=True))
        if not isinstance(value, pd.Series):  # a constant expression
            return np.full(len(frame), bool(value), dtype=bool)
        return value.astype("boolean").fillna(False).to_numpy(dtype=bool)


def parse(text: str, columns: Mapping[str, Kind], table: str) -> Predicate:
    """Parse and check `text` against `columns` (name -> kind); raises PredicateError."""
    if not isinstance(text, str) or not text.strip():
        raise PredicateError("must be a non-empty boolean expression")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise PredicateError(f"is not a valid expression ({exc.msg}): {text!r}") from None
    used: list[str] = []
    kind = _check(tree, columns, table, used)
    if kind != "bool":
        raise PredicateError(f"is not a boolean expression (it gives a {kind}): {text!r}")
    return Predicate(text.strip(), tree, tuple(dict.fromkeys(used)))


# --- checking -----------------------------------------------------------------------------------


def _check(node: ast.AST, columns: Mapping[str, Kind], table: str, used: list[str]) -> Kind:
    if isinstance(node, ast.Name):
        if node.id not in columns:
            known = ", ".join(sorted(columns))
            raise PredicateError(f"unknown column {node.id!r} in {table} (columns: {known})")
        used.append(node.id)
        return columns[node.id]
    if isinstance(node, ast.Constant):
        return _literal_kind(node.value)
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            if _check(v, columns, table, used) != "bool":
                raise PredicateError(f"'and'/'or' needs booleans on both sides: {_src(v)!r}")
        return "bool"
    if isinstance(node, ast.UnaryOp):
        kind = _check(node.operand, columns, table, used)
        if isinstance(node.op, ast.Not) and kind == "bool":
            return "bool"
        if isinstance(node.op, ast.USub) and kind == "number":
            return "number"
        raise PredicateError(f"operator not allowed on a {kind}: {_src(node)!r}")
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITH:
            raise PredicateError(f"operator not allowed: {_src(node)!r}")
        for side in (node.left, node.right):
            if _check(side, columns, table, used) != "number":
                raise PredicateError(f"arithmetic needs numbers: {_src(node)!r}")
        return "number"
    if isinstance(node, ast.Compare):
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            _check_comparison(left, op, right, columns, table, used)
            left = right
        return "bool"
    raise PredicateError(f"not allowed in a filter: {_src(node)!r}")


def _check_comparison(
    left: ast.expr,
    op: ast.cmpop,
    right: ast.expr,
    columns: Mapping[str, Kind],
    table: str,
    used: list[str],
) -> None:
    lk = _check(left, columns, table, used)
    if isinstance(left, ast.List | ast.Tuple | ast.Constant) and isinstance(
        op, ast.Is | ast.IsNot | ast.In | ast.NotIn
    ):
        raise PredicateError(f"'is' and 'in' need a column on the left: {_src(left)!r}")
    if isinstance(op, ast.Is | ast.IsNot):
        if not (isinstance(right, ast.Constant) and right.value is None):
            raise PredicateError(f"'is' only compares with None: {_src(right)!r}")
        return
    if isinstance(op, ast.In | ast.NotIn):
        if not isinstance(right, ast.List | ast.Tuple) or not all(
            isinstance(e, ast.Constant) for e in right.elts
        ):
            raise PredicateError(f"'in' needs a list of literals: {_src(right)!r}")
        for e in right.elts:
            if _literal_kind(e.value) != lk:
                raise PredicateError(f"cannot compare a {lk} with {e.value!r}")
        return
    if type(op) not in _COMPARE:
        raise PredicateError(f"operator not allowed: {_src(right)!r}")
    rk = _check(right, columns, table, used)
    if lk != rk:
        raise PredicateError(f"cannot compare a {lk} with a {rk}: {_src(left)} vs {_src(right)}")
    if lk == "bool" and type(op) not in (ast.Eq, ast.NotEq):
        raise PredicateError(f"booleans compare with == or != only: {_src(right)!r}")


def _literal_kind(value: object) -> Kind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        raise PredicateError("None is only allowed as 'column is None' / 'is not None'")
    raise PredicateError(f"literal not allowed: {value!r}")


def _src(node: ast.AST) -> str:
    return ast.unparse(node)


# --- evaluating ---------------------------------------------------------------------------------


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column with NA as its null (floats' NaN included), so logic follows SQL."""
    col = frame[name]
    if col.dtype == np.float64:
        return col.astype("Float64")
    if col.dtype == bool:
        return col.astype("boolean")
    return col


def _eval(node: ast.AST, frame: pd.DataFrame):
    if isinstance(node, ast.Name):
        return _column(frame, node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BoolOp):
        values = [_as_bool(_eval(v, frame), len(frame)) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = (out & v) if isinstance(node.op, ast.And) else (out | v)
        return out
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, frame)
        if isinstance(node.op, ast.Not):
            return ~_as_bool(v, len(frame))
        return -v
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, frame), _eval(node.right, frame)
        op = _ARITH[type(node.op)]
        if op == "/":
            return _divide(left, right)
        return {"+": left + right, "-": left - right, "*": left * right}[op]
    if isinstance(node, ast.Compare):
        out = None
        left = _eval(node.left, frame)
        for i, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
            part = _compare(left, op, right_node, frame)
            out = part if out is None else out & part
            if i + 1 < len(node.ops):  # a chain: the right side is the next left side
                left = _eval(right_node, frame)
        return out
    raise PredicateError(f"not allowed in a filter: {_src(node)!r}")  # unreachable once checked


def _compare(left, op: ast.cmpop, right_node: ast.expr, frame: pd.DataFrame):
    n = len(frame)
    if isinstance(op, ast.Is | ast.IsNot):
        missing = left.isna() if isinstance(left, pd.Series) else pd.Series([left is None] * n)
        missing = missing.astype("boolean").reset_index(drop=True)
        return ~missing if isinstance(op, ast.IsNot) else missing
    if isinstance(op, ast.In | ast.NotIn):
        values = [e.value for e in right_node.elts]
        if not isinstance(left, pd.Series):
            hit = pd.Series([left in values] * n, dtype="boolean")
        else:
            hit = left.isin(values).astype("boolean").mask(left.isna()).reset_index(drop=True)
        return ~hit if isinstance(op, ast.NotIn) else hit
    right = _eval(right_node, frame)
    sym = _COMPARE[type(op)]
    result = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[sym](left, right)
    result = _as_bool(result, n)
    for side in (left, right):  # NaT compares False in pandas; unknown here, as in SQL
        if isinstance(side, pd.Series):
            result = result.mask(side.isna().reset_index(drop=True))
    return result


def _divide(left, right):
    if isinstance(right, pd.Series):
        right = right.mask(right == 0)  # x / 0 is unknown, as in SQL
    elif right == 0:
        return pd.NA
    return left / right


def _as_bool(value, n: int) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.astype("boolean").reset_index(drop=True)
    if value is pd.NA:
        return pd.Series([pd.NA] * n, dtype="boolean")
    return pd.Series([bool(value)] * n, dtype="boolean")
