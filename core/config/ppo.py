"""The config of PPO with a KL penalty: its dataclass, presets and checks (the shared fields and limits: base.py)."""

from __future__ import annotations

from dataclasses import dataclass

from core.config.base import (ConfigError, OnlineConfig, check_choice, check_finite, check_int, check_non_negative,
                               check_positive, check_range, from_preset, live)

KL_ESTIMATORS = ("k1", "k3")


VALUE_MODELS = ("separate", "shared")


@dataclass
class PPOConfig(OnlineConfig):
    """PPO fine-tuning of the policy against a reward model, with a KL penalty to the base model."""

    preset: str = "small"
    """Size preset: tiny (tests), small (the CPU default) or gpu."""
    value_model: str = "separate"
    """separate: a critic initialised from the reward model (InstructGPT); shared: a value head on the policy."""
    ppo_epochs: int = 4
    """Passes over each rollout batch."""
    minibatches: int = 4
    """Minibatches per pass (batch_size must be divisible by it); ppo_epochs * minibatches optimizer steps."""
    lr: float = live(5e-5)
    """AdamW learning rate of the policy and the value model (live control)."""
    kl_coef: float = live(0.05)
    """lambda in reward = score - lambda * KL (live control; the start value when adaptive_kl is on)."""
    kl_estimator: str = "k1"
    """Per-token KL estimator: k1 = log pi - log pi_ref, or k3 (non-negative, lower variance)."""
    adaptive_kl: bool = live(False)
    """Adapt kl_coef toward target_kl (Ziegler et al. 2019) instead of keeping it fixed (live control)."""
    target_kl: float = live(3.0)
    """Target of the adaptive controller: KL per response, summed over its tokens (live control)."""
    kl_horizon: int = 128
    """Horizon of the adaptive controller, in samples: kl_coef moves by at most 20% * batch_size / kl_horizon
    per iteration (10% at the defaults: fast enough to matter within a short classroom run)."""
    clip_eps: float = live(0.2)
    """PPO's clip range epsilon on the policy ratio: the ratio is clipped to [1-eps, 1+eps] (live control)."""
    clip_value: float = 0.2
    """Clip range of the value update around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss."""
    gamma: float = 1.0
    """Discount factor of GAE (1.0: no discount inside a short response)."""
    lam: float = 0.95
    """GAE lambda (bias/variance trade-off of the advantage)."""
    temperature: float = live(1.0)
    """Sampling temperature; log-probs of policy and reference use the same scaled logits (live control)."""
    whiten_rewards: bool = False
    """Whiten the shaped rewards before GAE (advantages are always whitened)."""
    missing_eos_penalty: float = 0.0
    """Subtracted from the score of a response that did not end with <eos> (0 = off)."""

    def check(self, n_positions: int | None = None) -> None:
        """Raise ConfigError for an impossible value. With `n_positions` (the policy's context, known
        once it is loaded) also check that prompt + response fit in it."""
        self.check_online(n_positions)  # the fields every online stage shares (base.py)
        check_choice(self, "preset", tuple(PRESET_PPO))
        check_choice(self, "value_model", VALUE_MODELS)
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        for name in ("ppo_epochs", "kl_horizon"):
            check_int(self, name, 1)
        for name in ("kl_coef", "target_kl"):
            check_finite(self, name)
        check_non_negative(self, "kl_coef")
        check_positive(self, "target_kl")
        check_positive(self, "clip_value")
        for name in ("vf_coef", "missing_eos_penalty"):
            check_non_negative(self, name)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "lam", 0.0, 1.0)
        for name in ("adaptive_kl", "whiten_rewards"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"PPOConfig.{name} must be true or false, got {getattr(self, name)!r}")
        return self


PRESET_PPO = {
    "tiny": dict(iterations=6, batch_size=32, prompt_length=8, response_length=12, ppo_epochs=2, minibatches=2,
                 lr=2e-3, sample_every=2, eval_prompts=3, checkpoint_every=3),
    "small": dict(),
    "gpu": dict(batch_size=256, response_length=32, minibatches=8, lr=1e-5),
}


def ppo_preset(preset: str = "small", **overrides) -> PPOConfig:
    """A PPOConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(PPOConfig, PRESET_PPO, preset, overrides)
