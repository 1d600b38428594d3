"""The generator's knobs and clock, in one place.

Every behavioural constant the generator uses lives in `Knobs`, so docs/generator.md can list them
and a test can turn one up to see its effect. Time inside the generator is a float64 count of days
since the shop's first day (`Span.start`); it becomes epoch microseconds only when tables are
rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

US_PER_DAY = 86_400_000_000
# Independent random streams, one per concern: adding a draw to one module never shifts another's.
STREAMS = (
    "catalog",
    "customers",
    "sessions",
    "baskets",
    "events",
    "orders",
    "reviews",
    "profile",
    "corruption",
    "drift",
)


@dataclass(frozen=True)
class Knobs:
    """Behavioural constants. Defaults give ~100 events per customer-year (10M for 100k x 365d)."""

    # customers
    preexisting_share: float = 0.55  # signed up before the export starts (up to 2 years before)
    sessions_per_day_median: float = 0.055  # a customer's session rate (log-normal across people)
    sessions_sigma: float = 0.45
    conversion_alpha: float = 4.0  # Beta(alpha, beta) purchase probability per session
    conversion_beta: float = 6.0
    category_focus: float = 0.85  # share of picks from the customer's 3 favourite categories
    tier_focus: float = 0.8  # share of product picks in the customer's own price tier
    # churn: at-risk customers leave after an exponential lifetime, declining for weeks before
    at_risk_share: float = 0.6
    at_risk_share_premium: float = 0.3
    mean_lifetime_days: float = 210.0
    decline_days: tuple[float, float] = (45.0, 120.0)
    decline_session_drop: float = 0.7  # session rate falls by this share across the decline
    decline_conversion_drop: float = 0.85
    post_churn_sessions: float = 0.04  # occasional visits (never a purchase) after churning
    lull_share: float = 0.25  # customers with one temporary lull (holiday, busy month)
    lull_days: tuple[float, float] = (14.0, 45.0)
    lull_sessions: float = 0.3
    # funnel
    anonymous_sessions_per_customer_day: float = 0.008
    anonymous_conversion: float = 0.02
    cart_abandon: float = 0.10  # cart without purchase, rising by `decline_abandon` in a decline
    decline_abandon: float = 0.25
    checkout_abandon: float = 0.35
    browse_view: float = 0.8
    search_share: float = 0.35
    # baskets and complementary products
    extra_items: float = 0.7  # Poisson mean of items beyond the first
    complement_in_basket: float = 0.45  # an extra item is a complement of the first item
    complement_next_order: float = 0.2  # next order's first item complements the previous order's
    repeat_purchase: float = 0.08
    follow_up: float = 0.25  # an order triggers a follow-up purchase of a complement within days
    follow_up_days: float = 4.0
    # money and order outcomes
    price_changes_per_year: float = 1.5
    coupon_share: float = 0.07
    cancel_rate: float = 0.025
    refund_rate: float = 0.03
    partial_refund_rate: float = 0.03
    decline_cancel: float = 0.1
    decline_refund: float = 0.2
    decline_partial: float = 0.06
    lemon_share: float = 0.08  # products that disappoint: refunds and bad reviews
    lemon_refund: float = 0.15
    # reviews
    review_rate: float = 0.06
    review_after_refund: float = 0.15
    decline_review: float = 0.3
    # profile change log
    device_changes_per_year: float = 0.25
    decline_email_opt_out: float = 0.6
    decline_premium_cancel: float = 0.6
    loyalty_thresholds: tuple[float, float, float] = (300.0, 1000.0, 2500.0)


@dataclass(frozen=True)
class Span:
    """The export window `[start, start + days)` and conversions from model days."""

    start: pd.Timestamp
    days: int

    @classmethod
    def of(cls, start: str, days: int) -> Span:
        ts = pd.Timestamp(start)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return cls(ts.normalize(), int(days))

    @property
    def start_us(self) -> int:
        return int(self.start.value // 1000)

    @property
    def end(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(days=self.days)

    def to_us(self, day: np.ndarray) -> np.ndarray:
        """Model days -> epoch microseconds, rounded to the millisecond like a clickstream."""
        ms = np.round(np.asarray(day, dtype=np.float64) * 86_400_000.0).astype(np.int64)
        return self.start_us + ms * 1000

    def weekday(self, day_index: np.ndarray) -> np.ndarray:
        """Monday=0 .. Sunday=6 of integer day offsets."""
        return (self.start.dayofweek + np.asarray(day_index)) % 7

    def day_of_year(self, day_index: np.ndarray) -> np.ndarray:
        return (self.start.dayofyear - 1 + np.asarray(day_index)) % 365


def streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, children, strict=True)}
