"""What the Pretrain page needs besides charts: corpus previews, the tokenizer view, a config."""

from __future__ import annotations

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


def presets() -> list[str]:
    """Presets a student may pick here: gpu only with a CUDA device."""
    import torch

    return [p for p in PRESETS if p != "gpu" or torch.cuda.is_available()]


def make_config(preset: str, steps: int, batch_size: int, lr: float, corpus_file: str | None, seed: int = 0):
    cfg = pretrain_preset(preset, steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                          corpus_file=corpus_file)
    return cfg.validate()
