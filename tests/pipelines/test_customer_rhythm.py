"""customer_rhythm recomputed naively (plain loops over the raw rows) on the hand-made oracle shop,
whose orders are cancelled when placed or later, refunded (with and without a refund time, some
twice) and re-sent naming another customer. Every day of every customer, from the shop's start to
well after its last order (so 180-day windows empty again); an incremental run from a later day
equals the historical rows."""

from __future__ import annotations

import math
from datetime import timedelta

import pandas as pd
import pytest

from pipelines.contract import PANDAS_DTYPES, TABLES
from pipelines.families import customer_rhythm
from pipelines.run import compute_rows
from pipelines.windows import Snapshots, to_day
from tests.pipelines.test_customer_collections import exists
from tests.support import oracle, oracle_shop

UTC = "UTC"
START, END = "2024-10-01", "2025-06-15"
FLOATS = (
    "mean_gap_days",
    "gap_std_days",
    "last_gap_days",
    "max_gap_days",
    "spend_180d",
    "spend_prev_90d",
    "orders_trend_30_90d",
    "spend_trend_30_90d",
    "orders_trend_quarter",
    "spend_trend_quarter",
)


def tables(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for spec in customer_rhythm.INPUTS:
        kinds = {c.name: c.kind for c in TABLES[spec.table].clean_columns()}
        df = frames[spec.table].reindex(columns=list(spec.columns))
        out[spec.table] = df.astype({c: PANDAS_DTYPES[kinds[c]] for c in spec.columns})
    return out


def naive(versions: dict[str, list[dict]], T: pd.Timestamp) -> dict:
    """Every feature at snapshot T from a customer's orders (order id -> versions, oldest first)."""
    placed = sorted(
        vs[0]["order_ts"]
        for vs in versions.values()
        if vs[0]["status"] != "cancelled" and vs[0]["order_ts"] < T
    )
    gaps = [(b - a) / timedelta(days=1) for a, b in zip(placed, placed[1:], strict=False)]
    mean = sum(gaps) / len(gaps) if gaps else None
    out = {
        "first_order_ts": placed[0] if placed else None,
        "repeat_orders": max(len(placed) - 1, 0),
        "mean_gap_days": mean,
        "gap_std_days": (
            math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) if len(gaps) >= 2 else None
        ),
        "last_gap_days": gaps[-1] if gaps else None,
        "max_gap_days": max(gaps) if gaps else None,
    }
    orders, spend = {}, {}
    for lo, hi in ((0, 30), (0, 90), (0, 180), (90, 180)):
        n, s = 0, 0.0
        for vs in versions.values():
            if not (T - timedelta(days=hi) <= vs[0]["order_ts"] < T - timedelta(days=lo)):
                continue
            in_force = [vs[0]] + [v for v in vs[1:] if v["updated_at"] < T]
            if in_force[-1]["status"] == "cancelled":
                continue
            known = [v for v in in_force if v["refund_ts"] is None or v["refund_ts"] < T]
            n += 1
            s += in_force[-1]["total_amount"] - (
                (known[-1]["refunded_amount"] or 0.0) if known else 0.0
            )
        orders[(lo, hi)], spend[(lo, hi)] = n, s

    def ratio(a, b):
        return a / b if b > 0 else None

    last, prev = (0, 90), (90, 180)
    out |= {
        "orders_180d": orders[(0, 180)],
        "spend_180d": spend[(0, 180)],
        "orders_prev_90d": orders[prev],
        "spend_prev_90d": spend[prev],
        "orders_trend_30_90d": ratio(3 * orders[(0, 30)], orders[last]),
        "spend_trend_30_90d": ratio(3 * spend[(0, 30)], spend[last]),
        "orders_trend_quarter": ratio(orders[last] - orders[prev], orders[(0, 180)]),
        "spend_trend_quarter": ratio(spend[last] - spend[prev], spend[(0, 180)]),
    }
    return out


def _rows(frames):
    snaps = Snapshots(to_day(pd.Timestamp(START, tz=UTC)), to_day(pd.Timestamp(END, tz=UTC)), True)
    return compute_rows(customer_rhythm, tables(frames), snaps)


def test_customer_rhythm_matches_a_naive_recomputation():
    frames = oracle_shop.build(seed=4)
    raw = oracle.RawShop(**frames)
    served = oracle.by_entity(_rows(frames), "customer_id")
    first = raw.first_versions()  # an order is its first version's customer's
    all_versions = oracle._versions(raw.orders.to_dict("records"))  # noqa: SLF001
    all_versions = {
        k: [{kk: oracle._none_if_na(vv) for kk, vv in v.items()} for v in vs]  # noqa: SLF001
        for k, vs in all_versions.items()
    }
    checked = repeat = prev = 0
    for customer in raw.customers["customer_id"].unique():
        mine = set(first.loc[first["customer_id"] == customer, "order_id"])
        versions = {k: vs for k, vs in all_versions.items() if k in mine}
        for T in pd.date_range(START, END, tz=UTC):  # every day: a window's edges are days
            actual = oracle.lookup(served, customer, T)
            if not exists(raw, customer, T):
                assert actual is None, (customer, T)
                continue
            expected = naive(versions, T)
            for name, want in expected.items():
                got = actual[name]
                got = (
                    None
                    if got is None or got is pd.NaT or (isinstance(got, float) and math.isnan(got))
                    else got
                )
                if name in FLOATS and want is not None and got is not None:
                    assert got == pytest.approx(want, rel=1e-9, abs=1e-6), (customer, T, name)
                else:
                    assert got == want, (customer, T, name, got, want)
            checked += 1
            repeat += expected["repeat_orders"] >= 2
            prev += expected["orders_prev_90d"] > 0
    assert checked > 5000 and 0 < repeat < checked and 0 < prev < checked


def test_an_incremental_run_gives_the_historical_rows_from_its_start():
    """Orders are read whole (INPUTS has no lookback), so an incremental day sees every gap."""
    frames = oracle_shop.build(seed=4)
    t = tables(frames)
    historical = _rows(frames)
    cut = pd.Timestamp("2025-01-20", tz=UTC)
    later = Snapshots(to_day(cut), to_day(pd.Timestamp(END, tz=UTC)), False)
    before = historical[historical["event_timestamp"] < cut]
    prior = before.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    incremental = compute_rows(customer_rhythm, t, later, prior.reset_index(drop=True))
    expected = historical[historical["event_timestamp"] >= cut]
    keys = ["customer_id", "event_timestamp"]
    pd.testing.assert_frame_equal(
        incremental.drop(columns="created_timestamp", errors="ignore")
        .sort_values(keys)
        .reset_index(drop=True),
        expected.drop(columns="created_timestamp", errors="ignore")
        .sort_values(keys)
        .reset_index(drop=True),
    )


def test_a_shard_without_orders_gives_its_customers_empty_rhythms():
    """A shard of customers none of whom ordered (the Spark engine's shards can be so)."""
    frames = oracle_shop.build(seed=4)
    t = tables(frames)
    t["orders"] = t["orders"].iloc[:0]
    rows = _rows({**frames, "orders": frames["orders"].iloc[:0]})
    assert len(rows) and (rows["repeat_orders"] == 0).all() and rows["first_order_ts"].isna().all()
    assert (rows["orders_180d"] == 0).all() and rows["orders_trend_quarter"].isna().all()
