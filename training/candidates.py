"""Candidate generation: which products a customer could be shown, and which source offered each.

One implementation for training and serving. Training draws its negatives and its evaluation lists
from here, using feature values read offline as of each example's timestamp; the API calls the same
`generate` on the values it reads online. If the two used different candidates, the ranker would be
trained on one distribution and used on another.

Inputs are plain values (no Feast, no I/O), all of them feature values a store can serve:
- the customer's `recent_product_ids`, `frequent_product_ids` and favourite category (customer
  features),
- each recent product's co-purchase neighbours with scores (`product_copurchase`),
- a `Catalog` of products with category, popularity and price (`product_stats`).

Sources, in priority order (a product offered by two sources keeps the first):
`session` (the live session, `customer_session` from the event stream: what the customer carted,
then viewed, in the last hours, most recent first, then what is bought together with those; empty
unless the config asks for it and the caller has a session), `history` (the customer's own recent
products, most recent first: in shops where people re-buy, what a customer bought is the likeliest
thing they buy again; the API's `exclude_purchased` removes them again), `frequent` (the
customer's most-bought products, by the number of their orders holding each, most first: the
recent ones are a small part of what a re-buying customer buys again; on Complete Journey a
household's last 10 distinct products hold 9.8% of a basket, its 50 most-bought 31.3%;
`exclude_purchased` removes them too), `copurchase` (bought
together with the customer's recent products, score summed over them), `category_fit` (the
products of the customer's categories by an estimate of how likely the customer picks each: the
category's share of their recent and most-bought products, with a prior of what everyone buys,
times the product's share of the category's popularity, weighed by how near its price level is to
theirs: where people mostly buy new products in their usual categories, as on the generator's
shops, this is what holds them), `category_popular` (most popular in the customer's
categories), `popular` (most popular overall), `random` (exploration; also what teaches a ranker
that unrelated products are unlikely).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

# What the generator reads, through two feature services (one per entity, so neither side needs
# a made-up key for the other): the customer's side and each product's side.
CUSTOMER_SERVICE = "candidate_customer_v1"
PRODUCT_SERVICE = "candidate_product_v1"
RECENT = "recent_product_ids"  # customer_activity, most recent first
FREQUENT = "frequent_product_ids"  # customer_activity, most-bought first
FAVOURITE = "favourite_category_90d"  # customer_activity
PURCHASED = "purchased_product_ids"  # optional: every product the customer bought
CATEGORY = "category"  # product_stats
POPULARITY = "product_popularity_30d"  # product_stats
PRICE = "product_price"  # product_stats: the `category_fit` source's price levels
NEIGHBOUR_IDS = "copurchase_product_ids"  # product_copurchase
NEIGHBOUR_SCORES = "copurchase_scores"  # product_copurchase
# The live session, through its own service (customer_session is written by the stream worker).
SESSION_SERVICE = "candidate_session_v1"
SESSION_CARTED = "recent_carted_product_ids"  # customer_session, most recent first
SESSION_VIEWED = "recent_viewed_product_ids"  # customer_session, most recent first


def session_products(carted: object, viewed: object) -> list[str]:
    """The session's products, carted ones first (the stronger intent), each once."""
    return list(dict.fromkeys([*id_list(carted), *id_list(viewed)]))


def id_list(value: object) -> list[str]:
    """A served list of ids as strings: missing (None, NaN, a bare string) is empty, and null
    items are dropped. Training (offline frames) and serving (online columns) both read lists
    through this one function."""
    if value is None or isinstance(value, (str, bytes, float)):
        return []
    return [str(v) for v in value if v is not None and v == v]


def category_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class CandidateConfig:
    """How many candidates each source may add (before de-duplication) and the overall cap."""

    copurchase: int = 100
    category_popular: int = 40
    history: int = 0  # of the customer's recent products, offered first
    frequent: int = 0  # of the customer's most-bought products, after history
    session: int = 0  # of the live session's products and their co-purchases, before history
    category_fit: int = (
        0  # of the customer's categories' products by estimated pick, after copurchase
    )
    popular: int = 30
    random: int = 30
    max_candidates: int = 200


