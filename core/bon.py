"""Best-of-n: sample n responses per prompt from the base model, keep the one the reward model scores highest.

No training at all, and a strong baseline for every RL method (Stiennon et al. 2020; Gao et al. 2022 use it to
measure reward over-optimisation). Its policy pi_n has a known distance from the base model (Stiennon et al.
2020, appendix G.3; Beirami et al. 2024, https://arxiv.org/abs/2401.01879, prove it is an upper bound, exact
when no two responses tie in reward):

    KL(pi_n || pi_base) = log n - (n - 1) / n

so "gold against KL" for best-of-n needs no sampling of the KL at all. The gold and proxy of the kept response
are measured. Efficient: max(n) responses are sampled ONCE per prompt and scored once; best-of-n for a smaller n
is the best of the first n of them (the first n of max(n) i.i.d. samples are n i.i.d. samples).

`best_of_n(cfg, run)` is a generator like every stage: while it samples it yields progress status rows; then one
metrics row per n: {"step", "bon/n", "objective/gold", "objective/scores", "objective/kl" (the analytic value,
so best-of-n lands on the same axes as the trained policies), "bon/kl_analytic", standard errors}.
"""

from __future__ import annotations

import math
import numbers
import time

import torch

from core import cpu, precision
from core import gpt2_lean as lean
from core.config import BoNConfig, ConfigError, resolve_device, seed_everything
from core.evaluate import EVAL_SAMPLE_SEED, evaluation_prompts
from core.model import decode_responses, load_lm, load_scorer, require_model
from core.rollout import freeze, gold_of, sequence_score, trim_left_padding
from core.runs import Run
from core.tokenizer import same_tokenizer

SAMPLES_LOGGED = 4  # prompts whose max(n) responses go to samples.jsonl, with their scores and the kept ones


def bon_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1)/n, in nats (0 at n = 1; exact when no two samples tie).
    n: any integer >= 1 (numpy's too: the frontier reads n from arrays); a bool is refused, not read as 0/1."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


def best_indices(scores: torch.Tensor, ns: list[int]) -> dict[int, torch.Tensor]:
    """For each n, the index of the highest-scoring response among each prompt's FIRST n.   (P, N) -> {n: (P,)}"""
    return {n: scores[:, :n].argmax(1) for n in ns}


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std with Bessel's correction / sqrt(k))."""
    k = len(values)
    mean = sum(values) / k
    if k < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (k - 1)
    return mean, math.sqrt(var / k)


@torch.inference_mode()
def sample_and_score(policy, reward, tokenizer, ids, mask, n: int, response_length: int, temperature: float,
                     generator) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """n responses to each prompt of a left-padded (b, P) batch, prompt-major (prompt i's are rows i*n .. i*n+n-1).
    Returns (scores (b, n), texts (b*n), response lengths (b, n))."""
    ids, mask = trim_left_padding(ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0))   # (b*n, P)
    max_new = max(1, min(response_length, policy.config.n_positions - ids.shape[1]))
    responses, rmask, _ = lean.generate(policy, ids, mask, max_new, tokenizer.eos_token_id, tokenizer.pad_token_id,
                                        temperature, generator, True)
    scores = sequence_score(reward, torch.cat([ids, responses], 1), torch.cat([mask, rmask], 1))  # (b*n,)
    texts = decode_responses(tokenizer, responses, rmask)
    return scores.view(-1, n), texts, rmask.sum(1).view(-1, n)


def check_inputs(cfg: BoNConfig) -> None:
    """The config and the two tokenizers agreeing, checked without loading a model (before a run is created)."""
    from core.dpo import _tokenizer_of

    cfg.validate()
    require_model(cfg.policy, "lm", "BoNConfig.policy")
    require_model(cfg.reward, "reward", "BoNConfig.reward")
    if not same_tokenizer(_tokenizer_of(cfg.policy, "BoNConfig.policy"), _tokenizer_of(cfg.reward, "BoNConfig.reward")):
        raise ConfigError(f"BoNConfig.reward: the base model {cfg.policy!r} and the reward model {cfg.reward!r} use "
                          "different tokenizers; the RM scores the base model's token ids, so train it from the same "
                          "base model")


