"""The config of DPO (and IPO): its dataclass, presets and checks (the shared fields and limits: base.py)."""

from __future__ import annotations

from dataclasses import dataclass

from core.config.base import (PROFILE_CHOICES, ConfigError, TrainingConfig, check_choice, check_finite, check_int,
                               check_non_negative, check_positive, check_range, from_preset, live)

DPO_LOSSES = ("sigmoid", "ipo")


@dataclass
class DPOConfig(TrainingConfig):
    """Direct preference optimisation: the policy learns from preference pairs directly, no reward model, no RL
    (Rafailov et al. 2023). The proxy RM and the gold annotator only judge it, at the evaluation points."""

    preset: str = "small"
    """Size preset: tiny (tests), small (the CPU default) or gpu."""
    preferences: str | None = None
    """The pairs: a preferences run folder, or a JSONL/CSV file of (prompt, chosen, rejected). Required."""
    policy: str = "small"
    """The starting policy: a shipped name, a checkpoint folder or a run folder."""
    ref: str | None = None
    """The frozen reference pi_ref of the loss and of objective/kl (None = the starting policy, DPO's choice)."""
    reward: str = "reward"
    """The proxy reward model, for objective/scores at the evaluation points only (DPO never trains on it)."""
    profile: str | None = None
    """Gold profile for objective/gold (None = the preference run's profile, else positive)."""
    beta: float = live(0.1)
    """beta of the loss: how far from pi_ref the implicit reward lets the policy go (live control)."""
    loss_type: str = "sigmoid"
    """sigmoid: DPO's -log sigmoid(beta * margin); ipo: IPO's (margin - 1/(2 beta))^2 (Azar et al. 2023)."""
    epochs: int = 1
    """Passes over the training pairs."""
    batch_size: int = 32
    """Pairs per optimizer step."""
    lr: float = live(1e-4)
    """AdamW learning rate of the policy (live control)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    val_fraction: float = 0.1
    """Share of prompts (with all their pairs) held out for the validation accuracy of the implicit reward."""
    eval_every: int = 20
    """Steps between evaluations: policy samples scored for objective/gold, objective/scores, objective/kl."""
    eval_prompts: int = 64
    """Evaluation prompts sampled at every evaluation point (also the first samples logged to samples.jsonl)."""
    response_length: int = 24
    """Most tokens generated per evaluation response."""
    checkpoint_every: int = 100
    """Steps between checkpoints (one is always written at the end or on stop)."""

    def check(self) -> None:
        check_choice(self, "preset", tuple(PRESET_DPO))
        if not isinstance(self.preferences, str) or not self.preferences:
            raise ConfigError("DPOConfig.preferences: DPO trains on preference pairs and none were given; name a "
                              "preferences run folder or a JSONL/CSV file of (prompt, chosen, rejected) (make one "
                              "with `rlhf-lab preferences --out runs/prefs`)")
        for name in ("policy", "reward"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"DPOConfig.{name} must be a checkpoint spec (shipped name, checkpoint folder "
                                  f"or run folder), got {getattr(self, name)!r}")
        if self.ref is not None and (not isinstance(self.ref, str) or not self.ref):
            raise ConfigError(f"DPOConfig.ref must be a checkpoint spec or None (= the policy), got {self.ref!r}")
        if self.profile is not None:
            check_choice(self, "profile", PROFILE_CHOICES)
        check_choice(self, "loss_type", DPO_LOSSES)
        check_finite(self, "beta")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta > 0:
            raise ConfigError(f"DPOConfig.beta must be > 0 (typical 0.01 to 0.5; at 0 the loss has no gradient), "
                              f"got {self.beta!r}")
        check_finite(self, "lr")
        check_positive(self, "lr")
        for name in ("epochs", "batch_size", "eval_every", "eval_prompts", "response_length", "checkpoint_every"):
            check_int(self, name, 1)
        for name in ("weight_decay", "grad_clip"):
            check_non_negative(self, name)
        check_range(self, "val_fraction", 0.0, 0.5, high_open=True)
        return self


PRESET_DPO = {
    "tiny": dict(batch_size=16, lr=2e-3, eval_every=4, eval_prompts=8, response_length=12, checkpoint_every=8),
    "small": dict(),
    "gpu": dict(batch_size=64, lr=5e-6, eval_prompts=256),
}


def dpo_preset(preset: str = "small", **overrides) -> DPOConfig:
    """A DPOConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(DPOConfig, PRESET_DPO, preset, overrides)
