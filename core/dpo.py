"""Direct preference optimisation: the policy learns from preference pairs directly, with no reward model and no RL.

Rafailov et al. 2023 (https://arxiv.org/abs/2305.18290) show that the KL-regularised RLHF objective has a
closed-form optimum, pi*(y|x) proportional to pi_ref(y|x) exp(r(x, y) / beta), so a policy defines an *implicit*
reward r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)) (+ a term of x alone), and the reward model's Bradley-Terry
loss can be written on the policy itself (eq. 7):

    loss = -log sigmoid( beta * [ (log pi(y_c|x) - log pi_ref(y_c|x)) - (log pi(y_r|x) - log pi_ref(y_r|x)) ] )

with log pi(y|x) the SUMMED log-probability of the response tokens. IPO (Azar et al. 2023,
https://arxiv.org/abs/2310.12036) regresses the same log-ratio margin h onto 1 / (2 beta) instead:
(h - 1/(2 beta))^2, which does not push the margin to infinity on pairs the policy already orders right.

One step, the way the paper draws it:

    data      <bos> prompt chosen <eos> and <bos> prompt rejected <eos>, the pairs the reward model reads
    forward   ONE policy forward over the 2B sequences (chosen rows first), summed response log-probs (B,) each;
              the reference's log-probs were computed once before the first step (it is frozen, the pairs fixed)
    loss      dpo_loss(...) -> mean over pairs; backward; AdamW step

`train_dpo(cfg, run)` is a generator yielding one metrics dict per step (TRL's names: rewards/chosen,
rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen, logps/rejected). Every `eval_every` steps it
samples the policy on the evaluation prompts and logs objective/gold, objective/scores (the proxy RM) and
objective/kl against the reference, the axes every online method (PPO, GRPO, RLOO) is judged on. It re-reads
control.json before every step: beta and lr are live; paused, step and stop work as in PPO.
What DPO does to the log-probs is worth watching: the margin grows, but logps/chosen often FALLS too (both
responses lose probability, the rejected one faster), and that mass goes to responses no one labelled.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core import cpu, precision
from core import gpt2_lean as lean
from core.config import ConfigError, DPOConfig, live_knobs, resolve_device, seed_everything

# the evaluation prompts' stream, sampling seed and prompt cut of `rlhf-lab eval`: DPO's evaluation points and
# best-of-n are scored on the same prompts, with the same draws, as every other method
from core.evaluate import PROMPT_LENGTH, Judges, evaluate_policy, evaluation_prompts
from core.model import (CheckpointError, join_text, load_lm, load_scorer, no_dropout, require_model, resolve_checkpoint,
                        save_checkpoint)
from core.ppo_train import load_optimizer_state, make_optimizer, save_trainer_state
from core.precision import autocast
from core.preferences import PreferenceError, load_preferences
from core.reward import split_by_prompt
from core.rollout import freeze, token_logprobs
from core.runs import Run
from core.session import Session
from core.tokenizer import TokenizerError, load_tokenizer, same_tokenizer

SAMPLES_LOGGED = 4          # evaluation responses written to samples.jsonl per evaluation point
MIN_DISTINCT_PAIRS = 4      # fewer is a file of copies, not a preference set


# ----------------------------------------------------------------------------- the math

def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
             loss_type: str = "sigmoid") -> tuple[torch.Tensor, dict]:
    """DPO's loss (Rafailov et al. 2023, eq. 7) or IPO's, from summed response log-probs, all (B,).

    Returns (mean loss, stats); stats are 0-d tensors under TRL's names. rewards/* are the implicit rewards
    beta * (log pi - log pi_ref) of each response, detached: what the loss is pulling apart."""
    pi_logratios = policy_chosen_logps - policy_rejected_logps                      # (B,)
    ref_logratios = ref_chosen_logps - ref_rejected_logps                           # (B,)
    logits = pi_logratios - ref_logratios                                           # (B,) h, the log-ratio margin
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits)      # logsigmoid is stable where log(sigmoid(x)) underflows
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2   # Azar et al. 2023, eq. 17: regress h onto 1/(2 beta)
    else:
        raise ValueError(f"loss_type must be 'sigmoid' or 'ipo', got {loss_type!r}")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()      # (B,)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()  # (B,)
    stats = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "logps/chosen": policy_chosen_logps.detach().mean(),
        "logps/rejected": policy_rejected_logps.detach().mean(),
    }
    return losses.mean(), stats


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log pi(x_t | x_<t) over the positions where loss_mask is 1 (the response tokens).   -> (B,)

    input_ids/attention_mask/loss_mask: (B, T), right-padded. Position t's hidden state predicts token t+1, so the
    last token is never fed, and the positions before the earliest response token of the batch skip the last
    block's MLP and the LM head (core.gpt2_lean.hidden_states keep_from). Gradients flow when grad is enabled.
    The rows of a pair begin with one prompt, at least the batch's shortest prompt long: that much of each pair runs
    once (prefix_len)."""
    starts = loss_mask.float().argmax(1)                                             # (B,) first response token
    shortest_prompt = int(starts.min())
    keep_from = max(shortest_prompt - 1, 0)
    hidden = lean.hidden_states(model.transformer, input_ids[:, :-1], attention_mask[:, :-1],
                                keep_from=keep_from, prefix_len=shortest_prompt)     # (B, T-1-k, D)
    targets = input_ids[:, keep_from + 1:]                                           # (B, T-1-k)
    logps = token_logprobs(model, hidden, targets, 1.0)                              # (B, T-1-k)
    return (logps * loss_mask[:, keep_from + 1:].to(logps.dtype)).sum(1)


