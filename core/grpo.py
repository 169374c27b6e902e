"""GRPO and RLOO: PPO's clipped update without a critic; the baseline is the other responses to the same prompt.

One iteration:

    rollout     batch_size / G prompts, each sampled G times (core/rollout.py: KV cache, log-probs from the
                sampling, ONE reference forward, ONE reward-model forward; no value model)
    advantage   one number per response from its group's scores            (group_advantages / rloo_advantages)
    update      epochs x minibatches of clipped steps, the response's advantage on every one of its tokens,
                KL to the reference in the loss (beta * k3) or in the reward (score - beta * KL)   (grpo_loss)

GRPO: Shao et al. 2024, "DeepSeekMath", https://arxiv.org/abs/2402.03300, sec. 4.1 (eq. 3, outcome supervision).
RLOO: Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
Feedback in LLMs", https://arxiv.org/abs/2402.14740, sec. 3.2 (the leave-one-out baseline).

What of GRPO is kept: G samples per prompt; the group-normalised outcome advantage on every token of a response;
PPO's per-token clipped ratio against the sampling policy; the KL to a frozen reference as beta * k3 in the loss
(or, as an option, PPO's KL-in-the-reward); no value model. What is dropped: process supervision (our RM scores
whole responses), the iterative re-training of the reward model (ours is frozen: the proxy is what we
over-optimise, on purpose), and reward functions written as rules (the reward is the lab's RM; gold is only
watched, never trained on). Loss averaging is an option: token-level (the default: every real token of the batch
weighs the same, DAPO https://arxiv.org/abs/2503.14476 and TRL's default) or sequence-level (the paper's
1/|o_i|: each response weighs the same, so a long response's tokens count less). `scale_advantages=False` is
Dr. GRPO's unscaled advantage (https://arxiv.org/abs/2503.20783). RLOO here swaps only the baseline: with
epochs = minibatches = 1 the ratio is 1 (up to rounding), the clipped loss is REINFORCE and this is the paper's
estimator; `kl_in="reward"` is the paper's KL placement. The default is 2 minibatches per batch, so that the
second step is slightly off-policy and the clip has something to do (the ratio histogram shows it).

`train_grpo(cfg, run)` is a generator like train_ppo: one metrics dict per iteration, live knobs (beta,
clip_eps, lr, temperature; paused, step, stop) re-read from control.json before every iteration, checkpoints
as save_pretrained folders, resume from the run's checkpoint. Single process (no torchrun path).
"""

from __future__ import annotations

import random
import time

import torch

from core import cpu, precision
from core.config import ConfigError, GRPOConfig, live_knobs
from core.model import decode_responses, load_lm, load_scorer, no_dropout, save_checkpoint
from core.ppo import kl_estimate, masked_mean
from core.ppo_train import (RATIO_EDGES, load_optimizer_state, make_optimizer, require_models, response_entropy,
                            save_trainer_state)
from core.rollout import (Models, Rollout, autocast, encode_prompts, freeze, gold_of, log_evaluation_samples,
                          ppo_prompts, response_hidden, rollout, token_logprobs, trim_left_padding)
from core.runs import Run
from core.session import NonFiniteLoss, Session
from core.tokenizer import same_tokenizer

# ----------------------------------------------------------------------------- advantages

