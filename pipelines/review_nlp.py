"""Per-review NLP columns (the input of the customer_reviews feature family), and the state they
need under a data directory: the topic model in use and a cache of already scored reviews.

Each column depends on the review's own text and the fixed topic model only, so a review enriched
in a daily batch gets exactly the values a historical run gives it, and a review scored once never
needs scoring again.

    DIR/models/topics/<version>/                        the saved topic models (pipelines.topics)
    DIR/state/features/customer_reviews.topic_model.json  which version the features use
    DIR/state/features/customer_reviews.nlp/part-*.parquet  review_id -> NLP columns, per version

The topic model is trained once, when the shop first has MIN_TRAIN_REVIEWS reviews spread over at
least MIN_TRAIN_DAYS days: its cutoff is the first 00:00 UTC with both before it, and it sees
exactly the reviews before that cutoff (sorted by time and id, so every run that reaches that day
trains the same model, unless reviews for days before the cutoff arrive after it was trained). From
then on it is reused, in historical rebuilds too; delete the pointer file to retrain.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import sentiment, topics
from pipelines.storage import state_dir
from pipelines.topics import DEFAULT_SEED, TOPIC_COLUMNS, TopicModel

NLP_COLUMNS = ["sentiment", "is_negative", *TOPIC_COLUMNS]
MIN_TRAIN_REVIEWS = 300
MIN_TRAIN_DAYS = 30
_NAME = "customer_reviews"
NO_MODEL = ""
MAX_PARTS = 32


def enrich_reviews(reviews: pd.DataFrame, topic_model: TopicModel | None) -> pd.DataFrame:
    """`reviews` plus `sentiment`, `is_negative` and `topic_0..topic_9`.

    sentiment/is_negative: pipelines.sentiment (null for no text or non-English text).
    topic_k: the review's topic distribution under `topic_model`; null when there is no model yet
    or the text gives the model nothing to go on (pipelines.topics.transform_texts).
    Each distinct text is scored once (shops repeat short reviews a lot).
    """
    codes, uniques = pd.factorize(pd.Series(topics.texts_of(reviews), dtype=object))
    texts = list(uniques)
    out = reviews.copy()
    scores = sentiment.score(texts)
    out["sentiment"] = scores["sentiment"].to_numpy()[codes] if len(codes) else np.nan
    out["is_negative"] = pd.array(scores["is_negative"].array.take(codes), dtype="boolean")
    if topic_model is None:
        values = np.full((len(texts), len(TOPIC_COLUMNS)), np.nan)
    else:
        values = topics.transform_texts(topic_model, texts)
    for k, col in enumerate(TOPIC_COLUMNS):
        out[col] = values[codes, k] if len(codes) else np.nan
    return out


# --- the topic model in use -------------------------------------------------------------------


def _pointer(data_dir: Path) -> Path:
    return state_dir(data_dir) / "features" / f"{_NAME}.topic_model.json"


def topic_cutoff(
    review_ts: pd.Series, min_reviews: int = MIN_TRAIN_REVIEWS, min_days: int = MIN_TRAIN_DAYS
) -> pd.Timestamp | None:
    """The topic model's cutoff: the first 00:00 UTC with at least `min_reviews` reviews and
    `min_days` days of reviews before it; None while the data does not reach that day yet."""
    ts = pd.Series(review_ts).dropna().sort_values(kind="stable")
    if len(ts) < max(min_reviews, 1):
        return None
    day = pd.Timedelta(days=1)
    cutoff = max(
        ts.iloc[max(min_reviews, 1) - 1].floor("D") + day, ts.iloc[0].floor("D") + min_days * day
    )
    return cutoff if cutoff <= ts.iloc[-1].floor("D") + day else None


def ensure_topic_model(
    data_dir: Path,
    reviews: pd.DataFrame,
    min_reviews: int | None = None,
    min_days: int | None = None,
    seed: int = DEFAULT_SEED,
) -> TopicModel | None:
    """The shop's topic model: the saved one in use, else a new one once the data allows it
    (defaults: MIN_TRAIN_REVIEWS, MIN_TRAIN_DAYS, read at call time)."""
    min_reviews = MIN_TRAIN_REVIEWS if min_reviews is None else min_reviews
    min_days = MIN_TRAIN_DAYS if min_days is None else min_days
    in_use = model_in_use(data_dir)
    if in_use is not None:
        return in_use
    pointer, root = _pointer(data_dir), topics.models_root(data_dir)
    cutoff = topic_cutoff(reviews["review_ts"], min_reviews, min_days)
    if cutoff is None:
        return None
    ordered = reviews.sort_values(["review_ts", "review_id"], kind="stable")
    try:
        model = topics.train(ordered, cutoff, seed=seed)
    except ValueError:  # no review before the cutoff has a word to learn from: no topics yet
        return None
    model.metadata["rule"] = f">= {min_reviews} reviews and >= {min_days} days of them before"
    topics.save(model, root)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    body = {"version": model.version, "cutoff": model.metadata["cutoff"], "seed": seed}
    pointer.write_text(json.dumps(body, indent=1, sort_keys=True))
    return model


def model_in_use(data_dir: Path) -> TopicModel | None:
    """The saved topic model the features use, or None (none trained yet); never trains one."""
    pointer, root = _pointer(data_dir), topics.models_root(data_dir)
    if pointer.exists():
        version = json.loads(pointer.read_text())["version"]
        if (root / version).is_dir():
            return _load(str(root), version)
    return None


@lru_cache(maxsize=4)
def _load(root: str, version: str) -> TopicModel:
    """A saved version, loaded once per process (two families use it in one run)."""
    return topics.load(Path(root), version)


# --- scored reviews, cached -------------------------------------------------------------------


def _cache_dir(data_dir: Path) -> Path:
    return state_dir(data_dir) / "features" / f"{_NAME}.nlp"


def _read_cache(data_dir: Path) -> pd.DataFrame:
    parts = sorted(_cache_dir(data_dir).glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=["review_id", "topic_model", *NLP_COLUMNS])
    cache = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return cache.drop_duplicates("review_id", keep="last")


def _append(folder: Path, fresh: pd.DataFrame, whole: pd.DataFrame) -> None:
    """Add a part; past MAX_PARTS parts (a year of daily runs), rewrite the cache as one part."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = sorted(folder.glob("part-*.parquet"))
    last = int(parts[-1].stem.split("-")[1]) if parts else -1
    target = folder / f"part-{last + 1:06d}.parquet"
    tmp = folder / f".{target.name}.tmp"
    (whole if len(parts) >= MAX_PARTS else fresh).to_parquet(tmp, index=False)
    tmp.replace(target)
    if len(parts) >= MAX_PARTS:
        for p in parts:
            p.unlink()


