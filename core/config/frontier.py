"""The config of the reward-KL frontier sweep: its dataclass, presets and checks.

The fields and checks every stage shares are in base.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config.base import ConfigError, StageConfig, check_choice, check_int, from_preset
from core.config.ppo import PRESET_PPO

FRONTIER_METHODS = ("ppo", "grpo", "rloo", "dpo", "bon")


FRONTIER_KNOBS = {"ppo": "kl_coef", "grpo": "beta", "rloo": "beta", "dpo": "beta", "bon": "n"}
"""The KL knob each method's sweep turns (best-of-n: the number of samples n)."""


@dataclass
class FrontierConfig(StageConfig):
    """A sweep of every method's KL knob on the same models, each policy scored by core.evaluate."""

    preset: str = "default"
    """tiny (tests, seconds), default (2 CPU cores, <= 20 min) or gpu."""
    methods: list = field(default_factory=lambda: list(FRONTIER_METHODS))
    """Methods to sweep, from ppo, grpo, rloo, dpo, bon (one not built in this version is refused)."""
    ppo: list = field(default_factory=lambda: [0.0, 0.05, 0.3])
    """PPO's kl_coef values (lambda in reward = score - lambda * KL), each >= 0."""
    grpo: list = field(default_factory=lambda: [0.0, 0.05, 0.3])
    """GRPO's beta values (weight of the KL to the reference), each >= 0."""
    rloo: list = field(default_factory=lambda: [0.0, 0.05, 0.3])
    """RLOO's beta values, each >= 0."""
    dpo: list = field(default_factory=lambda: [0.05, 0.1, 0.5])
    """DPO's beta values (the implicit KL weight), each > 0."""
    bon: list = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    """best-of-n's n values: increasing integers >= 1."""
    seeds: int = 2
    """Training seeds per setting (seed, seed + 1, ...): the spread of the frontier."""
    iterations: int = 20
    """Iterations (steps) each online method trains per setting."""
    eval_every: int = 5
    """Every this many iterations an online method's checkpoint is evaluated (its path along the frontier)."""
    dpo_pairs: int = 2000
    """Preference pairs DPO trains on: sampled from the base model once per sweep, labelled by the gold annotator."""
    dpo_epochs: int = 2
    """DPO's passes over its pairs (its checkpoints along the way trace its path like the RL methods')."""
    method_preset: str = "small"
    """The preset of each method's own config (PPOConfig etc.): tiny or small (CPU) or gpu."""
    batch_size: int = 0
    """Prompts per iteration of the online methods (0 = their preset's)."""
    eval_prompts: int = 64
    """Fixed evaluation prompts, one sample each, for every policy."""
    response_length: int = 24
    """Most tokens per response, in training and in the evaluation."""
    policy: str = "small"
    """Base model (the start of every method and the reference of every KL)."""
    reward: str = "reward"
    """Proxy reward model."""
    profile: str = "positive"
    """Gold annotator profile."""

    def check(self) -> None:
        check_choice(self, "preset", tuple(PRESET_FRONTIER))
        check_choice(self, "method_preset", tuple(PRESET_PPO))
        if not isinstance(self.methods, (list, tuple)) or not self.methods:
            raise ConfigError(f"FrontierConfig.methods: give at least one of {list(FRONTIER_METHODS)}")
        for method in self.methods:
            if method not in FRONTIER_METHODS:
                raise ConfigError(f"FrontierConfig.methods: unknown method {method!r}; methods are "
                                  f"{list(FRONTIER_METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"FrontierConfig.methods: a method is listed twice in {list(self.methods)}")
        for method in self.methods:
            values = getattr(self, method)
            knob = FRONTIER_KNOBS[method]
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"FrontierConfig.{method}: the {method} sweep is empty; give at least one {knob}")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"),
                                                                                               float("-inf")):
                    raise ConfigError(f"FrontierConfig.{method}: {knob} must be a finite number, got {v!r}")
            if method == "bon":
                if any(not isinstance(v, int) or v < 1 for v in values):
                    raise ConfigError(f"FrontierConfig.bon: n must be integers >= 1, got {list(values)}")
                if any(b <= a for a, b in zip(values, values[1:])):
                    raise ConfigError(f"FrontierConfig.bon: n must be increasing, got {list(values)}")
                if values[-1] > 256:
                    raise ConfigError(f"FrontierConfig.bon: n must be <= 256 (n samples per prompt), got {values[-1]}")
            elif method == "dpo":
                if any(v <= 0 for v in values):
                    raise ConfigError(f"FrontierConfig.dpo: beta must be > 0, got {list(values)}")
            elif any(v < 0 for v in values):
                raise ConfigError(f"FrontierConfig.{method}: {knob} must be >= 0, got {list(values)}")
            if len(set(values)) != len(values):
                raise ConfigError(f"FrontierConfig.{method}: a {knob} value is repeated in {list(values)}")
        for name in ("seeds", "iterations", "eval_every", "eval_prompts", "response_length", "dpo_epochs"):
            check_int(self, name, 1)
        check_int(self, "dpo_pairs", 8)
        check_int(self, "batch_size", 0)
        if self.eval_every > self.iterations:
            raise ConfigError(f"FrontierConfig.eval_every must be <= iterations ({self.iterations}), got "
                              f"{self.eval_every}")
        for name in ("policy", "reward"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"FrontierConfig.{name} must be a checkpoint spec, got {getattr(self, name)!r}")
        check_choice(self, "profile", ("positive", "negative", "concise"))
        return self


PRESET_FRONTIER = {
    # seconds: two PPO settings x 2 iterations on 8 prompts, best-of-{1,2,4}; the shape of the tests
    "tiny": dict(ppo=[0.0, 0.5], grpo=[0.0, 0.5], rloo=[0.0, 0.5], dpo=[0.1, 0.5], bon=[1, 2, 4], seeds=1,
                 iterations=2, eval_every=1, dpo_pairs=48, dpo_epochs=1, method_preset="tiny", batch_size=8,
                 eval_prompts=8, response_length=12),
    # 2 CPU cores, <= 20 min (README: the measured per-setting times)
    "default": dict(),
    "gpu": dict(ppo=[0.0, 0.02, 0.05, 0.1, 0.3, 1.0], grpo=[0.0, 0.02, 0.05, 0.1, 0.3, 1.0],
                rloo=[0.0, 0.02, 0.05, 0.1, 0.3, 1.0], dpo=[0.02, 0.05, 0.1, 0.3, 1.0],
                bon=[1, 2, 4, 8, 16, 32, 64, 128], seeds=3, iterations=60, eval_every=10, method_preset="gpu",
                eval_prompts=256, response_length=32),
}


def frontier_preset(preset: str = "default", **overrides) -> FrontierConfig:
    """A FrontierConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(FrontierConfig, PRESET_FRONTIER, preset, overrides)