# What the API offers (serving/scoring.py): the customer's recent and most-bought products,
# co-purchases, the customer's categories' likeliest products (`category_fit`), category
# favourites, then popularity up to 200, no random products. Training evaluates on this list.
# copurchase 100 / category_fit 100 (issue 18, scripts/candidate_recall.py, docs/training.md): the
# bench shop's candidates hold 60.8% (55.1% without category_fit), the demo's 96.6% (93.7%) with
# the ranker's NDCG@10 unchanged there (0.292); 70/130 holds 61.8% on the bench shop but the
# demo's ranker scored 0.289.
API_CONFIG = CandidateConfig(
    copurchase=100,
    category_popular=40,
    popular=200,
    random=0,
    max_candidates=200,
    history=10,
    frequent=50,
    session=20,
    category_fit=100,
)


@dataclass(frozen=True)
class Catalog:
    """Products as of one moment, ordered by popularity (most popular first)."""

    product_ids: np.ndarray
    category: dict[str, str]
    by_category: dict[str, list[str]]
    # aligned with product_ids (what `category_fit` weighs by); None: not read
    popularity: np.ndarray | None = field(default=None, compare=False, repr=False)
    price: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        popularity: str = "popularity",
        category: str = "category",
        price: str | None = None,
    ) -> Catalog:
        """From a frame with `product_id`, a category column, a popularity column and, when
        `price` names one, a price column (the `category_fit` source's price level).

        Ties in popularity break by product id, so the order is the same on every machine.
        """
        cols = ["product_id", category, popularity] + ([price] if price else [])
        f = frame[cols].copy()
        f["_pop"] = pd.to_numeric(f[popularity], errors="coerce").fillna(0.0)
        f["_cat"] = f[category].astype("object").where(f[category].notna(), "unknown")
        f = f.sort_values(["_pop", "product_id"], ascending=[False, True])
        ids = f["product_id"].astype(str).to_numpy()
        cats = f["_cat"].astype(str).to_numpy()
        by_cat: dict[str, list[str]] = {}
        for pid, cat in zip(ids, cats, strict=True):
            by_cat.setdefault(cat, []).append(pid)
        prices = _prices(f, price)
        pops = f["_pop"].to_numpy(dtype=np.float64)
        return cls(ids, dict(zip(ids, cats, strict=True)), by_cat, pops, prices)

    @classmethod
    def by_day(
        cls,
        frame: pd.DataFrame,
        day: str = "event_timestamp",
        popularity: str = "popularity",
        category: str = "category",
        price: str | None = None,
    ) -> dict:
        """`from_frame` of each `day` group of `frame`, {day: Catalog}, with one sort of the whole
        frame instead of one per day (a product appears once a day, so the order within a day is
        the same: popularity, then product id)."""
        f = frame[[day, "product_id"] + ([price] if price else [])].copy()
        f["_pop"] = pd.to_numeric(frame[popularity], errors="coerce").fillna(0.0)
        f["_cat"] = frame[category].astype("object").where(frame[category].notna(), "unknown")
        f = f.sort_values([day, "_pop", "product_id"], ascending=[True, False, True])
        ids = f["product_id"].astype(str).to_numpy()
        cats = f["_cat"].astype(str).to_numpy()
        pops = f["_pop"].to_numpy(dtype=np.float64)
        prices = _prices(f, price)
        cut = np.flatnonzero(f[day].ne(f[day].shift()).to_numpy())
        out = {}
        for key, lo, hi in zip(f[day].iloc[cut], cut, [*cut[1:], len(f)], strict=True):
            day_ids, day_cats = ids[lo:hi], cats[lo:hi]
            by_cat: dict[str, list[str]] = {}
            for pid, cat in zip(day_ids, day_cats, strict=True):  # numpy str, as from_frame
                by_cat.setdefault(cat, []).append(pid)
            out[key] = cls(
                day_ids,
                dict(zip(day_ids, day_cats, strict=True)),
                by_cat,
                pops[lo:hi],
                None if prices is None else prices[lo:hi],
            )
        return out

    def popular(self, n: int) -> list[str]:
        return self._ids[:n]  # str, not numpy's str_

    @cached_property
    def _ids(self) -> list[str]:
        """`product_ids` as a list of str, made once (training asks a catalog 10,000 times)."""
        return self.product_ids.tolist()

    def warm(self) -> Catalog:
        """Make now what `category_fit` reads of the catalog (once per catalog, not in the
        first request that needs it)."""
        _ = self._ids, self.levels, self.category_share
        return self

    @cached_property
    def levels(self) -> dict[str, float]:
        """Each product's price level: its price percentile within its category, in (0, 1)
        (the middle of its rank; ties by popularity order); empty without prices. A customer's
        price level is the mean of what they bought (`category_fit`)."""
        if self.price is None:
            return {}
        out: dict[str, float] = {}
        for ids, _, level in self.by_category_arrays.values():
            out.update(zip(ids.tolist(), level.tolist(), strict=True))
        return out

    @cached_property
    def by_category_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """{category: (product ids, popularity, price level)} in popularity order, as numpy
        arrays (ids of str); the price level is NaN without prices."""
        pops = self.popularity if self.popularity is not None else np.zeros(len(self.product_ids))
        at = {pid: i for i, pid in enumerate(self._ids)}
        out = {}
        for cat, ids in self.by_category.items():
            idx = np.fromiter((at[p] for p in ids), dtype=np.int64, count=len(ids))
            if self.price is None:
                level = np.full(len(ids), np.nan)
            else:
                price = self.price[idx]
                known = ~np.isnan(price)
                ranks = pd.Series(price).rank(method="first").to_numpy()
                level = np.where(known, (ranks - 0.5) / max(1, int(known.sum())), 0.5)
            out[cat] = (np.asarray([str(p) for p in ids], dtype=str), pops[idx], level)
        return out

    @cached_property
    def fit_cache(self) -> dict:
        """category_fit's best products per (category, price level, n), made as asked."""
        return {}

    @cached_property
    def category_share(self) -> dict[str, float]:
        """Each category's share of the catalog's popularity (how often anyone buys in it)."""
        totals = {c: float(a[1].sum()) for c, a in self.by_category_arrays.items()}
        whole = sum(totals.values())
        return {c: (v / whole if whole > 0 else 0.0) for c, v in totals.items()}