# ----------------------------------------------------------------------------- the pairs as token ids

@dataclass
class PairTokens:
    """Every pair as token ids of <bos> prompt response <eos>, with where its response starts."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    chosen_start: list[int]     # index of the first response token
    rejected_start: list[int]
    truncated: int              # sequences cut to the context length (their end, <eos> included, is lost)

    def __len__(self) -> int:
        return len(self.chosen)


def response_ids(tokenizer, prompt: str, response: str) -> tuple[list[int], int]:
    """(<bos> prompt response <eos> ids, index of the first response token).

    The full text is tokenised as the reward model reads it (join_text); the response is what follows the
    prompt's own tokens. When the prompt's tokens are not a prefix of the full text's (a merge across the
    boundary), the response is tokenised on its own after them, as TRL does."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(join_text(prompt, response))["input_ids"]
    if full[: len(prompt_ids)] != prompt_ids:
        full = prompt_ids + tokenizer(response, add_special_tokens=False)["input_ids"]
    return full + [tokenizer.eos_token_id], len(prompt_ids)


def tokenize_pairs(tokenizer, rows: list[dict], n_positions: int, where: str = "DPOConfig.preferences") -> PairTokens:
    """Token ids of every pair. A text the tokenizer cannot encode (<unk>: characters the policy's tokenizer never
    saw) or a prompt that leaves no room for a response is a PreferenceError naming the pair and the field."""
    unk = tokenizer.unk_token_id
    out = PairTokens([], [], [], [], 0)
    for number, row in enumerate(rows, start=1):
        for field in ("prompt", "chosen", "rejected"):
            ids = tokenizer(row[field], add_special_tokens=False)["input_ids"]
            if unk is not None and unk in ids:
                tokens = tokenizer.convert_ids_to_tokens(ids)
                raise PreferenceError(
                    f"{where}, pair {number} (id {row.get('id')}): the {field} text does not tokenize with the policy's "
                    f"tokenizer ({tokens.count(tokenizer.unk_token)} unknown token(s) in {row[field][:60]!r}); use "
                    "pairs written in the policy's alphabet, or a policy whose tokenizer covers them")
        for field, seqs, starts in (("chosen", out.chosen, out.chosen_start),
                                    ("rejected", out.rejected, out.rejected_start)):
            ids, start = response_ids(tokenizer, row["prompt"], row[field])
            if start >= n_positions:
                raise PreferenceError(f"{where}, pair {number} (id {row.get('id')}): the prompt alone is {start} tokens, "
                                      f"which leaves no room for a response in the policy's {n_positions}-token context")
            if len(ids) > n_positions:
                ids = ids[:n_positions]
                out.truncated += 1
            seqs.append(ids)
            starts.append(start)
    return out