def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B,) -> (B/G, G): consecutive rows are the G responses to one prompt."""
    if group_size < 2 or scores.numel() % group_size:
        raise ValueError(f"group_size must be >= 2 and divide the batch ({scores.numel()} scores), "
                         f"got {group_size}")
    return scores.view(-1, group_size)


def group_advantages(scores: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's outcome advantage (Shao et al. 2024, sec. 4.1.2):  A_i = (r_i - mean(r_group)) / (std(r_group) + eps).

    scores (B,) ordered as B/G consecutive groups of G -> advantages (B,). std has Bessel's correction (torch's
    default, as TRL). A group whose scores are all equal gets 0 (no signal), never NaN, whatever eps is."""
    grouped = _groups(scores, group_size)                               # (B/G, G)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)            # (B/G, G)
    if scale:
        std = grouped.std(dim=1, keepdim=True)                          # (B/G, 1), unbiased
        advantages = torch.where(std > 0, advantages / (std + eps), torch.zeros_like(advantages))
    return advantages.reshape(-1)


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024, eq. 5):  A_i = r_i - 1/(G-1) * sum_{j != i} r_j.

    scores (B,) in consecutive groups of G -> advantages (B,). The baseline of a response never contains its own
    score, so it is unbiased; A_i = G/(G-1) * (r_i - mean(r_group)), i.e. GRPO's unscaled advantage times G/(G-1)."""
    grouped = _groups(scores, group_size)                               # (B/G, G)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)   # (B/G, G)
    return (grouped - others_mean).reshape(-1)


def group_stats(scores: torch.Tensor, group_size: int) -> dict:
    """group/score_std_mean: mean within-group std of the scores (how much signal the groups carry);
    group/all_equal_frac: share of groups whose scores are all equal (advantage 0: they teach nothing)."""
    grouped = _groups(scores, group_size)
    equal = (grouped.max(dim=1).values - grouped.min(dim=1).values) == 0
    return {"group/score_std_mean": grouped.std(dim=1).mean().item(),
            "group/all_equal_frac": equal.float().mean().item()}


def kl_penalised_scores(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                        mask: torch.Tensor, beta: float, estimator: str = "k3") -> torch.Tensor:
    """PPO's placement of the KL (kl_in="reward"): r_i = score_i - beta * sum_t KL_t, before the advantages.
    scores (B,), logprobs/ref_logprobs/mask (B, T) from the rollout -> (B,)."""
    return scores - beta * (kl_estimate(logprobs, ref_logprobs, estimator) * mask).sum(1)


# ----------------------------------------------------------------------------- loss

def average_tokens(x: torch.Tensor, mask: torch.Tensor, averaging: str = "token") -> torch.Tensor:
    """(B, T) per-token values -> scalar. token: mean over all real tokens; sequence: mean over rows of each
    row's token mean (GRPO's 1/G * sum_i 1/|o_i| * sum_t)."""
    if averaging == "token":
        return masked_mean(x, mask)
    if averaging == "sequence":
        return ((x * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()
    raise ValueError(f"loss averaging must be 'token' or 'sequence', got {averaging!r}")


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float, beta: float,
              kl_estimator: str = "k3", averaging: str = "token"):
    """GRPO's objective (Shao et al. 2024, eq. 3), negated to be minimised:

        L = avg_t [ max(-A_i * ratio_t, -A_i * clip(ratio_t, 1-eps, 1+eps)) + beta * KL_t(pi || pi_ref) ]

    logprobs (B, T) carry gradients; old_logprobs (B, T) (the sampling policy) and ref_logprobs (B, T) are
    constants; advantages (B,) one per response, broadcast to its tokens; mask (B, T).
    beta = 0 is the KL-in-the-reward form (the KL is then already inside the advantages).
    k3 = exp(ref - logp) - (ref - logp) - 1 is GRPO's estimator (eq. 4); its gradient pulls logp toward ref.
    Returns (loss, stats) with stats: clipfrac, approx_kl, kl (mean per-token KL to the reference), ratio (B, T).
    """
    adv = advantages[:, None]                                           # (B, 1): the same on every token
    log_ratio = logprobs - old_logprobs                                 # (B, T)
    ratio = torch.exp(log_ratio)                                        # (B, T)
    pg_loss1 = -adv * ratio
    pg_loss2 = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    per_token = torch.max(pg_loss1, pg_loss2)                           # (B, T)
    kl = kl_estimate(logprobs, ref_logprobs, kl_estimator)              # (B, T), carries gradients
    if beta:
        per_token = per_token + beta * kl
    loss = average_tokens(per_token, mask, averaging)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg_loss2 > pg_loss1).float(), mask),
            "approx_kl": 0.5 * masked_mean(log_ratio ** 2, mask),
            "kl": masked_mean(kl, mask),
            "ratio": ratio.detach(),
        }
    return loss, stats


