"""Stage 3: PPO fine-tuning with a KL penalty, as a generator that yields one metrics dict per iteration.

One iteration, the way the papers draw it:

    rollout   prompts -> policy samples responses (KV cache; log-probs come with the samples)
              -> ONE batched forward each of the reference, the value model and the reward model
    shaping   reward_t = -kl_coef * KL_t, + score at the last real token         (core.ppo.shaped_rewards)
    GAE       advantages, returns; advantages whitened                           (core.ppo.gae, whiten)
    update    ppo_epochs x minibatches of clipped policy + value updates         (core.ppo.policy_loss, ...)

`train_ppo(cfg, run)` re-reads the run's control.json before every iteration (kl_coef, adaptive_kl,
target_kl, clip_eps, lr, temperature, paused, step, stop), so the app, the CLI and the tests steer the
same loop. `rollout()` (core/rollout.py, shared with GRPO/RLOO) and `ppo_update()` are plain functions so the
benchmark times exactly this code.
Where the speed comes from: core/gpt2_lean.py (a fused forward over the same HF weights), no second
policy forward in the rollout, inference_mode for everything that needs no gradient, a fused AdamW.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import torch

from core import distributed, precision
from core.config import ConfigError, PPOConfig, live_knobs
from core.model import decode_responses, load_lm, load_scorer, no_dropout, require_model, save_checkpoint
from core.ppo import (AdaptiveKLController, FixedKLController, gae, masked_mean, policy_loss, shaped_rewards,
                      value_loss, whiten)
from core.rollout import (Models, Rollout, autocast, encode_prompts, freeze, gold_of, log_evaluation_samples,
                          ppo_prompts, response_hidden, rollout, token_logprobs, token_values, trim_left_padding)
from core.runs import Run
from core.session import NonFiniteLoss, Session
from core.tokenizer import same_tokenizer

# fixed bins over [0, 2]: wide enough that the clip band [1-ε, 1+ε] (ε < 1) always has bins outside it; ratios
# beyond 2 go to the last bin (and so still count as outside the band)
RATIO_EDGES = [round(0.025 * i, 3) for i in range(81)]
INSPECT_ROWS = 2
# Data parallel: with this environment variable set to 1, every rank samples the WHOLE global rollout with the
# shared generator and keeps its slice: W times the generation work, but the rollout is bit-for-bit the one a
# single process samples (the check in tests/core/test_distributed.py). Otherwise each rank samples only its share,
# with a generator of its own (different draws from one process's, the same distribution).
REPLICATED_ROLLOUT_ENV = "RLHF_LAB_DDP_REPLICATED_ROLLOUT"
RANK_SEED_STRIDE = 1_000_003
TRAINER_STATE = "trainer_state"  # <run>/trainer_state/: optimizer state beside checkpoint/, not in it


def make_optimizer(params, lr: float, weight_decay: float):
    """AdamW. The fused kernel updates all tensors in one call instead of a Python loop over ~200
    parameter tensors per step (which, at this model size, costs as much as the forward)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def require_models(cfg) -> None:
    """The policy is a language model and the reward a reward model (core.model.require_model), before a run
    folder exists: the CLI and the page call it, and load_models again."""
    require_model(cfg.policy, "lm", f"{type(cfg).__name__}.policy")
    require_model(cfg.reward, "reward", f"{type(cfg).__name__}.reward")


