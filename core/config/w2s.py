"""The config of weak-to-strong supervision: its dataclass, presets and checks.

The fields and checks every stage shares are in base.py."""

from __future__ import annotations

from dataclasses import dataclass

from core.config.base import ConfigError, TrainingConfig, check_choice, check_positive, check_range, from_preset

W2S_TASKS = ("classify", "preference")


W2S_EDITS = ("flip", "scramble", "repeat")
"""How the preference task makes the second text of a pair (core/w2s.py: flip_pair, edit_text)."""


W2S_PRESETS = ("tiny", "default", "gpu")


@dataclass
class W2SConfig(TrainingConfig):
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

    def check(self) -> None:
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
