"""PPO math (core/ppo.py) against slow, obvious per-element loops on random tensors and random masks."""

import math

import pytest
import torch

from core.ppo import (AdaptiveKLController, FixedKLController, gae, kl_estimate, policy_loss, shaped_rewards,
                      value_loss, whiten)


def random_batch(seed, B=5, T=7):
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(B, T, generator=g) * 3
    ref_logprobs = -torch.rand(B, T, generator=g) * 3
    lengths = torch.randint(1, T + 1, (B,), generator=g)             # every row has >= 1 real token
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()      # 1..1 0..0
    return g, logprobs, ref_logprobs, lengths, mask


def rows(mask):
    return [int(m.sum()) for m in mask]


@pytest.mark.parametrize("seed", range(4))
def test_kl_estimators_match_loops_and_k3_is_non_negative(seed):
    _, lp, ref, _, _ = random_batch(seed)
    k1, k3 = kl_estimate(lp, ref, "k1"), kl_estimate(lp, ref, "k3")
    for b in range(lp.shape[0]):
        for t in range(lp.shape[1]):
            d = ref[b, t].item() - lp[b, t].item()
            assert k1[b, t].item() == pytest.approx(lp[b, t].item() - ref[b, t].item(), abs=1e-6)
            assert k3[b, t].item() == pytest.approx(math.exp(d) - 1 - d, abs=1e-5)
    assert (k3 >= 0).all()
    with pytest.raises(ValueError, match="k1"):
        kl_estimate(lp, ref, "k2")


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_shaped_rewards_put_score_at_last_real_token(estimator):
    g, lp, ref, lengths, mask = random_batch(1)
    scores = torch.randn(lp.shape[0], generator=g)
    rewards, kl = shaped_rewards(scores, lp, ref, mask, kl_coef=0.3, estimator=estimator)
    for b, n in enumerate(rows(mask)):
        for t in range(lp.shape[1]):
            k = kl_estimate(lp[b, t:t + 1], ref[b, t:t + 1], estimator).item() if t < n else 0.0
            expected = -0.3 * k + (scores[b].item() if t == n - 1 else 0.0)
            assert rewards[b, t].item() == pytest.approx(expected, abs=1e-5)
            assert kl[b, t].item() == pytest.approx(k, abs=1e-6)


def slow_gae(rewards, values, mask, gamma, lam):
    adv = torch.zeros_like(rewards)
    for b, n in enumerate(rows(mask)):
        for t in range(n):
            total = 0.0
            for k in range(t, n):  # A_t = sum_k (gamma lam)^(k-t) delta_k, V after the end = 0
                v_next = values[b, k + 1].item() if k + 1 < n else 0.0
                delta = rewards[b, k].item() + gamma * v_next - values[b, k].item()
                total += (gamma * lam) ** (k - t) * delta
            adv[b, t] = total
    return adv, (adv + values) * mask


@pytest.mark.parametrize("seed,gamma,lam", [(0, 1.0, 0.95), (1, 0.9, 0.8), (2, 1.0, 1.0), (3, 0.99, 0.0)])
def test_gae_matches_the_sum_of_discounted_deltas(seed, gamma, lam):
    g, _, _, _, mask = random_batch(seed, B=6, T=9)
    rewards = torch.randn(6, 9, generator=g) * mask
    values = torch.randn(6, 9, generator=g)               # garbage on padding must not leak in
    adv, ret = gae(rewards, values, mask, gamma, lam)
    slow_adv, slow_ret = slow_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, slow_adv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, slow_ret, atol=1e-5, rtol=1e-5)
    assert (adv[mask == 0] == 0).all()


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_masked_statistics(shift_mean):
    g, _, _, _, mask = random_batch(5, B=6, T=8)
    x = torch.randn(6, 8, generator=g) * 3 + 2
    real = [x[b, t].item() for b in range(6) for t in range(8) if mask[b, t] > 0]
    mean = sum(real) / len(real)
    std = math.sqrt(sum((v - mean) ** 2 for v in real) / (len(real) - 1))
    out = whiten(x, mask, shift_mean=shift_mean)
    for b in range(6):
        for t in range(8):
            expected = ((x[b, t].item() - mean) / std + (0 if shift_mean else mean)) if mask[b, t] else 0.0
            assert out[b, t].item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_policy_loss_matches_loop(seed):
    g, lp, old, _, mask = random_batch(seed)
    lp = old + torch.randn(lp.shape, generator=g) * 0.3
    adv = torch.randn(lp.shape, generator=g)
    eps = 0.2
    loss, stats = policy_loss(lp, old, adv, mask, eps)
    terms, clipped, kls = [], [], []
    for b, n in enumerate(rows(mask)):
        for t in range(n):
            r = math.exp(lp[b, t].item() - old[b, t].item())
            a = adv[b, t].item()
            unclipped, clip = -a * r, -a * min(max(r, 1 - eps), 1 + eps)
            terms.append(max(unclipped, clip))
            clipped.append(clip > unclipped)
            kls.append(0.5 * (lp[b, t].item() - old[b, t].item()) ** 2)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(sum(clipped) / len(clipped), abs=1e-6)
    assert stats["approx_kl"].item() == pytest.approx(sum(kls) / len(kls), abs=1e-6)
    assert 0 < stats["clipfrac"].item() < 1   # the test exercises both branches