def load_models(cfg: PPOConfig, device, resume_from=None) -> Models:
    """Policy (from the run's checkpoint when resuming), reference, reward model and value model."""
    ref, tok = load_lm(cfg.policy, device)
    policy, _ = load_lm(resume_from or cfg.policy, device)
    require_models(cfg)
    reward, rm_tok = load_scorer(cfg.reward, device)
    if not same_tokenizer(tok, rm_tok):
        raise ConfigError(f"PPOConfig.reward: the policy {cfg.policy!r} and the reward model {cfg.reward!r} use "
                          f"different tokenizers (vocab {len(tok)} vs {len(rm_tok)}); train the reward model from "
                          "the same base model as the policy")
    value, value_head = None, None
    if cfg.value_model == "separate":
        # InstructGPT: the critic starts as a copy of the reward model (it already reads responses)
        value_spec = (resume_from / "value") if resume_from is not None else cfg.reward
        value, _ = load_scorer(value_spec, device)
        no_dropout(value)
    else:
        value_head = torch.nn.Linear(policy.config.n_embd, 1).to(device)
        torch.nn.init.zeros_(value_head.weight)  # V = 0 at the start: no arbitrary first advantages
        torch.nn.init.zeros_(value_head.bias)
        if resume_from is not None and (resume_from / "value_head.pt").exists():
            value_head.load_state_dict(torch.load(resume_from / "value_head.pt", weights_only=True))
    no_dropout(policy)
    return Models(policy, freeze(ref), freeze(reward), value, value_head, tok)


# ----------------------------------------------------------------------------- update

def minibatch_order(B: int, minibatches: int, generator=None) -> torch.Tensor:
    """(B,) a shuffled order of the rollout rows; minibatch j is order[j*mb : (j+1)*mb], mb = B / minibatches.

    Stratified: row g*M + k (M = minibatches) of the rollout goes to minibatch perm_g[k], so every minibatch
    holds exactly one row of each block of M consecutive rows. The rollout rows are already in random prompt
    order, so this is as random as a plain permutation where it matters, and it keeps data-parallel ranks in
    step: rank r holds a contiguous slice of the rows, so it owns the same share of EVERY minibatch (with a
    plain permutation one rank might own 11 of 16 rows and the other 5, and the faster rank waits at each
    gradient all-reduce: measured ~14 of 20 ms per all-reduce on 2 CPU ranks)."""
    mb = B // minibatches
    perms = torch.rand(mb, minibatches, generator=generator).argsort(dim=1)          # (mb, M): block g -> slots
    rows = torch.arange(mb).unsqueeze(1) * minibatches + torch.arange(minibatches)   # (mb, M): row g*M + k
    order = torch.empty(B, dtype=torch.long)
    order[perms * mb + torch.arange(mb).unsqueeze(1)] = rows                        # slot j*mb + g <- row
    return order


