"""The config of the GPT-2 shapes of the size presets: its dataclass, presets and checks.

The fields and checks every stage shares are in base.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.config.base import ConfigError, check_limits, check_positive, check_range


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
