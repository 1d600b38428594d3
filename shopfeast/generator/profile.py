"""The customers change log: one row per profile version.

Versions come from what happens to a customer: loyalty upgrades when cumulative spend crosses a
threshold (and sometimes premium with gold), device switches, moves, and the decline's tell-tale
changes (e-mail opt-out, premium cancelled) before a customer churns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopfeast.generator.catalog import _strictly_increasing
from shopfeast.generator.config import Knobs, Span
from shopfeast.generator.customers import Customers

FIELDS = (
    "birth_year",
    "gender",
    "country",
    "location_type",
    "loyalty",
    "is_premium",
    "education",
    "device",
    "email_opt_in",
)


def change_log(
    customers: Customers, orders: pd.DataFrame, span: Span, knobs: Knobs, rng: np.random.Generator
) -> pd.DataFrame:
    """Rows: customer, signup, day (= updated_at), one column per field, sorted by day."""
    f = customers.frame
    n, d = customers.n, span.days
    initial = (
        f[list(FIELDS)].astype(np.float64).assign(customer=np.arange(n), day=f["signup"], kind=0)
    )
    parts = [
        initial,
        *_loyalty(customers, orders, span, knobs, rng),
        _devices(customers, span, knobs, rng),
        _moves(customers, span, rng),
        *_decline_signs(customers, span, knobs, rng),
    ]
    log = pd.concat(parts, ignore_index=True)
    log = log[
        (log["kind"] == 0)
        | ((log["day"] > f["signup"].to_numpy()[log["customer"]]) & (log["day"] < d - 0.01))
    ]
    log = log.sort_values(["customer", "day", "kind"], kind="stable").reset_index(drop=True)
    log["day"] = _strictly_increasing(log["customer"].to_numpy(), log["day"].to_numpy())
    log = log[(log["kind"] == 0) | (log["day"] < d - 0.005)]
    filled = log.groupby("customer")[list(FIELDS)].ffill()
    out = filled.astype(np.int64).assign(
        customer=log["customer"].to_numpy(), day=log["day"].to_numpy()
    )
    out["signup"] = f["signup"].to_numpy()[out["customer"].to_numpy()]
    return out.sort_values(["day", "customer"], kind="stable").reset_index(drop=True)


def _change(customer: np.ndarray, day: np.ndarray, kind: int, **values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": customer,
            "day": day,
            "kind": kind,
            **{k: np.asarray(v, dtype=np.float64) for k, v in values.items()},
        }
    )


def _loyalty(
    customers: Customers, orders: pd.DataFrame, span: Span, knobs: Knobs, rng: np.random.Generator
) -> list[pd.DataFrame]:
    f = customers.frame
    o = orders[(orders["who"] >= 0) & (orders["status"] != 1)].sort_values(
        ["who", "t"], kind="stable"
    )
    who = o["who"].to_numpy()
    net = (o["total"] - o["refunded"]).to_numpy()
    cum = f["prior_spend"].to_numpy()[who] + pd.Series(net).groupby(who).cumsum().to_numpy()
    tier = np.searchsorted(np.asarray(knobs.loyalty_thresholds), cum, side="right")
    first = np.r_[True, who[1:] != who[:-1]][: len(who)]
    before = np.where(first, f["loyalty"].to_numpy()[who], np.r_[0, tier[:-1]][: len(who)])
    up = tier > before
    day = o["t"].to_numpy()[up] + 1.0 / 24
    upgrades = _change(who[up], day, 1, loyalty=tier[up])
    premium = up & (tier >= 2) & ~f["is_premium"].to_numpy()[who] & (rng.random(len(who)) < 0.3)
    joins = _change(
        who[premium], o["t"].to_numpy()[premium] + 1.0 / 24, 2, is_premium=np.ones(premium.sum())
    )
    return [upgrades, joins]


def _devices(
    customers: Customers, span: Span, knobs: Knobs, rng: np.random.Generator
) -> pd.DataFrame:
    f = customers.frame
    start = f["active_from"].to_numpy()
    k = rng.poisson(knobs.device_changes_per_year * np.clip(span.days - start, 0, None) / 365.0)
    who = np.repeat(np.arange(customers.n), k)
    day = rng.uniform(start[who], span.days)
    order = np.lexsort((day, who))
    who, day = who[order], day[order]
    step = pd.Series(rng.integers(1, 3, len(who))).groupby(who).cumsum().to_numpy()
    return _change(who, day, 3, device=(f["device"].to_numpy()[who] + step) % 3)


def _moves(customers: Customers, span: Span, rng: np.random.Generator) -> pd.DataFrame:
    f = customers.frame
    who = np.flatnonzero(rng.random(customers.n) < 0.03)
    day = rng.uniform(f["active_from"].to_numpy()[who], span.days + 1.0)
    new = (f["location_type"].to_numpy()[who] + rng.integers(1, 3, len(who))) % 3
    return _change(who, day, 4, location_type=new)


def _decline_signs(
    customers: Customers, span: Span, knobs: Knobs, rng: np.random.Generator
) -> list[pd.DataFrame]:
    f = customers.frame
    ds, cd = f["decline_start"].to_numpy(), f["churn_day"].to_numpy()
    declining = np.isfinite(ds) & (ds < span.days)
    opt_out = np.flatnonzero(
        declining
        & f["email_opt_in"].to_numpy()
        & (rng.random(customers.n) < knobs.decline_email_opt_out)
    )
    premium_off = np.flatnonzero(
        declining
        & f["is_premium"].to_numpy()
        & (rng.random(customers.n) < knobs.decline_premium_cancel)
    )
    return [
        _change(
            opt_out,
            rng.uniform(ds[opt_out], cd[opt_out] + 14),
            5,
            email_opt_in=np.zeros(len(opt_out)),
        ),
        _change(
            premium_off,
            rng.uniform(ds[premium_off], cd[premium_off]),
            6,
            is_premium=np.zeros(len(premium_off)),
        ),
    ]
