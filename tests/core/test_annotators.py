"""The gold annotator: sanity of the utilities and Bradley-Terry label frequencies."""

import math

import numpy as np
import pytest

from core.annotators import (PROFILES, AnnotatorError, BradleyTerryAnnotator, gold_utility,
                             preference_probability, repetition, unseen_share, words)

FLUENT_POSITIVE = "the acting was brilliant and the plot was wonderful."
FLUENT_NEGATIVE = "the acting was terrible and the plot was boring."


def test_positive_beats_negative():
    u_pos, u_neg = gold_utility([FLUENT_POSITIVE, FLUENT_NEGATIVE])
    assert u_pos > 0.5 > 0 > u_neg


def test_fluent_beats_repetition_and_word_salad():
    hacks = ["wonderful wonderful wonderful",
             "the acting was wonderful wonderful wonderful wonderful wonderful",
             "the acting was great. the acting was great. the acting was great.",
             "brilliant superb lovely charming",
             "plot the was acting brilliant wonderful"]
    u = gold_utility([FLUENT_POSITIVE] + hacks)
    for text, value in zip(hacks, u[1:]):
        assert u[0] > value + 0.4, text


def test_negation_respected():
    not_bad, bad = gold_utility(["the acting was not bad.", "the acting was bad."])
    assert not_bad > 0 > bad
    not_good, good = gold_utility(["the acting was not good.", "the acting was good."])
    assert good > 0 > not_good


def test_other_profiles_want_something_else():
    u_neg = gold_utility([FLUENT_POSITIVE, FLUENT_NEGATIVE], "negative")
    assert u_neg[1] > u_neg[0]
    short, long = gold_utility(["the plot was good.", FLUENT_POSITIVE + " i would watch it again with my sister."],
                               "concise")
    assert short > long
    # every profile still punishes word salad
    for profile in PROFILES:
        fluent, salad = gold_utility(["the plot was good.", "plot good the was"], profile)
        assert fluent > salad, profile


def test_fluency_parts():
    assert words("The plot, was GOOD!") == ["the", "plot", "was", "good"]
    assert repetition(words("great great great")) == 1.0
    assert repetition(words(FLUENT_POSITIVE)) == 0.0
    assert unseen_share(words(FLUENT_POSITIVE)) == 0.0
    assert unseen_share(words("zzqx blorf")) == 1.0
    assert unseen_share([]) == 1.0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(AnnotatorError, match="profile"):
        gold_utility(["x"], "grumpy")
    with pytest.raises(AnnotatorError, match="tau"):
        BradleyTerryAnnotator(tau=0)
    with pytest.raises(AnnotatorError, match="tau"):
        BradleyTerryAnnotator(tau=-1.0)
    with pytest.raises(AnnotatorError, match="tau"):
        preference_probability([0.0], [1.0], float("nan"))
    with pytest.raises(AnnotatorError, match="single string"):
        gold_utility("the plot was good.")
    with pytest.raises(AnnotatorError, match="as many"):
        BradleyTerryAnnotator().label(["a"], [])


def test_bradley_terry_frequencies_match_formula():
    # The same pair asked many times: the share of "a" answers must match sigmoid((u_a - u_b) / tau).
    a, b = "the plot was good.", "the plot was fine."
    u_a, u_b = gold_utility([a, b])
    n = 5000
    for tau in (0.1, 0.3, 1.0):
        ann = BradleyTerryAnnotator(tau=tau, seed=1)
        prefer_a, p_a, _, _ = ann.label([a] * n, [b] * n)
        expected = 1.0 / (1.0 + math.exp(-(u_a - u_b) / tau))
        assert p_a[0] == pytest.approx(expected)
        standard_error = math.sqrt(expected * (1 - expected) / n)
        assert abs(np.mean(prefer_a) - expected) < 4 * standard_error + 1e-9


def test_annotator_is_seeded_and_tau_to_zero_is_perfect():
    texts_a = [FLUENT_POSITIVE, FLUENT_NEGATIVE, "the plot was good."] * 50
    texts_b = [FLUENT_NEGATIVE, FLUENT_POSITIVE, "wonderful wonderful wonderful"] * 50
    first = BradleyTerryAnnotator(tau=1.0, seed=3).label(texts_a, texts_b)[0]
    again = BradleyTerryAnnotator(tau=1.0, seed=3).label(texts_a, texts_b)[0]
    assert first == again
    perfect = BradleyTerryAnnotator(tau=1e-6, seed=0).label(texts_a, texts_b)[0]
    assert perfect == [True, False, True] * 50
    # extreme differences do not overflow
    assert preference_probability([1e6], [-1e6], 1e-9)[0] == 1.0
