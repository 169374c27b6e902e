"""One rollout for every online method (PPO, GRPO/RLOO, best-of-n, evaluation): sample, then score.

    sample    prompts -> policy samples responses with the KV cache; the log-probs come with the samples
              (core/gpt2_lean.py), so the policy's forward is never run a second time
    score     ONE batched forward each of the frozen reference (ref_logprobs), the value model (PPO only)
              and the reward model (the proxy score at each row's last real token)
    gold      gold_of(): the hidden annotator's utility of the decoded texts (what the proxy stands in for)

Everything here runs without gradients (inference_mode) and returns plain tensors; the methods differ only in
what they do with them (core/ppo_train.py: shaped rewards + GAE; core/grpo.py: group-relative advantages).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from core import gpt2_lean as lean
from core import precision
from core.config import ConfigError
from core.corpus import synthetic_reviews
from core.model import decode_responses, join_text, left_pad, no_dropout
from core.ppo import last_real_index, shaped_rewards

PROMPT_SEED = 4_000_000        # prompts of their own stream: never the RM's training or gold prompts


# ----------------------------------------------------------------------------- models

@dataclass
class Models:
    policy: torch.nn.Module           # GPT2LMHeadModel, trained
    ref: torch.nn.Module              # GPT2LMHeadModel, frozen (the base model)
    reward: torch.nn.Module           # GPT2ForSequenceClassification, frozen (the proxy)
    value: torch.nn.Module | None     # GPT2ForSequenceClassification critic (PPO, value_model="separate")
    value_head: torch.nn.Module | None  # Linear(D, 1) on the policy's hidden states (PPO, value_model="shared")
    tokenizer: object = None          # (critic-free methods such as GRPO pass value=value_head=None)

    def trainable(self) -> list[torch.nn.Parameter]:
        extra = self.value if self.value is not None else self.value_head
        return list(self.policy.parameters()) + (list(extra.parameters()) if extra is not None else [])

    @property
    def has_critic(self) -> bool:
        return self.value is not None or self.value_head is not None


def freeze(model):
    no_dropout(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------- prompts

def ppo_prompts(n: int, seed: int = 0, min_words: int = 2, max_words: int = 4) -> list[str]:
    """Opening words of fresh synthetic reviews (a stream of their own), as in core.preferences."""
    reviews = synthetic_reviews(n, seed=PROMPT_SEED + seed)
    rng = random.Random(PROMPT_SEED + seed)
    return [" ".join(r.split()[: rng.randint(min_words, max_words)]).rstrip(".,!?;:") for r in reviews]


def trim_left_padding(ids, mask):
    """Drop the leading columns that are padding in every row of this batch (they would cost compute)."""
    first = int(mask.any(0).long().argmax())
    return ids[:, first:], mask[:, first:]


def encode_prompts(tokenizer, prompts: list[str], prompt_length: int, device, owner: str = "PPOConfig"):
    """Left-padded (ids, mask) of prompts that fit `prompt_length` tokens (longer ones are dropped).
    owner: the config class named in the error."""
    keep = [p for p in prompts if len(tokenizer(p)["input_ids"]) <= prompt_length]
    if not keep:
        raise ConfigError(f"{owner}.prompt_length: no prompt fits in {prompt_length} tokens")
    ids, mask = left_pad(tokenizer, keep, device)
    return keep, ids, mask


# ----------------------------------------------------------------------------- forwards

def token_logprobs(lm, hidden: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log pi(a_t | s_t) under temperature-scaled logits.                   (B, T, D), (B, T) -> (B, T)

    logits / temperature = (hidden / temperature) @ W^T: the division runs on D=128 numbers per token, not
    V=1024. The log-softmax itself is _TokenLogprob: one fused pass forward, two back."""
    logits = lean.lm_logits(lm, hidden / temperature).float()                    # (B, T, V)
    return _TokenLogprob.apply(logits, tokens)


