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


# ----------------------------------------------------------------------------- live knobs
# A live knob is a field the trainer re-reads from control.json before every iteration (core/session.py). It is
# marked here, on the field, and nowhere else: the session, `rlhf-lab set`, the resume flags and the pages all
# ask live_knobs() for the list.

def live(default):
    """A config field the student may change while the stage runs (a live knob)."""
    return field(default=default, metadata={"live": True})


def live_knobs(cfg) -> tuple[str, ...]:
    """The live knobs of a stage config (class or instance), in field order."""
    return tuple(f.name for f in fields(cfg) if f.metadata.get("live"))


# ----------------------------------------------------------------------------- small checks
# One line per rule so that every validate() reads as a list of constraints.

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


# ----------------------------------------------------------------------------- devices and seeds

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


# ----------------------------------------------------------------------------- model shape

@dataclass
class ModelConfig:
    """The GPT-2 shape of a model. The tokenizer decides `vocab_size`."""

    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 128
    """Width of the residual stream; must be divisible by n_head."""
    n_head: int = 4
    """Attention heads per block."""
    n_positions: int = 64
    """Context length in tokens (prompt + response must fit)."""
    vocab_size: int = 1024
    """Tokenizer vocabulary size (including the special tokens)."""
    dropout: float = 0.0
    """Dropout during pretraining. RL stages always switch dropout off."""

    def validate(self) -> "ModelConfig":
        for name in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size"):
            check_positive(self, name)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"ModelConfig.n_head must divide n_embd: n_embd={self.n_embd} is not a multiple of n_head={self.n_head}"
            )
        if self.vocab_size < 64:
            raise ConfigError(f"ModelConfig.vocab_size must be >= 64, got {self.vocab_size}")
        check_range(self, "dropout", 0.0, 1.0, high_open=True)
        check_limits(self)
        return self

    def n_params(self) -> int:
        """Rough parameter count (weights tied), for display."""
        d = self.n_embd
        return self.n_layer * 12 * d * d + (self.vocab_size + self.n_positions) * d


PRESET_MODELS = {
    "tiny": ModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=256),
    "weak": ModelConfig(n_layer=2, n_embd=16, n_head=2, n_positions=128, vocab_size=1024),
    "small": ModelConfig(n_layer=4, n_embd=128, n_head=4, n_positions=128, vocab_size=1024),
    "gpu": ModelConfig(n_layer=12, n_embd=768, n_head=12, n_positions=128, vocab_size=1024),
}
PRESETS = tuple(PRESET_MODELS)


def preset_model(preset: str) -> ModelConfig:
    if preset not in PRESET_MODELS:
        raise ConfigError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    return dataclasses.replace(PRESET_MODELS[preset])


# ----------------------------------------------------------------------------- stage 1: pretraining

@dataclass
class PretrainConfig:
    """Pretraining a GPT-2 language model on a corpus from scratch."""

    preset: str = "small"
    """Model size and training schedule preset: tiny, small, weak or gpu."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model shape (filled from the preset)."""
    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 32
    """Documents per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (cosine decay to 10% after a linear warm-up)."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    corpus_size: int = 20000
    """Reviews generated for the synthetic corpus (ignored when `corpus_file` is set)."""
    corpus_file: str | None = None
    """Path of a user's own text file, one document a line (UTF-8). None = the synthetic corpus."""
    val_fraction: float = 0.05
    """Share of documents held out for the validation loss."""
    eval_every: int = 100
    """Steps between validation losses."""
    sample_every: int = 250
    """Steps between sample generations written to samples.jsonl."""
    checkpoint_every: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    seed: int = 0
    """Seeds the corpus split, the initialisation and the batches."""
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "PretrainConfig":
        check_choice(self, "preset", PRESETS)
        self.model.validate()
        for name in ("steps", "batch_size", "lr", "corpus_size", "eval_every", "sample_every", "checkpoint_every"):
            check_positive(self, name)
        for name in ("warmup_steps", "weight_decay", "grad_clip", "threads"):
            check_non_negative(self, name)
        check_range(self, "val_fraction", 0.0, 0.5, low_open=True)
        if self.corpus_file is not None and not os.path.isfile(self.corpus_file):
            raise ConfigError(f"PretrainConfig.corpus_file: no such file {self.corpus_file!r}")
        check_device(self)
        check_precision(self)
        check_limits(self)
        return self


