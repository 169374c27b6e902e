"""Typed configs, one dataclass per stage, with presets and `validate()`.

Every field has a docstring (the string right below it). `validate()` raises `ConfigError`
naming the field and the allowed range *before* any training starts, so a student who types an
impossible value sees why at once instead of a traceback from deep inside torch.

Presets:
  tiny  -- for tests: a whole stage in seconds.
  small -- the CPU default: a fluent model in a few minutes on 2 cores. Also the "strong" model of
           the weak-to-strong experiment. Same shape as the TRL reference setting (4 layers, 128 wide,
           vocab 1024) so speed comparisons are like for like.
  weak  -- a deliberately weaker, smaller model (the supervisor in weak-to-strong): 2 layers, 16 wide.
           Two layers, not one: a 1-layer model cannot see word order at all, so its labels carry no
           signal on the word-order task of weak-to-strong and there would be nothing to recover.
  gpu   -- GPT-2-small shaped (12 layers, 768 wide); same code, meant for a CUDA device.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field, fields

import numpy as np
import torch


class ConfigError(ValueError):
    """An impossible configuration value. The message names the field and the allowed range."""


def live(default):
    """A config field the student may change while the stage runs (a live knob)."""
    return field(default=default, metadata={"live": True})


def live_knobs(cfg) -> tuple[str, ...]:
    """The live knobs of a stage config (class or instance), in field order."""
    return tuple(f.name for f in fields(cfg) if f.metadata.get("live"))


def check_positive(cfg, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be > 0, got {value!r}")


def check_non_negative(cfg, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be >= 0, got {value!r}")


def check_range(cfg, name: str, low: float, high: float, low_open=False, high_open=False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ConfigError(f"{type(cfg).__name__}.{name} must be in {lb}{low}, {high}{rb}, got {value!r}")


def check_int(cfg, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be an integer >= {low}, got {value!r}")


def check_finite(cfg, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ConfigError(f"{type(cfg).__name__}.{name} must be a finite number, got {value!r}")


# Upper bounds shared by every stage: past these a value is a typo, not an experiment (a --batch 2000000 asked for
# 16 GB; --threads 1000 made a run 12x slower; --lr 1e30 trains on NaN). Fields a config does not have are skipped.
LIMITS = {
    "lr": (0.0, 1.0), "weak_lr": (0.0, 1.0), "margin": (0.0, 100.0), "seed": (0, 2**32 - 1),
    "batch_size": (1, 8192), "steps": (1, 10_000_000), "iterations": (1, 1_000_000), "epochs": (1, 10_000),
    "weak_epochs": (1, 10_000), "corpus_size": (1, 10_000_000), "n_train": (1, 10_000_000), "n_test": (1, 10_000_000),
    "n_prompts": (1, 10_000_000), "seeds": (1, 1000), "eval_prompts": (1, 10_000),
}


def check_limits(cfg) -> None:
    """Each field of LIMITS (and `threads`, up to this machine's cores) inside its range, as a finite number;
    lr must be > 0."""
    limits = dict(LIMITS, threads=(0, max(1, os.cpu_count() or 1)))
    for name, (low, high) in limits.items():
        if not hasattr(cfg, name):
            continue
        value = getattr(cfg, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and low <= value <= high
        if ok and name in ("lr", "weak_lr"):
            ok = value > 0
        if ok and isinstance(low, int) and isinstance(high, int):
            ok = isinstance(value, int)
        if not ok:
            lb = "(" if name in ("lr", "weak_lr") else "["
            raise ConfigError(f"{type(cfg).__name__}.{name} must be in {lb}{low:g}, {high:g}], got {value!r}")


def check_choice(cfg, name: str, choices) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be one of {sorted(choices)}, got {value!r}")


DEVICES = ("auto", "cpu", "cuda", "mps")


DEVICE_CHOICES = DEVICES + tuple(f"cuda:{i}" for i in range(16))


DEVICE_OVERRIDE_ENV = "RLHF_LAB_DEVICE"


PRECISIONS = ("auto", "fp32", "bf16")


PRECISION_HELP = ("auto (default): bf16 autocast on a CUDA GPU with bf16 and on a CPU whose bf16 matmuls measured "
                  "faster (a one-off test cached in ~/.cache/rlhf-lab/precision.json), fp32 elsewhere; fp32; bf16: "
                  "forced (on a CPU without fast bf16 it runs, slower, with a warning; on a GPU without bf16 or "
                  "an Apple GPU it is an error). Weights, optimizer state, log-probs and losses stay fp32.")


def check_precision(cfg) -> None:
    """Every stage config's `precision` field (core/precision.py resolves it on the device)."""
    check_choice(cfg, "precision", PRECISIONS)


def check_device(cfg) -> None:
    """Every stage config's `device` field: auto, cpu, cuda, cuda:N or mps (availability is checked
    when the stage starts, by resolve_device)."""
    check_choice(cfg, "device", DEVICE_CHOICES)


def resolve_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu for "auto"; an explicit choice that this machine lacks is an error.

    The environment variable RLHF_LAB_DEVICE (e.g. "cuda") overrides every choice: it is how the
    test suite, which asks for "cpu" by default, is run on a GPU (scripts/gpu_check.sh).
    """
    if os.environ.get(DEVICE_OVERRIDE_ENV):
        name = os.environ[DEVICE_OVERRIDE_ENV]
    if name is None:
        name = "auto"
    name = str(name)
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)} (optionally cuda:N), got {name!r}")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but this machine has no CUDA GPU; use --device cpu or auto")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but this machine has no Apple GPU; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so that a run is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def from_preset(cls, presets: dict, preset: str, overrides: dict, **fixed):
    """`cls` filled from the `presets[preset]` table, then `overrides` (None values are ignored: an
    unset CLI flag keeps the preset's value), plus `fixed` fields. Every stage's *_preset() is this."""
    if preset not in presets:
        raise ConfigError(f"preset must be one of {list(presets)}, got {preset!r}")
    values = dict(presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(preset=preset, **fixed, **values)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a config dataclass from `to_dict` output; unknown keys are an error."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    values = dict(data)
    if "bf16" in unknown and "precision" in known:  # config.json of a run from before `precision`
        legacy = values.pop("bf16")                 # bf16=True meant "bf16 on CUDA, fp32 on the CPU" ~ auto
        values.setdefault("precision", "auto" if legacy else "fp32")
        unknown.discard("bf16")
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    if "model" in values and isinstance(values["model"], dict):
        from core.config.model import (
            ModelConfig,  # here: model.py itself builds on this module
        )

        values["model"] = ModelConfig(**values["model"])
    return cls(**values)


PROFILE_CHOICES = ("positive", "negative", "concise")


# ----------------------------------------------------------------------------- the one config base

@dataclass
class StageConfig:
    """The fields every stage shares, once, and the one validate() that applies the shared limits to every stage.

    A stage's dataclass adds its own fields and its own `check()` (the stage's constraints, naming the field);
    validate() runs that, then the checks every stage obeys alike (seed, threads, device, precision, LIMITS), and
    returns the config. Live knobs are marked on the stage's fields with live()."""

    seed: int = 0
    """Seeds everything random in the stage (data order, sampling, initialisation)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def check(self, **context) -> None:
        """The stage's own constraints (every stage overrides it)."""

    def validate(self, **context):
        """Raise ConfigError naming the first impossible field; returns self. `context` goes to check() (PPO and
        GRPO take the policy's n_positions)."""
        self.check(**context)
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        if hasattr(self, "precision"):
            check_precision(self)
        check_limits(self)
        return self


@dataclass
class TrainingConfig(StageConfig):
    """A stage that runs matmul-heavy forwards: it also chooses their precision."""

    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU with native bf16 matmuls),
    fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""


