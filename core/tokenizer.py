"""A BPE tokenizer trained on the corpus, wrapped as a `PreTrainedTokenizerFast`.

Why BPE with a Metaspace pre-tokenizer: on our corpus almost every word becomes one token
("▁acting", "▁but"), so students can read the tokens, while rarer words still split into pieces
instead of becoming <unk>. Punctuation is split off so "great," is "▁great" + ",".

Special tokens are distinct: <pad> (id 0), <bos> (1), <eos> (2), <unk> (3). A document is encoded as
<bos> text <eos>; generation stops at <eos>; padding is never confused with the end of a text.
"""

from __future__ import annotations

import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


class TokenizerError(ValueError):
    pass


def train_tokenizer(docs, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on `docs` (an iterable of strings)."""
    docs = list(docs)
    if not docs:
        raise TokenizerError("cannot train a tokenizer on an empty corpus")
    if vocab_size < 64:
        raise TokenizerError(f"vocab_size must be >= 64, got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        pre_tokenizers.Punctuation(),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    # <bos> is added by the tokenizer; <eos> is added explicitly where a text is complete
    # (pretraining documents), never to prompts that the model should continue.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK)
    fast.padding_side = "right"
    return fast


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with `save_pretrained` (tokenizer.json + config)."""
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        raise TokenizerError(f"{path} has no tokenizer.json; is it a checkpoint folder of this lab?")
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    for name, token in (("pad", PAD), ("bos", BOS), ("eos", EOS)):
        if getattr(tok, f"{name}_token") != token:
            raise TokenizerError(f"{path}: tokenizer's {name} token is {getattr(tok, f'{name}_token')!r}, "
                                 f"expected {token!r}")
    tok.padding_side = "right"
    return tok


def show_tokens(tokenizer, text: str) -> list[str]:
    """The tokens of `text` as a student should read them (▁ marks the start of a word)."""
    ids = tokenizer(text)["input_ids"]
    return tokenizer.convert_ids_to_tokens(ids)


def same_tokenizer(a, b) -> bool:
    """True when two tokenizers map text to the same ids (same vocab and specials)."""
    return (a.get_vocab() == b.get_vocab() and a.pad_token_id == b.pad_token_id
            and a.eos_token_id == b.eos_token_id and a.bos_token_id == b.bos_token_id)