def _prices(frame: pd.DataFrame, price: str | None) -> np.ndarray | None:
    if not price:
        return None
    return pd.to_numeric(frame[price], errors="coerce").to_numpy(dtype=np.float64)


def neighbours_from_arrays(
    product_ids: Iterable[str], neighbour_ids: Iterable, scores: Iterable
) -> dict[str, list[tuple[str, float]]]:
    """Co-purchase lists from array-valued feature columns (one row per product)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for pid, ids, sc in zip(product_ids, neighbour_ids, scores, strict=True):
        if ids is None or sc is None or (isinstance(ids, float) and np.isnan(ids)):
            continue
        if isinstance(ids, np.ndarray):  # tolist: str and float already, as str() and float()
            ids = ids.tolist()
        if isinstance(sc, np.ndarray):
            sc = sc.tolist()
        out[str(pid)] = list(zip(map(str, ids), map(float, sc), strict=False))
    return out


def copurchase_scores(
    recent: Sequence[str], neighbours: Mapping[str, Sequence[tuple[str, float]]]
) -> dict[str, float]:
    """Sum of co-purchase scores of each product with the customer's recent products."""
    scores: dict[str, float] = {}
    for p in dict.fromkeys(recent):
        for q, s in neighbours.get(p, ()):
            scores[q] = scores.get(q, 0.0) + s
    return scores