def _arrow_ids(ids: pd.Series) -> pa.Array:
    """Ids as an Arrow array: set membership in Arrow, not a Python loop over arrow strings
    (what pandas' `isin` does for them: seconds for a year of reviews)."""
    return pa.array(ids.astype(pd.StringDtype("pyarrow")).array).cast(pa.string())


def enriched(
    data_dir: Path, reviews: pd.DataFrame, model: TopicModel | None, keep: bool = True
) -> pd.DataFrame:
    """`reviews` with the NLP columns, scoring only reviews not yet scored under this model;
    `keep=False` leaves the cache as it is (a Spark task: the driver scored and kept them)."""
    version = model.version if model is not None else NO_MODEL
    cache = _read_cache(data_dir)
    cache = cache[cache["topic_model"] == version]
    done = pc.is_in(_arrow_ids(reviews["review_id"]), value_set=_arrow_ids(cache["review_id"]))
    todo = reviews[~done.to_numpy(zero_copy_only=False)]
    if len(todo):
        fresh = enrich_reviews(todo, model)[["review_id", *NLP_COLUMNS]]
        fresh.insert(1, "topic_model", version)
        cache = pd.concat([cache, fresh], ignore_index=True) if len(cache) else fresh
        if keep:
            _append(_cache_dir(data_dir), fresh, cache)
    cols = cache.drop(columns="topic_model").drop_duplicates("review_id", keep="last")
    out = reviews.drop(columns=[c for c in NLP_COLUMNS if c in reviews]).merge(
        cols, on="review_id", how="left"
    )
    out["is_negative"] = out["is_negative"].astype("boolean")
    return out
