"""The config of stage 1, pretraining: its dataclass, presets and checks (the shared fields and limits: base.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core.config.base import (ConfigError, TrainingConfig, check_choice, check_non_negative, check_positive,
                               check_range, from_preset)
from core.config.model import PRESETS, ModelConfig, preset_model


@dataclass
class PretrainConfig(TrainingConfig):
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

    def check(self) -> None:
        check_choice(self, "preset", PRESETS)
        self.model.validate()
        for name in ("steps", "batch_size", "lr", "corpus_size", "eval_every", "sample_every", "checkpoint_every"):
            check_positive(self, name)
        for name in ("warmup_steps", "weight_decay", "grad_clip", "threads"):
            check_non_negative(self, name)
        check_range(self, "val_fraction", 0.0, 0.5, low_open=True)
        if self.corpus_file is not None and not os.path.isfile(self.corpus_file):
            raise ConfigError(f"PretrainConfig.corpus_file: no such file {self.corpus_file!r}")
        return self


PRESET_PRETRAIN = {
    "tiny": dict(steps=60, batch_size=16, lr=5e-3, warmup_steps=5, corpus_size=1500,
                 eval_every=20, sample_every=30, checkpoint_every=60),
    "weak": dict(steps=300, batch_size=32, lr=3e-3, warmup_steps=30, corpus_size=20000),
    "small": dict(steps=1500, batch_size=32, lr=3e-3, warmup_steps=50, corpus_size=20000),
    "gpu": dict(steps=3000, batch_size=128, lr=6e-4, warmup_steps=200, corpus_size=100000,
                eval_every=250, sample_every=500, checkpoint_every=1000),
}


def pretrain_preset(preset: str = "small", **overrides) -> PretrainConfig:
    """A PretrainConfig for a preset with optional field overrides (None values are ignored)."""
    return from_preset(PretrainConfig, PRESET_PRETRAIN, preset, overrides, model=preset_model(preset))
