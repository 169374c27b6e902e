"""Models: build GPT-2 from a preset, save/load `save_pretrained` folders, score sequences, sample.

Checkpoints are plain Hugging Face folders (config.json + model.safetensors + tokenizer files), so
`AutoModelForCausalLM.from_pretrained(path)` works on anything this lab writes.

A checkpoint "spec" may be:
  - a shipped name: "small", "weak" (base LMs in assets/), "reward" (the shipped reward model),
  - a checkpoint folder (holds config.json),
  - a run folder (holds checkpoint/), e.g. runs/20261126-120000-pretrain.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from core.config import ConfigError, ModelConfig
from core.resources import assets_dir
from core.tokenizer import TokenizerError, load_tokenizer, rm_tokenizer, save_tokenizer

ASSETS = assets_dir()  # package data core/assets when installed, <clone>/assets in a source tree
hf_logging.disable_progress_bar()  # "Loading weights" bars per model are noise in the CLI and the app

SHIPPED = {
    "small": ASSETS / "small",
    "weak": ASSETS / "weak",
    "reward": ASSETS / "reward",
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or of the wrong kind."""


# ----------------------------------------------------------------------------- building

def gpt2_config(cfg: ModelConfig, tokenizer, **extra) -> GPT2Config:
    cfg.validate()
    return GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **extra)


def build_lm(cfg: ModelConfig, tokenizer) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 language model of the given shape."""
    return GPT2LMHeadModel(gpt2_config(cfg, tokenizer))


def model_config_of(model) -> ModelConfig:
    c = model.config
    return ModelConfig(n_layer=c.n_layer, n_embd=c.n_embd, n_head=c.n_head, n_positions=c.n_positions,
                       vocab_size=c.vocab_size)


def no_dropout(model):
    """RL stages need deterministic forwards: the log-prob of the same token must not change
    between the rollout and the update only because dropout drew a different mask."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.eval()
    return model


# ----------------------------------------------------------------------------- save / load

