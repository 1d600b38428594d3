"""What each session touches: baskets, carts, product views and searches.

This is where complementary products enter: an extra basket item is often a complement of the
first, a customer's next order often starts with a complement of the previous one, and some orders
trigger a follow-up purchase of a complement a few days later (its own session). Co-purchase
counts therefore predict what someone buys next, beyond plain popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopfeast.generator.catalog import Catalog, ProductPicker
from shopfeast.generator.config import Knobs, Span
from shopfeast.generator.customers import Customers
from shopfeast.generator.sessions import LAST_START

MAX_EXTRA_ITEMS = 5
MAX_VIEWS = 8


@dataclass
class Baskets:
    """Product rows per session (session = row position in the sorted sessions frame)."""

    items: pd.DataFrame  # session, product, quantity: what a buying session bought
    carted: pd.DataFrame  # session, product: added to cart in sessions that did not buy
    removed: pd.DataFrame  # session, product: added then removed
    views: pd.DataFrame  # session, product: browsed beyond what went into the cart
    searches: pd.DataFrame  # session, query (index into `queries`)
    queries: np.ndarray


def build(
    sessions: pd.DataFrame,
    customers: Customers,
    catalog: Catalog,
    picker: ProductPicker,
    span: Span,
    knobs: Knobs,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, Baskets]:
    """Choose products; returns the sessions (follow-ups added, sorted by start) and baskets."""
    sessions = _first_items(sessions, customers, catalog, picker, knobs, rng)
    sessions = pd.concat(
        [sessions, _follow_ups(sessions, customers, catalog, picker, span, knobs, rng)],
        ignore_index=True,
    )
    sessions = sessions.sort_values("t", kind="stable").reset_index(drop=True)
    return sessions, Baskets(
        items=_basket_items(sessions, customers, catalog, picker, knobs, rng),
        carted=_carted(sessions, customers, picker, knobs, rng),
        removed=_removed(sessions, customers, picker, knobs, rng),
        views=_views(sessions, customers, picker, knobs, rng),
        searches=_searches(sessions, customers, catalog, picker, knobs, rng)[0],
        queries=_query_vocab(catalog),
    )


def _first_items(
    sessions: pd.DataFrame,
    customers: Customers,
    catalog: Catalog,
    picker: ProductPicker,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    buy = np.flatnonzero(sessions["buy"].to_numpy())
    who, t = sessions["who"].to_numpy()[buy], sessions["t"].to_numpy()[buy]
    first = picker.pick_for(customers.prefs, who, t, rng, knobs)
    # A customer's next order often continues the last one: a complement, or the same again.
    order = np.lexsort((t, who))
    w, tt, p = who[order], t[order], first[order]
    same = np.r_[False, (w[1:] == w[:-1]) & (w[1:] >= 0) & (tt[1:] - tt[:-1] < 45)][: len(w)]
    prev = np.r_[-1, p[:-1]][: len(w)]
    u = rng.random(len(order))
    comp = catalog.complements[np.maximum(prev, 0), rng.integers(0, 2, len(order))]
    take_comp = same & (u < knobs.complement_next_order) & picker.available(comp, tt)
    repeat = same & (u >= 1 - knobs.repeat_purchase) & picker.available(np.maximum(prev, 0), tt)
    p = np.where(take_comp, comp, np.where(repeat, prev, p))
    first[order] = p
    primary = np.full(len(sessions), -1, dtype=np.int64)
    primary[buy] = first
    return sessions.assign(primary=primary)


def _follow_ups(
    sessions: pd.DataFrame,
    customers: Customers,
    catalog: Catalog,
    picker: ProductPicker,
    span: Span,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A purchase now and then brings a customer back within days for a complement."""
    cand = sessions[(sessions["primary"] >= 0) & (sessions["who"] >= 0)]
    cand = cand[rng.random(len(cand)) < knobs.follow_up]
    who = cand["who"].to_numpy()
    t = cand["t"].to_numpy() + 0.3 + rng.exponential(knobs.follow_up_days, len(cand))
    product = catalog.complements[cand["primary"].to_numpy(), rng.integers(0, 2, len(cand))]
    ok = (t < span.days - LAST_START) & ~customers.churned(who, t) & picker.available(product, t)
    n = int(ok.sum())
    return pd.DataFrame(
        {
            "who": who[ok],
            "t": t[ok],
            "device": cand["device"].to_numpy()[ok],
            "buy": np.ones(n, bool),
            "cart": np.ones(n, bool),
            "checkout": np.ones(n, bool),
            "view": np.ones(n, bool),
            "search": np.zeros(n, bool),
            "alarm": customers.alarm(who[ok], t[ok]),
            "follow_up": np.ones(n, bool),
            "primary": product[ok],
        }
    )


