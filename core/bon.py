"""Best-of-n: sample n responses per prompt from the base model, keep the one the reward model scores highest.

No training at all, and a strong baseline for every RL method (Stiennon et al. 2020; Gao et al. 2022 use it to
measure reward over-optimisation). Its policy pi_n has a closed-form bound on its distance from the base model
(Stiennon et al. 2020, appendix G.3; Beirami et al. 2024, https://arxiv.org/abs/2401.01879, prove that the value
long quoted as exact is an upper bound):

    KL(pi_n || pi_base) <= log n - (n - 1) / n

It is tight when every response is unlikely under the base model (no response is drawn twice), and loose when
the base model often says the same thing (a response with probability p merges a slice of width p of the
best-of-n quantile space: bon_kl_gap). Beside the bound each row carries an estimate of the KL itself from the
kept responses (bon_kl_estimate): their base probability, which the sampler returns for free, and their score's
rank among the prompt's samples. The gold and proxy of the kept response are measured. Efficient: max(n)
responses are sampled ONCE per prompt and scored once; best-of-n for a smaller n is the best of the first n of
them (the first n of max(n) i.i.d. samples are n i.i.d. samples).

`best_of_n(cfg, run)` is a generator like every stage: while it samples it yields progress status rows; then one
metrics row per n: {"step", "bon/n", "objective/gold", "objective/scores", "objective/kl" (the bound, as the
frontier plots best-of-n, so it lands on the same axes as the trained policies), "bon/kl_analytic" (the bound),
"bon/kl_estimate", standard errors}.
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
from core.session import Session
from core.tokenizer import same_tokenizer

SAMPLES_LOGGED = 4  # prompts whose max(n) responses go to samples.jsonl, with their scores and the kept ones


def bon_kl(n: int) -> float:
    """log n - (n - 1)/n in nats: an upper bound on KL(best-of-n || base) (Beirami et al. 2024), 0 at n = 1, tight
    when no response is likely enough to be drawn twice (bon_kl_gap says by how much it is not).
    n: any integer >= 1 (numpy's too: the frontier reads n from arrays); a bool is refused, not read as 0/1."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


def bon_kl_gap(q: float, n: int) -> float:
    """What one response of base probability p takes off the bound, q = p / F with F = P_base(score <= its score).

    Best-of-n is the quantile map of the largest of n uniforms, whose density n u^(n-1) on [0, 1] is log n -
    (n - 1)/n away from the uniform: that is the bound. The map sends the slice (F - p, F] of [0, 1] to one
    response, and merging a slice loses the KL inside it (chain rule): with v = u / F on [1 - q, 1],

        KL(pi_n || base) = log n - (n - 1)/n - E_{y ~ pi_n} [ g_n(q(y)) ]
        g_n(q) = log(n q / Z) - (n - 1)/n - (n - 1) (1 - q)^n log(1 - q) / Z,      Z = 1 - (1 - q)^n

    the KL of the density n v^(n-1) / Z from the uniform on the slice. g_n(0) = 0 (a response never drawn twice
    costs nothing), g_n(1) = the whole bound, and g_n(q) ~ (n - 1)^2 q^2 / 24 for small q."""
    n = int(n)
    q = min(max(float(q), 0.0), 1.0)
    if n == 1 or q == 0.0:
        return 0.0
    if (n - 1) * q < 1e-4:   # the closed form cancels to O(q^2) from O(1) terms: its series, exact to ~1e-4 relative
        return (n - 1) ** 2 * q * q / 24
    if q == 1.0:
        return bon_kl(n)
    log_1mq = math.log1p(-q)
    Z = -math.expm1(n * log_1mq)
    gap = math.log(n * q / Z) - (n - 1) / n - (n - 1) * math.exp(n * log_1mq) * log_1mq / Z
    return min(max(gap, 0.0), bon_kl(n))


def bon_kl_estimate(scores: torch.Tensor, logprobs: torch.Tensor, kept: torch.Tensor, n: int) -> float:
    """KL(best-of-n || base) estimated from the kept responses: the mean over prompts of bon_kl(n) - g_n(p / F).

    scores, logprobs: (P, N) every sample's proxy score and summed log-prob under the base model at the sampling
    temperature (the distribution best-of-n draws from); kept: (P,) the index of each prompt's best of its first n.
    Each kept response is a draw from pi_n; p = exp(its log-prob) exactly; F by its score's rank k among the
    prompt's N samples as k / (N + 1), the mean of F at the k-th smallest of N draws. F only enters through
    q = p / F, so with responses of probability ~1e-10 the estimate is the bound whatever F is. A score shared
    by different responses (a tie in low precision) makes the slice heavier than p: the estimate then errs
    towards the bound, which stays an upper bound."""
    P, N = scores.shape
    rows = torch.arange(P)
    chosen = scores[rows, kept]
    rank = (scores <= chosen[:, None]).sum(1).double()                     # (P,) >= 1: the kept one counts
    q = (logprobs[rows, kept].double().exp() / (rank / (N + 1))).clamp(max=1.0)
    bound = bon_kl(n)
    return sum(bound - bon_kl_gap(float(x), n) for x in q) / P


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
                     generator) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    """n responses to each prompt of a left-padded (b, P) batch, prompt-major (prompt i's are rows i*n .. i*n+n-1).
    Returns (scores (b, n), texts (b*n), response lengths (b, n), log pi_base(response) (b, n): the sampled tokens'
    log-probs at `temperature`, summed, which the sampler computes anyway)."""
    ids, mask = trim_left_padding(ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0))   # (b*n, P)
    max_new = max(1, min(response_length, policy.config.n_positions - ids.shape[1]))
    responses, rmask, logprobs = lean.generate(policy, ids, mask, max_new, tokenizer.eos_token_id,
                                               tokenizer.pad_token_id, temperature, generator, True)
    scores = sequence_score(reward, torch.cat([ids, responses], 1), torch.cat([mask, rmask], 1))  # (b*n,)
    texts = decode_responses(tokenizer, responses, rmask)
    return scores.view(-1, n), texts, rmask.sum(1).view(-1, n), logprobs.float().sum(1).view(-1, n)


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
    row per n in cfg.n (see the module docstring). The last row has "final": True. Pause, step and stop act between
    rows (core/session.py)."""
    yield from Session(run, "bon", cfg).flow(_best_of_n(cfg, run), cfg)


def _best_of_n(cfg: BoNConfig, run: Run | None):
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
    scores, lengths, texts, logprobs = [], [], [], []
    t0 = time.perf_counter()
    for start in range(0, P, per_batch):
        with precision.autocast(device, used):
            s, t, n_tokens, logp = sample_and_score(policy, reward, tok, ids[start:start + per_batch],
                                                    mask[start:start + per_batch], N, cfg.response_length,
                                                    cfg.temperature, generator)
        scores.append(s.float().cpu())
        lengths.append(n_tokens.float().cpu())
        logprobs.append(logp.cpu())
        texts += t
        done = min(P, start + per_batch)
        yield {"_status": "running", "step": 0, "message": f"sampled {done}/{P} prompts x {N}", "progress": done,
               "total": P}
    scores, lengths, logprobs = torch.cat(scores), torch.cat(lengths), torch.cat(logprobs)   # (P, N)
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
                   "bon/kl_analytic": bon_kl(n), "bon/kl_estimate": bon_kl_estimate(scores, logprobs, kept[n], n),
                   "objective/response_length": lengths[rows, kept[n]].mean().item(),
                   "bon/prompts": P, "time/sampling_s": sample_s}
        if n == cfg.n[-1]:
            metrics["final"] = True
        yield metrics
