"""No training row carries information from after its timestamp.

Take a customer's order that lies after an entity timestamp t, move it to one second after t in the
raw data, rebuild everything (ingest, features, apply) and read the row (customer, t) again through
both model services (churn_model_v2 holds every customer feature, the buying rhythm too):
every feature must be unchanged. As a control, moving the same order to before
t must change the row (so the comparison can fail).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurestore.store import open_store
from pipelines.storage import read_clean
from tests.support.training_shop import SMALL, build, generate_raw, shift_order, small_store
from training import store

pytestmark = pytest.mark.slow  # three small stores built end to end


def _rows(data, customer: str, product: str, t: pd.Timestamp) -> dict[str, pd.Series]:
    fs = open_store("embedded", data)
    out = {}
    for service in ("churn_model_v2", "ranking_model_v1"):
        entity = pd.DataFrame(
            {"customer_id": [customer], "product_id": [product], "event_timestamp": [t]}
        )
        if service == "churn_model_v2":
            entity = entity.drop(columns="product_id")
        out[service] = store.historical(fs, entity, service).iloc[0]
    return out


def _same(a, b) -> bool:
    """Equal values, nulls equal to nulls, lists compared item by item."""
    listy = (list, tuple, np.ndarray)
    if isinstance(a, listy) or isinstance(b, listy):
        return isinstance(a, listy) and isinstance(b, listy) and list(a) == list(b)
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def _diff(before: dict, after: dict) -> list[str]:
    return [
        f"{svc}:{col} {before[svc][col]!r} -> {after[svc][col]!r}"
        for svc in before
        for col in before[svc].index
        if not _same(before[svc][col], after[svc][col])
    ]


def _pick(data) -> tuple[str, str, str, pd.Timestamp]:
    """A customer with an order o1, then an order o2 at least 20 days later; t mid-day between."""
    orders = read_clean(data, "orders", ["order_id", "customer_id", "order_ts", "status"])
    items = read_clean(data, "order_items", ["order_id", "product_id"])
    live = orders[(orders["status"] != "cancelled") & orders["customer_id"].notna()]
    live = live.sort_values("order_ts")
    for cid, g in live.groupby("customer_id"):
        ts = g["order_ts"].tolist()
        for i in range(len(ts) - 1):
            if ts[i + 1] - ts[i] > pd.Timedelta(days=20) and ts[i] > live[
                "order_ts"
            ].min() + pd.Timedelta(days=10):
                t = (ts[i] + pd.Timedelta(days=5)).floor("D") + pd.Timedelta(hours=13, minutes=7)
                o2 = g["order_id"].iloc[i + 1]
                product = items.loc[items["order_id"] == o2, "product_id"].iloc[0]
                return str(cid), str(o2), str(product), t
    raise AssertionError("no customer with a 20-day gap between orders")


def test_an_order_just_after_t_changes_nothing_at_t(tmp_path_factory) -> None:
    base = small_store(tmp_path_factory.mktemp)
    customer, order, product, t = _pick(base)
    before = _rows(base, customer, product, t)
    assert before["churn_model_v2"]["orders_90d"] >= 1

    root = tmp_path_factory.mktemp("shift_after")
    raw = generate_raw(root, **SMALL)
    shift_order(raw, order, t + pd.Timedelta(seconds=1))
    after = _rows(build(raw, root / "data"), customer, product, t)
    assert _diff(before, after) == []

    root = tmp_path_factory.mktemp("shift_before")
    raw = generate_raw(root, **SMALL)
    shift_order(raw, order, t - pd.Timedelta(days=2))
    control = _rows(build(raw, root / "data"), customer, product, t)
    changed = _diff(before, control)
    assert any(":orders_30d " in c for c in changed), changed
    assert control["churn_model_v2"]["orders_30d"] == before["churn_model_v2"]["orders_30d"] + 1
    # the rhythm sees it too: one more repeat order before t, a new last gap
    assert (
        control["churn_model_v2"]["repeat_orders"] == before["churn_model_v2"]["repeat_orders"] + 1
    )
    assert any(":last_gap_days " in c for c in changed), changed