# ----------------------------------------------------------------------------- update

def grpo_update(models: Models, optimizer, ro: Rollout, advantages: torch.Tensor, *, clip_eps: float, beta: float,
                kl_in: str, kl_estimator: str, averaging: str, temperature: float, epochs: int, minibatches: int,
                grad_clip: float, generator=None, bf16: bool = False) -> dict:
    """epochs x minibatches clipped policy steps on one batch of groups; advantages (B,).
    Returns mean statistics and the ratio histogram (RATIO_EDGES, as PPO's)."""
    B, P = ro.responses.shape[0], ro.prompt_ids.shape[1]
    mb_size = B // minibatches
    full_ids, full_mask = ro.full_ids, ro.full_mask
    device = full_ids.device
    params = list(models.policy.parameters())
    beta_in_loss = beta if kl_in == "loss" else 0.0
    sums = {k: torch.zeros((), device=device) for k in ("pg_loss", "clipfrac", "approx_kl", "kl", "ratio")}
    counts = torch.zeros(len(RATIO_EDGES) - 1, device=device)
    bad = torch.zeros((), device=device)
    n_steps = 0
    for _ in range(epochs):
        order = (torch.randperm(B, generator=generator).to(device) if epochs * minibatches > 1
                 else torch.arange(B, device=device))
        for start in range(0, B, mb_size):
            idx = order[start:start + mb_size]
            mb_mask = ro.mask[idx]
            with autocast(device, bf16):
                hidden = response_hidden(models.policy, full_ids[idx], full_mask[idx], P)          # (b, R, D)
                new_logprobs = token_logprobs(models.policy, hidden, ro.responses[idx], temperature)  # (b, R)
            loss, stats = grpo_loss(new_logprobs, ro.logprobs[idx], ro.ref_logprobs[idx], advantages[idx], mb_mask,
                                    clip_eps, beta_in_loss, kl_estimator, averaging)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            bad += (~torch.isfinite(loss.detach())).float()  # read once after the update: no sync per step
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
            optimizer.step()
            with torch.no_grad():
                real = stats["ratio"][mb_mask > 0]
                counts += torch.histc(real.clamp(RATIO_EDGES[0], RATIO_EDGES[-1]), bins=len(counts),
                                      min=RATIO_EDGES[0], max=RATIO_EDGES[-1])
                for key, value in (("pg_loss", loss), ("clipfrac", stats["clipfrac"]),
                                   ("approx_kl", stats["approx_kl"]), ("kl", stats["kl"]),
                                   ("ratio", masked_mean(stats["ratio"], mb_mask))):
                    sums[key] += value.detach()
            n_steps += 1
    if bad.item():
        raise NonFiniteLoss(f"the GRPO loss became NaN or inf in {int(bad.item())} minibatch(es) of this update")
    out = {k: (v / n_steps).item() for k, v in sums.items()}
    out.update(ratio_edges=list(RATIO_EDGES), ratio_counts=[int(c) for c in counts.tolist()])
    return out