def save_checkpoint(model, tokenizer, path: str | os.PathLike, extra: dict | None = None) -> None:
    """`save_pretrained` the model (safetensors) and its tokenizer into `path`; `extra` goes to
    lab.json (e.g. the validation loss it reached, the reward normalisation).

    The tokenizer is saved as the model's users need it: a language model's for left padding (batched
    `generate`), a sequence scorer's as `rm_tokenizer` (it appends <eos>, so a plain `tokenizer(text)`,
    e.g. in `pipeline("text-classification")`, gives the input the lab scores) and right padding."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    if isinstance(model, GPT2ForSequenceClassification):
        save_tokenizer(rm_tokenizer(tokenizer), path, padding_side="right")
    else:
        save_tokenizer(tokenizer, path, padding_side="left")
    if extra is not None:
        (path / "lab.json").write_text(json.dumps(extra, indent=2))


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """Turn a spec (shipped name, checkpoint folder or run folder) into a checkpoint folder."""
    if spec is None:
        raise CheckpointError("no checkpoint given")
    spec_str = os.fspath(spec)
    if spec_str in SHIPPED:
        path = SHIPPED[spec_str]
        if not (path / "config.json").exists():
            raise CheckpointError(f"the shipped {spec_str!r} checkpoint is missing from {path}; "
                                  "reinstall the lab or make it with the command in assets/README.md")
        return path
    path = Path(spec_str)
    if not path.exists():
        raise CheckpointError(f"checkpoint {spec_str!r} does not exist (expected a folder, a run folder, "
                              f"or one of {sorted(SHIPPED)})")
    if (path / "checkpoint" / "config.json").exists():
        return path / "checkpoint"
    if (path / "config.json").exists() and (path / "model.safetensors").exists():
        return path
    if (path / "config.json").exists():
        # a run folder whose stage has not written a checkpoint yet, or a folder missing its weights
        raise CheckpointError(f"{path} has no model weights (no model.safetensors or checkpoint/); "
                              "has its run finished?")
    raise CheckpointError(f"{path} is not a checkpoint folder (no config.json + model.safetensors)")


def read_lab_json(path: str | os.PathLike) -> dict:
    p = resolve_checkpoint(path) / "lab.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p} is corrupt ({e})") from e


def _load(cls, spec, device, **kwargs):
    path = resolve_checkpoint(spec)
    try:
        tokenizer = load_tokenizer(path)
    except TokenizerError as e:
        raise CheckpointError(str(e)) from e
    if not (path / "model.safetensors").is_file():  # never hand a pickle (pytorch_model.bin) to torch.load
        raise CheckpointError(f"{path / 'model.safetensors'} is missing; the lab loads safetensors weights only "
                              "(a pytorch_model.bin is never unpickled)")
    try:
        model = cls.from_pretrained(path, use_safetensors=True, **kwargs)
    except Exception as e:  # transformers raises many kinds; the student needs to know which folder
        raise CheckpointError(f"could not load the model in {path}: {type(e).__name__}: {str(e).split(chr(10))[0]}") from e
    if model.config.vocab_size != len(tokenizer):
        raise CheckpointError(f"{path}: model vocab {model.config.vocab_size} != tokenizer vocab {len(tokenizer)}")
    return model.to(device), tokenizer


def load_lm(spec, device="cpu"):
    """(GPT2LMHeadModel, tokenizer) from a spec."""
    return _load(GPT2LMHeadModel, spec, device)


def load_scorer(spec, device="cpu"):
    """(GPT2ForSequenceClassification with one output, tokenizer) from a spec. A base LM checkpoint
    loads too: its backbone is kept and a fresh score head is initialised (how RMs start)."""
    path = resolve_checkpoint(spec)
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}/config.json is corrupt ({e})") from e
    # A base LM has no score head yet: ask for a fresh one-output head (transformers' default is 2).
    extra = {} if "GPT2ForSequenceClassification" in architectures else {"num_labels": 1}
    model, tok = _load(GPT2ForSequenceClassification, path, device, **extra)
    if model.config.num_labels != 1:
        raise CheckpointError(f"{path} is a classifier with {model.config.num_labels} outputs, expected 1")
    return model, tok


KINDS = {"reward": ("GPT2ForSequenceClassification", "a reward model",
                    "train one with `rlhf-lab reward`, or use the shipped one (reward)"),
         "lm": ("GPT2LMHeadModel", "a language model",
                "give a base model or a policy (`rlhf-lab pretrain`, a PPO/GRPO/DPO run, or the shipped small)")}


def require_model(spec, kind: str, field: str) -> None:
    """Refuse by name, before anything is created, a checkpoint of the wrong kind for `field`: kind "reward" (a
    reward model: load_scorer would give a language model a fresh, random score head, how reward models start, and
    the stage would then optimise or judge noise) or "lm" (a policy or base model: a reward model loads as one
    silently, with a language head it never trained)."""
    path = resolve_checkpoint(spec)
    try:
        arch = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path / 'config.json'} cannot be read ({type(e).__name__})") from None
    want, name, advice = KINDS[kind]
    if want not in arch:
        other = next((n for k, (a, n, _) in KINDS.items() if a in arch), "model")
        raise ConfigError(f"{field}: {spec} is a {'/'.join(arch) or 'model'} ({other}), not {name}; {advice}")


def scorer_from_lm(lm: GPT2LMHeadModel) -> GPT2ForSequenceClassification:
    """A one-output sequence scorer that shares nothing with `lm` but starts from its backbone."""
    config = GPT2Config.from_dict(lm.config.to_dict())
    config.num_labels = 1
    model = GPT2ForSequenceClassification(config)
    model.transformer.load_state_dict(lm.transformer.state_dict())
    torch.nn.init.normal_(model.score.weight, std=1.0 / (config.n_embd + 1) ** 0.5)
    return model.to(lm.device)


# ----------------------------------------------------------------------------- forwards

def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last real token of each row of a right-padded (B, T) mask."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


def sequence_scores(model: GPT2ForSequenceClassification, input_ids, attention_mask) -> torch.Tensor:
    """(B,) score of each sequence, read at its last real token (works with any padding side)."""
    position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    hidden = model.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids).last_hidden_state          # (B, T, D)
    last = last_token_index(attention_mask)                                          # (B,)
    h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]             # (B, D)
    return model.score(h).squeeze(-1)                                                 # (B,)


def token_ids(tokenizer, text: str, add_eos: bool = False) -> list[int]:
    """<bos> text [<eos>], whichever flavour the tokenizer is (a reward model's appends <eos> itself)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id] + ids + ([tokenizer.eos_token_id] if add_eos else [])


def encode(tokenizer, texts: list[str], device="cpu", add_eos: bool = False, max_length: int | None = None):
    """Right-padded (input_ids, attention_mask) for texts: <bos> text [<eos>]."""
    ids = [token_ids(tokenizer, t, add_eos) for t in texts]
    if max_length is not None:
        ids = [x[:max_length] for x in ids]
    T = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), T), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), T), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return input_ids.to(device), mask.to(device)


