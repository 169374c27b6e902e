"""One evaluation for every policy: the same prompts, the same samples, the same KL estimator, the same judges.

PPO, GRPO, RLOO, DPO and best-of-n optimise different objectives and log different training metrics, so their
training curves cannot be laid side by side. This file scores a finished (or intermediate) policy the one way
they all share, the axes of Gao et al. 2022 and of the DPO paper's frontier (Rafailov et al. 2023, fig. 2):

    prompts   a FIXED set of evaluation prompts (a prompt stream of its own: no method trains on it)
    samples   one response per prompt from the policy, with a fixed sampling seed
    kl        sum over the response's tokens of log pi(y_t|.) - log pi_ref(y_t|.)    (k1, per sequence, then the mean)
              the SAME samples, both log-probs from the same full forward, so a policy scored against itself
              gives exactly 0
    gold      the hidden gold utility (core.annotators.gold_utility) of prompt + response
    proxy     the reward model's score of the same text (what RL methods maximise)
    length    response tokens (incl. <eos>)

`evaluate_policy(policy, judges)` is the pure part (models in, dict out); `evaluate(spec, ...)` loads a shipped
name, a run folder or a checkpoint folder and its reference. `rlhf-lab eval` prints its result as one JSON line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from core.config import ConfigError
from core.model import (CheckpointError, decode_responses, load_lm, load_scorer, read_lab_json, require_model,
                        resolve_checkpoint)
from core.rollout import encode_prompts, freeze, gold_of, ppo_prompts, response_hidden, sequence_score, token_logprobs
from core.tokenizer import same_tokenizer

EVAL_PROMPT_SEED = 90_001   # ppo_prompts(n, seed) stream for evaluation; training runs use their (small) run seeds
EVAL_SAMPLE_SEED = 31_337   # the sampling seed offset: every policy draws with the same generator state
PROMPT_LENGTH = 8           # tokens, as PPOConfig.prompt_length: longer prompts are dropped


def evaluation_prompts(tokenizer, n: int, device, field: str = "evaluation prompts"):
    """The first n fixed evaluation prompts (their own stream: no method trains on it) that fit PROMPT_LENGTH tokens
    with this tokenizer; a larger n extends a smaller one. When none of the first n fits (a tokenizer with short
    tokens, a tiny n), the first n prompts of the stream that do fit. Returns (texts, ids, mask); ConfigError
    naming `field` when n is not a count or even a longer draw has none."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{field} must be an integer >= 1, got {n!r}")
    try:
        return encode_prompts(tokenizer, ppo_prompts(n, seed=EVAL_PROMPT_SEED), PROMPT_LENGTH, device)
    except ConfigError:
        pass
    fits = [p for p in ppo_prompts(16 * n + 64, seed=EVAL_PROMPT_SEED)
            if len(tokenizer(p)["input_ids"]) <= PROMPT_LENGTH][:n]
    if not fits:
        raise ConfigError(f"{field}: no evaluation prompt fits in {PROMPT_LENGTH} tokens with this model's "
                          "tokenizer") from None
    return encode_prompts(tokenizer, fits, PROMPT_LENGTH, device)


@dataclass
class Judges:
    """What a policy is measured against: the frozen base model, the proxy RM, the gold profile, the prompts."""

    ref: torch.nn.Module          # GPT2LMHeadModel, frozen: the base model every method started from
    reward: torch.nn.Module       # GPT2ForSequenceClassification, frozen: the proxy reward model
    tokenizer: object
    prompts: list[str]            # the prompts kept (those fitting PROMPT_LENGTH tokens)
    prompt_ids: torch.Tensor      # (N, P) left-padded
    prompt_mask: torch.Tensor     # (N, P)
    profile: str = "positive"
    response_length: int = 24
    temperature: float = 1.0
    seed: int = 0

    @property
    def device(self):
        return self.prompt_ids.device