def collate(seqs: list[list[int]], starts: list[int], pad_id: int, device):
    """Right-padded (input_ids, attention_mask, loss_mask), each (N, T); loss_mask is 1 on response tokens.
    One tensor from padded lists, masks by comparison: per-row slice assignments were ~500 small ops a step."""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in seqs], dtype=torch.long)
    col = torch.arange(T)[None]                                                      # (1, T)
    mask = col < torch.tensor([len(s) for s in seqs])[:, None]                       # (N, T)
    loss_mask = mask & (col >= torch.tensor(starts)[:, None])
    return ids.to(device), mask.long().to(device), loss_mask.long().to(device)


def pair_batch(pairs: PairTokens, idx: list[int], pad_id: int, device):
    """The chosen AND rejected sequences of pairs `idx` as one (2b, T) batch, chosen rows first: one forward
    for both halves (TRL's concatenated forward)."""
    seqs = [pairs.chosen[i] for i in idx] + [pairs.rejected[i] for i in idx]
    starts = [pairs.chosen_start[i] for i in idx] + [pairs.rejected_start[i] for i in idx]
    return collate(seqs, starts, pad_id, device)


@torch.inference_mode()
def reference_logps(ref, pairs: PairTokens, pad_id: int, device, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of every pair under the frozen reference: (N,) chosen, (N,) rejected."""
    if len(pairs) == 0:
        return torch.zeros(0, device=device), torch.zeros(0, device=device)
    chosen, rejected = [], []
    for s in range(0, len(pairs), batch_size):
        idx = list(range(s, min(s + batch_size, len(pairs))))
        logps = sequence_logps(ref, *pair_batch(pairs, idx, pad_id, device))       # (2b,)
        chosen.append(logps[: len(idx)])
        rejected.append(logps[len(idx):])
    return torch.cat(chosen).clone(), torch.cat(rejected).clone()


def dpo_step(policy, optimizer, batch, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float,
             loss_type: str, grad_clip: float, times: dict | None = None,
             precision: str = "fp32") -> tuple[float, dict, float | None]:
    """One optimizer step on a pair_batch (chosen rows first): ONE policy forward over the 2b sequences, the loss,
    backward, clip, AdamW. ref_chosen/ref_rejected: (b,). Returns (loss, stats as floats, grad norm or None).
    With `times`, adds the seconds of "forward_loss" and "backward_opt" (for the benchmark's split)."""
    t0 = time.perf_counter()
    with autocast(batch[0].device, precision):  # bf16 matmuls when asked; the log-probs and the loss stay fp32
        logps = sequence_logps(policy, *batch)                                       # (2b,)
    b = logps.shape[0] // 2
    loss, stats = dpo_loss(logps[:b], logps[b:], ref_chosen, ref_rejected, beta, loss_type)
    t1 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = (torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip, foreach=True)
                 if grad_clip else None)
    optimizer.step()
    # one host sync for every figure of the step (each .item() would be one)
    values = torch.stack([loss.detach(), *stats.values()] + ([grad_norm] if grad_norm is not None else [])).tolist()
    if times is not None:
        times["forward_loss"] = times.get("forward_loss", 0.0) + t1 - t0
        times["backward_opt"] = times.get("backward_opt", 0.0) + time.perf_counter() - t1
    return values[0], dict(zip(stats, values[1:1 + len(stats)])), (values[-1] if grad_norm is not None else None)


# ----------------------------------------------------------------------------- evaluation on the online axes

@torch.inference_mode()
def validation_stats(policy, pairs: PairTokens, ref_c, ref_r, beta, loss_type, pad_id, device, batch_size=64) -> dict:
    """The loss and the implicit reward's accuracy and margin on held-out pairs (prompts never trained on)."""
    if len(pairs) == 0:
        return {}
    chosen, rejected = [], []
    for s in range(0, len(pairs), batch_size):
        idx = list(range(s, min(s + batch_size, len(pairs))))
        logps = sequence_logps(policy, *pair_batch(pairs, idx, pad_id, device))
        chosen.append(logps[: len(idx)])
        rejected.append(logps[len(idx):])
    loss, stats = dpo_loss(torch.cat(chosen), torch.cat(rejected), ref_c, ref_r, beta, loss_type)
    return {"eval/loss": loss.item(), "eval/rewards/accuracies": stats["rewards/accuracies"].item(),
            "eval/rewards/margins": stats["rewards/margins"].item(),
            # the same pairs at every evaluation: a clean trend, where the batches' means jump with their lengths
            "eval/logps/chosen": stats["logps/chosen"].item(), "eval/logps/rejected": stats["logps/rejected"].item()}


# ----------------------------------------------------------------------------- the loop

@dataclass
class DPOModels:
    policy: torch.nn.Module     # GPT2LMHeadModel, trained
    ref: torch.nn.Module        # GPT2LMHeadModel, frozen
    reward: torch.nn.Module     # GPT2ForSequenceClassification, frozen; judges the evaluation samples only
    tokenizer: object


def load_dpo_models(cfg: DPOConfig, device, resume_from=None) -> DPOModels:
    """Policy (from `resume_from`, a run's checkpoint, when resuming), reference and proxy RM; all three must share
    one tokenizer (the loss compares their log-probs of the same token ids, and the RM scores those ids)."""
    policy, tok = load_lm(resume_from or cfg.policy, device)
    ref_spec = cfg.ref or cfg.policy
    ref, ref_tok = load_lm(ref_spec, device)
    if not same_tokenizer(tok, ref_tok):
        raise ConfigError(f"DPOConfig.ref: the policy {cfg.policy!r} and the reference {ref_spec!r} use different "
                          f"tokenizers (vocab {len(tok)} vs {len(ref_tok)}); the loss compares their log-probs of the "
                          "same tokens, so both must come from the same pretraining run")
    reward, rm_tok = load_scorer(cfg.reward, device)
    if not same_tokenizer(tok, rm_tok):
        raise ConfigError(f"DPOConfig.reward: the policy {cfg.policy!r} and the reward model {cfg.reward!r} use "
                          f"different tokenizers (vocab {len(tok)} vs {len(rm_tok)}); use a reward model trained "
                          "from the same base model")
    no_dropout(policy)  # deterministic forwards: the reference's log-prob of a pair is the policy's at step 0
    return DPOModels(policy, freeze(ref), freeze(reward), tok)


def _tokenizer_of(spec: str, field: str):
    try:
        return load_tokenizer(resolve_checkpoint(spec))
    except (CheckpointError, TokenizerError) as e:
        raise ConfigError(f"{field}: {e}") from None


def check_inputs(cfg: DPOConfig) -> dict:
    """Everything about the inputs that can be wrong, checked without loading a model (seconds): the config, the
    preference source, the three tokenizers agreeing, every pair tokenizing with the policy's tokenizer. The CLI
    and the page call it before creating a run, so a bad input leaves no failed run behind. Returns
    {"pairs": n, "profile": ...}. Raises ConfigError / PreferenceError naming the field (and the pair)."""
    cfg.validate()
    try:
        rows, info = load_preferences(cfg.preferences)
    except PreferenceError as e:
        raise PreferenceError(f"DPOConfig.preferences: {e}") from None
    for field, spec, kind in (("policy", cfg.policy, "lm"), ("ref", cfg.ref, "lm"), ("reward", cfg.reward, "reward")):
        if spec is not None:
            require_model(spec, kind, f"DPOConfig.{field}")
    tok = _tokenizer_of(cfg.policy, "DPOConfig.policy")
    for field, spec in (("ref", cfg.ref), ("reward", cfg.reward)):
        if spec is not None and not same_tokenizer(tok, _tokenizer_of(spec, f"DPOConfig.{field}")):
            raise ConfigError(f"DPOConfig.{field}: the policy {cfg.policy!r} and {spec!r} use different tokenizers; "
                              "all three models must come from the same pretraining run")
    n_ctx = json.loads((resolve_checkpoint(cfg.policy) / "config.json").read_text()).get("n_positions", 1024)
    tokenize_pairs(tok, rows, n_ctx)
    # after the per-pair checks (a pair that cannot be used is named first): a file of copies trains silently to
    # "train accuracy 1.00" (64 copies of one pair did)
    distinct = len({(r.get("prompt"), r.get("chosen"), r.get("rejected")) for r in rows})
    if distinct < MIN_DISTINCT_PAIRS:
        held = (f"holds only {distinct} pair(s)" if distinct == len(rows) else
                f"holds {len(rows)} pairs but only {distinct} distinct one(s)")
        raise PreferenceError(f"DPOConfig.preferences: the preference set {held}; DPO would memorise them and its "
                              f"train accuracy would say nothing; give at least {MIN_DISTINCT_PAIRS} different pairs "
                              "(e.g. `rlhf-lab preferences --out runs/prefs`)")
    return {"pairs": len(rows), "profile": cfg.profile or info.get("profile") or "positive"}


def save_dpo_checkpoint(run: Run, models: DPOModels, optimizer, cfg: DPOConfig, step: int,
                        metrics: dict | None) -> None:
    extra = {"stage": "dpo", "step": step, "policy": cfg.policy, "ref": cfg.ref or cfg.policy, "reward": cfg.reward,
             "preferences": cfg.preferences, "beta": cfg.beta, "loss_type": cfg.loss_type, "lr": cfg.lr,
             "live": {k: getattr(cfg, k) for k in live_knobs(cfg)},  # the knobs in force, restored on resume
             "objective/gold": (metrics or {}).get("objective/gold"),
             "objective/kl": (metrics or {}).get("objective/kl")}
    run.save_checkpoint(lambda d: save_checkpoint(models.policy, models.tokenizer, d, extra=extra))
    save_trainer_state(run, optimizer, step)


def train_dpo(cfg: DPOConfig, run: Run | None = None):
    """Yield one metrics dict per DPO step ({"step", "loss/dpo", "rewards/*", "logps/*", ...}), plus, at step 0
    and every eval_every steps, objective/gold, objective/scores, objective/kl and the validation pairs' eval/*.

    Everything that can be wrong with the inputs (pairs, tokenizers, config) raises before the first step.
    A run that holds a DPO checkpoint resumes from it: its weights, Adam's moments, live knobs, and the same seeded
    order of batches from the next step on (the reference log-probs are recomputed: the reference never moves)."""
    cfg.validate()
    session = Session(run, "dpo", cfg)
    cfg, checkpoint, start = session.resume(cfg)
    device = resolve_device(cfg.device)
    used = precision.setup(cfg, device, run)  # fp32 | bf16: the policy/reference forwards' matmuls
    seed_everything(cfg.seed)
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    rows, pref_info = load_preferences(cfg.preferences)
    profile = cfg.profile or pref_info.get("profile") or "positive"
    models = load_dpo_models(cfg, device, resume_from=checkpoint)
    tok, pad = models.tokenizer, models.tokenizer.pad_token_id
    n_ctx = models.policy.config.n_positions
    if cfg.val_fraction > 0:
        train_rows, val_rows = split_by_prompt(rows, cfg.val_fraction, cfg.seed)
    else:
        train_rows, val_rows = rows, []
    train = tokenize_pairs(tok, train_rows, n_ctx)
    val = tokenize_pairs(tok, val_rows, n_ctx)
    eval_texts, eval_ids, eval_mask = evaluation_prompts(tok, cfg.eval_prompts, device, "DPOConfig.eval_prompts")
    if PROMPT_LENGTH + cfg.response_length > n_ctx:
        raise ConfigError(f"DPOConfig.response_length: {PROMPT_LENGTH} prompt + {cfg.response_length} response "
                          f"tokens exceed the policy's {n_ctx}-token context")

    # The reference is frozen and the pairs are fixed: its log-probs are computed once (TRL's precompute option).
    with precision.autocast(device, used):  # log-probs come out fp32 (token_logprobs casts the logits)
        ref_c, ref_r = reference_logps(models.ref, train, pad, device)              # (N,), (N,)
        val_ref_c, val_ref_r = reference_logps(models.ref, val, pad, device)
    optimizer = make_optimizer(models.policy.parameters(), cfg.lr, cfg.weight_decay)
    if checkpoint is not None:
        load_optimizer_state(optimizer, checkpoint, start)
    rng = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    batches = []
    for _ in range(cfg.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        batches += [order[s: s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]

    # the one evaluation of core/evaluate.py (`rlhf-lab eval`, the frontier): the same prompts, samples and KL
    judges = Judges(models.ref, models.reward, tok, eval_texts, eval_ids, eval_mask, profile, cfg.response_length,
                    1.0, cfg.seed)

    def evaluate(step: int, kind: str) -> dict:
        models.policy.eval()
        result = evaluate_policy(models.policy, judges, n_samples=SAMPLES_LOGGED)
        if run is not None:
            for row in result["samples"]:
                run.log_sample({"iteration": step, "kind": kind, "prompt": row["prompt"], "response": row["response"],
                                "score": row["proxy"], "gold": row["gold"], "kl": row["kl"]})
        ev = {"objective/gold": result["gold"], "objective/scores": result["proxy"], "objective/kl": result["kl"],
              "objective/response_length": result["length"]}
        val_stats = validation_stats(models.policy, val, val_ref_c, val_ref_r, cfg.beta, cfg.loss_type, pad, device)
        if step == 0:  # the policy is the reference: every held-out pair is a tie; only the log-probs say something
            val_stats = {k: v for k, v in val_stats.items() if k.startswith("eval/logps/")}
        ev.update(val_stats)
        return ev

    yield from session.begin()
    if checkpoint is None:
        base = evaluate(0, "base")
        yield {"step": 0, **base, "params/beta": cfg.beta, "params/lr": cfg.lr, "data/train_pairs": len(train),
               "data/val_pairs": len(val), "data/truncated": train.truncated + val.truncated}

    session.save = lambda position: save_dpo_checkpoint(run, models, optimizer, cfg, position, session.last)
    step = start
    while step < total:
        cfg, action = yield from session.gate(cfg, step, optimizer)  # a stop saves the checkpoint
        if action == "stop":
            return

        idx = batches[step]
        step += 1
        t0 = time.perf_counter()
        batch = pair_batch(train, idx, pad, device)                                  # 3 x (2b, T)
        loss, stats, grad_norm = dpo_step(models.policy, optimizer, batch, ref_c[idx], ref_r[idx], cfg.beta,
                                          cfg.loss_type, cfg.grad_clip, precision=used)
        if not math.isfinite(loss):
            raise session.non_finite(f"the DPO loss became {loss}", step, cfg,
                                     f"lower the learning rate (lr={cfg.lr:g}) or beta (={cfg.beta:g}); resume with "
                                     "e.g. --lr")
        metrics = {"step": step, "epoch": (step - 1) // steps_per_epoch + 1, "loss/dpo": loss, **stats,
                   "params/beta": cfg.beta, "params/lr": cfg.lr, "time/step_s": time.perf_counter() - t0}
        if grad_norm is not None:
            metrics["policy/grad_norm"] = grad_norm
        last = step == total
        if step % cfg.eval_every == 0 or last:
            metrics.update(evaluate(step, "policy"))
        yield from session.row(metrics, cfg, due=step % cfg.checkpoint_every == 0, final=last)  # row, then checkpoint
    train_dpo.last_models = models  # notebooks: the trained policy without reloading