def customer_categories(
    recent: Sequence[str], favourite: str | None, catalog: Catalog
) -> list[str]:
    """The favourite category first, then the categories of recent products, most frequent first."""
    counts: dict[str, int] = {}
    for p in recent:
        c = catalog.category.get(p)
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    cats = sorted(counts, key=lambda c: (-counts[c], c))
    if favourite and isinstance(favourite, str):
        cats = [favourite] + [c for c in cats if c != favourite]
    return cats


# `category_fit`: a category's weight for a customer is (their products in it + FIT_PRIOR x the
# category's share of all purchases) / (their products + FIT_PRIOR), so a customer of few
# purchases leans on what everyone buys; within a category a product weighs its popularity x
# exp(-((its price level - the customer's) / FIT_WIDTH)^2 / 2) + FIT_FLOOR (FIT_FLOOR: a product
# far from the customer's price level still counts a little).
# Measured on the bench shop (scripts/candidate_recall.py, copurchase 50 / category_fit 150):
# FIT_PRIOR 0.5, 2 and 5 hold 61.3-61.4%; FIT_WIDTH 0.15 60.6%, 0.2 61.4%, 0.3 61.5%, no price
# weighing 61.2% (the generator's hidden price tiers would be worth 2 points, docs/training.md).
FIT_PRIOR = 2.0
FIT_WIDTH = 0.2
FIT_FLOOR = 0.05


LEVEL_STEPS = 100  # the customer's price level is rounded to 0.01