def advantages_of(cfg: GRPOConfig, ro: Rollout, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores the advantages are computed from (B,), advantages (B,)) for the configured method."""
    scores = ro.scores
    if cfg.kl_in == "reward" and beta:
        scores = kl_penalised_scores(scores, ro.logprobs, ro.ref_logprobs, ro.mask, beta, cfg.kl_estimator)
    if cfg.advantage == "rloo":
        return scores, rloo_advantages(scores, cfg.group_size)
    return scores, group_advantages(scores, cfg.group_size, scale=cfg.scale_advantages)


# ----------------------------------------------------------------------------- models and checkpoints

def load_models(cfg: GRPOConfig, device, resume_from=None) -> Models:
    """Policy (from the run's checkpoint when resuming), frozen reference and reward model; no critic."""
    require_models(cfg)
    ref, tok = load_lm(cfg.policy, device)
    policy, _ = load_lm(resume_from or cfg.policy, device)
    reward, rm_tok = load_scorer(cfg.reward, device)
    if not same_tokenizer(tok, rm_tok):
        raise ConfigError(f"GRPOConfig.reward: the policy {cfg.policy!r} and the reward model {cfg.reward!r} use "
                          f"different tokenizers (vocab {len(tok)} vs {len(rm_tok)}); train the reward model from "
                          "the same base model as the policy")
    no_dropout(policy)
    return Models(policy, freeze(ref), freeze(reward), None, None, tok)


def save_grpo_checkpoint(run: Run, models: Models, optimizer, cfg: GRPOConfig, iteration: int,
                         metrics: dict | None):
    extra = {"stage": "grpo", "iteration": iteration, "advantage": cfg.advantage, "policy": cfg.policy,
             "reward": cfg.reward, "live": {k: getattr(cfg, k) for k in live_knobs(cfg)},
             "objective/scores": (metrics or {}).get("objective/scores"),
             "objective/kl": (metrics or {}).get("objective/kl")}

    run.save_checkpoint(lambda d: save_checkpoint(models.policy, models.tokenizer, d, extra=extra))
    save_trainer_state(run, optimizer, iteration)


def group_sample(prompt: str, texts: list[str], scores, used_scores, advantages, gold, kl_seq,
                 iteration: int) -> dict:
    """samples.jsonl row of kind "group": one prompt's G responses with what the update made of them."""
    r = lambda xs: [round(float(x), 5) for x in xs]  # noqa: E731
    return {"iteration": iteration, "kind": "group", "prompt": prompt, "responses": texts, "scores": r(scores),
            "rewards": r(used_scores), "advantages": r(advantages), "gold": r(gold), "kl": r(kl_seq)}


# ----------------------------------------------------------------------------- the loop

def train_grpo(cfg: GRPOConfig, run: Run | None = None):
    """Yield one metrics dict per GRPO/RLOO iteration ({"step": iteration, "objective/scores", ...}).

    With a run: samples.jsonl (evaluation samples and one group per iteration), control_log.jsonl,
    checkpoints; live controls from control.json. A run that holds a GRPO checkpoint resumes from it."""
    from core.config import resolve_device, seed_everything

    cfg.validate()
    seed_everything(cfg.seed)
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    device = resolve_device(cfg.device)
    bf16 = precision.setup(cfg, device, run) == "bf16"
    session = Session(run, "grpo", cfg)
    cfg, checkpoint, start_iteration = session.resume(cfg)
    models = load_models(cfg, device, resume_from=checkpoint)
    cfg.validate(n_positions=models.policy.config.n_positions)
    tok = models.tokenizer
    optimizer = make_optimizer(list(models.policy.parameters()), cfg.lr, cfg.weight_decay)
    if checkpoint is not None:  # from trainer_state/, or an older run's checkpoint/optimizer.pt
        load_optimizer_state(optimizer, checkpoint, start_iteration)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + start_iteration)
    cpu_gen = torch.Generator().manual_seed(cfg.seed + 1 + start_iteration)
    rng = random.Random(cfg.seed + start_iteration)
    prompts, prompt_ids, prompt_mask = encode_prompts(tok, ppo_prompts(2048, cfg.seed), cfg.prompt_length, device,
                                                      owner="GRPOConfig")
    eval_texts, eval_ids, eval_mask = encode_prompts(tok, ppo_prompts(cfg.eval_prompts, cfg.seed + 777),
                                                     cfg.prompt_length, device, owner="GRPOConfig")
    G, n_prompts = cfg.group_size, cfg.batch_size // cfg.group_size

    yield from session.begin()
    log_evaluation_samples(run, models, cfg, eval_texts, eval_ids, eval_mask, 0, device)  # the base model's

    session.save = lambda position: save_grpo_checkpoint(run, models, optimizer, cfg, position, session.last)
    iteration = start_iteration
    while iteration < cfg.iterations:
        cfg, action = yield from session.gate(cfg, iteration, optimizer)  # a stop saves the checkpoint
        if action == "stop":
            return

        iteration += 1
        t0 = time.perf_counter()
        batch = [rng.randrange(len(prompts)) for _ in range(n_prompts)]
        idx = torch.tensor(batch, device=device).repeat_interleave(G)          # (B,): G copies of each prompt
        batch_ids, batch_mask = trim_left_padding(prompt_ids[idx], prompt_mask[idx])
        ro = rollout(models, batch_ids, batch_mask, cfg.response_length, cfg.temperature, gen, cfg.stop_at_eos,
                     bf16=bf16)
        used_scores, advantages = advantages_of(cfg, ro, cfg.beta)
        t1 = time.perf_counter()
        try:
            upd = grpo_update(models, optimizer, ro, advantages, clip_eps=cfg.clip_eps, beta=cfg.beta,
                              kl_in=cfg.kl_in, kl_estimator=cfg.kl_estimator, averaging=cfg.loss_averaging,
                              temperature=cfg.temperature, epochs=cfg.epochs, minibatches=cfg.minibatches,
                              grad_clip=cfg.grad_clip, generator=cpu_gen, bf16=bf16)
        except NonFiniteLoss as e:
            raise session.non_finite(e, iteration, cfg, f"lower the learning rate (lr={cfg.lr:g}) or beta "
                                     f"(={cfg.beta:g}); resume with e.g. --lr") from None
        t2 = time.perf_counter()
        kl_seq = ((ro.logprobs - ro.ref_logprobs) * ro.mask).sum(1)          # (B,) summed k1, as objective/kl
        kl_cost = (kl_estimate(ro.logprobs, ro.ref_logprobs, cfg.kl_estimator) * ro.mask).sum(1)   # (B,)
        texts = decode_responses(tok, ro.responses, ro.mask.long())
        batch_prompts = [prompts[i] for i in idx.tolist()]
        gold = gold_of(batch_prompts, texts, cfg.profile)
        scores = ro.scores.mean().item()
        non_score = -cfg.beta * kl_cost.mean().item()
        metrics = {
            "step": iteration,
            "objective/scores": scores,
            "objective/gold": sum(gold) / len(gold),
            "objective/kl": kl_seq.mean().item(),
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": scores + non_score,
            "objective/entropy": response_entropy(ro.logprobs, ro.mask).mean().item(),   # nats per response
            "objective/response_length": ro.mask.sum(1).mean().item(),
            "policy/approxkl_avg": upd["approx_kl"],
            "policy/clipfrac_avg": upd["clipfrac"],
            "policy/kl_ref_avg": upd["kl"],
            "loss/policy_avg": upd["pg_loss"],
            "val/ratio": upd["ratio"],
            **group_stats(ro.scores, G),
            "group/advantage_abs_mean": advantages.abs().mean().item(),
            "params/beta": cfg.beta,
            "params/clip_eps": cfg.clip_eps,
            "params/lr": cfg.lr,
            "params/temperature": cfg.temperature,
            "time/iteration_s": t2 - t0,
            "time/generation_s": ro.times["generation"],
            "time/forwards_s": ro.times["forwards"],
            "time/update_s": t2 - t1,
            "time/tokens_per_s": float(ro.mask.sum()) / (t2 - t0),
            "hist/ratio_edges": upd["ratio_edges"],
            "hist/ratio_counts": upd["ratio_counts"],
        }
        last = iteration == cfg.iterations
        if run is not None:
            g = slice(0, G)  # the first group of the batch (its prompt was drawn at random)
            run.log_sample(group_sample(batch_prompts[0], texts[g], ro.scores[g].tolist(), used_scores[g].tolist(),
                                        advantages[g].tolist(), gold[g], kl_seq[g].tolist(), iteration))
            if iteration % cfg.sample_every == 0 or last:
                log_evaluation_samples(run, models, cfg, eval_texts, eval_ids, eval_mask, iteration, device)
        yield from session.row(metrics, cfg, due=iteration % cfg.checkpoint_every == 0, final=last)  # row, then checkpoint
    train_grpo.last_models = models  # for notebooks: the trained policy without reloading
