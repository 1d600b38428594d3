"""A 10-topic LDA (gensim) over review text: trained before a cutoff, versioned, applied to all.

Point in time: the model is fitted only on reviews with `review_ts < cutoff`, so it is knowable at
the cutoff and not before; the feature pipeline serves topic features only for snapshots at or
after the model's cutoff. Saved under `DIR/models/topics/<version>/` with its metadata, so that
incremental runs apply the very model a historical run fitted.

Deterministic: for one seed and the same training texts, training gives the same model, and a
review's topic vector depends on its text alone, not on the batch it is inferred in (gensim draws
each document's variational start at random from the model's generator; here every document starts
from that draw's mean instead).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.text import is_english, review_text, surface_tokens, tokens

if TYPE_CHECKING:  # gensim (and scipy.stats under it) is imported where a model is built or read
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel

NUM_TOPICS = 10
TOPIC_COLUMNS = [f"topic_{i}" for i in range(NUM_TOPICS)]
DEFAULT_SEED = 42
# Words in more than this share of reviews (love, great, good) are sentiment, not topic.
NO_ABOVE = 0.2
PASS_BUDGET = 20_000
TEXT_PIPELINE = "v1: html/url strip, nltk regexp tokens, gensim+sklearn stop words, snowball"
MODEL_FILE, DICT_FILE, META_FILE, WORDS_FILE = (
    "lda.model",
    "dictionary",
    "metadata.json",
    "words.json",
)


@dataclass
class TopicModel:
    version: str
    lda: LdaModel
    dictionary: Dictionary
    metadata: dict = field(default_factory=dict)
    # stem -> the word most often written for it in the training texts (for people to read)
    words: dict[str, str] = field(default_factory=dict)

    @property
    def cutoff(self) -> pd.Timestamp | None:
        c = self.metadata.get("cutoff")
        return pd.Timestamp(c) if c else None

    def top_words(self, n: int = 10) -> list[list[str]]:
        """The n most probable words of each topic, stems shown as the words people wrote."""
        return [
            [self.words.get(w, w) for w, _ in self.lda.show_topic(k, topn=n)]
            for k in range(self.lda.num_topics)
        ]


class _MeanStart:
    """Stands in for the model's random generator at inference: every document starts from the
    mean of gensim's gamma(100, 1/100) draw, so its topic vector does not depend on its batch."""

    def gamma(self, shape: float, scale: float, size: tuple[int, int]) -> np.ndarray:
        return np.full(size, shape * scale)


def models_root(data_dir: Path) -> Path:
    return Path(data_dir) / "models" / "topics"


def texts_of(reviews: pd.DataFrame) -> list[str]:
    """The normalised title + body of each review (pipelines.text.review_text)."""
    titles = reviews["title"] if "title" in reviews else [None] * len(reviews)
    return [review_text(t, b) for t, b in zip(titles, reviews["body"], strict=True)]