def _per_session(
    sessions: pd.DataFrame, mask: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row numbers repeated `counts` times for masked sessions, with their shopper and time."""
    idx = np.flatnonzero(mask)
    rows = np.repeat(idx, counts[idx])
    return rows, sessions["who"].to_numpy()[rows], sessions["t"].to_numpy()[rows]


def _basket_items(
    sessions: pd.DataFrame,
    customers: Customers,
    catalog: Catalog,
    picker: ProductPicker,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    buy = sessions["buy"].to_numpy()
    n_extra = np.minimum(rng.poisson(knobs.extra_items, len(sessions)), MAX_EXTRA_ITEMS)
    rows, who, t = _per_session(sessions, buy, n_extra)
    primary = sessions["primary"].to_numpy()
    comp = catalog.complements[primary[rows], rng.integers(0, 2, len(rows))]
    use_comp = (rng.random(len(rows)) < knobs.complement_in_basket) & picker.available(comp, t)
    extra = np.where(use_comp, comp, picker.pick_for(customers.prefs, who, t, rng, knobs))
    first_rows = np.flatnonzero(buy)
    items = pd.DataFrame(
        {
            "session": np.concatenate([first_rows, rows]),
            "product": np.concatenate([primary[first_rows], extra]),
            "rank": np.concatenate([np.zeros(len(first_rows)), np.arange(1, len(rows) + 1)]),
        }
    )
    # one line per product in an order: an exact duplicate line would be a duplicate_row
    items = (
        items.drop_duplicates(["session", "product"])
        .sort_values(["session", "rank"], kind="stable")
        .drop(columns="rank")
        .reset_index(drop=True)
    )
    u = rng.random(len(items))
    items["quantity"] = 1 + (u < 0.15).astype(np.int64) + (u < 0.04)
    return items


def _carted(
    sessions: pd.DataFrame,
    customers: Customers,
    picker: ProductPicker,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    mask = sessions["cart"].to_numpy() & ~sessions["buy"].to_numpy()
    counts = 1 + np.minimum(rng.poisson(0.3, len(sessions)), 3)
    rows, who, t = _per_session(sessions, mask, counts)
    out = pd.DataFrame(
        {"session": rows, "product": picker.pick_for(customers.prefs, who, t, rng, knobs)}
    )
    return out.drop_duplicates().reset_index(drop=True)


def _removed(
    sessions: pd.DataFrame,
    customers: Customers,
    picker: ProductPicker,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    mask = sessions["cart"].to_numpy() & (rng.random(len(sessions)) < 0.15)
    rows, who, t = _per_session(sessions, mask, np.ones(len(sessions), dtype=np.int64))
    return pd.DataFrame(
        {"session": rows, "product": picker.pick_for(customers.prefs, who, t, rng, knobs)}
    )


def _views(
    sessions: pd.DataFrame,
    customers: Customers,
    picker: ProductPicker,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    counts = np.minimum(rng.poisson(1.6, len(sessions)), MAX_VIEWS)
    rows, who, t = _per_session(sessions, sessions["view"].to_numpy(), counts)
    return pd.DataFrame(
        {"session": rows, "product": picker.pick_for(customers.prefs, who, t, rng, knobs)}
    )


def _query_vocab(catalog: Catalog) -> np.ndarray:
    subs = np.array(catalog.subcategory_names, dtype=object)
    brands = np.char.lower(catalog.brand_names.astype(str)).astype(object)
    return np.concatenate([subs, brands, "cheap " + subs])


def _searches(
    sessions: pd.DataFrame,
    customers: Customers,
    catalog: Catalog,
    picker: ProductPicker,
    knobs: Knobs,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Queries name what the shopper is after: the subcategory or brand of a product they like."""
    counts = 1 + np.minimum(rng.poisson(0.3, len(sessions)), 2)
    rows, who, t = _per_session(sessions, sessions["search"].to_numpy(), counts)
    product = picker.pick_for(customers.prefs, who, t, rng, knobs)
    p = catalog.products
    n_sub, n_brand = len(catalog.subcategory_names), len(catalog.brand_names)
    sub = p["sub_row"].to_numpy()[product]
    brand = p["brand"].to_numpy()[product]
    u = rng.random(len(rows))
    query = np.where(u < 0.6, sub, np.where(u < 0.85, n_sub + brand, n_sub + n_brand + sub))
    return pd.DataFrame({"session": rows, "query": query}), _query_vocab(catalog)
