"""The clickstream: each session's baskets, carts, views and searches laid out as ordered events.

Within a session events come in funnel order: a landing page view; then browsing (more pages,
searches, product views, in random order, including a view of every product later carted); then
add-to-cart (and a removal); then checkout_start; then one purchase event per bought product. Gaps
between events are at least 5 seconds (people read pages), so a human session never looks like the
bots that `--corrupt-fraction` injects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopfeast.generator.baskets import Baskets
from shopfeast.generator.vocab import EVENT_CODE, PAGE_CODE

MAX_EVENTS = 25  # per human session; extra product views are trimmed beyond it
MIN_GAP_S = 5.0

# blocks: the funnel stage an event belongs to; events sort by (session, block, random key)
LANDING, BROWSE, CART, CHECKOUT, PURCHASE = range(5)


def _rows(
    session: np.ndarray,
    block: int,
    event: str,
    page: str,
    rng: np.random.Generator,
    product: np.ndarray | None = None,
    query: np.ndarray | None = None,
    key: np.ndarray | None = None,
    extra: bool = False,
) -> pd.DataFrame:
    n = len(session)
    return pd.DataFrame(
        {
            "session": session.astype(np.int32),
            "block": np.full(n, block, np.int8),
            "key": (rng.random(n) if key is None else key).astype(np.float32),
            "type": np.full(n, EVENT_CODE[event], np.int8),
            "product": np.full(n, -1, np.int32) if product is None else product.astype(np.int32),
            "page": np.full(n, PAGE_CODE[page], np.int8),
            "query": np.full(n, -1, np.int32) if query is None else query.astype(np.int32),
            "extra": np.full(n, extra),
        }
    )


def build(sessions: pd.DataFrame, baskets: Baskets, rng: np.random.Generator) -> pd.DataFrame:
    """Events sorted by time: t (model days), session, who, type, product, device, page, query."""
    n = len(sessions)
    all_s = np.arange(n)
    more_pages = np.repeat(all_s, np.minimum(rng.poisson(0.6, n), 3))
    carted = pd.concat([baskets.items[["session", "product"]], baskets.carted, baskets.removed])
    landing = _rows(all_s, LANDING, "page_view", "homepage", rng)
    landing.loc[rng.random(n) < 0.4, "page"] = PAGE_CODE["category"]
    remove_key = 1.0 + rng.random(len(baskets.removed))
    parts = [
        landing,
        _rows(more_pages, BROWSE, "page_view", "category", rng),
        _rows(
            baskets.searches["session"].to_numpy(),
            BROWSE,
            "search",
            "search",
            rng,
            query=baskets.searches["query"].to_numpy(),
        ),
        _rows(
            carted["session"].to_numpy(),
            BROWSE,
            "product_view",
            "product_page",
            rng,
            product=carted["product"].to_numpy(),
        ),
        _rows(
            baskets.views["session"].to_numpy(),
            BROWSE,
            "product_view",
            "product_page",
            rng,
            product=baskets.views["product"].to_numpy(),
            extra=True,
        ),
        _rows(
            carted["session"].to_numpy(),
            CART,
            "add_to_cart",
            "product_page",
            rng,
            product=carted["product"].to_numpy(),
        ),
        _rows(
            baskets.removed["session"].to_numpy(),
            CART,
            "remove_from_cart",
            "cart",
            rng,
            product=baskets.removed["product"].to_numpy(),
            key=remove_key,
        ),
        _rows(
            np.flatnonzero(sessions["checkout"].to_numpy()),
            CHECKOUT,
            "checkout_start",
            "checkout",
            rng,
        ),
        _rows(
            baskets.items["session"].to_numpy(),
            PURCHASE,
            "purchase",
            "checkout",
            rng,
            product=baskets.items["product"].to_numpy(),
            key=_rank_in_session(baskets.items["session"].to_numpy()) / 8.0,
        ),
    ]
    ev = pd.concat(parts, ignore_index=True)
    ev = ev.take(np.argsort(_funnel_key(ev))).reset_index(drop=True)
    ev = _trim(ev)
    ev["t"] = _times(ev, sessions["t"].to_numpy(), rng)
    ev["who"] = sessions["who"].to_numpy().astype(np.int32)[ev["session"].to_numpy()]
    ev["device"] = sessions["device"].to_numpy()[ev["session"].to_numpy()]
    ev = ev.drop(columns=["block", "key", "extra"])
    # sessions start in time order and each lasts minutes: nearly sorted, which timsort loves
    order = np.argsort(ev["t"].to_numpy(), kind="stable")
    return ev.take(order).reset_index(drop=True)


def _funnel_key(ev: pd.DataFrame) -> np.ndarray:
    """One int64 per event ordering by session, then funnel block, then the key in the block."""
    frac = np.minimum((ev["key"].to_numpy(np.float64) * 2**29).astype(np.int64), 2**30 - 1)
    session = ev["session"].to_numpy().astype(np.int64)
    return (session << 34) | (ev["block"].to_numpy().astype(np.int64) << 31) | frac


def _rank_in_session(session: np.ndarray) -> np.ndarray:
    """0, 1, 2 ... within each run of equal (sorted) session numbers."""
    i = np.arange(len(session))
    first = np.r_[True, session[1:] != session[:-1]][: len(session)]
    return i - np.maximum.accumulate(np.where(first, i, 0))


def _trim(ev: pd.DataFrame) -> pd.DataFrame:
    """Drop extra product views beyond MAX_EVENTS per session (events sorted by session)."""
    session = ev["session"].to_numpy()
    extra = ev["extra"].to_numpy().astype(np.int64)
    base = np.bincount(session, weights=1 - extra)[session]
    cum = np.cumsum(extra)
    first = np.r_[True, session[1:] != session[:-1]][: len(session)]
    extra_rank = cum - np.maximum.accumulate(np.where(first, cum - extra, 0))
    keep = (extra == 0) | (base + extra_rank <= MAX_EVENTS)
    return ev[keep].reset_index(drop=True)


def _times(ev: pd.DataFrame, session_start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Session start plus cumulative human gaps (events sorted by session, funnel order)."""
    session = ev["session"].to_numpy()
    n = len(ev)
    purchase = ev["type"].to_numpy() == EVENT_CODE["purchase"]
    gap_s = MIN_GAP_S + np.where(
        purchase, rng.exponential(3.0, n), np.minimum(rng.exponential(35.0, n), 300.0)
    )
    first = np.r_[True, session[1:] != session[:-1]][:n]
    gap_s[first] = 0.0
    cum = np.cumsum(gap_s)
    base = np.maximum.accumulate(np.where(first, cum, 0.0))
    return session_start[session] + (cum - base) / 86_400.0
