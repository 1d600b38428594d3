"""customer_reviews: what a customer's reviews say: how many, stars, VADER sentiment, topics.

Per-review NLP (pipelines.review_nlp): VADER compound sentiment, null for reviews without text or
not in English; a review is negative when its compound is <= -0.05. Means and shares are over the
reviews that have a value, and null when none has. Topics: the 10-topic LDA of
pipelines.topics, trained once on the reviews before its cutoff; `topic_k` is the mean topic
distribution of all the customer's reviews before T (lifetime: a customer writes few reviews, a
90-day mean would be null most of the time), and null before the model's cutoff, because a model
fitted on reviews up to the cutoff is not knowable earlier.

`persist` (run by pipelines.run before `compute`) loads or trains the topic model and adds the NLP
columns to `tables["reviews"]` (scoring only reviews it has not scored before) and the model's
cutoff as `tables["topic_model"]`; `compute` is then a pure function of its tables. Called
without `persist` (a unit test), `compute` scores sentiment itself and leaves topics null.

Accumulated as integers (pipelines.windows): ratings and sentiment in micro-units, topic
probabilities in 1e-10 units, so incremental runs equal a historical run bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import review_nlp
from pipelines.existence import customer_first_day
from pipelines.family import Input
from pipelines.specs import Feature, FeatureSource
from pipelines.topics import TOPIC_COLUMNS
from pipelines.windows import (
    MICRO,
    EntityIndex,
    Snapshots,
    Streams,
    day_ts,
    entry_day,
    fixed,
    to_day,
)

TOPIC_SCALE = (
    10**10
)  # topic probabilities in 1e-10 units: exact sums, no overflow below ~900M reviews

SOURCE = FeatureSource(
    name="customer_reviews",
    entity="customer",
    description="Reviews a customer wrote: counts, stars, VADER sentiment and LDA topics.",
    tags=(("domain", "customer"), ("family", "reviews")),
    features=(
        Feature("reviews_90d", "int64", "reviews written by the customer in the window", "90d", 0),
        Feature(
            "avg_rating_90d",
            "float64",
            "mean rating of the window's reviews; null when none",
            "90d",
        ),
        Feature(
            "avg_sentiment_90d",
            "float64",
            "mean VADER compound of the window's reviews with English text; null when none",
            "90d",
        ),
        Feature(
            "avg_sentiment_lifetime",
            "float64",
            "mean VADER compound of all reviews before T with English text; null when none",
            "lifetime",
        ),
        Feature(
            "negative_review_share_90d",
            "float64",
            "share of the window's reviews with "
            "English text whose compound is <= -0.05; null when none",
            "90d",
        ),
        *(
            Feature(
                col,
                "float64",
                f"mean probability of LDA topic {k} over the customer's "
                "reviews before T that the model can read; null when none, or before the "
                "topic model's cutoff",
                "lifetime",
            )
            for k, col in enumerate(TOPIC_COLUMNS)
        ),
    ),
)

INPUTS = (
    Input("customers", ("customer_id", "signup_ts", "updated_at")),
    Input("reviews", ("review_id", "customer_id", "rating", "title", "body", "review_ts")),
)


# How the Spark engine splits the inputs by customer (pipelines/spark/features.py): the topic model
# is fitted and the reviews scored once on the driver (`persist`, reading the reviews only); each
# customer shard attaches the scores (`attach`).
SHARD_BY = {"customers": "customer_id", "reviews": "customer_id"}
PERSIST_INPUTS = ("reviews",)


def persist(data_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Load or train the topic model; add the NLP columns and the model's cutoff to `tables`."""
    reviews = tables["reviews"]
    model = review_nlp.ensure_topic_model(data_dir, reviews)
    tables["reviews"] = review_nlp.enriched(data_dir, reviews, model)
    tables["topic_model"] = _model_info(model)


def attach(data_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """A shard's reviews with the NLP columns `persist` made on the driver, and the model's
    cutoff (read from the saved model and the NLP cache; never trains or writes)."""
    model = review_nlp.model_in_use(data_dir)
    tables["reviews"] = review_nlp.enriched(data_dir, tables["reviews"], model, keep=False)
    tables["topic_model"] = _model_info(model)


def _model_info(model) -> pd.DataFrame:
    return pd.DataFrame(
        {"version": [model.version] if model else [], "cutoff": [model.cutoff] if model else []}
    )


def compute(
    tables: dict[str, pd.DataFrame], snapshots: Snapshots, prior: pd.DataFrame
) -> pd.DataFrame:
    index = EntityIndex(tables["customers"]["customer_id"])
    first_day = customer_first_day(tables["customers"], index)
    reviews = tables["reviews"]
    if "sentiment" not in reviews:
        reviews = review_nlp.enrich_reviews(reviews, None)
    model_day = _model_day(tables.get("topic_model"))

    r = reviews.assign(c=index.codes(reviews["customer_id"]), enter=entry_day(reviews["review_ts"]))
    r = r[r["c"] >= 0]
    c, enter = r["c"].to_numpy(), r["enter"].to_numpy()
    felt = r["sentiment"].notna().to_numpy().astype(np.int64)
    negative = r["is_negative"].fillna(False).to_numpy(dtype=bool).astype(np.int64)
    read = r[TOPIC_COLUMNS[0]].notna().to_numpy().astype(np.int64)

    s = Streams()
    s.points(np.arange(len(index)), first_day)
    s.window(
        c,
        enter,
        90,
        reviews_90d=np.ones(len(r), np.int64),
        rating_90d=fixed(r["rating"]),
        felt_90d=felt,
        sentiment_90d=fixed(r["sentiment"]),
        negative_90d=negative,
    )
    s.window(
        c,
        enter,
        None,
        felt_life=felt,
        sentiment_life=fixed(r["sentiment"]),
        read_life=read,
        **{col: fixed(r[col], TOPIC_SCALE) for col in TOPIC_COLUMNS},
    )
    if model_day is not None:  # topics appear on the model's first day for earlier reviewers
        s.points(np.unique(c[read == 1]), np.full(len(np.unique(c[read == 1])), model_day))
    acc = s.evaluate(snapshots.start_day, snapshots.end_day)
    alive = acc.day >= first_day[acc.entity]
    entity, day = acc.entity[alive], acc.day[alive]
    v = {k: a[alive] for k, a in acc.values.items()}

    out = pd.DataFrame({"customer_id": index.lookup(entity), "event_timestamp": day_ts(day)})
    out["reviews_90d"] = v["reviews_90d"]
    out["avg_rating_90d"] = _ratio(v["rating_90d"] / MICRO, v["reviews_90d"])
    out["avg_sentiment_90d"] = _ratio(v["sentiment_90d"] / MICRO, v["felt_90d"])
    out["avg_sentiment_lifetime"] = _ratio(v["sentiment_life"] / MICRO, v["felt_life"])
    out["negative_review_share_90d"] = _ratio(v["negative_90d"], v["felt_90d"])
    known = day >= model_day if model_day is not None else np.zeros(len(day), bool)
    for col in TOPIC_COLUMNS:
        out[col] = np.where(known, _ratio(v[col] / TOPIC_SCALE, v["read_life"]), np.nan)
    return out


def _model_day(info: pd.DataFrame | None) -> int | None:
    """First snapshot at which the topic model is knowable: its cutoff (a 00:00 UTC)."""
    if info is None or info.empty or pd.isna(info["cutoff"].iloc[0]):
        return None
    return to_day(pd.Timestamp(info["cutoff"].iloc[0]))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(len(num), np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out
