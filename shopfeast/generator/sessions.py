"""Sessions: when people visit (daily, weekly and yearly rhythm, sales) and how deep they go.

A customer's visits are drawn by thinning: candidate times at the customer's peak rate (on a
jittered grid, more regular than Poisson), each kept with probability (their churn/lull multiplier
x the day's traffic share). The hour comes from a device-specific hour-of-day profile. Each
session then gets its funnel depth: browse, view products, add to cart, start checkout, buy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopfeast.generator import vocab
from shopfeast.generator.config import Knobs, Span
from shopfeast.generator.customers import Customers

LAST_START = 0.1  # days before the end after which no session starts (sessions end inside the span)


@dataclass
class Calendar:
    """Per-day traffic multiplier and the sales on each day."""

    season: np.ndarray
    promo_rate: np.ndarray  # discount share on sale days, 0 otherwise
    promo_cat: np.ndarray  # category on sale, -1 for site-wide


def make_calendar(span: Span, category_weights: np.ndarray, rng: np.random.Generator) -> Calendar:
    d = span.days
    days = np.arange(d)
    doy = span.day_of_year(days)
    weekday = np.asarray(vocab.WEEKDAY_WEIGHTS)[span.weekday(days)]
    annual = (
        1.0
        + 0.35 * ((doy >= 323) & (doy < 355))
        - 0.1 * (doy < 20)
        - 0.08 * ((doy >= 182) & (doy < 243))
    )
    rate = np.zeros(d)
    cat = np.full(d, -1, dtype=np.int64)
    starts = np.flatnonzero(rng.random(d) < 1.0 / 21)
    lengths = rng.integers(2, 5, len(starts))
    rates = rng.choice([0.1, 0.15, 0.2, 0.25, 0.3], len(starts))
    present = np.flatnonzero(category_weights > 0)
    cats = np.where(rng.random(len(starts)) < 0.4, -1, rng.choice(present, len(starts)))
    for s, n, r, c in zip(starts, lengths, rates, cats, strict=True):  # a few dozen sales
        rate[s : s + n] = r
        cat[s : s + n] = c
    black_friday = (doy >= 328) & (doy < 332)
    rate[black_friday], cat[black_friday] = 0.25, -1
    season = weekday * annual * np.where(rate > 0, 1.25, 1.0)
    return Calendar(season=season, promo_rate=rate, promo_cat=cat)


def _hours(device: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fractional hour of day from the device's profile (mobile peaks later in the evening)."""
    out = np.empty(len(device))
    for mobile, pmf in ((True, vocab.HOURS_MOBILE), (False, vocab.HOURS_DESKTOP)):
        idx = np.flatnonzero((device == 0) == mobile)
        p = np.asarray(pmf) / np.sum(pmf)
        out[idx] = rng.choice(24, len(idx), p=p) + rng.random(len(idx))
    return out


def customer_sessions(
    customers: Customers, cal: Calendar, span: Span, knobs: Knobs, rng: np.random.Generator
) -> pd.DataFrame:
    f = customers.frame
    d = span.days
    smax = cal.season.max()
    active_from = f["active_from"].to_numpy()
    span_days = np.clip(d - active_from, 0, None)
    # Candidates on a jittered grid (one per 1/peak-rate days, at a random point in each slot):
    # visits are more regular than Poisson, as habits are, so a loyal customer rarely goes
    # months without an order by chance.
    peak = f["rate"].to_numpy() * smax
    counts = np.floor(peak * span_days + rng.random(customers.n)).astype(np.int64)
    who = np.repeat(np.arange(customers.n), counts)
    slot = np.arange(len(who)) - np.repeat(np.cumsum(counts) - counts, counts)
    phase = rng.random(customers.n)[who]
    cand = active_from[who] + (slot + 0.5 * phase + 0.5 * rng.random(len(who))) / peak[who]
    cand = np.minimum(cand, d - 1e-9)
    day = np.minimum(np.floor(cand).astype(np.int64), d - 1)
    keep = rng.random(len(cand)) < (
        customers.session_multiplier(who, cand, knobs) * cal.season[day] / smax
    )
    who, day = who[keep], day[keep]
    preferred = f["device"].to_numpy()[who]
    device = np.where(rng.random(len(who)) < 0.8, preferred, rng.integers(0, 3, len(who)))
    t = day + _hours(device, rng) / 24.0
    ok = (t >= active_from[who]) & (t < d - LAST_START)
    return pd.DataFrame({"who": who[ok], "t": t[ok], "device": device[ok].astype(np.int8)})


def anonymous_sessions(
    n_customers: int, cal: Calendar, span: Span, knobs: Knobs, rng: np.random.Generator
) -> pd.DataFrame:
    per_day = rng.poisson(knobs.anonymous_sessions_per_customer_day * n_customers * cal.season)
    day = np.repeat(np.arange(span.days), per_day)
    device = rng.choice(3, len(day), p=[0.6, 0.3, 0.1])
    t = day + _hours(device, rng) / 24.0
    ok = t < span.days - LAST_START
    return pd.DataFrame(
        {
            "who": np.full(ok.sum(), -1, dtype=np.int64),
            "t": t[ok],
            "device": device[ok].astype(np.int8),
        }
    )


def funnel(
    sessions: pd.DataFrame,
    customers: Customers,
    cal: Calendar,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Decide how far each session goes; a buying session passes every earlier step."""
    who, t = sessions["who"].to_numpy(), sessions["t"].to_numpy()
    n = len(who)
    day = t.astype(np.int64)
    alarm = customers.alarm(who, t)
    conv = np.where(
        who >= 0, customers.frame["conv"].to_numpy()[np.maximum(who, 0)], knobs.anonymous_conversion
    )
    p_buy = np.clip(
        conv
        * customers.conversion_multiplier(who, t, knobs)
        * np.where(cal.promo_rate[day] > 0, 1.2, 1.0),
        0,
        0.9,
    )
    buy = rng.random(n) < p_buy
    abandon = knobs.cart_abandon + knobs.decline_abandon * alarm
    cart = buy | (rng.random(n) < abandon)
    checkout = buy | (cart & (rng.random(n) < knobs.checkout_abandon))
    view = cart | (rng.random(n) < knobs.browse_view)
    search = rng.random(n) < knobs.search_share
    out = sessions.assign(
        buy=buy,
        cart=cart,
        checkout=checkout,
        view=view,
        search=search,
        alarm=alarm,
        follow_up=False,
    )
    return out
