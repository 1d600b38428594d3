"""Reviews whose words follow their stars.

Who reviews: a few percent of bought lines, more after a refund and more from a customer in decline
(unhappy people write). The rating comes from a latent satisfaction lowered by lemons, returns and
decline. The text is built from per-rating sentences with plainly positive or negative words, so a
lexicon model (VADER) recovers the rating's direction, plus the mess real reviews have: empty and
missing bodies, emoji-only, HTML markup, and German, French and Spanish text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopfeast.generator.catalog import Catalog
from shopfeast.generator.config import Knobs, Span

RATING_CUTS = (-0.9, -0.3, 0.4, 1.1)  # latent satisfaction -> 1..5 stars

SENTENCES: dict[int, tuple[str, ...]] = {
    5: (
        "I love this {}, it works perfectly.",
        "Excellent quality and great value for money!",
        "Absolutely fantastic {}, highly recommended.",
        "Best {} I have ever bought, amazing.",
        "Super happy with it, delivery was fast too.",
        "Wonderful product, my family loves it.",
    ),
    4: (
        "Good {}, does what it promises.",
        "Nice quality for the price, I am pleased.",
        "Works well, just a little smaller than expected.",
        "Pretty good {}, would buy again.",
        "Solid choice, happy with the purchase.",
    ),
    3: (
        "The {} is okay, nothing special.",
        "Average quality, it does the job.",
        "Decent, but I expected a bit more.",
        "It is fine for the price.",
        "Mixed feelings about this {}.",
    ),
    2: (
        "Not great, the {} feels cheap.",
        "Disappointed with the quality.",
        "It works, but poorly, and the finish is bad.",
        "Below expectations, I would not buy it again.",
        "The {} arrived late and scratched.",
    ),
    1: (
        "Terrible {}, it broke after two days.",
        "Awful quality, a complete waste of money.",
        "Worst purchase ever, I want a refund.",
        "Horrible, it stopped working immediately.",
        "Very bad {}, do not buy this.",
    ),
}
TITLES: dict[int, tuple[str, ...]] = {
    5: ("Love it", "Excellent", "Perfect!", "Highly recommend", "Amazing"),
    4: ("Very good", "Nice", "Good value", "Happy with it"),
    3: ("Okay", "Average", "It's fine", "Meh"),
    2: ("Disappointing", "Not great", "Poor quality"),
    1: ("Terrible", "Awful", "Waste of money", "Do not buy"),
}
# by mood: 0 negative (1-2 stars), 1 neutral (3), 2 positive (4-5)
FOREIGN = (
    (
        "Schlechte Qualität, leider kaputt.",
        "Produit décevant, il ne marche pas.",
        "Mala calidad, no lo recomiendo.",
    ),
    ("Ganz okay, nichts Besonderes.", "Correct, sans plus.", "Normal, cumple su función."),
    (
        "Sehr gut, ich bin total zufrieden.",
        "Très bon produit, je le recommande.",
        "Muy buen producto, me encanta.",
    ),
)
EMOJI = (("😡👎", "👎👎", "💩"), ("😐", "🤷"), ("😍😍👍", "❤️❤️❤️", "👍"))
QUIRKS = {"empty": 0.03, "missing": 0.01, "emoji": 0.02, "html": 0.02, "foreign": 0.03}


def build(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    catalog: Catalog,
    span: Span,
    knobs: Knobs,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Reviews sorted by time: who, product, rating, title, body, t."""
    o = lines["order"].to_numpy()
    who = orders["who"].to_numpy()[o]
    prog = orders["alarm"].to_numpy()[o]
    kept = (orders["status"].to_numpy()[o] != 1) & (who >= 0)
    returned = lines["returned"].to_numpy()
    p = knobs.review_rate + knobs.review_after_refund * returned + knobs.decline_review * prog
    t = lines["t"].to_numpy() + 2.0 + rng.exponential(6.0, len(lines))
    pick = kept & (rng.random(len(lines)) < p) & (t < span.days - 0.01)
    r = pd.DataFrame(
        {
            "who": who[pick],
            "product": lines["product"].to_numpy()[pick],
            "t": t[pick],
            "lemon": lines["lemon"].to_numpy()[pick],
            "returned": returned[pick],
            "alarm": prog[pick],
        }
    )
    r = r.sort_values("t", kind="stable").drop_duplicates(["who", "product"]).reset_index(drop=True)
    x = (
        1.25
        - 2.2 * r["lemon"]
        - 1.6 * r["returned"]
        - 1.6 * r["alarm"]
        + rng.normal(0.0, 1.0, len(r))
    ).to_numpy()
    r["rating"] = (1 + np.searchsorted(RATING_CUTS, x)).astype(np.float64)
    nouns = np.array(catalog.subcategory_nouns, dtype=object)[
        catalog.products["sub_row"].to_numpy()[r["product"].to_numpy()]
    ]
    r["title"], r["body"] = _texts(r["rating"].to_numpy().astype(int), nouns, rng)
    return r.drop(columns=["lemon", "returned", "alarm"])


