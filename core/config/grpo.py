"""The config of GRPO and RLOO: its dataclass, presets and checks (the shared fields and limits: base.py)."""

from __future__ import annotations

from dataclasses import dataclass

from core.config.base import (ConfigError, OnlineConfig, check_choice, check_finite, check_int, check_non_negative,
                               from_preset, live)
from core.config.ppo import KL_ESTIMATORS

GRPO_ADVANTAGES = ("grpo", "rloo")


KL_PLACES = ("loss", "reward")


LOSS_AVERAGING = ("token", "sequence")


@dataclass
class GRPOConfig(OnlineConfig):
    """GRPO or RLOO fine-tuning: a group of responses per prompt, no critic (core/grpo.py)."""

    preset: str = "small"
    """Size preset: tiny (tests), small (the CPU default) or gpu."""
    advantage: str = "grpo"
    """grpo: (score - group mean) / group std; rloo: score - mean of the OTHER responses of the group."""
    scale_advantages: bool = True
    """GRPO only: divide by the group's std (False = Dr. GRPO's unscaled advantage)."""
    group_size: int = 8
    """G: responses sampled per prompt; must be >= 2 and divide batch_size."""
    epochs: int = 1
    """Passes over each batch (GRPO's mu)."""
    minibatches: int = 2
    """Optimizer steps per pass (must divide batch_size). After the first step the policy has moved, so the
    ratio and the clip have something to do; with 1 the ratio is exactly 1 and the loss is plain REINFORCE."""
    lr: float = live(5e-5)
    """AdamW learning rate (live control)."""
    beta: float = live(0.04)
    """KL coefficient to the reference (live control); 0 = no KL term."""
    kl_in: str = "loss"
    """loss: + beta * KL_t in the loss on every token (GRPO); reward: score - beta * sum_t KL_t before the
    advantages (PPO's form)."""
    kl_estimator: str = "k3"
    """Per-token KL estimator of the KL term (k3 as in GRPO; k1 = log pi - log pi_ref)."""
    clip_eps: float = live(0.2)
    """Clip range epsilon on the policy ratio (live control)."""
    loss_averaging: str = "token"
    """token: mean over every real token of the batch (DAPO, TRL's default); sequence: mean over responses of
    each response's token mean (the GRPO paper's 1/|o_i|, which weighs a long response's tokens less)."""
    temperature: float = live(1.0)
    """Sampling temperature; policy and reference log-probs use the same scaled logits (live control)."""

    def check(self, n_positions: int | None = None) -> None:
        self.check_online(n_positions)  # the fields every online stage shares (base.py)
        check_choice(self, "preset", tuple(PRESET_GRPO))
        check_choice(self, "advantage", GRPO_ADVANTAGES)
        check_choice(self, "kl_in", KL_PLACES)
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        check_choice(self, "loss_averaging", LOSS_AVERAGING)
        check_int(self, "group_size", 2)  # one response has no group to be compared with
        check_int(self, "epochs", 1)
        if self.batch_size % self.group_size:
            raise ConfigError(f"GRPOConfig.group_size must divide batch_size: {self.batch_size} responses cannot "
                              f"be split into groups of {self.group_size}")
        check_finite(self, "beta")
        check_non_negative(self, "beta")
        if not isinstance(self.scale_advantages, bool):
            raise ConfigError(f"GRPOConfig.scale_advantages must be true or false, got {self.scale_advantages!r}")
        return self


PRESET_GRPO = {
    "tiny": dict(iterations=6, batch_size=32, group_size=4, response_length=12, lr=2e-3, sample_every=2,
                 eval_prompts=3, checkpoint_every=3),
    "small": dict(),
    "gpu": dict(batch_size=256, response_length=32, minibatches=4, lr=1e-5),
}


def grpo_preset(preset: str = "small", **overrides) -> GRPOConfig:
    """A GRPOConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(GRPOConfig, PRESET_GRPO, preset, overrides)
