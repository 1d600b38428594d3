"""Per-review NLP columns: the input of the customer_reviews feature family.

Each column depends on the review's own text (and the fixed topic model) only, so a review enriched
in a daily batch gets exactly the values a historical run gives it.
"""

from __future__ import annotations

import pandas as pd

from pipelines import sentiment, topics
from pipelines.topics import TOPIC_COLUMNS, TopicModel

NLP_COLUMNS = ["sentiment", "is_negative", *TOPIC_COLUMNS]


def enrich_reviews(reviews: pd.DataFrame, topic_model: TopicModel | None) -> pd.DataFrame:
    """`reviews` plus `sentiment`, `is_negative` and `topic_0..topic_9`.

    sentiment/is_negative: pipelines.sentiment (null for no text or non-English text).
    topic_k: the review's topic distribution under `topic_model`; null when there is no model yet
    or the text gives the model nothing to go on (pipelines.topics.transform_texts).
    """
    texts = topics.texts_of(reviews)
    out = reviews.copy()
    scores = sentiment.score(texts)
    out["sentiment"] = scores["sentiment"].to_numpy()
    out["is_negative"] = scores["is_negative"].array
    if topic_model is None:
        for col in TOPIC_COLUMNS:
            out[col] = float("nan")
    else:
        values = topics.transform_texts(topic_model, texts)
        for k, col in enumerate(TOPIC_COLUMNS):
            out[col] = values[:, k]
    return out