@dataclass
class OnlineConfig(TrainingConfig):
    """An online RL stage (PPO, GRPO/RLOO): it samples responses from its policy and scores them with a reward model
    every iteration; the fields of that loop, once."""

    policy: str = "small"
    """The starting policy and the frozen reference: a shipped name, a checkpoint folder or a run folder."""
    reward: str = "reward"
    """The reward model (proxy): a shipped name, a checkpoint folder or a reward run folder."""
    profile: str = "positive"
    """Gold annotator profile for objective/gold (the hidden utility the student compares with the proxy)."""
    iterations: int = 30
    """Iterations: one rollout batch and its updates each."""
    batch_size: int = 64
    """Responses per iteration (GRPO: prompts x group_size)."""
    prompt_length: int = 8
    """Longest prompt in tokens (prompts are cut to this; <bos> counts)."""
    response_length: int = 24
    """Most tokens generated per response."""
    stop_at_eos: bool = True
    """Stop a response at <eos> (False: always generate response_length tokens, as TRL's benchmark does)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    sample_every: int = 5
    """Iterations between policy samples on the fixed evaluation prompts (samples.jsonl)."""
    eval_prompts: int = 6
    """Number of fixed evaluation prompts for the side-by-side samples."""
    checkpoint_every: int = 10
    """Iterations between checkpoints (one is always written at the end or on stop)."""

    def check_online(self, n_positions: int | None = None) -> None:
        """The checks of the fields above and of the knobs every online stage has (lr, clip_eps, temperature,
        minibatches); a stage's check() calls it first. With `n_positions` (the policy's context, known once it is
        loaded) also check that prompt + response fit in it."""
        name = type(self).__name__
        for key in ("policy", "reward"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"{name}.{key} must be a checkpoint spec (shipped name, checkpoint folder "
                                  f"or run folder), got {getattr(self, key)!r}")
        check_choice(self, "profile", PROFILE_CHOICES)
        for key in ("iterations", "batch_size", "response_length", "minibatches", "sample_every", "eval_prompts",
                      "checkpoint_every"):
            check_int(self, key, 1)
        check_int(self, "prompt_length", 2)  # <bos> + at least one word
        if self.batch_size % self.minibatches:
            raise ConfigError(f"{name}.minibatches must divide batch_size: {self.batch_size} responses cannot "
                              f"be split into {self.minibatches} equal minibatches")
        for key in ("lr", "temperature", "clip_eps", "grad_clip", "weight_decay"):
            check_finite(self, key)
        check_range(self, "clip_eps", 0.0, 1.0, low_open=True, high_open=True)
        check_positive(self, "lr")
        check_positive(self, "temperature")
        check_non_negative(self, "grad_clip")
        check_non_negative(self, "weight_decay")
        if not isinstance(self.stop_at_eos, bool):
            raise ConfigError(f"{name}.stop_at_eos must be true or false, got {self.stop_at_eos!r}")
        limit = n_positions if n_positions is not None else 1024
        if self.prompt_length + self.response_length > limit:
            where = "the policy's context" if n_positions is not None else "the largest supported context"
            raise ConfigError(f"{name}.response_length: prompt_length + response_length = "
                              f"{self.prompt_length} + {self.response_length} exceeds {where} of {limit} tokens")
