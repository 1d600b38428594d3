"""The catalog: categories, subcategories, brands, collections, products and their change log.

Products carry hidden traits the rest of the shop uses: a popularity (Zipf within its category), a
price tier (its price percentile in the category: budget shoppers buy cheap products), a `lemon`
flag (refunds and bad reviews) and two complements from the partner subcategory (bought together,
the signal a co-purchase recommender learns). `ProductPicker` draws products for many shoppers at
once with numpy, honouring when each product exists and is active.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopfeast.generator import vocab
from shopfeast.generator.config import Knobs, Span

N_BUCKETS = 5  # price tiers a shopper can prefer
TIER_WIDTH = 0.18  # how sharply a tier prefers products near its price percentile
NEVER = np.inf


class GroupSampler:
    """Weighted draws of an item within a group, vectorised over many (group, uniform) pairs.

    Groups are laid side by side on one axis: group g's cumulative weights span (g, g + 1], so one
    `searchsorted` serves every group at once.
    """

    def __init__(self, groups: np.ndarray, items: np.ndarray, weights: np.ndarray, n_groups: int):
        order = np.lexsort((items, groups))
        groups, items, weights = groups[order], items[order], weights[order].astype(np.float64)
        totals = np.bincount(groups, weights=weights, minlength=n_groups)
        cum = np.cumsum(weights)
        start_of_group = np.concatenate(([0.0], np.cumsum(totals)))[groups]
        frac = (cum - start_of_group) / totals[groups]
        last = np.r_[groups[1:] != groups[:-1], True][: len(groups)]
        frac[last] = 1.0
        self.keys = groups + frac
        self.items = items
        self.has = np.bincount(groups, minlength=n_groups) > 0
        # the heaviest item of each group: the fallback when a draw is unavailable
        best = np.full(n_groups, -1, dtype=np.int64)
        heaviest = pd.Series(weights).groupby(groups).idxmax()
        best[heaviest.index.to_numpy()] = items[heaviest.to_numpy()]
        self.heaviest = best

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.keys, group + u, side="left")
        return self.items[np.minimum(pos, len(self.items) - 1)]


@dataclass
class Catalog:
    """Products (one row per product, hidden traits included) and their change log."""

    products: pd.DataFrame
    changes: pd.DataFrame  # product, day, price, is_active, inventory_quantity
    complements: np.ndarray  # (n_products, 2) product indices
    category_names: tuple[str, ...]
    subcategory_names: tuple[str, ...]
    subcategory_nouns: tuple[str, ...]
    brand_names: np.ndarray
    category_weights: np.ndarray  # traffic share of each category (0 where it has no product)

    @property
    def n(self) -> int:
        return len(self.products)


def _subcategory_table() -> pd.DataFrame:
    rows = []
    for c, (cat, (price, weight, subs)) in enumerate(vocab.CATEGORIES.items()):
        for k, (sub, noun) in enumerate(subs):
            rows.append((cat, c, k, sub, noun, price, weight))
    t = pd.DataFrame(rows, columns=["category", "cat", "k", "sub", "noun", "price", "weight"])
    # The first products go one per subcategory, categories first, so small shops cover them all.
    return t.sort_values(["k", "cat"], kind="stable").reset_index(drop=True)


def _brands(rng: np.random.Generator, n_products: int, n_cat: int) -> np.ndarray:
    n = int(np.clip(n_products // 25, n_cat, 400))
    combos = np.array([h + t for h in vocab.BRAND_HEADS for t in vocab.BRAND_TAILS], dtype=object)
    combos = combos[rng.permutation(len(combos))]
    names = np.resize(combos, n).astype(object)
    rounds = np.arange(n) // len(combos)
    suffix = np.where(rounds > 0, " " + (rounds + 1).astype(str).astype(object), "")
    return names + suffix


def make_catalog(n_products: int, span: Span, knobs: Knobs, rng: np.random.Generator) -> Catalog:
    subs = _subcategory_table()
    n_cat = len(vocab.CATEGORIES)
    m = int(n_products)
    # subcategory of each product: round-robin for the first ones, then by category traffic
    first = np.arange(min(m, len(subs)))
    p_sub = subs["weight"].to_numpy() / subs["weight"].sum()
    rest = rng.choice(len(subs), size=m - len(first), p=p_sub)
    sub_row = np.concatenate([first, rest])
    cat = subs["cat"].to_numpy()[sub_row]
    sub_global = (subs["cat"] * 100 + subs["k"]).to_numpy()[sub_row]  # stable id per subcategory

    price = subs["price"].to_numpy()[sub_row] * rng.lognormal(0.0, 0.55, m)
    price = np.maximum(np.floor(price) + 0.99, 0.99)
    popularity = np.empty(m)
    tier = np.empty(m)
    for c in range(n_cat):  # 12 categories: a loop over categories, not rows
        idx = np.flatnonzero(cat == c)
        if len(idx) == 0:
            continue
        popularity[idx] = (1.0 + rng.permutation(len(idx))) ** -0.9
        tier[idx] = (pd.Series(price[idx]).rank(method="first").to_numpy() - 0.5) / len(idx)

    brands = _brands(rng, m, n_cat)
    brand_cat = np.arange(len(brands)) % n_cat
    brand = np.empty(m, dtype=np.int64)
    for c in range(n_cat):
        idx = np.flatnonzero(cat == c)
        own = np.flatnonzero(brand_cat == c)
        w = 1.0 / (1.0 + np.arange(len(own)))
        brand[idx] = rng.choice(own, size=len(idx), p=w / w.sum())

    products = pd.DataFrame(
        {
            "cat": cat,
            "sub_row": sub_row,
            "sub": sub_global,
            "brand": brand,
            "adjective": rng.integers(0, len(vocab.ADJECTIVES), m),
            "model_no": np.where(rng.random(m) < 0.5, rng.integers(1, 99, m), 0),
            "collection": np.where(
                rng.random(m) < 0.65, rng.integers(0, len(vocab.COLLECTIONS), m), -1
            ),
            "tagline": rng.integers(0, len(vocab.TAGLINES), m),
            "price0": price,
            "popularity": popularity,
            "tier": tier,
            "lemon": rng.random(m) < knobs.lemon_share,
        }
    )
    category_weights = np.zeros(n_cat)
    present = np.bincount(cat, minlength=n_cat) > 0
    cat_w = np.array([w for _, w, _ in vocab.CATEGORIES.values()])
    category_weights[present] = cat_w[present] / cat_w[present].sum()

    picker_groups = _tier_groups(products)
    anchors = np.unique(picker_groups.heaviest[picker_groups.heaviest >= 0])
    _lifecycle(products, anchors, span, knobs, rng)
    complements = _complements(products, subs, rng)
    changes = _change_log(products, span, knobs, rng)
    return Catalog(
        products=products,
        changes=changes,
        complements=complements,
        category_names=tuple(vocab.CATEGORIES),
        subcategory_names=tuple(subs["sub"]),
        subcategory_nouns=tuple(subs["noun"]),
        brand_names=brands,
        category_weights=category_weights,
    )


def _tier_groups(products: pd.DataFrame) -> GroupSampler:
    """Sampler over group = category * N_BUCKETS + tier bucket, weight = popularity x tier fit."""
    m = len(products)
    centers = (np.arange(N_BUCKETS) + 0.5) / N_BUCKETS
    item = np.tile(np.arange(m), N_BUCKETS)
    bucket = np.repeat(np.arange(N_BUCKETS), m)
    cat = products["cat"].to_numpy()[item]
    fit = np.exp(-0.5 * ((products["tier"].to_numpy()[item] - centers[bucket]) / TIER_WIDTH) ** 2)
    weight = products["popularity"].to_numpy()[item] * (fit + 1e-3)
    return GroupSampler(cat * N_BUCKETS + bucket, item, weight, len(vocab.CATEGORIES) * N_BUCKETS)


def _lifecycle(
    products: pd.DataFrame, anchors: np.ndarray, span: Span, knobs: Knobs, rng: np.random.Generator
) -> None:
    """When each product appears, and when it is switched off (and maybe on again)."""
    m, d = len(products), span.days
    new = rng.random(m) < 0.2
    created = np.where(new, rng.uniform(0, 0.9 * d, m), -rng.uniform(30, 720, m))
    off = rng.random(m) < 0.06
    off[anchors] = False
    new[anchors] = False
    created[anchors] = -rng.uniform(200, 720, len(anchors))
    deact = np.where(off, np.maximum(created, 0) + rng.uniform(14, max(d, 15), m), NEVER)
    deact[deact >= d] = NEVER
    react = np.where(
        np.isfinite(deact) & (rng.random(m) < 0.4), deact + rng.uniform(10, 60, m), NEVER
    )
    react[react >= d] = NEVER
    products["created"] = created
    products["deact"] = deact
    products["react"] = react


def _complements(
    products: pd.DataFrame, subs: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """Two complements per product, drawn by popularity from its partner subcategory."""
    m = len(products)
    sub_row = products["sub_row"].to_numpy()
    by_name = {name: i for i, name in enumerate(subs["sub"])}
    partner = np.array([by_name[vocab.COMPLEMENTS[s]] for s in subs["sub"]])
    sampler = GroupSampler(sub_row, np.arange(m), products["popularity"].to_numpy(), len(subs))
    target = np.repeat(partner[sub_row], 2)
    comp = sampler.sample(target, rng.random(len(target)))
    # a partner subcategory with no product in a small shop: fall back to any popular product
    missing = ~sampler.has[target]
    anyone = GroupSampler(
        np.zeros(m, dtype=np.int64), np.arange(m), products["popularity"].to_numpy(), 1
    )
    comp[missing] = anyone.sample(
        np.zeros(missing.sum(), dtype=np.int64), rng.random(missing.sum())
    )
    own = np.repeat(np.arange(m), 2)
    comp[comp == own] = (comp[comp == own] + 1) % m
    return comp.reshape(m, 2)


def _change_log(
    products: pd.DataFrame, span: Span, knobs: Knobs, rng: np.random.Generator
) -> pd.DataFrame:
    """One row per product version: created, each price change, switch-off and switch-on."""
    m, d = len(products), span.days
    created = products["created"].to_numpy()
    live_from = np.maximum(created, 0.0)
    n_changes = rng.poisson(knobs.price_changes_per_year * (d - live_from) / 365.0)
    pc_prod = np.repeat(np.arange(m), n_changes)
    pc_day = rng.uniform(live_from[pc_prod], d)
    deact, react = products["deact"].to_numpy(), products["react"].to_numpy()
    off = np.flatnonzero(np.isfinite(deact))
    on = np.flatnonzero(np.isfinite(react))
    prod = np.concatenate([np.arange(m), pc_prod, off, on])
    day = np.concatenate([created, pc_day, deact[off], react[on]])
    factor = np.concatenate(
        [np.ones(m), np.exp(rng.normal(-0.01, 0.1, len(pc_prod))), np.ones(len(off) + len(on))]
    )
    kind = np.concatenate(
        [np.zeros(m), np.ones(len(pc_prod)), np.full(len(off), 2), np.full(len(on), 3)]
    ).astype(np.int8)
    log = pd.DataFrame({"product": prod, "day": day, "factor": factor, "kind": kind})
    log = log.sort_values(["product", "day", "kind"], kind="stable").reset_index(drop=True)
    log["day"] = _strictly_increasing(log["product"].to_numpy(), log["day"].to_numpy())
    raw = products["price0"].to_numpy()[log["product"]] * log.groupby("product")["factor"].cumprod()
    log["price"] = np.maximum(np.floor(raw.to_numpy()) + 0.99, 0.99)
    t = log["day"].to_numpy()
    p = log["product"].to_numpy()
    log["is_active"] = ~((deact[p] <= t) & (t < react[p]))
    log["inventory_quantity"] = np.where(log["is_active"], rng.poisson(60, len(log)), 0)
    return log.drop(columns=["factor"])


def _strictly_increasing(
    group: np.ndarray, day: np.ndarray, step: float = 1.0 / 86_400
) -> np.ndarray:
    """Nudge equal times within a group apart by a second, keeping (group, day) keys unique.

    Rows must be sorted by (group, day). y_i = max(x_i, y_{i-1} + step) equals
    cummax(x_i - i*step) + i*step within each group.
    """
    i = np.arange(len(day), dtype=np.float64)
    first = np.r_[True, group[1:] != group[:-1]][: len(group)]
    offset = np.maximum.accumulate(np.where(first, i, 0.0))
    rank = (i - offset) * step
    shifted = pd.Series(day - rank).groupby(group).cummax().to_numpy()
    return shifted + rank


class ProductPicker:
    """Draws products for shoppers: by category and price tier, only those live at that moment."""

    def __init__(self, catalog: Catalog):
        p = catalog.products
        self.catalog = catalog
        self.by_tier = _tier_groups(p)
        self.created = p["created"].to_numpy()
        self.deact = p["deact"].to_numpy()
        self.react = p["react"].to_numpy()

    def available(self, product: np.ndarray, day: np.ndarray) -> np.ndarray:
        return (self.created[product] <= day) & ~(
            (self.deact[product] <= day) & (day < self.react[product])
        )

    def pick(
        self,
        cat: np.ndarray,
        bucket: np.ndarray,
        day: np.ndarray,
        rng: np.random.Generator,
        tries: int = 4,
    ) -> np.ndarray:
        group = cat * N_BUCKETS + bucket
        out = self.by_tier.sample(group, rng.random(len(group)))
        for _ in range(tries):
            bad = np.flatnonzero(~self.available(out, day))
            if len(bad) == 0:
                return out
            out[bad] = self.by_tier.sample(group[bad], rng.random(len(bad)))
        bad = ~self.available(out, day)
        out[bad] = self.by_tier.heaviest[group[bad]]  # anchors are always live
        return out

    def pick_for(
        self,
        prefs: CustomerPrefs,
        who: np.ndarray,
        day: np.ndarray,
        rng: np.random.Generator,
        knobs: Knobs,
    ) -> np.ndarray:
        """Products for shoppers `who` (customer index, -1 for anonymous) at `day`."""
        n = len(who)
        known = who >= 0
        w = np.where(known, who, 0)
        slot = (rng.random(n)[:, None] > np.cumsum(prefs.cat_weights[w], axis=1)).sum(axis=1)
        slot = np.minimum(slot, prefs.cats.shape[1] - 1)
        cat = prefs.cats[w, slot]
        cw = self.catalog.category_weights
        wander = ~known | (rng.random(n) > knobs.category_focus)
        cat[wander] = rng.choice(len(cw), size=int(wander.sum()), p=cw)
        bucket = prefs.bucket[w].copy()
        roam = ~known | (rng.random(n) > knobs.tier_focus)
        bucket[roam] = rng.integers(0, N_BUCKETS, int(roam.sum()))
        return self.pick(cat, bucket, day, rng)


@dataclass
class CustomerPrefs:
    """What a shopper likes: 3 favourite categories with weights, and a price tier bucket."""

    cats: np.ndarray  # (n, 3)
    cat_weights: np.ndarray  # (n, 3), rows sum to 1
    bucket: np.ndarray  # (n,)
