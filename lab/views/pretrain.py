"""What the Pretrain page needs besides charts: corpus previews, the tokenizer view, a config."""

from __future__ import annotations

import math
from functools import lru_cache

from core.config import PRESETS, pretrain_preset
from core.corpus import parse_text, synthetic_reviews

TOKEN_EXAMPLE = "the battery was not great, but the screen is lovely"


@lru_cache(maxsize=2)
def corpus_preview(n: int = 30) -> tuple[str, ...]:
    """The first reviews of the synthetic corpus (the same generator as the training corpus)."""
    return tuple(synthetic_reviews(n, seed=0))


def parse_corpus(data: bytes, name: str) -> list[str]:
    """An uploaded corpus as documents; CorpusError says what is wrong (empty, binary, too large...)."""
    return parse_text(data, name=name)


@lru_cache(maxsize=4)
def _tokenizer(spec: str):
    from core.model import resolve_checkpoint
    from core.tokenizer import load_tokenizer

    return load_tokenizer(resolve_checkpoint(spec))


def tokens(text: str, spec: str = "small") -> list[tuple[str, int]]:
    """(token, id) pairs of `text` under a checkpoint's tokenizer (▁ marks the start of a word)."""
    tok = _tokenizer(spec)
    ids = tok(text)["input_ids"]
    return list(zip(tok.convert_ids_to_tokens(ids), ids))


def vocab_size(spec: str = "small") -> int:
    """The vocabulary of a checkpoint's tokenizer, special tokens included (what the page prints)."""
    return len(_tokenizer(spec))


def run_vocab_size(config: dict) -> int | None:
    """The vocabulary a pretraining run trains its tokenizer to (its config's model.vocab_size)."""
    value = (config.get("model") or {}).get("vocab_size") if isinstance(config, dict) else None
    return int(value) if isinstance(value, (int, float)) else None


def loss_caption(vocab: int | None) -> str:
    """The loss chart's caption with the run's own starting loss: a model that knows nothing guesses
    uniformly over the vocabulary, a cross-entropy of ln V nats per token."""
    start = (f" (a model that knows nothing guesses uniformly: ln {vocab} ≈ {math.log(vocab):.2f} nats at the "
             "start, for this run's vocabulary)") if vocab else ""
    return ("Healthy: both losses fall fast, then flatten" + start + ". A validation loss rising while the "
            "training loss falls is overfitting.")


PRESET_HELP = ("tiny: seconds, for a quick look (its text stays mostly gibberish); weak: about a minute, broken "
               "English; small: readable reviews, but tens of minutes on a 2-core CPU (the shipped small model is "
               "this preset, trained already)")


def preset_note(preset: str) -> str:
    """What the page says under a preset whose model will not write usable text (the default tiny one is for
    a quick look: the next stages would learn little from its gibberish). Empty for the others."""
    from lab.views.models import QUICK_LOOK

    if preset not in QUICK_LOOK:
        return ""
    return (f" Note: {QUICK_LOOK[preset]}, so the next stages learn little from it. It shows pretraining at work "
            "in seconds; for preferences and RL start from the shipped small model, or train the small preset.")


def presets() -> list[str]:
    """Presets a student may pick here: gpu only with a CUDA device."""
    import torch

    return [p for p in PRESETS if p != "gpu" or torch.cuda.is_available()]


def make_config(preset: str, steps: int, batch_size: int, lr: float, corpus_file: str | None, seed: int = 0):
    cfg = pretrain_preset(preset, steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                          corpus_file=corpus_file)
    return cfg.validate()
