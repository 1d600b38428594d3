"""Customers: who they are (the profile the contract lists) and how they behave over time.

Behaviour is a few hidden traits per customer: a session rate, a purchase propensity, favourite
categories and a price tier. Churn is a trajectory, not a coin flip at the end: an at-risk customer
has a churn day and, for 5 to 13 weeks before it, a decline in which visits and purchases fade and
complaints (cancellations, refunds, bad reviews, e-mail opt-outs) pile up; after it they only drop
by now and then, never buying. Loyal customers may have a lull (a holiday) that looks like a decline
by recency alone but comes without the complaints and ends: that is what keeps churn from being
trivial to predict from recency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopfeast.generator import vocab
from shopfeast.generator.catalog import N_BUCKETS, NEVER, Catalog, CustomerPrefs
from shopfeast.generator.config import Knobs, Span


@dataclass
class Customers:
    frame: pd.DataFrame  # one row per customer, index = customer index
    prefs: CustomerPrefs

    @property
    def n(self) -> int:
        return len(self.frame)

    def decline(self, who: np.ndarray, day: np.ndarray) -> np.ndarray:
        """0 before the decline, rising to 1 at the churn day, 1 after; 0 for anonymous (-1)."""
        f = self.frame
        w = np.where(who >= 0, who, 0)
        ds, cd = f["decline_start"].to_numpy()[w], f["churn_day"].to_numpy()[w]
        with np.errstate(invalid="ignore", divide="ignore"):
            prog = np.clip((day - ds) / np.maximum(cd - ds, 1e-9), 0.0, 1.0)
        prog[~np.isfinite(cd)] = 0.0
        return np.where(who >= 0, prog, 0.0)

    def alarm(self, who: np.ndarray, day: np.ndarray) -> np.ndarray:
        """How loudly a declining customer complains: 0 -> 1 over the first quarter of the decline.

        Complaints (returns, cancellations, bad reviews) come early in a decline, when there are
        still orders to complain about: the warning sign a churn model can learn."""
        return np.clip(4.0 * self.decline(who, day), 0.0, 1.0)

    def churned(self, who: np.ndarray, day: np.ndarray) -> np.ndarray:
        w = np.where(who >= 0, who, 0)
        return (who >= 0) & (day >= self.frame["churn_day"].to_numpy()[w])

    def in_lull(self, who: np.ndarray, day: np.ndarray) -> np.ndarray:
        f = self.frame
        w = np.where(who >= 0, who, 0)
        return (
            (who >= 0)
            & (f["lull_start"].to_numpy()[w] <= day)
            & (day < f["lull_end"].to_numpy()[w])
        )

    def session_multiplier(self, who: np.ndarray, day: np.ndarray, knobs: Knobs) -> np.ndarray:
        m = 1.0 - knobs.decline_session_drop * self.decline(who, day) ** 0.6
        m = np.where(self.churned(who, day), knobs.post_churn_sessions, m)
        return np.where(self.in_lull(who, day), m * knobs.lull_sessions, m)

    def conversion_multiplier(self, who: np.ndarray, day: np.ndarray, knobs: Knobs) -> np.ndarray:
        m = 1.0 - knobs.decline_conversion_drop * self.decline(who, day)
        m = np.where(self.churned(who, day), 0.0, m)
        return np.where(self.in_lull(who, day), m * 0.6, m)


def make_customers(
    n: int, span: Span, knobs: Knobs, catalog: Catalog, rng: np.random.Generator
) -> Customers:
    d = span.days
    pre = rng.random(n) < knobs.preexisting_share
    signup = np.where(pre, -rng.uniform(1, 730, n), rng.uniform(0, d - 0.02, n))
    order = np.argsort(signup, kind="stable")  # ids grow with signup, as in a real shop
    signup, pre = signup[order], pre[order]
    active_from = np.maximum(signup, 0.0) + 1.0 / 1440  # a minute after signup at the earliest

    rate = knobs.sessions_per_day_median * rng.lognormal(0.0, knobs.sessions_sigma, n)
    conv = rng.beta(knobs.conversion_alpha, knobs.conversion_beta, n)
    premium = rng.random(n) < np.clip(0.06 + 0.5 * (rate / rate.max()) ** 0.5, 0, 0.4)
    at_risk = rng.random(n) < np.where(premium, knobs.at_risk_share_premium, knobs.at_risk_share)
    life = (
        rng.exponential(knobs.mean_lifetime_days, n) * (rate / knobs.sessions_per_day_median) ** 0.3
    )
    churn_day = np.where(at_risk, active_from + np.maximum(life, 21.0), NEVER)
    decline_len = rng.uniform(*knobs.decline_days, n)
    decline_start = np.where(at_risk, np.maximum(active_from, churn_day - decline_len), NEVER)
    lull = rng.random(n) < knobs.lull_share
    lull_start = np.where(lull, rng.uniform(active_from, d + 1.0), NEVER)
    lull_end = np.where(lull, lull_start + rng.uniform(*knobs.lull_days, n), NEVER)

    tier = np.clip(rng.beta(2.0, 2.0, n) + 0.15 * premium, 0, 0.999)
    loyalty = np.where(pre, np.searchsorted(np.cumsum([0.5, 0.3, 0.15, 0.05]), rng.random(n)), 0)
    th = np.r_[0.0, knobs.loyalty_thresholds, knobs.loyalty_thresholds[-1] * 1.5]
    prior_spend = th[loyalty] + rng.random(n) * (th[loyalty + 1] - th[loyalty])

    frame = pd.DataFrame(
        {
            "signup": signup,
            "active_from": active_from,
            "preexisting": pre,
            "rate": rate,
            "conv": conv,
            "at_risk": at_risk,
            "churn_day": churn_day,
            "decline_start": decline_start,
            "lull_start": lull_start,
            "lull_end": lull_end,
            "birth_year": np.where(
                rng.random(n) < 0.06,
                -1,
                span.start.year - np.clip(rng.normal(40, 13, n), 18, 85).astype(int),
            ),
            "gender": np.where(
                rng.random(n) < 0.02, -1, rng.choice(len(vocab.GENDERS), n, p=vocab.GENDER_WEIGHTS)
            ),
            "country": rng.choice(len(vocab.COUNTRIES), n, p=_norm(vocab.COUNTRY_WEIGHTS)),
            "location_type": rng.choice(3, n, p=vocab.LOCATION_WEIGHTS),
            "education": np.where(
                rng.random(n) < 0.1,
                -1,
                rng.choice(len(vocab.EDUCATION), n, p=vocab.EDUCATION_WEIGHTS),
            ),
            "device": rng.choice(3, n, p=vocab.DEVICE_WEIGHTS),
            "is_premium": premium,
            "email_opt_in": rng.random(n) < 0.6,
            "loyalty": loyalty,
            "prior_spend": prior_spend,
            "tier": tier,
        }
    )
    return Customers(frame=frame, prefs=_prefs(n, catalog, tier, rng))


def _prefs(n: int, catalog: Catalog, tier: np.ndarray, rng: np.random.Generator) -> CustomerPrefs:
    """Three favourite categories (Gumbel top-k by traffic share) and their weights."""
    w = catalog.category_weights
    present = np.flatnonzero(w > 0)
    k = min(3, len(present))
    keys = np.log(w[present])[None, :] + rng.gumbel(size=(n, len(present)))
    top = present[np.argsort(-keys, axis=1)[:, :k]]
    if k < 3:  # a tiny catalog: repeat the favourite
        top = np.concatenate([top, np.repeat(top[:, :1], 3 - k, axis=1)], axis=1)
    weights = -np.sort(-rng.dirichlet([4.0, 2.0, 1.0], n), axis=1)
    bucket = np.minimum((tier * N_BUCKETS).astype(np.int64), N_BUCKETS - 1)
    return CustomerPrefs(cats=top, cat_weights=weights, bucket=bucket)


def _norm(weights: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()
