"""Weak-to-strong: the math against naive versions, the data split, bad input, tiny end-to-end runs."""

import json
import math

import pytest
import torch

from core.config import ConfigError, W2SConfig, from_dict, to_dict, w2s_preset
from core.w2s import (alpha_at, build_task, confidence_loss, harden, label_classify, label_preference, pgr,
                      split_data)

# ----------------------------------------------------------------------------- naive versions


def naive_xent(logits, targets):
    """Two-class cross-entropy with soft targets, one row at a time, from the definition."""
    total = 0.0
    for z, t in zip(logits.tolist(), targets.tolist()):
        p1 = 1.0 / (1.0 + math.exp(-z))
        total += -(t * math.log(p1) + (1 - t) * math.log(1 - p1))
    return total / len(logits)


def naive_harden(logits, weak_probs):
    """Try every threshold; keep the one whose positive share is closest to mean(weak_probs)."""
    zs = logits.tolist()
    target = sum(weak_probs.tolist()) / len(zs)
    best = None
    for k in range(len(zs) + 1):  # k positives = the k largest logits (first index wins a tie)
        ranked = sorted(range(len(zs)), key=lambda i: (-zs[i], i))
        chosen = set(ranked[:k])
        gap = abs(k / len(zs) - target)
        if best is None or gap < best[0] - 1e-12:
            best = (gap, [1.0 if i in chosen else 0.0 for i in range(len(zs))])
    return best[1]


def naive_confidence(logits, weak_probs, alpha):
    hard = torch.tensor(naive_harden(logits, weak_probs))
    return (1 - alpha) * naive_xent(logits, weak_probs) + alpha * naive_xent(logits, hard)


# ----------------------------------------------------------------------------- math

def test_pgr_matches_definition():
    assert pgr(0.6, 0.7, 0.8) == pytest.approx(0.5)
    assert pgr(0.6, 0.6, 0.8) == pytest.approx(0.0)
    assert pgr(0.6, 0.8, 0.8) == pytest.approx(1.0)
    assert pgr(0.6, 0.5, 0.8) == pytest.approx(-0.5)  # worse than the supervisor
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w, s, c = torch.rand(3, generator=g).tolist()
        if abs(c - w) > 1e-3:
            assert pgr(w, s, c) == pytest.approx((s - w) / (c - w))
    assert math.isnan(pgr(0.7, 0.8, 0.7))  # no gap: undefined, not a division error


def test_harden_balances_to_the_weak_mean():
    g = torch.Generator().manual_seed(1)
    for B in (1, 2, 5, 8, 13):
        for _ in range(10):
            logits = torch.randn(B, generator=g)
            weak = torch.rand(B, generator=g)
            hard = harden(logits, weak)
            assert hard.tolist() == naive_harden(logits, weak)
            k = int(hard.sum())
            assert abs(k / B - float(weak.mean())) <= 0.5 / B + 1e-6
            if 0 < k < B:  # every hardened positive is at least as confident as every negative
                assert logits[hard == 1].min() >= logits[hard == 0].max()
    # the threshold follows the weak labels, not 0.5: all logits negative, weak mean 0.75 -> 3 of 4 positive
    assert harden(torch.tensor([-3.0, -1.0, -2.0, -4.0]), torch.tensor([0.9, 0.8, 0.7, 0.6])).tolist() == [1, 1, 1, 0]


def test_confidence_loss_matches_naive_and_alpha_zero_is_xent():
    g = torch.Generator().manual_seed(2)
    for alpha in (0.0, 0.25, 0.75, 1.0):
        for _ in range(5):
            logits = torch.randn(9, generator=g) * 2
            weak = torch.rand(9, generator=g)
            got = float(confidence_loss(logits, weak, alpha))
            assert got == pytest.approx(naive_confidence(logits, weak, alpha), rel=1e-5, abs=1e-6)
    logits, weak = torch.randn(16, generator=g), torch.rand(16, generator=g)
    xent = torch.nn.functional.cross_entropy(torch.stack([torch.zeros(16), logits], 1),
                                             torch.stack([1 - weak, weak], 1))  # two-class softmax form
    assert float(confidence_loss(logits, weak, 0.0)) == pytest.approx(float(xent), rel=1e-6)


