"""The config of best-of-n sampling: its dataclass, presets and checks (the shared fields and limits: base.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config.base import (PROFILE_CHOICES, ConfigError, TrainingConfig, check_choice, check_finite, check_int,
                               check_positive, from_preset)


@dataclass
class BoNConfig(TrainingConfig):
    """Best-of-n sampling: n responses per prompt from the base model, keep the one the reward model scores
    highest. No training; the policy it defines sits at a KL from the base model of at most log n - (n - 1)/n
    (Beirami et al. 2024), as much when the base model rarely draws one response twice."""

    preset: str = "small"
    """Size preset: tiny (tests), small (the CPU default) or gpu."""
    policy: str = "small"
    """The base model that samples: a shipped name, a checkpoint folder or a run folder."""
    reward: str = "reward"
    """The reward model (proxy) that picks the best response: a shipped name, a checkpoint or a reward run folder."""
    profile: str = "positive"
    """Gold profile for objective/gold of the kept responses."""
    n: list = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    """The values of n, strictly increasing, each >= 1. max(n) responses are sampled once per prompt; a smaller
    n keeps the best of the first n of them."""
    prompts: int = 64
    """Evaluation prompts (one best-of-n response each, per n)."""
    response_length: int = 24
    """Most tokens generated per response."""
    temperature: float = 1.0
    """Sampling temperature of the base model (1 = its own distribution, where the KL formula holds)."""
    batch_size: int = 512
    """Responses sampled per batch (a batch holds whole prompts: batch_size // max(n) of them, at least one)."""

    def check(self) -> None:
        check_choice(self, "preset", tuple(PRESET_BON))
        for name in ("policy", "reward"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"BoNConfig.{name} must be a checkpoint spec (shipped name, checkpoint folder "
                                  f"or run folder), got {getattr(self, name)!r}")
        check_choice(self, "profile", PROFILE_CHOICES)
        n = self.n
        if (not isinstance(n, (list, tuple)) or not n
                or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in n)):
            raise ConfigError(f"BoNConfig.n must be a list of integers >= 1 (e.g. 1,2,4,8,16,32), got {n!r}")
        if any(b <= a for a, b in zip(n, n[1:])):
            raise ConfigError(f"BoNConfig.n must be strictly increasing (e.g. 1,2,4,8,16,32), got {list(n)}")
        if n[-1] > 4096:
            raise ConfigError(f"BoNConfig.n must stay <= 4096 (the largest n samples that many responses a "
                              f"prompt), got {n[-1]}")
        for name in ("prompts", "response_length", "batch_size"):
            check_int(self, name, 1)
        check_finite(self, "temperature")
        check_positive(self, "temperature")
        return self


PRESET_BON = {
    "tiny": dict(n=[1, 4, 16], prompts=16, response_length=12),
    "small": dict(),
    "gpu": dict(n=[1, 2, 4, 8, 16, 32, 64, 128, 256], prompts=256, batch_size=4096),
}


def bon_preset(preset: str = "small", **overrides) -> BoNConfig:
    """A BoNConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(BoNConfig, PRESET_BON, preset, overrides)