def best_of_n(cfg: BoNConfig, run: Run | None = None):
    """Yield progress rows while sampling ({"_status": "running", "progress": done, "total": P}), then one metrics
    row per n in cfg.n (see the module docstring). The last row has "final": True."""
    cfg.validate()
    device = resolve_device(cfg.device)
    used = precision.setup(cfg, device, run)  # fp32 | bf16: sampling and scoring matmuls
    seed_everything(cfg.seed)
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    policy, tok = load_lm(cfg.policy, device)
    reward, rm_tok = load_scorer(cfg.reward, device)
    if not same_tokenizer(tok, rm_tok):
        raise ConfigError(f"BoNConfig.reward: the base model {cfg.policy!r} and the reward model {cfg.reward!r} use "
                          f"different tokenizers (vocab {len(tok)} vs {len(rm_tok)}); the RM scores the base model's "
                          "token ids, so train it from the same base model")
    policy, reward = freeze(policy), freeze(reward)
    prompts, ids, mask = evaluation_prompts(tok, cfg.prompts, device, "BoNConfig.prompts")
    N, P = max(cfg.n), len(prompts)
    per_batch = max(1, cfg.batch_size // N)                  # whole prompts per sampling batch
    generator = torch.Generator(device=device).manual_seed(EVAL_SAMPLE_SEED + cfg.seed)
    scores, lengths, texts = [], [], []
    t0 = time.perf_counter()
    for start in range(0, P, per_batch):
        with precision.autocast(device, used):
            s, t, n_tokens = sample_and_score(policy, reward, tok, ids[start:start + per_batch],
                                              mask[start:start + per_batch], N, cfg.response_length, cfg.temperature,
                                              generator)
        scores.append(s.float().cpu())
        lengths.append(n_tokens.float().cpu())
        texts += t
        done = min(P, start + per_batch)
        yield {"_status": "running", "step": 0, "message": f"sampled {done}/{P} prompts x {N}", "progress": done,
               "total": P}
    scores, lengths = torch.cat(scores), torch.cat(lengths)                # (P, N)
    sample_s = time.perf_counter() - t0
    kept = best_indices(scores, cfg.n)                                       # {n: (P,)}
    # gold only for the responses some n keeps (at most len(cfg.n) per prompt), plus the logged prompts' all
    needed = sorted({(i, int(kept[n][i])) for n in cfg.n for i in range(P)}
                    | {(i, j) for i in range(min(SAMPLES_LOGGED, P)) for j in range(N)})
    gold_values = gold_of([prompts[i] for i, _ in needed], [texts[i * N + j] for i, j in needed], cfg.profile)
    gold = dict(zip(needed, gold_values))

    if run is not None:
        for i in range(min(SAMPLES_LOGGED, P)):
            run.log_sample({"iteration": 0, "kind": "bon", "prompt": prompts[i],
                            "responses": texts[i * N:(i + 1) * N], "scores": scores[i].tolist(),
                            "gold": [gold[(i, j)] for j in range(N)],
                            "kept": {str(n): int(kept[n][i]) for n in cfg.n}})
    for step, n in enumerate(cfg.n, start=1):
        rows = torch.arange(P)
        g_mean, g_se = mean_and_se([gold[(i, int(kept[n][i]))] for i in range(P)])
        s_mean, s_se = mean_and_se(scores[rows, kept[n]].tolist())
        metrics = {"step": step, "bon/n": n, "objective/gold": g_mean, "objective/gold_se": g_se,
                   "objective/scores": s_mean, "objective/scores_se": s_se, "objective/kl": bon_kl(n),
                   "bon/kl_analytic": bon_kl(n), "objective/response_length": lengths[rows, kept[n]].mean().item(),
                   "bon/prompts": P, "time/sampling_s": sample_s}
        if n == cfg.n[-1]:
            metrics["final"] = True
        yield metrics