class _TokenLogprob(torch.autograd.Function):
    """log_softmax(logits)[token], with the gradient written out:   (..., V), (...) -> (...)

        d log p_a / d logit_v = 1[v = a] - p_v,   so   grad_logits = -p * g, then + g at the token.

    Why not log_softmax(logits).gather(token) under autograd: gather's backward fills a dense (..., V) zero
    tensor and scatters g into it before log_softmax's backward reads it; at V=1024 that extra pass was ~4% of
    a DPO step. (logit_a - logsumexp, the first version, took ~6 passes and ~10%.)"""

    @staticmethod
    def forward(ctx, logits, tokens):
        logp = torch.log_softmax(logits, dim=-1)                                 # (..., V)
        ctx.save_for_backward(logp, tokens)
        return logp.gather(-1, tokens[..., None])[..., 0]

    @staticmethod
    def backward(ctx, g):
        logp, tokens = ctx.saved_tensors
        grad = torch.exp(logp).mul_(-g[..., None])                               # -p * g
        return grad.scatter_add_(-1, tokens[..., None], g[..., None]), None


def response_hidden(model, full_ids, full_mask, P: int) -> torch.Tensor:
    """Hidden states at the positions that PREDICT the response tokens (P-1 .. P+R-2).   -> (B, R, D)

    The last token predicts nothing we score, and (causal attention) nothing reads it: it is not fed at all.
    Rows with one prompt (a GRPO group) run their prompt once (prefix_len, core.gpt2_lean.hidden_states)."""
    return lean.hidden_states(model.transformer, full_ids[:, :-1], full_mask[:, :-1], keep_from=P - 1, prefix_len=P)


def sequence_score(scorer, full_ids, full_mask, prefix_len: int = 0) -> torch.Tensor:
    """(B,) the scorer's output at each row's last real token. prefix_len: the prompt width, when rows may share
    a prompt (they then run it once)."""
    last = last_real_index(full_mask)                                                        # (B,)
    keep_from = int(last.min())   # positions before every row's last token are read by attention only
    hidden = lean.hidden_states(scorer.transformer, full_ids, full_mask, keep_from=keep_from,
                                prefix_len=prefix_len)                                       # (B, S - keep_from, D)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return scorer.score(hidden[rows, last - keep_from]).squeeze(-1).float()


def token_values(models: Models, full_ids, full_mask, P: int, policy_hidden=None) -> torch.Tensor:
    """V(s_t) for every response position.                                                  -> (B, R)"""
    if models.value is not None:
        return models.value.score(response_hidden(models.value, full_ids, full_mask, P)).squeeze(-1).float()
    if policy_hidden is None:
        policy_hidden = response_hidden(models.policy, full_ids, full_mask, P)
    return models.value_head(policy_hidden).squeeze(-1).float()


def autocast(device, enabled: bool):
    """bf16 autocast on a CPU or CUDA device when `enabled` (the stage's resolved precision is bf16); a no-op
    context otherwise. Only matmul-heavy forwards run under it: logits are cast to fp32 before every
    log-softmax, and losses, KL, advantages and the optimizer step stay fp32."""
    return precision.autocast(device, "bf16" if enabled else "fp32")


# ----------------------------------------------------------------------------- rollout

@dataclass
class Rollout:
    prompt_ids: torch.Tensor      # (B, P) left-padded
    prompt_mask: torch.Tensor     # (B, P)
    responses: torch.Tensor       # (B, R)
    mask: torch.Tensor            # (B, R) float, 1 on real response tokens (incl. <eos>)
    logprobs: torch.Tensor        # (B, R) policy, temperature-scaled, from the sampling itself
    ref_logprobs: torch.Tensor    # (B, R) reference, same temperature
    values: torch.Tensor | None   # (B, R) V(s_t); None without a critic (GRPO, best-of-n)
    scores: torch.Tensor          # (B,) RM score (after the missing-<eos> penalty)
    raw_scores: torch.Tensor      # (B,) RM score as the RM gave it
    times: dict

    @property
    def full_ids(self):
        return torch.cat([self.prompt_ids, self.responses], 1)

    @property
    def full_mask(self):
        return torch.cat([self.prompt_mask, self.mask.long()], 1)


