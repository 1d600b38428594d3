"""pipelines.realtime.compute against a brute-force recomputation: per (entity, instant), the
events filtered by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.realtime import SOURCES, as_of, compute
from tests.support.realtime_events import random_events as _events

HOUR = pd.Timedelta(hours=1)
SIX = pd.Timedelta(hours=6)


def _recent(rows: pd.DataFrame, kind: str) -> list[str]:
    out: list[str] = []
    for p in reversed(rows.loc[rows["event_type"] == kind, "product_id"].tolist()):
        if p not in out:
            out.append(p)
    return out[:20]


def _by_hand_customer(ev: pd.DataFrame) -> list[tuple]:
    out = []
    ev = ev[ev["customer_id"].notna()].sort_values(["customer_id", "event_ts", "event_id"])
    for c, g in ev.groupby("customer_id"):
        for t in g["event_ts"].unique():
            upto = g[g["event_ts"] <= t]
            current = upto.iloc[-1]["session_id"]
            w6, w1 = upto[upto["event_ts"] > t - SIX], upto[upto["event_ts"] > t - HOUR]
            s = w6[w6["session_id"] == current]
            out.append(
                (
                    c,
                    t,
                    current,
                    len(s),
                    int((s.event_type == "product_view").sum()),
                    int((s.event_type == "add_to_cart").sum()),
                    len(w1),
                    int((w1.event_type == "product_view").sum()),
                    int((w1.event_type == "add_to_cart").sum()),
                    t.floor("s"),
                    tuple(_recent(w6, "product_view")),
                    tuple(_recent(w6, "add_to_cart")),
                )
            )
    return out


def _by_hand_product(ev: pd.DataFrame) -> list[tuple]:
    out = []
    ev = ev[
        ev["product_id"].notna()
        & ev["event_type"].isin(["product_view", "add_to_cart", "purchase"])
    ]
    ev = ev.sort_values(["product_id", "event_ts"])
    for p, g in ev.groupby("product_id"):
        for t in g["event_ts"].unique():
            w1 = g[(g["event_ts"] <= t) & (g["event_ts"] > t - HOUR)]
            out.append(
                (
                    p,
                    t,
                    *(
                        int((w1.event_type == k).sum())
                        for k in ("product_view", "add_to_cart", "purchase")
                    ),
                    t.floor("s"),
                )
            )
    return out


def _tuples(frame: pd.DataFrame, name: str) -> list[tuple]:
    source = SOURCES[name]
    cols = [source.join_key, "event_timestamp", *source.feature_names]
    out = []
    for row in frame[cols].itertuples(index=False):
        out.append(tuple(tuple(v) if isinstance(v, list) else v for v in row))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_every_row_equals_a_recomputation_by_hand(seed):
    ev = _events(seed)
    assert _tuples(compute("customer_session", ev), "customer_session") == _by_hand_customer(ev)
    assert _tuples(compute("product_realtime", ev), "product_realtime") == _by_hand_product(ev)


def test_latest_only_is_the_last_row_and_order_does_not_matter():
    ev = _events(3)
    shuffled = ev.sample(frac=1.0, random_state=0)
    for name, source in SOURCES.items():
        every = compute(name, ev)
        latest = compute(name, shuffled, latest_only=True)
        want = every.groupby(source.join_key, sort=True).tail(1).reset_index(drop=True)
        assert _tuples(latest, name) == _tuples(want, name)
        # as_of at the end is the same rows
        end = as_of(every, source.join_key, ev["event_ts"].max())
        assert _tuples(end.reset_index(drop=True), name) == _tuples(want, name)


def test_nothing_to_compute_gives_the_declared_columns():
    ev = _events(1).iloc[:0]
    for name, source in SOURCES.items():
        assert list(compute(name, ev).columns) == [
            source.join_key,
            "event_timestamp",
            *source.feature_names,
        ]
