"""Churn labels against a from-scratch, row-by-row recomputation of the contract's definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.labels import churn_labels, cutoffs, data_end, labels_at

H = pd.Timedelta(days=90)


def _shop(seed: int = 0, customers: int = 60, orders: int = 600) -> tuple[pd.DataFrame, ...]:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    cust = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(customers)],
            "signup_ts": start + pd.to_timedelta(rng.integers(0, 200, customers), unit="D"),
        }
    )
    idx = rng.integers(0, customers, orders)
    ts = cust["signup_ts"].iloc[idx].reset_index(drop=True) + pd.to_timedelta(
        rng.integers(0, 300 * 24 * 3600, orders), unit="s"
    )
    o = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(orders)],
            "customer_id": cust["customer_id"].to_numpy()[idx],
            "order_ts": ts,
            "status": rng.choice(
                ["completed", "cancelled", "refunded"], orders, p=[0.8, 0.15, 0.05]
            ),
        }
    )
    o.loc[rng.choice(orders, 10, replace=False), "customer_id"] = None  # guests
    # Orders exactly on a cutoff and exactly at the horizon's end: the boundaries.
    o.loc[0, ["customer_id", "order_ts", "status"]] = [
        "c1",
        pd.Timestamp("2025-06-01", tz="UTC"),
        "completed",
    ]
    o.loc[1, ["customer_id", "order_ts", "status"]] = [
        "c2",
        pd.Timestamp("2025-08-30", tz="UTC"),
        "completed",
    ]
    return o, cust


def _oracle(orders: pd.DataFrame, customers: pd.DataFrame, t: pd.Timestamp) -> dict[str, int]:
    """The contract read literally, one customer at a time."""
    out = {}
    rows = list(orders.itertuples())
    for cid, signup in customers.groupby("customer_id")["signup_ts"].min().items():
        mine = [r for r in rows if r.customer_id == cid and r.status != "cancelled"]
        if not signup < t or not any(r.order_ts < t for r in mine):
            continue
        out[cid] = int(not any(t <= r.order_ts < t + H for r in mine))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_match_recomputation(seed: int) -> None:
    orders, customers = _shop(seed)
    end = data_end(orders)
    at = cutoffs(orders, H)
    assert at, "expected some labellable cutoffs"
    labels = churn_labels(orders, customers, at, H, end)
    for t in at:
        got = labels[labels["event_timestamp"] == t].set_index("customer_id")["churned"].to_dict()
        assert got == _oracle(orders, customers, t)
    assert labels["churned"].between(0, 1).all() and labels["churned"].nunique() == 2


def test_horizon_past_end_of_data_is_not_labelled() -> None:
    orders, customers = _shop()
    end = data_end(orders)
    late = end - H + pd.Timedelta(days=1)
    ok = end - H
    labels = churn_labels(orders, customers, [ok, late], H, end)
    assert set(labels["event_timestamp"]) == {ok}
    assert all(t + H <= end for t in cutoffs(orders, H))


def test_order_on_the_cutoff_counts_as_coming_back_and_at_horizon_end_does_not() -> None:
    start = pd.Timestamp("2025-01-01", tz="UTC")
    t = pd.Timestamp("2025-03-01", tz="UTC")
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "signup_ts": [start] * 4})
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "c", "c", "d", "z"],
            "order_ts": [start, t, start, t + H, start, t + pd.Timedelta(days=1), t, start],
            "status": [
                "completed",
                "completed",
                "completed",
                "completed",
                "completed",
                "cancelled",
                "completed",
                "completed",
            ],
        }
    )
    got = churn_labels(orders, customers, [t], H, t + H + pd.Timedelta(days=1))
    assert got.set_index("customer_id")["churned"].to_dict() == {"a": 0, "b": 1, "c": 1}


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_at_any_instant_match_recomputation(seed: int) -> None:
    """Predictions are served at any time, not at cutoffs: each (customer, t) row gets the
    contract's label at its own t; rows that cannot be labelled (no order before t, unknown
    customer, horizon past the data) are left out; duplicates and order are kept."""
    orders, customers = _shop(seed)
    end = data_end(orders)
    rng = np.random.default_rng(seed)
    start = orders["order_ts"].min()
    span = (end - start).total_seconds()
    n = 400
    rows = pd.DataFrame(
        {
            "customer_id": rng.choice([*customers["customer_id"], "nobody"], n),
            "event_timestamp": start + pd.to_timedelta(rng.uniform(0, span, n), unit="s"),
        }
    )
    rows = pd.concat([rows, rows.iloc[:5]], ignore_index=True)  # a customer served twice
    got = labels_at(orders, customers, rows, H, end)
    signup = customers.groupby("customer_id")["signup_ts"].min().to_dict()
    expected = []
    for r in rows.itertuples():  # the contract read literally, one row at a time
        t = r.event_timestamp
        mine = [
            o.order_ts
            for o in orders.itertuples()
            if o.customer_id == r.customer_id and o.status != "cancelled"
        ]
        if t + H > end or not signup.get(r.customer_id, t) < t or not any(x < t for x in mine):
            continue
        expected.append((r.customer_id, t, int(not any(t <= x < t + H for x in mine))))
    assert len(expected) > 50 and {e[2] for e in expected} == {0, 1}
    assert list(zip(got["customer_id"], got["event_timestamp"], got["churned"], strict=True)) == (
        expected
    )


def test_labels_at_cutoffs_equal_the_training_labels() -> None:
    orders, customers = _shop(2)
    end = data_end(orders)
    labels = churn_labels(orders, customers, cutoffs(orders, H), H, end)
    got = labels_at(orders, customers, labels[["customer_id", "event_timestamp"]], H, end)
    assert got["churned"].tolist() == labels["churned"].tolist()