def load_judges(ref="small", reward="reward", prompts: int = 64, profile: str = "positive", response_length: int = 24,
                temperature: float = 1.0, seed: int = 0, device="cpu") -> Judges:
    """Load the reference and reward model once; reuse the Judges for every policy of a sweep."""
    from core.annotators import check_profile

    check_profile(profile)
    if not isinstance(response_length, int) or response_length < 1:
        raise ConfigError(f"evaluation response_length must be an integer >= 1, got {response_length!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"evaluation temperature must be > 0, got {temperature!r}")
    device = torch.device(device)
    ref_model, tok = load_lm(ref, device)
    reward_model, rm_tok = load_scorer(reward, device)
    if not same_tokenizer(tok, rm_tok):
        raise ConfigError(f"the reference {ref!r} and the reward model {reward!r} use different tokenizers")
    texts, ids, mask = evaluation_prompts(tok, prompts, device)
    return Judges(freeze(ref_model), freeze(reward_model), tok, texts, ids, mask, profile, response_length,
                  float(temperature), int(seed))


@torch.inference_mode()
def sample_responses(policy, judges: Judges, repeats: int = 1, seed_offset: int = 0):
    """Sample `repeats` responses per evaluation prompt with the evaluation's fixed generator.
    Returns (prompt_ids, prompt_mask, responses, response_mask), rows prompt-major: prompt i's responses are
    rows i*repeats .. i*repeats + repeats-1."""
    from core import gpt2_lean as lean

    ids = judges.prompt_ids.repeat_interleave(repeats, 0)
    mask = judges.prompt_mask.repeat_interleave(repeats, 0)
    gen = torch.Generator(device=judges.device).manual_seed(EVAL_SAMPLE_SEED + judges.seed + seed_offset)
    tok = judges.tokenizer
    max_new = max(1, min(judges.response_length, policy.config.n_positions - ids.shape[1]))
    responses, rmask, _ = lean.generate(policy, ids, mask, max_new, tok.eos_token_id, tok.pad_token_id,
                                        judges.temperature, gen, True)
    return ids, mask, responses, rmask


@torch.inference_mode()
def sequence_logprob_and_score(policy, judges: Judges, ids, mask, responses, rmask):
    """Per sequence: summed log pi, summed log pi_ref (same full forward for both), proxy score.   -> 3 x (B,)"""
    P = ids.shape[1]
    full_ids = torch.cat([ids, responses], 1)
    full_mask = torch.cat([mask, rmask], 1)
    m = rmask.float()
    T = judges.temperature
    logp = (token_logprobs(policy, response_hidden(policy, full_ids, full_mask, P), responses, T) * m).sum(1)
    ref_logp = (token_logprobs(judges.ref, response_hidden(judges.ref, full_ids, full_mask, P), responses, T)
                * m).sum(1)
    proxy = sequence_score(judges.reward, full_ids, full_mask)
    return logp, ref_logp, proxy


def evaluate_policy(policy, judges: Judges, n_samples: int = 3) -> dict:
    """Score one policy on the fixed evaluation prompts. Returns
    {kl, gold, proxy, length, prompts, samples: [{prompt, response, kl, gold, proxy}, ...n_samples]}."""
    policy.eval()
    ids, mask, responses, rmask = sample_responses(policy, judges)
    logp, ref_logp, proxy = sequence_logprob_and_score(policy, judges, ids, mask, responses, rmask)
    kl = logp - ref_logp                                                    # (B,) k1 summed over tokens
    texts = decode_responses(judges.tokenizer, responses, rmask)
    gold = gold_of(judges.prompts, texts, judges.profile)
    return summarise(judges.prompts, texts, kl.tolist(), gold, proxy.tolist(), rmask.sum(1).tolist(), n_samples)


def summarise(prompts, texts, kl, gold, proxy, lengths, n_samples: int = 3) -> dict:
    """The result dict of an evaluation from per-sample lists (shared with best-of-n's evaluation)."""
    n = len(texts)
    samples = [{"prompt": prompts[i], "response": texts[i], "kl": round(kl[i], 4), "gold": round(gold[i], 4),
                "proxy": round(proxy[i], 4)} for i in range(min(n_samples, n))]
    return {"kl": sum(kl) / n, "gold": sum(gold) / n, "proxy": sum(proxy) / n, "length": sum(lengths) / n,
            "prompts": n, "samples": samples}


def reference_of(spec) -> str:
    """The base model a policy was trained from: lab.json's or the run config's `policy`, else `small`."""
    try:
        info = read_lab_json(spec)
    except CheckpointError:
        info = {}
    if info.get("policy"):
        return str(info["policy"])
    run_config = Path(str(spec)) / "config.json"
    if run_config.exists() and (Path(str(spec)) / "checkpoint").is_dir():
        try:
            config = json.loads(run_config.read_text()).get("config") or {}
        except json.JSONDecodeError:
            config = {}
        if isinstance(config.get("policy"), str):
            return config["policy"]
    return "small"


def evaluate(spec, ref: str | None = None, reward: str = "reward", prompts: int = 64, seed: int = 0,
             profile: str = "positive", response_length: int = 24, temperature: float = 1.0, n_samples: int = 3,
             device="cpu") -> dict:
    """Load a policy (shipped name, run folder or checkpoint folder) and evaluate it against its base model."""
    resolve_checkpoint(spec)  # a clear CheckpointError before anything loads
    require_model(spec, "lm", "the policy")  # a reward model would load as a policy and score KL 78
    require_model(reward, "reward", "--reward")
    ref = ref or reference_of(spec)
    judges = load_judges(ref, reward, prompts, profile, response_length, temperature, seed, device)
    policy, tok = load_lm(spec, judges.device)
    if not same_tokenizer(tok, judges.tokenizer):
        raise ConfigError(f"the policy {spec!r} and its reference {ref!r} use different tokenizers")
    freeze(policy)
    out = evaluate_policy(policy, judges, n_samples)
    out.update(policy=str(spec), reference=ref, reward=reward, seed=seed)
    return out