def _pick(
    table: dict[int, tuple[str, ...]],
    rating: np.ndarray,
    rng: np.random.Generator,
    avoid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A template per row from the row's rating class; returns (template, index) object arrays."""
    out = np.empty(len(rating), dtype=object)
    idx = np.zeros(len(rating), dtype=np.int64)
    for stars, options in table.items():  # five classes, not rows
        rows = np.flatnonzero(rating == stars)
        k = rng.integers(0, len(options), len(rows))
        if avoid is not None:  # a different sentence from the first one
            k = (avoid[rows] + 1 + rng.integers(0, len(options) - 1, len(rows))) % len(options)
        out[rows] = np.array(options, dtype=object)[k]
        idx[rows] = k
    return out, idx


def _fill(template: np.ndarray, noun: np.ndarray) -> np.ndarray:
    """Put each row's noun into its template's `{}` (split once per distinct template)."""
    out = np.empty(len(template), dtype=object)
    for t in set(template.tolist()):  # a few dozen templates, not rows
        rows = np.flatnonzero(template == t)
        if "{}" in t:
            pre, post = t.split("{}", 1)
            out[rows] = pre + noun[rows] + post
        else:
            out[rows] = t
    return out


def _texts(
    rating: np.ndarray, noun: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = len(rating)
    s1, k1 = _pick(SENTENCES, rating, rng)
    s2, _ = _pick(SENTENCES, rating, rng, avoid=k1)
    body = _fill(s1, noun) + " " + _fill(s2, noun)
    title, _ = _pick(TITLES, rating, rng)
    title = np.where(rng.random(n) < 0.1, None, title)
    mood = np.where(rating <= 2, 0, np.where(rating == 3, 1, 2))
    quirk = rng.choice(len(QUIRKS) + 1, n, p=[*QUIRKS.values(), 1 - sum(QUIRKS.values())])
    names = list(QUIRKS)
    for q, name in enumerate(names):
        rows = np.flatnonzero(quirk == q)
        if name == "empty":
            body[rows] = ""
        elif name == "missing":
            body[rows] = None
        elif name == "emoji":
            body[rows] = _mood_choice(EMOJI, mood[rows], rng)
        elif name == "html":
            body[rows] = "<p>" + body[rows] + "</p><br/>"
        elif name == "foreign":
            body[rows] = _mood_choice(FOREIGN, mood[rows], rng)
    return title, body


def _mood_choice(
    options: tuple[tuple[str, ...], ...], mood: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    out = np.empty(len(mood), dtype=object)
    for m, opts in enumerate(options):
        rows = np.flatnonzero(mood == m)
        out[rows] = np.array(opts, dtype=object)[rng.integers(0, len(opts), len(rows))]
    return out
