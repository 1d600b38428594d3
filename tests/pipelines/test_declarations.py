"""Declarations are checked when read: a bad one stops with one line naming file, entry and field;
filters are a checked language (never Python's eval) with SQL's nulls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import declarations, predicate
from pipelines.declarations import DeclarationError
from pipelines.specs import Drift, drift_policy

GOOD = """views:
  - name: customer_extra
    entity: customer
    source: orders
    filter: status != 'cancelled'
    description: Extra order features.
    owner: growth@shopfeast
    features:
      - name: discounted_orders_14d
        function: count
        filter: discount_amount > 0
        window: 14d
        description: Discounted orders in the last 14 days.
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "aggregations.yaml").write_text(text)
    return tmp_path


def test_a_good_declaration_becomes_a_feature_source(tmp_path):
    (view,) = declarations.load(_write(tmp_path, GOOD))
    source = view.feature_source()
    assert source.name == "customer_extra" and source.join_keys == ("customer_id",)
    (f,) = source.features
    assert (f.name, f.dtype, f.window, f.fill, f.owner) == (
        "discounted_orders_14d",
        "int64",
        "14d",
        0,
        "growth@shopfeast",
    )
    assert f.window_days == 14
    assert "count(*) over orders, 14d" in f.definition
    assert ("origin", "declared") in source.tags


@pytest.mark.parametrize(
    "old, new, line, words",
    [
        (
            "filter: discount_amount > 0",
            "filter: discont_amount > 0",
            9,
            "unknown column 'discont_amount' in orders",
        ),
        ("function: count", "function: median", 9, "function: 'median' is not one of"),
        (
            "window: 14d",
            "window: fortnight",
            9,
            "window: 'fortnight' is not a whole number of days",
        ),
        (
            "filter: discount_amount > 0",
            "filter: discount_amount + 1",
            9,
            "filter: is not a boolean expression (it gives a number)",
        ),
        (
            "filter: status != 'cancelled'",
            "filter: status",
            9,
            "filter (the view's): is not a boolean expression (it gives a string)",
        ),
        (
            "filter: discount_amount > 0",
            "filter: __import__('os').system('true')",
            9,
            "filter: not allowed in a filter",
        ),
        (
            "function: count",
            "function: sum\n        column: status",
            9,
            "sum needs a number or bool column",
        ),
        ("entity: customer", "entity: shopper", 2, "entity: 'shopper' is not one of"),
        ("source: orders", "source: carts", 2, "source: 'carts' is not one of"),
        ("        window: 14d\n", "        windw: 14d\n", 9, "unknown field 'windw'"),
        (
            "        window: 14d\n",
            "        window: 14d\n        drift: {mode: items}\n",
            9,
            "drift: mode 'items' is not one of distribution, increment, skip",
        ),
        (
            "        window: 14d\n",
            "        window: 14d\n        drift: {mode: skip}\n",
            9,
            "drift: reason: a skipped feature needs a reason",
        ),
        (
            "        window: 14d\n",
            "        window: 14d\n        drift: {warn: 0.5, alert: 0.2}\n",
            9,
            "drift: warn 0.5 is above alert 0.2",
        ),
    ],
)
def test_a_bad_declaration_stops_with_one_line(tmp_path, old, new, line, words):
    assert old in GOOD
    repo = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(DeclarationError) as err:
        declarations.load(repo)
    message = str(err.value)
    assert "\n" not in message
    head = f"{repo.name}/aggregations.yaml:{line}: view customer_extra"
    assert message.startswith(head), message
    if line == 9:
        assert "feature discounted_orders_14d" in message, message
    assert words in message, message


def test_a_drift_policy_is_declared_next_to_the_feature(tmp_path):
    """The monitor's policy (pipelines.specs.Drift), as families declare it; else the default."""
    text = GOOD.replace(
        "        window: 14d\n",
        "        window: 14d\n        drift: {mode: increment, warn: 0.2, alert: 0.4}\n",
    )
    (view,) = declarations.load(_write(tmp_path, text))
    (f,) = view.feature_source().features
    assert drift_policy(f) == Drift("increment", 0.2, 0.4)
    (plain,) = declarations.load(_write(tmp_path, GOOD))[0].feature_source().features
    assert plain.drift is None and drift_policy(plain) == Drift()


def test_names_cannot_shadow_a_family_feature(tmp_path):
    repo = _write(tmp_path, GOOD.replace("discounted_orders_14d", "orders_30d"))
    with pytest.raises(DeclarationError, match="'orders_30d' is already a feature of"):
        declarations.load(
            repo, reserved={"orders_30d": "a feature of the customer_activity family"}
        )


def test_filters_follow_sql_nulls_and_need_no_eval():
    frame = pd.DataFrame(
        {
            "discount_amount": [0.0, 2.5, np.nan, 3.0],
            "status": pd.array(["completed", "cancelled", None, "refunded"], dtype="string"),
            "quantity": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )
    kinds = {"discount_amount": "number", "status": "string", "quantity": "number"}

    def mask(text: str) -> list[bool]:
        return predicate.parse(text, kinds, "t").mask(frame).tolist()

    assert mask("discount_amount > 0") == [False, True, False, True]
    assert mask("not (discount_amount > 0)") == [True, False, False, False]  # null stays unknown
    assert mask("discount_amount is None") == [False, False, True, False]
    assert mask("status in ['completed', 'refunded']") == [True, False, False, True]
    assert mask("not (status in ['completed'])") == [False, True, False, True]
    assert mask("quantity * 2 >= 6 or status == 'cancelled'") == [False, True, True, True]
    assert mask("1 < quantity <= 3") == [False, False, True, False]
    for bad in ("status.upper() == 'X'", "quantity ** 2 > 1", "[q for q in quantity]", "x > 1"):
        with pytest.raises(predicate.PredicateError):
            predicate.parse(bad, kinds, "t")