PRESET_PRETRAIN = {
    "tiny": dict(steps=60, batch_size=16, lr=5e-3, warmup_steps=5, corpus_size=1500,
                 eval_every=20, sample_every=30, checkpoint_every=60),
    "weak": dict(steps=300, batch_size=32, lr=3e-3, warmup_steps=30, corpus_size=20000),
    "small": dict(steps=1500, batch_size=32, lr=3e-3, warmup_steps=50, corpus_size=20000),
    "gpu": dict(steps=3000, batch_size=128, lr=6e-4, warmup_steps=200, corpus_size=100000,
                eval_every=250, sample_every=500, checkpoint_every=1000),
}


def from_preset(cls, presets: dict, preset: str, overrides: dict, **fixed):
    """`cls` filled from the `presets[preset]` table, then `overrides` (None values are ignored: an
    unset CLI flag keeps the preset's value), plus `fixed` fields. Every stage's *_preset() is this."""
    if preset not in presets:
        raise ConfigError(f"preset must be one of {list(presets)}, got {preset!r}")
    values = dict(presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(preset=preset, **fixed, **values)


def pretrain_preset(preset: str = "small", **overrides) -> PretrainConfig:
    """A PretrainConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(PretrainConfig, PRESET_PRETRAIN, preset, overrides, model=preset_model(preset))


# ----------------------------------------------------------------------------- (de)serialisation

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
        values["model"] = ModelConfig(**values["model"])
    return cls(**values)


# ----------------------------------------------------------------------------- weak-to-strong

W2S_TASKS = ("classify", "preference")
W2S_EDITS = ("flip", "scramble", "repeat")
"""How the preference task makes the second text of a pair (core/w2s.py: flip_pair, edit_text)."""
W2S_PRESETS = ("tiny", "default", "gpu")


@dataclass
class W2SConfig:
    """Weak-to-strong generalisation (Burns et al. 2023): a small model's labels train a bigger one."""

    preset: str = "default"
    """Data size and schedule preset: tiny (tests, seconds), default (2 CPU cores, minutes) or gpu."""
    task: str = "preference"
    """preference (the default): which of two close texts (one edit apart, see `edits`) the gold
    annotator prefers, a reward-modelling task; classify: is this review positive by the gold utility.
    On `classify` the weak model reads the sign of VADER as well as the 4-layer one or better (it is
    a bag-of-words task), so there is no gap to recover; telling fluent from scrambled text is what
    the strong model's pretraining adds (core/w2s.py explains the measurements behind the default)."""
    profile: str = "positive"
    """The gold annotator's profile whose utility defines the labels (core.annotators.PROFILES)."""
    edits: str = "scramble"
    """Preference task: the edits that make the second text of a pair, comma-separated, used in turn:
    scramble (a run of words shuffled), repeat (a sentence said twice), flip (two copies with opposite
    sentiment words at one spot)."""
    weak_model: str = "weak"
    """The supervisor's pretrained base (shipped name, checkpoint folder or run folder)."""
    strong_model: str = "small"
    """The student's pretrained base; must be at least as large as the weak one."""
    n_train: int = 1600
    """Labelled training examples; split into two disjoint halves (supervisor / student)."""
    n_test: int = 600
    """Held-out test examples (the same for every seed)."""
    seeds: int = 3
    """How many seeds to repeat the experiment with (seed, seed+1, ...): mean and spread."""
    seed: int = 0
    """First seed; seeds change the halves, the heads' initialisation and the batch order."""
    text_seed: int = 1
    """Seed of the held-out synthetic reviews (the shipped models were pretrained on seed 0; texts
    that also occur in that corpus are dropped, so no example was seen in pretraining)."""
    epochs: int = 3
    """Epochs over half 2 for the strong ceiling and the students."""
    weak_epochs: int = 3
    """Epochs over half 1 for the weak supervisor."""
    batch_size: int = 32
    """Examples (or pairs) per step. The confidence loss balances its hardened labels per batch."""
    lr: float = 1e-3
    """AdamW learning rate of the strong models (linear decay to 0)."""
    weak_lr: float = 3e-3
    """AdamW learning rate of the weak supervisor (linear decay to 0)."""
    alpha_max: float = 0.75
    """Final weight of the confidence term (the paper's 0.75); alpha = 0 is plain cross-entropy."""
    warmup_frac: float = 0.2
    """Fraction of the student's training over which alpha rises linearly from 0 to alpha_max."""
    n_examples: int = 6
    """Test examples to keep per kind (student corrected / copied the supervisor) for the app."""
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "W2SConfig":
        check_choice(self, "preset", W2S_PRESETS)
        check_choice(self, "task", W2S_TASKS)
        from core.annotators import PROFILES  # lazy: annotators reads the corpus

        check_choice(self, "profile", PROFILES)
        for name in ("weak_model", "strong_model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"W2SConfig.{name} must be a checkpoint spec (shipped name or folder), "
                                  f"got {getattr(self, name)!r}")
        for name in ("seeds", "n_train", "n_test", "epochs", "weak_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"W2SConfig.{name} must be an integer >= 1, got {value!r}")
        if self.n_train < 4:
            raise ConfigError(f"W2SConfig.n_train must be >= 4 (two halves of two classes), got {self.n_train}")
        if self.n_test < 2:
            raise ConfigError(f"W2SConfig.n_test must be >= 2, got {self.n_test}")
        for name in ("lr", "weak_lr"):
            check_positive(self, name)
        check_range(self, "alpha_max", 0.0, 1.0)
        check_range(self, "warmup_frac", 0.0, 1.0)
        for name in ("seed", "text_seed", "n_examples", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"W2SConfig.{name} must be an integer >= 0, got {value!r}")
        kinds = self.edit_kinds()
        bad = [k for k in kinds if k not in W2S_EDITS]
        if bad or (not kinds and self.task == "preference"):
            raise ConfigError(f"W2SConfig.edits must name one or more of {', '.join(W2S_EDITS)} (comma-separated), "
                              f"got {self.edits!r}")
        check_device(self)
        check_precision(self)
        check_limits(self)
        return self

    def edit_kinds(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in str(self.edits).split(",") if k.strip())


PRESET_W2S = {
    "tiny": dict(n_train=96, n_test=48, seeds=2, epochs=1, weak_epochs=2, batch_size=16, n_examples=3),
    "default": dict(),
    "gpu": dict(n_train=8000, n_test=2000, seeds=5, batch_size=64),
}


def w2s_preset(preset: str = "default", **overrides) -> W2SConfig:
    """A W2SConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(W2SConfig, PRESET_W2S, preset, overrides)


# ----------------------------------------------------------------------------- stage 2: preferences and the reward model

ANNOTATORS = ("simulated", "human")


@dataclass
class PreferenceConfig:
    """Collecting comparisons: K samples per prompt from a base model, labelled in pairs."""

    preset: str = "small"
    """Size preset (tiny for tests; small/gpu sample more pairs)."""
    base: str = "small"
    """The base model that writes the responses: shipped name, checkpoint folder or run folder."""
    annotator: str = "simulated"
    """simulated: the gold annotator labels every pair at once; human: pairs wait for the student."""
    profile: str = "positive"
    """The gold annotator's preference: positive, negative or concise (core/annotators.py)."""
    tau: float = 0.1
    """Bradley-Terry noise: P(a preferred) = sigmoid((u(a) - u(b)) / tau). Small = a careful annotator."""
    pairs: int = 2000
    """Number of labelled pairs to produce (pairs of identical responses are skipped and redrawn)."""
    responses_per_prompt: int = 4
    """K: responses sampled per prompt; every two of them form a pair (K*(K-1)/2 pairs a prompt)."""
    prompt_words_min: int = 2
    """Fewest opening words of a held-out review used as a prompt."""
    prompt_words_max: int = 4
    """Most opening words of a held-out review used as a prompt."""
    max_new_tokens: int = 48
    """Longest response in tokens (also cut to fit the model's context)."""
    temperature: float = 1.0
    """Sampling temperature of the base model (1 = its own distribution)."""
    top_k: int = 0
    """Sample only from the k most likely tokens (0 = off)."""
    batch_size: int = 64
    """Prompts per sampling batch."""
    import_file: str | None = None
    """A JSONL or CSV file of pairs (prompt, chosen, rejected) to import instead of sampling."""
    seed: int = 0
    """Seeds the prompts, the sampling and the annotator's noise."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "PreferenceConfig":
        check_choice(self, "preset", PRESETS)
        if not isinstance(self.base, str) or not self.base:
            raise ConfigError(f"PreferenceConfig.base must be a checkpoint spec (shipped name or folder), "
                              f"got {self.base!r}")
        check_choice(self, "annotator", ANNOTATORS)
        check_choice(self, "profile", ("positive", "negative", "concise"))
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not self.tau > 0:
            raise ConfigError(f"PreferenceConfig.tau must be > 0 (the annotator's noise; small = careful), "
                              f"got {self.tau!r}")
        check_int(self, "pairs", 1)
        check_int(self, "responses_per_prompt", 2)
        check_int(self, "prompt_words_min", 1)
        check_int(self, "prompt_words_max", 1)
        if self.prompt_words_max < self.prompt_words_min:
            raise ConfigError(f"PreferenceConfig.prompt_words_max must be >= prompt_words_min "
                              f"({self.prompt_words_min}), got {self.prompt_words_max}")
        check_int(self, "max_new_tokens", 1)
        check_range(self, "temperature", 0.0, 10.0, low_open=True)
        check_int(self, "top_k", 0)
        check_int(self, "batch_size", 1)
        if self.import_file is not None and not os.path.isfile(self.import_file):
            raise ConfigError(f"PreferenceConfig.import_file: no such file {self.import_file!r}")
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        check_limits(self)
        return self


@dataclass
class RewardConfig:
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
    seed: int = 0
    """Seeds the split, the score head, the batches and the fresh samples."""
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "RewardConfig":
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
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        check_precision(self)
        check_limits(self)
        return self


# ----------------------------------------------------------------------------- beyond PPO: DPO and best-of-n

DPO_LOSSES = ("sigmoid", "ipo")
PROFILE_CHOICES = ("positive", "negative", "concise")


@dataclass
class DPOConfig:
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
    seed: int = 0
    """Seeds the split, the batch order and the evaluation sampling."""
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "DPOConfig":
        check_limits(self)  # the limits every stage shares (lr, batch_size, seed, threads, ...)
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
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        check_precision(self)
        return self


PRESET_DPO = {
    "tiny": dict(batch_size=16, lr=2e-3, eval_every=4, eval_prompts=8, response_length=12, checkpoint_every=8),
    "small": dict(),
    "gpu": dict(batch_size=64, lr=5e-6, eval_prompts=256),
}


def dpo_preset(preset: str = "small", **overrides) -> DPOConfig:
    """A DPOConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(DPOConfig, PRESET_DPO, preset, overrides)


@dataclass
class BoNConfig:
    """Best-of-n sampling: n responses per prompt from the base model, keep the one the reward model scores
    highest. No training; the policy it defines sits at KL = log n - (n - 1)/n from the base model."""

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
    seed: int = 0
    """Seeds the sampling."""
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "BoNConfig":
        check_limits(self)  # the limits every stage shares (lr, batch_size, seed, threads, ...)
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
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        check_precision(self)
        return self


PRESET_BON = {
    "tiny": dict(n=[1, 4, 16], prompts=16, response_length=12),
    "small": dict(),
    "gpu": dict(n=[1, 2, 4, 8, 16, 32, 64, 128, 256], prompts=256, batch_size=4096),
}


def bon_preset(preset: str = "small", **overrides) -> BoNConfig:
    """A BoNConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(BoNConfig, PRESET_BON, preset, overrides)


# ----------------------------------------------------------------------------- stage 3: PPO

KL_ESTIMATORS = ("k1", "k3")
VALUE_MODELS = ("separate", "shared")


@dataclass
class PPOConfig:
    """PPO fine-tuning of the policy against a reward model, with a KL penalty to the base model."""

    preset: str = "small"
    """Size preset: tiny (tests), small (the CPU default) or gpu."""
    policy: str = "small"
    """The starting policy and the frozen reference: a shipped name, a checkpoint folder or a run folder."""
    reward: str = "reward"
    """The reward model (proxy): a shipped name, a checkpoint folder or a reward run folder."""
    value_model: str = "separate"
    """separate: a critic initialised from the reward model (InstructGPT); shared: a value head on the policy."""
    profile: str = "positive"
    """Gold annotator profile for objective/gold (the hidden utility the student compares with the proxy)."""
    iterations: int = 30
    """PPO iterations (one rollout batch + its updates each)."""
    batch_size: int = 64
    """Prompts (and responses) per rollout."""
    prompt_length: int = 8
    """Longest prompt in tokens (prompts are cut to this; <bos> counts)."""
    response_length: int = 24
    """Most tokens generated per response."""
    stop_at_eos: bool = True
    """Stop a response at <eos> (False: always generate response_length tokens, as TRL's benchmark does)."""
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
    seed: int = 0
    """Seeds the prompts, the sampling and the value head."""
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self, n_positions: int | None = None) -> "PPOConfig":
        """Raise ConfigError for an impossible value. With `n_positions` (the policy's context, known
        once it is loaded) also check that prompt + response fit in it."""
        check_choice(self, "preset", tuple(PRESET_PPO))
        for name in ("policy", "reward"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"PPOConfig.{name} must be a checkpoint spec (shipped name, checkpoint folder "
                                  f"or run folder), got {getattr(self, name)!r}")
        check_choice(self, "value_model", VALUE_MODELS)
        check_choice(self, "profile", ("positive", "negative", "concise"))
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        for name in ("iterations", "batch_size", "prompt_length", "response_length", "ppo_epochs", "minibatches",
                     "kl_horizon", "sample_every", "eval_prompts", "checkpoint_every"):
            check_int(self, name, 1)
        check_int(self, "prompt_length", 2)  # <bos> + at least one word
        if self.batch_size % self.minibatches:
            raise ConfigError(f"PPOConfig.minibatches must divide batch_size: {self.batch_size} prompts cannot "
                              f"be split into {self.minibatches} equal minibatches")
        check_range(self, "clip_eps", 0.0, 1.0, low_open=True, high_open=True)
        check_non_negative(self, "kl_coef")
        check_positive(self, "target_kl")
        check_positive(self, "lr")
        check_positive(self, "temperature")
        check_positive(self, "clip_value")
        for name in ("vf_coef", "missing_eos_penalty", "grad_clip", "weight_decay"):
            check_non_negative(self, name)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "lam", 0.0, 1.0)
        for name in ("adaptive_kl", "stop_at_eos", "whiten_rewards"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"PPOConfig.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("kl_coef", "target_kl", "lr", "temperature", "clip_eps"):
            if getattr(self, name) != getattr(self, name) or getattr(self, name) in (float("inf"), float("-inf")):
                raise ConfigError(f"PPOConfig.{name} must be a finite number, got {getattr(self, name)!r}")
        limit = n_positions if n_positions is not None else 1024
        if self.prompt_length + self.response_length > limit:
            where = "the policy's context" if n_positions is not None else "the largest supported context"
            raise ConfigError(f"PPOConfig.response_length: prompt_length + response_length = "
                              f"{self.prompt_length} + {self.response_length} exceeds {where} of {limit} tokens")
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        check_precision(self)
        check_limits(self)
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


# ----------------------------------------------------------------------------- the reward-KL frontier (issue 13)

FRONTIER_METHODS = ("ppo", "grpo", "rloo", "dpo", "bon")
FRONTIER_KNOBS = {"ppo": "kl_coef", "grpo": "beta", "rloo": "beta", "dpo": "beta", "bon": "n"}
"""The KL knob each method's sweep turns (best-of-n: the number of samples n)."""


@dataclass
class FrontierConfig:
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
    seed: int = 0
    """The first seed."""
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
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self) -> "FrontierConfig":
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
        check_int(self, "threads", 0)
        check_int(self, "seed", 0)
        if self.eval_every > self.iterations:
            raise ConfigError(f"FrontierConfig.eval_every must be <= iterations ({self.iterations}), got "
                              f"{self.eval_every}")
        for name in ("policy", "reward"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"FrontierConfig.{name} must be a checkpoint spec, got {getattr(self, name)!r}")
        check_choice(self, "profile", ("positive", "negative", "concise"))
        check_device(self)
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


# ----------------------------------------------------------------------------- GRPO / RLOO (core/grpo.py)

GRPO_ADVANTAGES = ("grpo", "rloo")
KL_PLACES = ("loss", "reward")
LOSS_AVERAGING = ("token", "sequence")


@dataclass
class GRPOConfig:
    """GRPO or RLOO fine-tuning: a group of responses per prompt, no critic (core/grpo.py)."""

    preset: str = "small"
    """Size preset: tiny (tests), small (the CPU default) or gpu."""
    policy: str = "small"
    """The starting policy and the frozen reference: a shipped name, a checkpoint folder or a run folder."""
    reward: str = "reward"
    """The reward model (proxy): a shipped name, a checkpoint folder or a reward run folder."""
    profile: str = "positive"
    """Gold annotator profile for objective/gold."""
    advantage: str = "grpo"
    """grpo: (score - group mean) / group std; rloo: score - mean of the OTHER responses of the group."""
    scale_advantages: bool = True
    """GRPO only: divide by the group's std (False = Dr. GRPO's unscaled advantage)."""
    iterations: int = 30
    """Iterations (one batch of groups + its updates each)."""
    batch_size: int = 64
    """Responses per iteration = prompts per iteration x group_size."""
    group_size: int = 8
    """G: responses sampled per prompt; must be >= 2 and divide batch_size."""
    prompt_length: int = 8
    """Longest prompt in tokens (<bos> counts)."""
    response_length: int = 24
    """Most tokens generated per response."""
    stop_at_eos: bool = True
    """Stop a response at <eos> (False: always generate response_length tokens, as TRL's benchmark does)."""
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
    precision: str = "auto"
    """Matmul precision: auto (bf16 autocast where it is faster: CUDA with bf16, or a CPU measured faster in
    bf16), fp32, or bf16. Weights, optimizer state, log-probs and losses stay fp32 (core/precision.py)."""
    seed: int = 0
    """Seeds the prompts and the sampling."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda or mps."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def validate(self, n_positions: int | None = None) -> "GRPOConfig":
        check_limits(self)  # the limits every stage shares (lr, batch_size, seed, threads, ...)
        check_choice(self, "preset", tuple(PRESET_GRPO))
        for name in ("policy", "reward"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"GRPOConfig.{name} must be a checkpoint spec (shipped name, checkpoint folder "
                                  f"or run folder), got {getattr(self, name)!r}")
        check_choice(self, "profile", ("positive", "negative", "concise"))
        check_choice(self, "advantage", GRPO_ADVANTAGES)
        check_choice(self, "kl_in", KL_PLACES)
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        check_choice(self, "loss_averaging", LOSS_AVERAGING)
        check_int(self, "group_size", 2)  # one response has no group to be compared with
        for name in ("iterations", "batch_size", "response_length", "epochs", "minibatches", "sample_every",
                     "eval_prompts", "checkpoint_every"):
            check_int(self, name, 1)
        check_int(self, "prompt_length", 2)
        if self.batch_size % self.group_size:
            raise ConfigError(f"GRPOConfig.group_size must divide batch_size: {self.batch_size} responses cannot "
                              f"be split into groups of {self.group_size}")
        if self.batch_size % self.minibatches:
            raise ConfigError(f"GRPOConfig.minibatches must divide batch_size: {self.batch_size} responses cannot "
                              f"be split into {self.minibatches} equal minibatches")
        for name in ("beta", "clip_eps", "lr", "temperature", "grad_clip", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"GRPOConfig.{name} must be a finite number, got {value!r}")
        check_non_negative(self, "beta")
        check_range(self, "clip_eps", 0.0, 1.0, low_open=True, high_open=True)
        check_positive(self, "lr")
        check_positive(self, "temperature")
        check_non_negative(self, "grad_clip")
        check_non_negative(self, "weight_decay")
        for name in ("scale_advantages", "stop_at_eos"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"GRPOConfig.{name} must be true or false, got {getattr(self, name)!r}")
        limit = n_positions if n_positions is not None else 1024
        if self.prompt_length + self.response_length > limit:
            where = "the policy's context" if n_positions is not None else "the largest supported context"
            raise ConfigError(f"GRPOConfig.response_length: prompt_length + response_length = "
                              f"{self.prompt_length} + {self.response_length} exceeds {where} of {limit} tokens")
        check_int(self, "seed", 0)
        check_int(self, "threads", 0)
        check_device(self)
        check_precision(self)
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