def test_policy_loss_equals_unclipped_when_eps_is_large():
    g, lp, old, _, mask = random_batch(7)
    lp = (old + torch.randn(lp.shape, generator=g) * 0.5).requires_grad_()
    adv = torch.randn(lp.shape, generator=g)
    loss, stats = policy_loss(lp, old, adv, mask, clip_eps=1e6)
    unclipped = (-adv * torch.exp(lp - old) * mask).sum() / mask.sum()
    assert loss.item() == pytest.approx(unclipped.item(), abs=1e-6)
    assert stats["clipfrac"].item() == 0
    g1, = torch.autograd.grad(loss, lp)
    g2, = torch.autograd.grad(unclipped, lp)
    torch.testing.assert_close(g1, g2)


def test_value_loss_matches_loop_and_large_clip_is_plain_mse():
    g, _, _, _, mask = random_batch(3)
    old = torch.randn(mask.shape, generator=g)
    v = old + torch.randn(mask.shape, generator=g) * 0.5
    ret = torch.randn(mask.shape, generator=g)
    c = 0.2
    loss, stats = value_loss(v, old, ret, mask, c)
    terms, clipped = [], []
    for b, n in enumerate(rows(mask)):
        for t in range(n):
            vv, vo, R = v[b, t].item(), old[b, t].item(), ret[b, t].item()
            vc = vo + min(max(vv - vo, -c), c)
            terms.append(max((vv - R) ** 2, (vc - R) ** 2))
            clipped.append((vc - R) ** 2 > (vv - R) ** 2)
    assert loss.item() == pytest.approx(0.5 * sum(terms) / len(terms), abs=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(sum(clipped) / len(clipped), abs=1e-6)
    big, big_stats = value_loss(v, old, ret, mask, 1e6)
    assert big.item() == pytest.approx((0.5 * ((v - ret) ** 2 * mask).sum() / mask.sum()).item(), abs=1e-5)
    assert big_stats["clipfrac"].item() == 0


def test_adaptive_kl_controller_direction_and_formula():
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert c.update(12.0, 64) > 0.1                          # KL above target: stronger penalty
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert c.update(1.0, 64) < 0.1                           # below target: weaker penalty
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert c.update(6.0, 64) == pytest.approx(0.1)           # on target: unchanged
    c = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert c.update(600.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))   # error clipped at +0.2
    assert FixedKLController(0.3).update(100.0, 64) == 0.3


def test_metrics_with_trls_names_but_masked_means_say_so():
    """policy/approxkl_avg and val/ratio carry TRL's names; ours average over response tokens only, TRL's
    over every position (padding included). The glossary must say so, and the code must do what it says."""
    from lab import glossary

    for name in ("policy/approxkl_avg", "val/ratio"):
        assert "masked mean" in glossary.describe(name) and "TRL" in glossary.describe(name), name
    assert "k2" in glossary.describe("policy/approxkl_avg")
    log_ratio = torch.tensor([[0.2, -0.4, 0.0], [0.1, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])            # padding where mask is 0
    _, stats = policy_loss(log_ratio, torch.zeros(2, 3), torch.ones(2, 3), mask, clip_eps=0.2)
    ours = 0.5 * (0.2 ** 2 + 0.4 ** 2 + 0.1 ** 2) / 3
    trl = 0.5 * (0.2 ** 2 + 0.4 ** 2 + 0.1 ** 2) / 6
    assert float(stats["approx_kl"]) == pytest.approx(ours) and ours != pytest.approx(trl)


def test_token_logprob_and_its_written_out_gradient_match_autograd_log_softmax():
    from core.rollout import _TokenLogprob

    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 5, 7, generator=g, dtype=torch.float64)).requires_grad_()
    tokens = torch.randint(0, 7, (2, 5), generator=g)
    tokens[0, :3] = 4                                       # a token repeated along the row
    ours = _TokenLogprob.apply(logits, tokens)
    plain = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(ours, plain)
    torch.autograd.gradcheck(lambda x: _TokenLogprob.apply(x, tokens), (logits,))
    w = torch.randn(2, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad((ours * w).sum(), logits)[0],
                               torch.autograd.grad((plain * w).sum(), logits)[0])
    with torch.inference_mode():                            # the rollout's use: no graph at all
        torch.testing.assert_close(_TokenLogprob.apply(logits, tokens), plain.detach())