def test_confidence_loss_gradient_only_through_logits():
    logits = torch.tensor([2.0, -1.0, 0.5, -0.2], requires_grad=True)
    weak = torch.tensor([0.3, 0.6, 0.4, 0.7])
    confidence_loss(logits, weak, 1.0).backward()
    hard = harden(logits, weak)
    # alpha = 1: plain CE to the (constant) hardened labels, d/dz = (sigmoid(z) - hard) / B
    assert torch.allclose(logits.grad, (torch.sigmoid(logits.detach()) - hard) / 4)


def test_alpha_warmup_is_linear_then_flat():
    assert alpha_at(0.0, 0.75, 0.2) == 0.0
    assert alpha_at(0.1, 0.75, 0.2) == pytest.approx(0.375)
    assert alpha_at(0.2, 0.75, 0.2) == pytest.approx(0.75)
    assert alpha_at(0.9, 0.75, 0.2) == pytest.approx(0.75)
    assert alpha_at(0.0, 0.5, 0.0) == 0.5  # no warm-up
    assert alpha_at(0.5, 1.0, 1.0) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- data

def test_split_is_disjoint_and_covers_the_pool():
    for n, n_test, seed in ((100, 20, 0), (101, 21, 3), (12, 4, 7)):
        h1, h2, test = split_data(n, n_test, seed)
        assert not set(h1) & set(h2) and not set(h1) & set(test) and not set(h2) & set(test)
        assert len(h1) == len(h2) == (n - n_test) // 2 and len(test) == n_test
        assert split_data(n, n_test, seed + 1)[2] == test  # the test set is the same for every seed
        assert split_data(n, n_test, seed + 1)[0] != h1    # the halves change with the seed
    with pytest.raises(ConfigError):
        split_data(10, 9, 0)


def test_labels_are_balanced_and_follow_the_gold():
    texts = [f"text {i}" for i in range(200)]
    utils = [(-1) ** i * (i + 1) / 200 + (0.3 if i % 3 == 0 else 0.0) for i in range(200)]
    inputs, labels, u, threshold = label_classify(texts, utils, 60, seed=0)
    assert sum(labels) == 30 and len(set(inputs)) == 60
    assert all((ui > threshold) == bool(y) for ui, y in zip(u, labels))
    pairs = [(texts[i], texts[i + 1]) for i in range(0, 200, 2)]
    putils = [(utils[i], utils[i + 1]) for i in range(0, 200, 2)]
    pinputs, plabels, margins = label_preference(pairs, putils, 60, seed=0)
    assert sum(plabels) == 30
    assert all((m > 0) == bool(y) for m, y in zip(margins, plabels))
    u_of = dict(zip(texts, utils))
    assert all((u_of[a] > u_of[b]) == bool(y) for (a, b), y in zip(pinputs, plabels))


def test_edits_change_the_text_but_keep_its_words():
    import random

    from core.w2s import EDITS, edit_text, make_pairs

    text = "the acting was great, but the plot was dull. i loved it."
    rng = random.Random(0)
    for kind in EDITS:
        edited = edit_text(text, kind, rng)
        assert edited != text
        if kind == "scramble":
            assert sorted(edited.split()) == sorted(text.split())
    assert len(make_pairs([text] * 6, seed=0)) == 6


def test_one_class_task_is_an_error():
    texts = [f"the plot was fine {i}." for i in range(50)]
    cfg = w2s_preset("tiny", n_train=20, n_test=10)
    with pytest.raises(ConfigError, match="one class"):
        build_task(cfg, texts=texts, scorer=lambda ts: [0.5] * len(ts))
    with pytest.raises(ConfigError, match="one class"):
        build_task(w2s_preset("tiny", task="preference", n_train=20, n_test=10), texts=texts,
                   scorer=lambda ts: [0.5] * len(ts))


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("field,value", [("seeds", 0), ("seeds", -1), ("alpha_max", 1.5), ("alpha_max", -0.1),
                                         ("warmup_frac", 1.01), ("warmup_frac", -0.5), ("task", "regress"),
                                         ("preset", "huge"), ("n_train", 2), ("profile", "grumpy")])
def test_bad_config_names_the_field(field, value):
    cfg = w2s_preset("tiny")
    setattr(cfg, field, value)
    with pytest.raises(ConfigError, match=field):
        cfg.validate()


def test_config_round_trips():
    cfg = w2s_preset("default", task="preference", seeds=2, alpha_max=0.5)
    assert from_dict(W2SConfig, to_dict(cfg)) == cfg
    assert w2s_preset("tiny").validate().n_train < w2s_preset("default").n_train
