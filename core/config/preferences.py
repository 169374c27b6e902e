"""The config of stage 2, preference collection: its dataclass, presets and checks.

The fields and checks every stage shares are in base.py."""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.config.base import ConfigError, StageConfig, check_choice, check_int, check_range
from core.config.model import PRESETS

ANNOTATORS = ("simulated", "human")


@dataclass
class PreferenceConfig(StageConfig):
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

    def check(self) -> None:
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
        return self
