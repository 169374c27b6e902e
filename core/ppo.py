"""PPO with a KL penalty: the math, as small pure functions (cleanrl style).

Notation (Ziegler et al. 2019; Ouyang et al. 2022; Huang et al. 2024 "The N+ implementation details of
RLHF with PPO"):

    r_t     = -kl_coef * KL_t                 on every real response token t
    r_T    += score                           at the last real token T (the RM's verdict)
    A_t     = GAE(r, V)                       generalised advantage estimation
    ratio_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)
    L^CLIP  = E_t[ max(-A_t * ratio_t, -A_t * clip(ratio_t, 1-eps, 1+eps)) ]    (we minimise)

Every tensor below is (B, T) over RESPONSE tokens unless said otherwise. `mask` is 1.0 on real response
tokens and 0.0 on the padding after a row's <eos>; "the last real token" of a row is its last position
with mask 1. Signs: the KL penalty is positive, reward = score - kl_coef * kl (see the glossary).
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k3")


# ----------------------------------------------------------------------------- masked statistics

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (a scalar)."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of x over the mask (Bessel's correction, as in TRL/lm-human-preferences)."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1).clamp(min=1.0)


# ----------------------------------------------------------------------------- KL and reward shaping

def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi.         (B, T) -> (B, T)

    k1 = log pi - log pi_ref          unbiased, can be negative on a single token
    k3 = (exp(d) - 1) - d, d = log pi_ref - log pi     unbiased, >= 0, lower variance
    http://joschu.net/blog/kl-approx.html
    """
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        d = ref_logprobs - logprobs
        return torch.expm1(d) - d  # expm1: exact near d = 0, where most tokens are
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def last_real_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last position with mask 1 in each row (0 for an all-zero row)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return ((mask > 0).long() * positions).argmax(dim=1)


def shaped_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                   mask: torch.Tensor, kl_coef: float, estimator: str = "k1"):
    """The per-token RLHF reward: -kl_coef * KL on every real token, plus the RM score on the last.

    scores (B,), logprobs/ref_logprobs/mask (B, T) -> rewards (B, T), kl (B, T) (both 0 on padding).
    lm-human-preferences/train_policy.py: `rewards = -kl_coef * kl; rewards[:, -1] += scores`; we put the
    score at each row's last REAL token instead, so a response that stopped early is scored where it ends.
    """
    kl = kl_estimate(logprobs, ref_logprobs, estimator) * mask          # (B, T)
    rewards = -kl_coef * kl                                              # (B, T)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_real_index(mask)] += scores                      # (B,) added at column T_b
    return rewards, kl


# ----------------------------------------------------------------------------- advantages

@torch.no_grad()
def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95):
    """Generalised advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438, eq. 16).

        delta_t = r_t + gamma * V_{t+1} - V_t          with V after the last real token = 0
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                            (the value target)

    rewards, values, mask: (B, T) -> advantages (B, T), returns (B, T); both 0 on padding.
    One backward loop over T columns (T is the response length, ~24): vectorised over the batch.
    """
    values = values * mask                                               # V = 0 past the end
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])                     # (B,)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
    returns = (advantages + values) * mask
    return advantages, returns


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Masked normalisation to mean 0 and std 1 over the real tokens (padding stays 0).   (B, T) -> (B, T)

    shift_mean=False keeps the original mean (used for rewards in some recipes, so that a constant
    reward offset still means something).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


# ----------------------------------------------------------------------------- losses

def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_eps: float):
    """PPO's clipped surrogate (Schulman et al. 2017, https://arxiv.org/abs/1707.06347, eq. 7), negated.

    logprobs (B, T) carry gradients; old_logprobs and advantages are constants from the rollout.
    Returns (loss scalar, stats) with stats: clipfrac, approx_kl, ratio (B, T) detached.
    cleanrl ppo.py: pg_loss = max(-mb_advantages * ratio, -mb_advantages * clamp(ratio, 1-eps, 1+eps)).
    """
    log_ratio = logprobs - old_logprobs                                  # (B, T)
    ratio = torch.exp(log_ratio)                                         # (B, T)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg_loss2 > pg_loss1).float(), mask),   # the clipped term is active
            # TRL's k2 estimator, but a masked mean over response tokens (TRL averages over all positions)
            "approx_kl": 0.5 * masked_mean(log_ratio ** 2, mask),
            "ratio": ratio.detach(),
        }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_value: float):
    """Clipped value loss: 0.5 * E_t[ max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2) ].

    values (B, T) carry gradients; old_values and returns are constants from the rollout.
    Returns (loss scalar, stats) with stats["clipfrac"] (share of tokens where the clipped term wins).
    """
    values_clipped = old_values + torch.clamp(values - old_values, -clip_value, clip_value)
    vf_loss1 = (values - returns) ** 2
    vf_loss2 = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_loss1, vf_loss2), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((vf_loss2 > vf_loss1).float(), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position.                  (B, T, V) -> (B, T)"""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- KL controllers

class AdaptiveKLController:
    """Ziegler et al. 2019 (https://arxiv.org/abs/1909.08593, sec. 2.2), lm-human-preferences:

        e = clip(KL / target - 1, -0.2, 0.2);   kl_coef <- kl_coef * (1 + e * n_steps / horizon)

    KL above target -> kl_coef grows (pull back toward the reference); below -> it shrinks.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float = 10000):
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


class FixedKLController:
    """The same API with a constant coefficient."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value
