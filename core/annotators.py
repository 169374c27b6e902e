"""The hidden "human": gold utilities and a simulated Bradley-Terry annotator.

A gold utility u(text) is what a person with a given preference would assign to a review. The
reward model never sees it; it only sees which of two texts this person preferred. Later stages
compare the proxy (the RM's score) with the gold to make reward hacking visible.

The default `positive` person likes positive reviews *written in English*:

    u_positive(x) = vader(x) - UNSEEN_WEIGHT * unseen(x) - REPEAT_WEIGHT * repetition(x)

  vader(x)       VADER compound sentiment in [-1, 1]; it handles negation ("not bad") and "but".
  unseen(x)      share of the word pairs of x that never occur in the corpus (word salad scores 1).
  repetition(x)  share of the word pairs of x that repeat the previous word or an earlier pair
                 ("wonderful wonderful wonderful" scores 1; a normal review about 0).

VADER alone loves "wonderful wonderful wonderful" (0.90, more than most real reviews). The two
fluency terms, measured from the corpus itself with no external model, make that text score far
below a fluent positive review. A reward model trained on fluent base samples rarely sees such
text, so it does not learn this part of the preference: PPO can then exploit it, and the gold shows it.

Other profiles want something clearly different (`negative`, `concise`) so that a student can see
that RLHF follows the preference data, not a goal built into the code.

The annotator labels a pair with Bradley-Terry noise (Bradley & Terry 1952; Christiano et al. 2017):

    P(a preferred over b) = sigmoid((u(a) - u(b)) / tau)

tau -> 0 is a perfect annotator; a large tau is a coin flip.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import numpy as np

from core.corpus import default_corpus

UNSEEN_WEIGHT = 1.0
"""Utility lost when every word pair is one the corpus never uses."""
REPEAT_WEIGHT = 1.0
"""Utility lost when every word pair is a repeat."""
CONCISE_WORDS = 20
"""For `concise`: every CONCISE_WORDS words cost one unit of utility."""

_WORD = re.compile(r"[a-z0-9']+")


class AnnotatorError(ValueError):
    """A bad annotator setting (unknown profile, tau <= 0, mismatched pair lists)."""


# ----------------------------------------------------------------------------- fluency from the corpus

def words(text: str) -> list[str]:
    """Lower-cased words; punctuation is dropped (the corpus and the model disagree on spacing)."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def corpus_bigrams() -> frozenset:
    """Every adjacent word pair of the default corpus (built once per process, ~0.5 s)."""
    pairs = set()
    for doc in default_corpus():
        ws = words(doc)
        pairs.update(zip(ws, ws[1:]))
    return frozenset(pairs)


@lru_cache(maxsize=1)
def corpus_vocabulary() -> frozenset:
    return frozenset(w for pair in corpus_bigrams() for w in pair)


def unseen_share(ws: list[str]) -> float:
    """Share of the word pairs never seen in the corpus. A single word counts as a pair with
    itself: known word 0, unknown 1. No words at all is not fluent text either: 1."""
    if not ws:
        return 1.0
    if len(ws) == 1:
        return 0.0 if ws[0] in corpus_vocabulary() else 1.0
    seen = corpus_bigrams()
    pairs = list(zip(ws, ws[1:]))
    return sum(pair not in seen for pair in pairs) / len(pairs)


def repetition(ws: list[str]) -> float:
    """Share of the word pairs that repeat the previous word ("great great") or a pair already
    used earlier in the same text ("the plot was good. the plot was good.")."""
    if len(ws) < 2:
        return 0.0
    earlier, repeats = set(), 0
    for pair in zip(ws, ws[1:]):
        if pair[0] == pair[1] or pair in earlier:
            repeats += 1
        earlier.add(pair)
    return repeats / (len(ws) - 1)


# ----------------------------------------------------------------------------- sentiment

@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score in [-1, 1]."""
    return _vader().polarity_scores(text)["compound"]


# ----------------------------------------------------------------------------- profiles

def components(text: str) -> dict:
    """The parts every profile is made of, for one text (shown in the app's 'why' panel)."""
    ws = words(text)
    unseen, rep = unseen_share(ws), repetition(ws)
    return {
        "sentiment": sentiment(text) if ws else 0.0,
        "unseen": unseen,
        "repetition": rep,
        "fluency_penalty": UNSEEN_WEIGHT * unseen + REPEAT_WEIGHT * rep,
        "n_words": len(ws),
        "complete": text.rstrip().endswith((".", "!", "?")),
    }


def _positive(c: dict) -> float:
    return c["sentiment"] - c["fluency_penalty"]


def _negative(c: dict) -> float:
    return -c["sentiment"] - c["fluency_penalty"]


def _concise(c: dict) -> float:
    # Short, finished, fluent; indifferent to sentiment. The bonus for a final full stop stops
    # "shortest" from meaning "cut off mid-sentence".
    return 0.5 * c["complete"] - c["n_words"] / CONCISE_WORDS - c["fluency_penalty"]


PROFILES = {
    "positive": "likes positive, fluent reviews (VADER sentiment minus repetition and word salad)",
    "negative": "likes negative, fluent reviews (minus VADER sentiment, same fluency penalty)",
    "concise": "likes short, finished, fluent reviews whatever their sentiment",
}
_UTILITY = {"positive": _positive, "negative": _negative, "concise": _concise}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise AnnotatorError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    return profile


def gold_utility(texts: list[str], profile: str = "positive") -> list[float]:
    """The utility the person with `profile` assigns to each text (prompt + response)."""
    utility = _UTILITY[check_profile(profile)]
    if isinstance(texts, str):
        raise AnnotatorError("gold_utility takes a list of texts, got a single string")
    return [float(utility(components(t))) for t in texts]


# ----------------------------------------------------------------------------- Bradley-Terry annotator

def check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise AnnotatorError(f"tau (the annotator's noise) must be a number > 0, got {tau!r}; "
                             "use a small value such as 0.01 for an almost perfect annotator")
    return float(tau)


def preference_probability(u_a, u_b, tau: float) -> np.ndarray:
    """P(a preferred over b) = sigmoid((u_a - u_b) / tau), elementwise."""
    tau = check_tau(tau)
    z = (np.asarray(u_a, dtype=np.float64) - np.asarray(u_b, dtype=np.float64)) / tau
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), without overflow for large |z|


class BradleyTerryAnnotator:
    """A simulated person: holds a gold utility and answers pairwise questions with noise.

    >>> ann = BradleyTerryAnnotator("positive", tau=0.1, seed=0)
    >>> prefer_a, p_a, u_a, u_b = ann.label(["the plot was great."], ["the plot was dull."])
    """

    def __init__(self, profile: str = "positive", tau: float = 0.1, seed: int = 0):
        self.profile = check_profile(profile)
        self.tau = check_tau(tau)
        self.rng = np.random.default_rng(seed)

    def utility(self, texts: list[str]) -> list[float]:
        return gold_utility(texts, self.profile)

    def label(self, texts_a: list[str], texts_b: list[str]):
        """For each pair: (prefer_a: list[bool], p_a: list[float], u_a, u_b)."""
        if len(texts_a) != len(texts_b):
            raise AnnotatorError(f"need as many a texts as b texts, got {len(texts_a)} and {len(texts_b)}")
        u_a, u_b = self.utility(texts_a), self.utility(texts_b)
        p_a = preference_probability(u_a, u_b, self.tau)
        prefer_a = self.rng.random(len(p_a)) < p_a
        return prefer_a.tolist(), p_a.tolist(), u_a, u_b