# transformers renamed `past_key_values` to `cache` in 5.x; support both spellings.
_CACHE_KW = "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"


def _cache_of(out):
    return getattr(out, "cache", None) if _CACHE_KW == "cache" else out.past_key_values


@torch.no_grad()
def sample(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int,
           eos_token_id: int, pad_token_id: int, temperature: float = 1.0, top_k: int = 0,
           generator: torch.Generator | None = None, stop_at_eos: bool = True):
    """Sample continuations with the KV cache.

    prompt_ids/prompt_mask: (B, P), LEFT-padded so that every prompt ends at column P-1.
    Returns (response_ids (B, R), response_mask (B, R)) with R <= max_new_tokens; the mask is 1 up to
    and including each row's <eos>, 0 after it (those positions hold pad).
    """
    B = prompt_ids.shape[0]
    device = prompt_ids.device
    attn = prompt_mask.clone()
    position_ids = (attn.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=position_ids, use_cache=True)
    logits = out.logits[:, -1, :]
    cache = _cache_of(out)
    next_pos = position_ids[:, -1] + 1
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    tokens, masks = [], []
    for _ in range(max_new_tokens):
        logits = logits.float() / temperature
        if top_k:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = F.softmax(logits, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)            # (B,)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        masks.append((~finished).long())
        tokens.append(token)
        finished = finished | (token == eos_token_id)
        if stop_at_eos and bool(finished.all()):
            break
        attn = torch.cat([attn, torch.ones(B, 1, dtype=attn.dtype, device=device)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                    use_cache=True, **{_CACHE_KW: cache})
        cache = _cache_of(out)
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    return torch.stack(tokens, 1), torch.stack(masks, 1)


def left_pad(tokenizer, texts: list[str], device="cpu"):
    """Left-padded prompt batch (<bos> text), for `sample`."""
    ids = [token_ids(tokenizer, t) for t in texts]
    P = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), P), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), P), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, P - len(x):] = torch.tensor(x)
        mask[i, P - len(x):] = 1
    return input_ids.to(device), mask.to(device)


def decode_responses(tokenizer, response_ids, response_mask) -> list[str]:
    texts = []
    for ids, m in zip(response_ids.tolist(), response_mask.tolist()):
        kept = [t for t, keep in zip(ids, m) if keep and t != tokenizer.eos_token_id]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return texts


def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: int = 40, temperature: float = 1.0,
                   top_k: int = 0, seed: int | None = None) -> list[str]:
    """Convenience for notebooks and the app: continue each prompt, return prompt + continuation."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    ids, mask = left_pad(tokenizer, prompts, device)
    max_new = max(1, min(max_new_tokens, model.config.n_positions - ids.shape[1]))
    resp, rmask = sample(model, ids, mask, max_new, tokenizer.eos_token_id, tokenizer.pad_token_id,
                         temperature=temperature, top_k=top_k, generator=gen)
    model.train(was_training)
    conts = decode_responses(tokenizer, resp, rmask)
    return [join_text(p, c) for p, c in zip(prompts, conts)]


def join_text(prompt: str, continuation: str) -> str:
    """prompt + continuation as one text: a space between them unless the continuation starts with
    punctuation or brings its own separator (TRL's format, see core.preferences.trl_format)."""
    if not continuation:
        return prompt
    if not prompt:
        return continuation
    if continuation[0] in ".,!?;:" or continuation[0].isspace():
        return prompt + continuation
    return f"{prompt} {continuation}"
