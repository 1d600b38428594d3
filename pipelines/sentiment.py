"""VADER sentiment per review, with a defined value for every kind of text.

VADER is a fixed lexicon (no fitting), so a review's score depends on its text alone and is the same
in every batch, historical or incremental.

Values, for the review's title and body normalised together (pipelines.text.review_text):
- text in English, emoji-only included: VADER's compound score in [-1, 1] (VADER reads emoji
  through its emoji lexicon; an emoji it has no feeling for scores 0.0);
- no text at all (null, empty, markup only): null, and `is_negative` null;
- not English (pipelines.text.is_english): null; VADER's English lexicon would score a Spanish
  "no" as a negation and nothing else, which is noise, not sentiment.
A review is negative when its compound is <= -0.05, VADER's own threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import pandas as pd
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from pipelines.text import is_english

NEGATIVE_THRESHOLD = -0.05


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def compound(text: str) -> float:
    """VADER compound of one normalised text; NaN where the module docstring says null."""
    if not text or not is_english(text):
        return float("nan")
    return float(_analyzer().polarity_scores(text)["compound"])


def score(texts: Iterable[str]) -> pd.DataFrame:
    """`sentiment` (float, NaN = not measurable) and `is_negative` (nullable bool) per text."""
    values = np.fromiter((compound(t) for t in texts), dtype="float64")
    negative = pd.array(values <= NEGATIVE_THRESHOLD, dtype="boolean")
    negative[np.isnan(values)] = pd.NA
    return pd.DataFrame({"sentiment": values, "is_negative": negative})
