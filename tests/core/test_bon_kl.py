"""Best-of-n's KL: log n - (n-1)/n is an upper bound (Beirami et al. 2024), and what repeats take off it (issue 23: the
lab called the bound exact). The gap formula against exact categoricals, the estimator against the exact KL where the
bound is loose and where it is tight (a run logging it beside the bound: tests/pages/test_app_dpo_bon.py)."""

import numpy as np
import pytest
import torch

from core.bon import best_indices, bon_kl, bon_kl_estimate, bon_kl_gap
from core.frontier import bon_distribution, kl_categorical


def test_the_bound_minus_each_responses_gap_is_the_exact_kl():
    """KL(pi_n || p) = log n - (n-1)/n - E_{y ~ pi_n} g_n(p(y) / F(y)), exactly, for any categorical."""
    rng = np.random.default_rng(0)
    for K in (2, 3, 10, 300):
        probs = rng.dirichlet(np.ones(K))
        rewards = rng.permutation(K).astype(float)
        order = np.argsort(rewards)
        cdf = np.empty(K)
        cdf[order] = np.cumsum(probs[order])                      # F(y) = P(reward <= reward of y)
        for n in (1, 2, 4, 16, 32):
            pi_n = bon_distribution(probs, rewards, n)
            via_gap = bon_kl(n) - sum(pi_n[y] * bon_kl_gap(probs[y] / cdf[y], n) for y in range(K))
            assert via_gap == pytest.approx(kl_categorical(pi_n, probs), abs=1e-9), (K, n)


def test_the_gap_is_zero_for_unrepeatable_responses_and_the_whole_bound_for_one_sure_response():
    for n in (2, 4, 32):
        assert bon_kl_gap(0.0, n) == 0.0 and bon_kl_gap(1.0, n) == pytest.approx(bon_kl(n))
        qs = np.logspace(-9, 0, 200)
        gaps = [bon_kl_gap(q, n) for q in qs]
        assert all(b >= a for a, b in zip(gaps, gaps[1:]))                        # rarer responses cost less
        q = 1e-4 / (n - 1)                                                        # where the series takes over
        assert bon_kl_gap(q * 0.9999, n) == pytest.approx(bon_kl_gap(q * 1.0001, n), rel=1e-3)  # no step
        assert bon_kl_gap(1e-3, n) == pytest.approx((n - 1) ** 2 * 1e-6 / 24, rel=0.05)
    assert bon_kl_gap(0.3, 1) == 0.0


def sampled_estimate(probs, n_max, prompts, seed):
    """bon_kl_estimate on `prompts` independent draws of n_max samples each from one categorical whose outcome y
    scores y: every prompt the same toy base model."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.as_tensor(probs, dtype=torch.double)
    draws = torch.multinomial(probs, prompts * n_max, replacement=True, generator=g).view(prompts, n_max)
    scores, logprobs = draws.float(), probs.log()[draws]
    return {n: bon_kl_estimate(scores, logprobs, best_indices(scores, [n])[n], n) for n in (2, 4, n_max)}


def test_the_estimate_finds_the_kl_where_the_bound_is_loose_and_is_the_bound_where_it_is_tight():
    coarse = [0.5, 0.3, 0.2]                            # three responses: repeats all the time
    estimates = sampled_estimate(coarse, 16, 256, seed=0)
    for n, estimate in estimates.items():
        exact = kl_categorical(bon_distribution(np.array(coarse), np.arange(3.0), n), np.array(coarse))
        assert abs(estimate - exact) < 0.2 * (bon_kl(n) - exact), n   # most of the bound's excess found
    fine = np.full(1_000_000, 1e-6)                     # a million equally likely responses: none repeats
    estimates = sampled_estimate(fine, 16, 32, seed=1)
    for n, estimate in estimates.items():
        assert estimate == pytest.approx(bon_kl(n), abs=1e-6)
