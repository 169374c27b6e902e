"""A BPE tokenizer trained on the corpus, wrapped as a `PreTrainedTokenizerFast`.

Why BPE with a Metaspace pre-tokenizer: on our corpus almost every word becomes one token
("▁acting", "▁but"), so students can read the tokens, while rarer words still split into pieces
instead of becoming <unk>. Punctuation is split off so "great," is "▁great" + ",".

Special tokens are distinct: <pad> (id 0), <bos> (1), <eos> (2), <unk> (3). A document is encoded as
<bos> text <eos>; generation stops at <eos>; padding is never confused with the end of a text.

Decoding keeps every word's leading space, also the first one's: a continuation decoded on its own
(" not at all dim") can be appended to its prompt as is, which is what transformers'
`pipeline("text-generation")` and TRL do. The price: a whole text decodes with one leading space
(" the acting was"); the lab strips it where it decodes whole texts.

Two flavours of the same vocabulary (`same_tokenizer` holds between them):
  - a language model's tokenizer encodes `text` as <bos> text (a prompt to continue) and is saved for
    left padding, so batched `generate` continues every row from its last real token;
  - a reward model's tokenizer encodes `text` as <bos> text <eos> (`rm_tokenizer`), exactly the input the
    lab's scorer reads, so `pipeline("text-classification")` on a plain text gives the lab's score.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    tok.decoder = continuation_decoder()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    # <bos> is added by the tokenizer; <eos> is added explicitly where a text is complete
    # (pretraining documents), never to prompts that the model should continue.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return wrap(tok)


def continuation_decoder():
    """▁ -> space for every token, the first included ("always" would drop the first token's space and
    glue a continuation to its prompt: "the acting was" + "not" -> "the acting wasnot")."""
    return decoders.Metaspace(replacement="▁", prepend_scheme="never")


def rm_tokenizer(tokenizer) -> PreTrainedTokenizerFast:
    """A copy of `tokenizer` whose encoding of `text` is <bos> text <eos>: what a reward model reads.
    A pair (prompt, response) is <bos> prompt response <eos> (each side starts a word)."""
    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A $B:1 {EOS}", special_tokens=[(BOS, bos), (EOS, eos)])
    return wrap(tok)


# Keys that from_pretrained records from the environment it ran in (offline mode, a cache path); they
# say nothing about the tokenizer and would bind whoever loads the folder to our environment.
ENVIRONMENT_KEYS = ("local_files_only", "is_local", "cache_dir", "force_download", "proxies", "token",
                    "revision", "subfolder", "_commit_hash", "trust_remote_code")


def save_tokenizer(tokenizer, path: str | os.PathLike, padding_side: str) -> None:
    """`save_pretrained` the tokenizer for others to load: its padding side ("left" for a language model,
    so batched `generate` is right; "right" for a reward model) and none of the environment's flags."""
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = padding_side
    try:
        tokenizer.save_pretrained(path)
    finally:
        tokenizer.padding_side = saved_side
    config_path = Path(path) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config = {k: v for k, v in config.items() if k not in ENVIRONMENT_KEYS}
    config["padding_side"] = padding_side
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


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
    # checkpoints written before the decoder kept the first space decode like new ones
    tok.backend_tokenizer.decoder = continuation_decoder()
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