def ppo_update(models: Models, optimizer, ro: Rollout, advantages, returns, *, clip_eps: float, clip_value: float,
               vf_coef: float, temperature: float, ppo_epochs: int, minibatches: int, grad_clip: float,
               generator=None, bf16: bool = False, inspect_rows: int = 0, dd: distributed.Dist | None = None) -> dict:
    """ppo_epochs x minibatches clipped policy + value steps on one rollout. Returns summed statistics and
    the ratio histogram; with inspect_rows, the per-token ratio/clipped of the first rows of the last epoch's
    first minibatch (by then the policy has moved, so the ratio and the clipping have something to show).

    Data parallel (dd with world size W > 1; `ro` holds this rank's rows, global rows rank*B_local + i): every
    rank draws the same permutation of the GLOBAL batch and trains on its own rows of each global minibatch.
    Its loss (a mean over its tokens) is scaled by W * local_tokens / global_tokens, so the rank-averaged
    gradient is exactly the gradient of the mean over the global minibatch's tokens, the step a single process
    takes on the same rows (a rank that owns no row of a minibatch contributes zeros)."""
    dd = dd or distributed.Dist()
    B_local = ro.responses.shape[0]
    B = B_local * dd.world_size
    P = ro.prompt_ids.shape[1]
    mb_size = B // minibatches
    full_ids, full_mask = ro.full_ids, ro.full_mask
    params = models.trainable()
    device = full_ids.device
    sums = {k: torch.zeros((), device=device) for k in ("pg_loss", "vf_loss", "clipfrac", "vf_clipfrac",
                                                         "approx_kl", "ratio")}
    counts = torch.zeros(len(RATIO_EDGES) - 1, device=device)
    inspect = None
    n_steps = 0
    bad = torch.zeros((), device=device)  # minibatches whose loss was NaN/inf, summed over ranks
    orders = [minibatch_order(B, minibatches, generator).to(device) for _ in range(ppo_epochs)]
    if dd.enabled:
        # this rank's rows of each global minibatch, and every minibatch's global token count (one collective)
        lo = dd.rank * B_local
        owned = [[o[s:s + mb_size][(o[s:s + mb_size] >= lo) & (o[s:s + mb_size] < lo + B_local)] - lo
                  for s in range(0, B, mb_size)] for o in orders]
        local_tokens = torch.tensor([[float(ro.mask[i].sum()) for i in ep] for ep in owned], dtype=torch.float64)
        global_tokens = distributed.all_reduce_sum(local_tokens.clone(), dd).clamp(min=1.0)
        scales = (dd.world_size * local_tokens / global_tokens).tolist()
    for epoch in range(ppo_epochs):
        order = orders[epoch]
        for start in range(0, B, mb_size):
            idx = order[start:start + mb_size]
            scale = 1.0
            if dd.enabled:
                idx, scale = owned[epoch][start // mb_size], scales[epoch][start // mb_size]
                if idx.numel() == 0:  # none of this minibatch's rows live here: contribute zero gradient
                    optimizer.zero_grad(set_to_none=True)
                    bad += distributed.all_reduce_grads(params, dd, flag=bad.new_zeros(()))
                    if grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
                    optimizer.step()
                    n_steps += 1
                    continue
            mb_mask = ro.mask[idx]
            with autocast(device, bf16):
                hidden = response_hidden(models.policy, full_ids[idx], full_mask[idx], P)          # (b, R, D)
                new_logprobs = token_logprobs(models.policy, hidden, ro.responses[idx], temperature)  # (b, R)
                vpred = token_values(models, full_ids[idx], full_mask[idx], P, policy_hidden=hidden)
            pg_loss, pg_stats = policy_loss(new_logprobs, ro.logprobs[idx], advantages[idx], mb_mask, clip_eps)
            vf_loss, vf_stats = value_loss(vpred, ro.values[idx], returns[idx], mb_mask, clip_value)
            loss = pg_loss + vf_coef * vf_loss
            optimizer.zero_grad(set_to_none=True)
            (loss * scale if dd.enabled else loss).backward()
            # A NaN/inf loss only raises a flag here: the flag rides in the gradient all-reduce (under torchrun
            # every rank must reach that collective, or the others would wait forever) and is read once after
            # the update, so the inner loop never waits on the device.
            bad += distributed.all_reduce_grads(params, dd, flag=(~torch.isfinite(loss.detach())).float())
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
            optimizer.step()
            with torch.no_grad():
                ratio = pg_stats["ratio"]
                real = ratio[mb_mask > 0]
                counts += torch.histc(real.clamp(RATIO_EDGES[0], RATIO_EDGES[-1]), bins=len(counts),
                                      min=RATIO_EDGES[0], max=RATIO_EDGES[-1])
                for key, value in (("pg_loss", pg_loss), ("vf_loss", vf_loss), ("clipfrac", pg_stats["clipfrac"]),
                                   ("vf_clipfrac", vf_stats["clipfrac"]), ("approx_kl", pg_stats["approx_kl"]),
                                   ("ratio", masked_mean(ratio, mb_mask))):
                    sums[key] += value.detach() * scale if dd.enabled else value.detach()
                if inspect is None and inspect_rows and epoch == ppo_epochs - 1:
                    adv = advantages[idx]
                    lo, hi = 1.0 - clip_eps, 1.0 + clip_eps
                    clipped = ((adv > 0) & (ratio > hi)) | ((adv < 0) & (ratio < lo))  # where clip is the active term
                    inspect = {"rows": idx[:inspect_rows].tolist(), "ratio": ratio[:inspect_rows].tolist(),
                               "clipped": clipped[:inspect_rows].tolist()}
            n_steps += 1
    if bad.item():  # the update's one host sync for this check; every rank sees the same count
        raise NonFiniteLoss(f"the PPO loss became NaN or inf in {int(bad.item())} minibatch(es) of this update")
    with torch.no_grad():  # a finite loss can still take a step to inf weights (a huge lr): the next rollout
        norms = torch._foreach_norm([p.detach() for p in params])  # would then fail on NaN probabilities
        if not bool(torch.isfinite(torch.stack(norms)).all()):
            raise NonFiniteLoss("the weights became NaN or inf in this update")
    out = {k: (v / n_steps).item() for k, v in sums.items()}
    # mean over ranks of (local mean * W * local/global tokens) = the mean over the global minibatch's tokens
    out = distributed.all_reduce_means(out, dd)
    counts = distributed.all_reduce_sum(counts, dd)
    out.update(ratio_edges=list(RATIO_EDGES), ratio_counts=[int(c) for c in counts.tolist()], inspect=inspect)
    return out


def response_entropy(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """objective/entropy per response, as TRL logs it: -sum_t log pi(y_t | x, y_<t) over the response's real tokens,
    in nats per RESPONSE (not per token). The sampled response's own surprisal, so its batch mean is a one-sample
    estimate of the entropy of the policy's response distribution (at the sampling temperature).   (B, T) -> (B,)"""
    return -(logprobs * mask).sum(1)


def advantages_and_returns(ro: Rollout, kl_coef: float, estimator: str, gamma: float, lam: float,
                           whiten_rewards: bool, dd: distributed.Dist | None = None):
    """Shaped rewards -> GAE -> whitened advantages (the only place the KL penalty enters).
    Under data parallelism the whitening statistics are those of the GLOBAL batch (global_whiten)."""
    rewards, kl = shaped_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, ro.mask, kl_coef, estimator)
    if whiten_rewards:
        rewards = global_whiten(rewards, ro.mask, dd, shift_mean=False)
    advantages, returns = gae(rewards, ro.values, ro.mask, gamma, lam)
    return rewards, kl, global_whiten(advantages, ro.mask, dd), returns


def global_whiten(x: torch.Tensor, mask: torch.Tensor, dd: distributed.Dist | None, shift_mean: bool = True):
    """core.ppo.whiten with the mean and (unbiased) variance of the real tokens of ALL ranks.   (B, T) -> (B, T)

    One process: exactly core.ppo.whiten. W ranks: all-reduce (sum x, n), then sum (x - mean)^2: the same
    statistics a single process computes over the concatenated batch, so every rank scales alike."""
    if dd is None or not dd.enabled:
        return whiten(x, mask, shift_mean)
    moments = distributed.all_reduce_sum(torch.stack([(x * mask).sum(), mask.sum()]).double(), dd)
    n = moments[1].clamp(min=1.0)
    mean = (moments[0] / n).to(x.dtype)
    squares = distributed.all_reduce_sum(((x - mean) ** 2 * mask).sum().double().reshape(1), dd)[0]
    var = (squares / (n - 1).clamp(min=1.0)).to(x.dtype)   # Bessel, as core.ppo.masked_var
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


# ----------------------------------------------------------------------------- samples and inspection

def inspect_payload(models, ro: Rollout, prompts, texts, rewards, kl, advantages, returns, upd, iteration,
                    kl_coef, clip_eps, gamma: float, lam: float) -> dict:
    """The 'one PPO step, slowly' panel: a couple of rollout rows, every per-token quantity in order.

    "advantages" are the whitened ones the policy loss used; "advantages_raw" are GAE's before whitening, the ones
    the return is built from (R = A_raw + V, core.ppo.gae), so a student can check R, and the GAE recursion with
    the recorded gamma and lam, by hand. They come from the same gae() call on the same tensors as the update's."""
    raw, _ = gae(rewards, ro.values, ro.mask, gamma, lam)
    rows = []
    ins = upd.get("inspect") or {"rows": [], "ratio": [], "clipped": []}
    for j, i in enumerate(ins["rows"]):
        n = int(ro.mask[i].sum())
        rows.append({
            "prompt": prompts[i], "response": texts[i],
            "tokens": models.tokenizer.convert_ids_to_tokens(ro.responses[i, :n].tolist()),
            "logprobs": ro.logprobs[i, :n].tolist(), "ref_logprobs": ro.ref_logprobs[i, :n].tolist(),
            "kl": kl[i, :n].tolist(), "rewards": rewards[i, :n].tolist(), "values": ro.values[i, :n].tolist(),
            "advantages": advantages[i, :n].tolist(), "advantages_raw": raw[i, :n].tolist(),
            "returns": returns[i, :n].tolist(), "ratio": ins["ratio"][j][:n], "clipped": ins["clipped"][j][:n],
            "score": float(ro.scores[i]),
        })
    return {"iteration": iteration, "kl_coef": kl_coef, "clip_eps": clip_eps, "gamma": gamma, "lam": lam, "rows": rows}


# ----------------------------------------------------------------------------- checkpoints

def save_ppo_checkpoint(run: Run, models: Models, optimizer, cfg: PPOConfig, iteration: int, kl_coef: float,
                        metrics: dict | None):
    extra = {"stage": "ppo", "iteration": iteration, "kl_coef": kl_coef, "policy": cfg.policy, "reward": cfg.reward,
             "live": {k: getattr(cfg, k) for k in live_knobs(cfg)},  # the knobs in force, restored on resume
             "objective/scores": (metrics or {}).get("objective/scores"),
             "objective/kl": (metrics or {}).get("objective/kl")}

    def save(d):
        save_checkpoint(models.policy, models.tokenizer, d, extra=extra)
        if models.value is not None:
            save_checkpoint(models.value, models.tokenizer, d / "value")  # a scorer: its tokenizer appends <eos>
        else:
            torch.save(models.value_head.state_dict(), d / "value_head.pt")

    run.save_checkpoint(save)
    save_trainer_state(run, optimizer, iteration)


def save_trainer_state(run: Run, optimizer, position: int) -> None:
    """Adam's moments in <run>/trainer_state/, beside the checkpoint, not in it: checkpoint/ is the save_pretrained
    folder someone shares or uploads, and the moments (2x the weights) are of no use to anyone but a resume.
    position: the iteration (PPO, GRPO) or step (DPO) of the checkpoint just saved; load_optimizer_state reads the
    moments only when it matches (a kill between the two saves leaves them apart)."""
    def save_state(d):
        torch.save(optimizer.state_dict(), d / "optimizer.pt")
        (d / "state.json").write_text(json.dumps({"iteration": position}))

    run.save_checkpoint(save_state, name=TRAINER_STATE)


def load_optimizer_state(optimizer, checkpoint: Path, iteration: int) -> bool:
    """Restore Adam's moments for a resume from `checkpoint`: from <run>/trainer_state/ when it belongs to
    the same iteration (a crash between the two saves leaves them apart), else from an older run's
    checkpoint/optimizer.pt. False (fresh moments; the weights are what matters) when neither fits."""
    beside = checkpoint.parent / TRAINER_STATE
    try:
        state_iteration = json.loads((beside / "state.json").read_text()).get("iteration")
    except (OSError, ValueError, AttributeError):
        state_iteration = None
    path = beside / "optimizer.pt" if state_iteration == iteration else checkpoint / "optimizer.pt"
    if not path.exists():
        return False
    try:
        optimizer.load_state_dict(torch.load(path, weights_only=True))
    except (ValueError, RuntimeError, KeyError, EOFError, OSError):
        return False  # a different optimizer layout or a damaged file: start Adam's moments afresh
    return True


# ----------------------------------------------------------------------------- the loop

def train_ppo(cfg: PPOConfig, run: Run | None = None):
    """Yield one metrics dict per PPO iteration ({"step": iteration, "objective/scores", ...}).

    With a run: samples.jsonl, inspect.json, control_log.jsonl, checkpoints; live controls from control.json.
    A run that already holds a PPO checkpoint resumes from it and continues the iteration count.

    Under torchrun every rank runs this loop (pass `run` on rank 0 only): each samples batch_size / W of the
    global rollout, advantages are whitened over the global batch, gradients are averaged over ranks, metrics
    are rank means, and rank 0 reads control.json and broadcasts the live knobs and the pause/stop decision.
    """
    device, dd, per_rank = distributed.setup(cfg, "PPOConfig.batch_size")
    bf16 = distributed.broadcast_object(precision.setup(cfg, device, run) == "bf16", dd)  # rank 0's verdict
    replicated = dd.enabled and os.environ.get(REPLICATED_ROLLOUT_ENV) == "1"
    session = Session(run, "ppo", cfg, dd=dd)  # ranks > 0 have no run: rank 0 decides
    cfg, checkpoint, start_iteration = session.resume(cfg)
    models = load_models(cfg, device, resume_from=checkpoint)
    cfg.validate(n_positions=models.policy.config.n_positions)
    tok = models.tokenizer

    optimizer = make_optimizer(models.trainable(), cfg.lr, cfg.weight_decay)
    if checkpoint is not None:
        load_optimizer_state(optimizer, checkpoint, start_iteration)
    rank_seed = 0 if replicated else RANK_SEED_STRIDE * dd.rank  # rank 0 (and one process) draws as before
    gen = torch.Generator(device=device).manual_seed(cfg.seed + start_iteration + rank_seed)
    cpu_gen = torch.Generator().manual_seed(cfg.seed + 1 + start_iteration)
    rng = random.Random(cfg.seed + start_iteration)

    prompts, prompt_ids, prompt_mask = encode_prompts(tok, ppo_prompts(2048, cfg.seed), cfg.prompt_length, device)
    eval_texts, eval_ids, eval_mask = encode_prompts(tok, ppo_prompts(cfg.eval_prompts, cfg.seed + 777),
                                                     cfg.prompt_length, device)

    yield from session.begin()
    kl_coef = session.checkpoint_info.get("kl_coef")
    kl_coef = cfg.kl_coef if kl_coef is None else kl_coef
    controller = (AdaptiveKLController(kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
                  else FixedKLController(kl_coef))
    log_evaluation_samples(run, models, cfg, eval_texts, eval_ids, eval_mask, 0, device)  # the base model's

    session.save = lambda position: save_ppo_checkpoint(run, models, optimizer, cfg, position, controller.value,
                                                       session.last)
    iteration = start_iteration
    while iteration < cfg.iterations:
        # ---- live controls: applied before the iteration, visible in its params/* metrics
        old = cfg
        cfg, action = yield from session.gate(cfg, iteration, optimizer)  # a stop saves the checkpoint
        if cfg.kl_coef != old.kl_coef or cfg.adaptive_kl != old.adaptive_kl or cfg.target_kl != old.target_kl:
            kl_coef = cfg.kl_coef if cfg.kl_coef != old.kl_coef else controller.value
            controller = (AdaptiveKLController(kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
                          else FixedKLController(kl_coef))
        if action == "stop":
            return

        iteration += 1
        t0 = time.perf_counter()
        batch = [rng.randrange(len(prompts)) for _ in range(cfg.batch_size)]  # the same global batch on all ranks
        idx = torch.tensor(batch, device=device)
        batch_ids, batch_mask = trim_left_padding(prompt_ids[idx], prompt_mask[idx])
        keep = None
        if dd.enabled:  # this rank's share: global rows rank * per_rank ...
            keep = slice(dd.rank * per_rank, (dd.rank + 1) * per_rank)
            batch = batch[keep]
            if not replicated:
                batch_ids, batch_mask, keep = batch_ids[keep], batch_mask[keep], None
        ro = rollout(models, batch_ids, batch_mask, cfg.response_length, cfg.temperature, gen,
                     cfg.stop_at_eos, cfg.missing_eos_penalty, bf16, keep=keep)
        kl_coef_used = controller.value
        rewards, kl, advantages, returns = advantages_and_returns(ro, kl_coef_used, cfg.kl_estimator, cfg.gamma,
                                                                  cfg.lam, cfg.whiten_rewards, dd)
        t1 = time.perf_counter()
        try:
            upd = ppo_update(models, optimizer, ro, advantages, returns, clip_eps=cfg.clip_eps,
                             clip_value=cfg.clip_value, vf_coef=cfg.vf_coef, temperature=cfg.temperature,
                             ppo_epochs=cfg.ppo_epochs, minibatches=cfg.minibatches, grad_clip=cfg.grad_clip,
                             generator=cpu_gen, bf16=bf16, inspect_rows=INSPECT_ROWS if run is not None else 0,
                             dd=dd)
        except NonFiniteLoss as e:
            raise session.non_finite(e, iteration, cfg, f"lower the learning rate (lr={cfg.lr:g}) or raise the "
                                     f"temperature (={cfg.temperature:g}); resume with e.g. --lr") from None
        t2 = time.perf_counter()
        kl_per_seq = kl.sum(1)                                                    # (B,)
        texts = decode_responses(tok, ro.responses, ro.mask.long())
        batch_prompts = [prompts[i] for i in batch]
        gold = gold_of(batch_prompts, texts, cfg.profile)
        # per-row means; every rank holds batch_size / W rows, so the rank mean of them is the global mean
        rollout_stats = distributed.all_reduce_means({
            "scores": ro.scores.mean().item(), "gold": sum(gold) / len(gold), "kl": kl_per_seq.mean().item(),
            "entropy": response_entropy(ro.logprobs, ro.mask).mean().item(), "length": ro.mask.sum(1).mean().item(),
            "non_score": (-kl_coef_used * kl_per_seq).mean().item(), "tokens": float(ro.mask.sum())}, dd)
        mean_kl = rollout_stats["kl"]
        controller.update(mean_kl, cfg.batch_size)
        non_score = rollout_stats["non_score"]
        n_tokens = rollout_stats["tokens"] * dd.world_size
        metrics = {
            "step": iteration,
            "objective/scores": rollout_stats["scores"],
            "objective/gold": rollout_stats["gold"],
            "objective/kl": mean_kl,
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": rollout_stats["scores"] + non_score,
            "objective/entropy": rollout_stats["entropy"],
            "objective/response_length": rollout_stats["length"],
            "policy/approxkl_avg": upd["approx_kl"],
            "policy/clipfrac_avg": upd["clipfrac"],
            "loss/policy_avg": upd["pg_loss"],
            "loss/value_avg": upd["vf_loss"],
            "val/clipfrac_avg": upd["vf_clipfrac"],
            "val/ratio": upd["ratio"],
            "params/kl_coef": kl_coef_used,
            "params/adaptive_kl": cfg.adaptive_kl,
            "params/target_kl": cfg.target_kl,
            "params/clip_eps": cfg.clip_eps,
            "params/lr": cfg.lr,
            "params/temperature": cfg.temperature,
            "time/iteration_s": t2 - t0,
            "time/generation_s": ro.times["generation"],
            "time/forwards_s": ro.times["forwards"],
            "time/update_s": t2 - t1,
            "time/tokens_per_s": n_tokens / (t2 - t0),
            "hist/ratio_edges": upd["ratio_edges"],
            "hist/ratio_counts": upd["ratio_counts"],
        }
        last = iteration == cfg.iterations
        if run is not None:
            run.write_json("inspect.json", inspect_payload(models, ro, batch_prompts, texts, rewards, kl, advantages,
                                                           returns, upd, iteration, kl_coef_used, cfg.clip_eps,
                                                           cfg.gamma, cfg.lam))
            if iteration % cfg.sample_every == 0 or last:
                log_evaluation_samples(run, models, cfg, eval_texts, eval_ids, eval_mask, iteration, device)
        yield from session.row(metrics, cfg, due=iteration % cfg.checkpoint_every == 0, final=last)  # row, then checkpoint
    train_ppo.last_models = models  # for notebooks: the trained policy without reloading
