"""Orders and order lines from the buying sessions: prices as of the order, sales and coupons,
cancellations and (partial) refunds.

Outcomes carry the churn story: a customer in decline cancels and returns more, and a `lemon`
product is returned often whoever buys it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopfeast.generator.catalog import Catalog
from shopfeast.generator.config import Knobs, Span
from shopfeast.generator.sessions import Calendar
from shopfeast.generator.vocab import EVENT_CODE

STATUS = ("completed", "cancelled", "refunded", "partially_refunded")
CHANNELS = ("web", "mobile_app")


def build(
    sessions: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    catalog: Catalog,
    cal: Calendar,
    span: Span,
    knobs: Knobs,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (orders, lines); orders sorted by order time, `order` = row position."""
    purchases = events[events["type"].to_numpy() == EVENT_CODE["purchase"]]
    placed = purchases.groupby("session", sort=True)["t"].min()
    orders = pd.DataFrame({"session": placed.index.to_numpy(), "t": placed.to_numpy()})
    s = orders["session"].to_numpy()
    for col in ("who", "device", "alarm", "follow_up"):
        orders[col] = sessions[col].to_numpy()[s]
    orders = orders.sort_values(["t", "session"], kind="stable").reset_index(drop=True)
    order_of_session = pd.Series(np.arange(len(orders)), index=orders["session"].to_numpy())
    lines = items.assign(order=order_of_session.reindex(items["session"].to_numpy()).to_numpy())
    lines = lines.dropna(subset=["order"]).astype({"order": np.int64})
    lines["t"] = orders["t"].to_numpy()[lines["order"].to_numpy()]
    lines = _prices(lines, catalog)
    lines = _discounts(lines, orders, catalog, cal, knobs, rng)
    lines = lines.sort_values(["order", "session"], kind="stable").reset_index(drop=True)
    orders = _totals(orders, lines)
    orders, lines = _outcomes(orders, lines, catalog, span, knobs, rng)
    channel = np.where((orders["device"].to_numpy() == 0) & (rng.random(len(orders)) < 0.7), 1, 0)
    orders["channel"] = channel.astype(np.int8)
    return orders, lines


def _prices(lines: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """unit_price = the product's price in its latest change-log row at or before the order."""
    log = catalog.changes[["product", "day", "price"]].sort_values("day", kind="stable")
    left = (
        lines.reset_index(drop=True)
        .assign(_i=np.arange(len(lines)))
        .sort_values("t", kind="stable")
    )
    merged = pd.merge_asof(
        left, log, left_on="t", right_on="day", by="product", direction="backward"
    )
    merged = merged.sort_values("_i").drop(columns=["_i", "day"]).reset_index(drop=True)
    return merged.rename(columns={"price": "unit_price"})


def _discounts(
    lines: pd.DataFrame,
    orders: pd.DataFrame,
    catalog: Catalog,
    cal: Calendar,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    day = lines["t"].to_numpy().astype(np.int64)
    cat = catalog.products["cat"].to_numpy()[lines["product"].to_numpy()]
    promo_cat = cal.promo_cat[day]
    sale = np.where((promo_cat == -1) | (promo_cat == cat), cal.promo_rate[day], 0.0)
    coupon = rng.random(len(orders)) < knobs.coupon_share
    rate = np.maximum(sale, np.where(coupon[lines["order"].to_numpy()], 0.1, 0.0))
    gross = lines["quantity"].to_numpy() * lines["unit_price"].to_numpy()
    return lines.assign(discount=np.round(gross * rate, 2), gross=gross)


def _totals(orders: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    n = len(orders)
    o = lines["order"].to_numpy()
    gross = np.bincount(o, weights=lines["gross"].to_numpy(), minlength=n)
    discount = np.round(np.bincount(o, weights=lines["discount"].to_numpy(), minlength=n), 2)
    return orders.assign(total=np.round(gross - discount, 2), discount=discount)


def _outcomes(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    catalog: Catalog,
    span: Span,
    knobs: Knobs,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(orders)
    o = lines["order"].to_numpy()
    lemon_line = catalog.products["lemon"].to_numpy()[lines["product"].to_numpy()]
    lemon = np.bincount(o, weights=lemon_line, minlength=n) > 0
    prog = orders["alarm"].to_numpy()
    p_cancel = knobs.cancel_rate + knobs.decline_cancel * prog
    p_refund = knobs.refund_rate + knobs.decline_refund * prog + knobs.lemon_refund * lemon
    p_partial = (
        knobs.partial_refund_rate + knobs.decline_partial * prog + 0.5 * knobs.lemon_refund * lemon
    )
    u = rng.random(n)
    status = np.select(
        [u < p_cancel, u < p_cancel + p_refund, u < p_cancel + p_refund + p_partial], [1, 2, 3], 0
    )
    refund_t = orders["t"].to_numpy() + 1.0 + rng.exponential(7.0, n)
    late = (status >= 2) & (refund_t >= span.days - 0.01)  # not refunded yet when the export ends
    status[late] = 0
    total = orders["total"].to_numpy()
    share = np.where(status == 2, 1.0, np.where(status == 3, rng.uniform(0.2, 0.7, n), 0.0))
    refunded = np.round(total * share, 2)
    partial_bad = (status == 3) & ((refunded <= 0) | (refunded >= total))
    status[partial_bad] = 0
    refunded[partial_bad] = 0.0
    orders = orders.assign(
        status=status.astype(np.int8),
        refunded=refunded,
        refund_t=np.where(status >= 2, refund_t, np.nan),
    )
    # which lines went back: all of a full refund; lemons (or one random line) of a partial one
    line_status = status[o]
    returned = (line_status == 2) | (
        (line_status == 3)
        & (lemon_line | ~lemon[o])
        & (rng.random(len(o)) < np.where(lemon_line, 1.0, 0.5))
    )
    return orders, lines.assign(returned=returned, lemon=lemon_line)