def train_texts(
    texts: Sequence[str],
    *,
    seed: int = DEFAULT_SEED,
    num_topics: int = NUM_TOPICS,
    passes: int | None = None,
    iterations: int = 50,
    cutoff: pd.Timestamp | None = None,
    version: str | None = None,
) -> TopicModel:
    """Fit the LDA on these texts (already chosen as before the cutoff); non-English are skipped."""
    import gensim
    from gensim.models import LdaModel

    english = [t for t in texts if t and is_english(t)]
    docs = [tokens(t) for t in english]
    dictionary = _vocabulary(docs, num_topics)
    passes = passes or auto_passes(len(docs))
    corpus = [dictionary.doc2bow(d) for d in docs]
    if not dictionary:
        raise ValueError(
            f"no vocabulary to fit topics on ({len(texts)} texts, {len(docs)} English)"
        )
    lda = LdaModel(
        corpus=corpus,
        id2word=dictionary,
        num_topics=num_topics,
        passes=passes,
        iterations=iterations,
        chunksize=2000,
        alpha="symmetric",
        eval_every=None,
        random_state=seed,
    )
    fingerprint = hashlib.sha1(
        json.dumps([english, seed, num_topics, passes, iterations, TEXT_PIPELINE]).encode()
    ).hexdigest()[:10]
    tag = f"{pd.Timestamp(cutoff):%Y%m%d}" if cutoff is not None else f"rows{len(texts)}"
    version = version or f"lda{num_topics}-{tag}-{fingerprint}"
    metadata = {
        "version": version,
        "cutoff": pd.Timestamp(cutoff).isoformat() if cutoff is not None else None,
        "seed": seed,
        "num_topics": num_topics,
        "passes": passes,
        "iterations": iterations,
        "train_texts": len(texts),
        "train_docs": len(docs),
        "skipped_not_english_or_empty": len(texts) - len(english),
        "vocabulary": len(dictionary),
        "fingerprint": fingerprint,
        "text_pipeline": TEXT_PIPELINE,
        "gensim": gensim.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    model = TopicModel(version, lda, dictionary, metadata, _surface_words(english, dictionary))
    model.metadata["top_words"] = model.top_words()
    return model


def auto_passes(n_docs: int) -> int:
    """Passes over the corpus: about PASS_BUDGET documents in all, 2 to 10 passes (a small corpus
    needs several passes to settle; a large one settles in two)."""
    return min(10, max(2, PASS_BUDGET // max(n_docs, 1)))


def _vocabulary(docs: list[list[str]], num_topics: int) -> Dictionary:
    """Words in at least a few reviews and at most NO_ABOVE of them; a tiny or very repetitive
    corpus (a few templates) that this would leave without words keeps its frequent words."""
    from gensim.corpora import Dictionary

    no_below = min(5, max(1, len(docs) // 200))
    for no_above in (NO_ABOVE, 1.0):
        dictionary = Dictionary(docs)
        dictionary.filter_extremes(no_below=no_below, no_above=no_above, keep_n=20_000)
        if len(dictionary) >= 2 * num_topics:
            break
    dictionary.compactify()
    return dictionary


def train(
    reviews: pd.DataFrame, cutoff: pd.Timestamp | str, *, seed: int = DEFAULT_SEED, **kwargs
) -> TopicModel:
    """Fit on the reviews strictly before `cutoff` (a review at the cutoff is its future)."""
    cutoff = pd.Timestamp(cutoff)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    before = reviews[reviews["review_ts"] < cutoff]
    return train_texts(texts_of(before), seed=seed, cutoff=cutoff, **kwargs)


def _surface_words(texts: Sequence[str], dictionary: Dictionary) -> dict[str, str]:
    counts: dict[str, Counter] = {}
    for text in texts:
        for s, w in surface_tokens(text):
            counts.setdefault(s, Counter())[w] += 1
    vocab = set(dictionary.token2id)
    return {s: c.most_common(1)[0][0] for s, c in counts.items() if s in vocab}


def transform_texts(model: TopicModel, texts: Sequence[str]) -> np.ndarray:
    """An (n, num_topics) array of topic distributions; a row is NaN when the text is empty, not
    English, or has no word the model knows (the prior is no information about the review)."""
    out = np.full((len(texts), model.lda.num_topics), np.nan)
    rows, bows = [], []
    for i, text in enumerate(texts):
        if text and is_english(text):
            bow = model.dictionary.doc2bow(tokens(text))
            if bow:
                rows.append(i)
                bows.append(bow)
    if bows:
        generator = model.lda.random_state
        model.lda.random_state = _MeanStart()
        try:
            gamma, _ = model.lda.inference(bows)
        finally:
            model.lda.random_state = generator
        gamma = gamma.astype("float64")
        out[rows] = gamma / gamma.sum(axis=1, keepdims=True)
    return out


def transform(model: TopicModel, reviews: pd.DataFrame) -> pd.DataFrame:
    """topic_0..topic_9 for each review, index aligned with `reviews`."""
    values = transform_texts(model, texts_of(reviews))
    return pd.DataFrame(values, columns=TOPIC_COLUMNS[: values.shape[1]], index=reviews.index)


def save(model: TopicModel, root: Path) -> Path:
    """Write the model under root/<version>/ (root is usually models_root(DIR)); returns the dir."""
    path = Path(root) / model.version
    path.mkdir(parents=True, exist_ok=True)
    model.lda.save(str(path / MODEL_FILE))
    model.dictionary.save(str(path / DICT_FILE))
    (path / WORDS_FILE).write_text(json.dumps(model.words, sort_keys=True))
    (path / META_FILE).write_text(json.dumps(model.metadata, indent=2, sort_keys=True))
    return path


def versions(root: Path) -> list[str]:
    """Saved versions, oldest cutoff first."""
    root = Path(root)
    if not root.exists():
        return []
    metas = [json.loads(p.read_text()) for p in root.glob(f"*/{META_FILE}")]
    return [
        m["version"] for m in sorted(metas, key=lambda m: (m.get("cutoff") or "", m["version"]))
    ]


def load(root: Path, version: str | None = None) -> TopicModel:
    """Load one saved version (default: the one with the latest cutoff)."""
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel

    if version is None:
        saved = versions(root)
        if not saved:
            raise FileNotFoundError(f"no topic model saved under {root}")
        version = saved[-1]
    path = Path(root) / version
    metadata = json.loads((path / META_FILE).read_text())
    return TopicModel(
        version=version,
        lda=LdaModel.load(str(path / MODEL_FILE)),
        dictionary=Dictionary.load(str(path / DICT_FILE)),
        metadata=metadata,
        words=json.loads((path / WORDS_FILE).read_text()),
    )