def _category_best(
    catalog: Catalog, c: str, level: float | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Category c's `n` best products for a customer at price `level` (and every product tied
    with the n-th): (ids, their share of the category's weight), in the category's order."""
    cat_ids, pop, lv = catalog.by_category_arrays[c]
    w = (
        pop * (np.exp(-0.5 * ((lv - level) / FIT_WIDTH) ** 2) + FIT_FLOOR)
        if level is not None
        else pop
    )
    z = w.sum()
    if z <= 0:
        return cat_ids[:0], w[:0]
    if len(w) > n:  # ties with the n-th go by id in category_fit_ranking's sort
        top = np.flatnonzero(w >= np.partition(w, len(w) - n)[len(w) - n])
        return cat_ids[top], w[top] / z
    return cat_ids, w / z


def category_fit_ranking(
    bought: Sequence[str], favourite: str | None, catalog: Catalog, n: int
) -> list[tuple[str, float]]:
    """The `category_fit` source: products of the customer's categories by an estimate of how
    likely the customer picks each, `n` best first: (product, estimate).

    The estimate is the category's weight for the customer times the product's share of the
    category's popularity, weighed by how near its price level (`Catalog.levels`) is to the mean
    price level of what the customer bought (no weighing without prices). `bought`: the
    customer's products (recent and most-bought); `favourite` counts as one more product of its
    category. Empty for a customer who bought nothing."""
    if n <= 0:
        return []
    counts: dict[str, int] = {}
    levels = catalog.levels
    mine = []
    for p in dict.fromkeys(bought):
        c = catalog.category.get(p)
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
        lv = levels.get(p)
        if lv is not None:
            mine.append(lv)
    if favourite and isinstance(favourite, str) and favourite in catalog.by_category:
        counts[favourite] = counts.get(favourite, 0) + 1
    if not counts:
        return []
    total = sum(counts.values())
    share = catalog.category_share
    # the customer's price level to 1/LEVEL_STEPS: each category's best products at a level are
    # made once per catalog and kept (`Catalog.fit_cache`), not per request
    level = round(float(np.mean(mine)) * LEVEL_STEPS) / LEVEL_STEPS if mine else None
    cache = catalog.fit_cache
    ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for c, k in counts.items():
        best = cache.get((c, level, n))
        if best is None:
            best = cache[(c, level, n)] = _category_best(catalog, c, level, n)
        if len(best[0]):
            weight = (k + FIT_PRIOR * share.get(c, 0.0)) / (total + FIT_PRIOR)
            ids.append(best[0])
            scores.append(best[1] * weight)
    if not ids:
        return []
    every, score = np.concatenate(ids), np.concatenate(scores)
    order = np.lexsort((every, -score))[:n]  # best first, then by product id
    return list(zip(every[order].tolist(), score[order].tolist(), strict=True))


def generate(
    recent: Sequence[str],
    neighbours: Mapping[str, Sequence[tuple[str, float]]],
    favourite_category: str | None,
    catalog: Catalog,
    rng: np.random.Generator | None = None,
    config: CandidateConfig = CandidateConfig(),
    exclude: Iterable[str] = (),
    session: Sequence[str] = (),
    frequent: Sequence[str] = (),
) -> pd.DataFrame:
    """Candidates for one customer: `product_id, source, source_score`, best-first within source.

    `recent` may be empty (a customer with no purchases gets category and global popularity);
    `rng` None means no random candidates (what a deterministic API call would use); `session`:
    `session_products` of the customer's live session (`neighbours` should hold theirs too);
    `frequent`: the customer's most-bought products, most first (`frequent_product_ids`).
    """
    rows = generate_rows(
        recent, neighbours, favourite_category, catalog, rng, config, exclude, session, frequent
    )
    return pd.DataFrame(rows, columns=["product_id", "source", "source_score"])


def generate_rows(
    recent: Sequence[str],
    neighbours: Mapping[str, Sequence[tuple[str, float]]],
    favourite_category: str | None,
    catalog: Catalog,
    rng: np.random.Generator | None = None,
    config: CandidateConfig = CandidateConfig(),
    exclude: Iterable[str] = (),
    session: Sequence[str] = (),
    frequent: Sequence[str] = (),
) -> list[tuple[str, str, float]]:
    """`generate` as (product_id, source, source_score) tuples, without the frame (for serving,
    where a DataFrame of 200 rows costs more than finding them)."""
    ids, sources, scores = generate_columns(
        recent, neighbours, favourite_category, catalog, rng, config, exclude, session, frequent
    )
    return list(zip(ids, sources, scores, strict=True))


def generate_columns(
    recent: Sequence[str],
    neighbours: Mapping[str, Sequence[tuple[str, float]]],
    favourite_category: str | None,
    catalog: Catalog,
    rng: np.random.Generator | None = None,
    config: CandidateConfig = CandidateConfig(),
    exclude: Iterable[str] = (),
    session: Sequence[str] = (),
    frequent: Sequence[str] = (),
    co: Mapping[str, float] | None = None,
) -> tuple[list[str], list[str], list[float]]:
    """`generate_rows` as three lists (product ids, sources, source scores), what training frames
    1.7M candidate rows from. `co`: `copurchase_scores(recent, neighbours)` when the caller has
    it already (training uses it as a feature too).

    Once `max_candidates` are offered nothing more is, so the loops stop there; the random draw
    is made all the same (the generator's stream must not depend on how full the list is)."""
    excluded = set(exclude)
    cap = config.max_candidates
    seen: set[str] = set()
    ids: list[str] = []
    sources: list[str] = []
    scores: list[float] = []

    def offer(pid: str, source: str, score: float) -> None:
        if pid not in seen and pid not in excluded and len(ids) < cap:
            seen.add(pid)
            ids.append(pid)
            sources.append(source)
            scores.append(score)

    if config.session > 0 and session:
        live = list(dict.fromkeys(session))
        near = copurchase_scores(live, neighbours)
        ranked = [(p, 1.0 / (r + 1)) for r, p in enumerate(live)]
        ranked += sorted(near.items(), key=lambda kv: (-kv[1], kv[0]))
        for pid, score in ranked:
            if len(ids) >= config.session:  # the session comes first: rows are all its own
                break
            offer(pid, "session", score)

    for rank, pid in enumerate(list(dict.fromkeys(recent))[: config.history]):
        offer(pid, "history", 1.0 / (rank + 1))
    for rank, pid in enumerate(list(dict.fromkeys(frequent))[: config.frequent]):
        offer(pid, "frequent", 1.0 / (rank + 1))
    if co is None:
        co = copurchase_scores(recent, neighbours)
    if config.copurchase > 0:
        for pid, s in sorted(co.items(), key=lambda kv: (-kv[1], kv[0]))[: config.copurchase]:
            if len(ids) >= cap:
                break
            if pid not in seen and pid not in excluded:  # offer(), inlined: the hot loops
                seen.add(pid)
                ids.append(pid)
                sources.append("copurchase")
                scores.append(s)
    if config.category_fit > 0 and len(ids) < cap:
        bought = [*recent, *frequent]
        for pid, s in category_fit_ranking(
            bought, favourite_category, catalog, config.category_fit
        ):
            if len(ids) >= cap:
                break
            offer(pid, "category_fit", s)
    cats = customer_categories(recent, favourite_category, catalog)
    if cats:
        per_cat = max(1, config.category_popular // len(cats))
        taken = 0
        for c in cats:
            for rank, pid in enumerate(catalog.by_category.get(c, [])[:per_cat]):
                if taken >= config.category_popular:
                    break
                offer(pid, "category_popular", 1.0 / (rank + 1))
                taken += 1
    if len(ids) < cap:
        for rank, pid in enumerate(catalog.popular(config.popular)):
            if len(ids) >= cap:
                break
            if pid not in seen and pid not in excluded:
                seen.add(pid)
                ids.append(pid)
                sources.append("popular")
                scores.append(1.0 / (rank + 1))
    if rng is not None and config.random > 0 and len(catalog.product_ids):
        pool = catalog.product_ids
        draw = rng.choice(len(pool), size=min(len(pool), config.random * 2), replace=False)
        added = 0
        for i in draw:
            if added >= config.random or len(ids) >= cap:
                break
            before = len(ids)
            offer(str(pool[i]), "random", 0.0)
            added += len(ids) > before
    return ids, sources, scores


def personal_frequency_ranking(
    counts: Mapping[str, tuple[int, float]], catalog: Catalog, k: int, exclude: Iterable[str] = ()
) -> list[str]:
    """The re-buy baseline: the customer's own products by how many of their orders held them
    (`counts[product] = (orders, last order time as a number)`), more recent first among equals,
    topped up with popularity; `exclude` is left out (the API's `exclude_purchased`)."""
    excluded = set(exclude)
    own = sorted(counts.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    ranked = [p for p, _ in own if p not in excluded][:k]
    return _top_up(ranked, catalog, k, excluded)


def _top_up(ranked: list[str], catalog: Catalog, k: int, excluded: set[str]) -> list[str]:
    seen = set(ranked)
    for p in catalog.popular(k + len(ranked) + len(excluded)):
        if len(ranked) >= k:
            break
        if p not in seen and p not in excluded:
            ranked.append(p)
            seen.add(p)
    return ranked


def copurchase_ranking(
    recent: Sequence[str],
    neighbours: Mapping[str, Sequence[tuple[str, float]]],
    catalog: Catalog,
    k: int,
    exclude: Iterable[str] = (),
) -> list[str]:
    """The co-purchase-only baseline: by summed co-purchase score, topped up with popularity;
    `exclude` is left out."""
    excluded = set(exclude)
    co = copurchase_scores(recent, neighbours)
    ranked = [p for p, _ in sorted(co.items(), key=lambda kv: (-kv[1], kv[0])) if p not in excluded]
    return _top_up(ranked[:k], catalog, k, excluded)


def popularity_ranking(catalog: Catalog, k: int, exclude: Iterable[str] = ()) -> list[str]:
    """The popularity baseline: the catalog's most popular products, `exclude` left out."""
    return _top_up([], catalog, k, set(exclude))
