"""The config of stage 3, the reward model: its dataclass, presets and checks.

The fields and checks every stage shares are in base.py."""

from __future__ import annotations

from dataclasses import dataclass

from core.config.base import (ConfigError, TrainingConfig, check_choice, check_int, check_non_negative, check_positive,
                               check_range)
from core.config.model import PRESETS


@dataclass
class RewardConfig(TrainingConfig):
    """Training a reward model on preference pairs with the pairwise (Bradley-Terry) loss."""

    preset: str = "small"
    """Size preset (tiny for tests)."""
    preferences: str | None = None
    """The comparisons: a preferences run folder, or a JSONL/CSV file of (prompt, chosen, rejected)."""
    base: str = "small"
    """The RM starts from this base model's backbone, and is normalised on this model's samples."""
    profile: str | None = None
    """Gold profile for rm/gold_agreement (None = the preference run's profile, else positive)."""
    epochs: int = 3
    """Passes over the training pairs."""
    batch_size: int = 32
    """Pairs per optimizer step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up over 10% of the steps, then linear decay to 0). High
    for fine-tuning, but these backbones are small and the score head starts from scratch."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    margin: float = 0.0
    """Margin m of the loss -log sigmoid(r_chosen - r_rejected - m) (0 = the plain pairwise loss)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    val_fraction: float = 0.1
    """Share of prompts (with all their pairs) held out for rm/val_accuracy."""
    eval_every: int = 50
    """Steps between validation and gold-agreement evaluations (one is always made at the end)."""
    gold_pairs: int = 200
    """Fresh base-model pairs of distinct gold utility, never trained on, for rm/gold_agreement."""
    gold_gap: float = 0.05
    """Pairs whose gold utilities differ by less than this are not 'distinct' and are not used."""
    norm_samples: int = 256
    """Base-model samples the finished RM is normalised on (mean 0, std 1)."""
    max_new_tokens: int = 48
    """Longest sampled response for the gold pairs and the normalisation samples."""

    def check(self) -> None:
        check_choice(self, "preset", PRESETS)
        if not isinstance(self.preferences, str) or not self.preferences:
            raise ConfigError("RewardConfig.preferences must name a preferences run folder or a JSONL/CSV "
                              f"file of pairs, got {self.preferences!r}")
        if not isinstance(self.base, str) or not self.base:
            raise ConfigError(f"RewardConfig.base must be a checkpoint spec (shipped name or folder), got {self.base!r}")
        if self.profile is not None:
            check_choice(self, "profile", ("positive", "negative", "concise"))
        for name in ("epochs", "batch_size", "eval_every", "gold_pairs", "max_new_tokens"):
            check_int(self, name, 1)
        check_int(self, "norm_samples", 2)
        check_positive(self, "lr")
        for name in ("weight_decay", "margin", "grad_clip", "gold_gap"):
            check_non_negative(self, name)
        check_range(self, "val_fraction", 0.0, 0.5, low_open=True)
        return self