def rollout(models: Models, prompt_ids, prompt_mask, response_length: int, temperature: float,
            generator=None, stop_at_eos: bool = True, missing_eos_penalty: float = 0.0, bf16: bool = False,
            keep: slice | None = None):
    """Sample responses and everything PPO needs about them (the values only when `models` has a critic),
    without gradients.
    keep: sample all rows but keep only these (a data-parallel rank's share of a replicated rollout)."""
    tok = models.tokenizer
    device = prompt_ids.device
    t0 = time.perf_counter()
    with autocast(device, bf16):
        responses, rmask, logprobs = lean.generate(models.policy, prompt_ids, prompt_mask, response_length,
                                                   tok.eos_token_id, tok.pad_token_id, temperature, generator,
                                                   stop_at_eos)
    if keep is not None:
        prompt_ids, prompt_mask, responses, rmask, logprobs = (x[keep] for x in (prompt_ids, prompt_mask, responses,
                                                                                 rmask, logprobs))
    t1 = time.perf_counter()
    P = prompt_ids.shape[1]
    full_ids = torch.cat([prompt_ids, responses], 1)
    full_mask = torch.cat([prompt_mask, rmask], 1)
    with torch.inference_mode(), autocast(device, bf16):
        ref_logprobs = token_logprobs(models.ref, response_hidden(models.ref, full_ids, full_mask, P), responses,
                                      temperature)
        values = token_values(models, full_ids, full_mask, P) if models.has_critic else None
        raw_scores = sequence_score(models.reward, full_ids, full_mask, P)
    mask = rmask.float()
    ref_logprobs, raw_scores = ref_logprobs.clone() * mask, raw_scores.clone()
    if values is not None:
        values = values.clone() * mask
    scores = raw_scores
    if missing_eos_penalty:
        has_eos = ((responses == tok.eos_token_id) & rmask.bool()).any(1)
        scores = scores - missing_eos_penalty * (~has_eos).float()
    t2 = time.perf_counter()
    return Rollout(prompt_ids, prompt_mask, responses, mask, logprobs, ref_logprobs, values, scores, raw_scores,
                   {"generation": t1 - t0, "forwards": t2 - t1})


# ----------------------------------------------------------------------------- samples and gold

@torch.no_grad()
def evaluation_samples(models: Models, cfg, prompts, ids, mask, iteration: int, kind: str, device):
    """The policy's (or, at the start, the base model's) responses to the fixed evaluation prompts, with proxy
    score, gold utility and per-token KL; sampled with a fixed seed so iterations are comparable.
    cfg: any stage config with seed, response_length, temperature, kl_estimator and profile."""
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 12345)
    ro = rollout(models, ids, mask, cfg.response_length, cfg.temperature, gen, stop_at_eos=True)
    _, kl = shaped_rewards(ro.raw_scores, ro.logprobs, ro.ref_logprobs, ro.mask, 0.0, cfg.kl_estimator)
    tok = models.tokenizer
    texts = decode_responses(tok, ro.responses, ro.mask.long())
    gold = gold_of(prompts, texts, cfg.profile)
    rows = []
    for i, prompt in enumerate(prompts):
        n = int(ro.mask[i].sum())
        rows.append({"iteration": iteration, "kind": kind, "prompt": prompt, "response": texts[i],
                     "score": float(ro.raw_scores[i]), "gold": gold[i],
                     "tokens": tok.convert_ids_to_tokens(ro.responses[i, :n].tolist()),
                     "kl": [round(float(x), 5) for x in kl[i, :n]]})
    return rows


def log_evaluation_samples(run, models: Models, cfg, prompts, ids, mask, iteration: int, device) -> None:
    """evaluation_samples() into run/samples.jsonl: at iteration 0 the base model's ("base"), once per run (a restart
    before the first checkpoint does not log them twice), after that the policy's ("policy")."""
    if run is None:
        return
    kind = "base" if iteration == 0 else "policy"
    if kind == "base" and any(r.get("kind") == "base" for r in run.samples()):
        return
    for row in evaluation_samples(models, cfg, prompts, ids, mask, iteration, kind, device):
        run.log_sample(row)


def gold_of(prompts, responses, profile) -> list[float]:
    from core.annotators import gold_utility  # imported late: VADER loads only when a run needs it

    return gold_utility([join_text(p, r) for p, r in zip(prompts, responses)], profile)
