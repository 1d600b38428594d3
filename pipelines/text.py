"""Review text normalisation and tokenising, shared by sentiment and topics.

Review bodies may be null, empty, emoji-only, HTML or not English (raw contract). Everything here
is total: any input, `None` and NaN included, gives a string or a token list, never an exception.
Nothing needs a downloaded corpus: nltk's regexp tokenizer and Snowball stemmer ship with the
package, and the stop words are gensim's and scikit-learn's built-in lists.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.stem.snowball import SnowballStemmer
    from nltk.tokenize import RegexpTokenizer


# Reviews longer than this are cut: the longest real review seen is ~5k characters, and a runaway
# body (a pasted page) must not make one row cost seconds.
MAX_CHARS = 10_000
MIN_TOKEN_LEN = 3
MAX_TOKEN_LEN = 30  # longer "words" are noise (a run of letters, a pasted hash)

# Review boilerplate ("Five Stars" is the Amazon default title) says nothing about the topic.
REVIEW_BOILERPLATE = frozenset({"star", "stars", "product", "products", "item", "items", "review"})


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """gensim's and scikit-learn's stop words plus review boilerplate. Imported on first use:
    gensim (with scipy.stats) and scikit-learn cost seconds to import, and a feature run that
    scores no new review needs neither."""
    from gensim.parsing.preprocessing import STOPWORDS as GENSIM_STOPWORDS
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(GENSIM_STOPWORDS) | frozenset(ENGLISH_STOP_WORDS) | REVIEW_BOILERPLATE


@lru_cache(maxsize=1)
def _tokenizer() -> RegexpTokenizer:
    """nltk's tokenizer, imported on first use (like stop_words)."""
    from nltk.tokenize import RegexpTokenizer

    return RegexpTokenizer(r"[a-z]+(?:'[a-z]+)?")


@lru_cache(maxsize=1)
def _stemmer() -> SnowballStemmer:
    """nltk's Snowball stemmer, imported on first use."""
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


def __getattr__(name: str) -> frozenset[str]:
    """`STOP_WORDS` stays importable by name, built on first access."""
    if name == "STOP_WORDS":
        return stop_words()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TAG = re.compile(r"<[^>]{0,500}>")
_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")  # plain re: this runs on every review, nltk's wrapper is 3x slower
_LETTER = re.compile(r"[^\W\d_]")
_NON_LATIN = re.compile(r"[^\W\d_\u0000-\u024f]")  # letters outside Latin script


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Function words: frequent, short and language-specific. Words shared with English ("a", "no",
# "me", "in", "son", "die") are left out of the foreign list so they never count against English.
_ENGLISH = _wordset(
    "the and is it to of this that for with was my but not you on are have so very be they its "
    "i as at or all if just one do would will had has were been than them their what when "
    "your our an"
)
_FOREIGN = _wordset(
    # Spanish, Portuguese, French, German, Italian, Dutch: function words, then words reviews use
    "el la los las que y es muy por para con una pero del lo mas más como esta está este "
    "não muito com um uma é são também "
    "le les et est une pour avec très pas il elle je nous vous mais du des ce cette "
    "und der das ist nicht ein eine ich mit sehr auch aber für zu sie wir "
    "di che non per sono molto questo della anche "
    "het een en niet zeer maar voor ook "
    "buen bueno buena malo mala producto calidad gusta encanta recomiendo funciona cumple "
    "bom boa produto qualidade "
    "bon bonne produit qualité recommande marche décevant déçu sans "
    "gut schlecht schlechte leider kaputt qualität produkt zufrieden ganz nichts "
    "buono buona prodotto qualità"
)


def normalise(text: object) -> str:
    """Plain text: markup and URLs removed, entities decoded, whitespace collapsed, length capped.

    Emoji are kept (VADER scores them); `None`, NaN and non-strings give "".
    """
    if not isinstance(text, str):
        return ""
    text = text[: MAX_CHARS * 2]
    text = html.unescape(_TAG.sub(" ", text))
    text = _TAG.sub(" ", text)  # tags that were entity-escaped in the source
    text = _URL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()[:MAX_CHARS]


def review_text(title: object, body: object) -> str:
    """The text a review is judged by: its title and body, normalised, joined by a full stop."""
    parts = [p for p in (normalise(title), normalise(body)) if p]
    return ". ".join(parts)


def has_letters(text: str) -> bool:
    return _LETTER.search(text) is not None


def is_english(text: str) -> bool:
    """A cheap guess: mostly Latin letters, and English function words not outnumbered by foreign.

    Text without letters (empty, emoji-only, digits) is not judged and counts as English, so
    emoji-only reviews reach VADER, which has an emoji lexicon. Short ambiguous texts lean English.
    """
    if not has_letters(text):
        return True
    if _NON_LATIN.search(text) and len(_NON_LATIN.findall(text)) > 0.3 * len(_LETTER.findall(text)):
        return False
    words = _WORD.findall(text.lower())
    english = sum(w in _ENGLISH for w in words)
    foreign = sum(w in _FOREIGN for w in words)
    return not (foreign > english and foreign / max(len(words), 1) >= 0.2)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return _stemmer().stem(word)


def _content_words(text: str) -> list[str]:
    """Lower-cased words without stop words, short words and contractions (don't, i'm: function
    words all); a possessive keeps its word (product's -> product)."""
    lowered = text.lower().replace("\u2019", "'")
    words = (w.removesuffix("'s") for w in _tokenizer().tokenize(lowered))
    stop = stop_words()
    return [
        w
        for w in words
        if MIN_TOKEN_LEN <= len(w) <= MAX_TOKEN_LEN and "'" not in w and w not in stop
    ]


def tokens(text: str) -> list[str]:
    """Content words, Snowball-stemmed: what the topic model reads."""
    return [stem(w) for w in _content_words(text)]


def surface_tokens(text: str) -> list[tuple[str, str]]:
    """(stem, word) pairs of `tokens`, to show a stem as the word people actually wrote."""
    return [(stem(w), w) for w in _content_words(text)]
