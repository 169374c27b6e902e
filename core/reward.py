"""Stage 2b: the reward model, learned from pairwise comparisons alone.

The RM is `GPT2ForSequenceClassification(num_labels=1)` started from the base model's backbone
with a fresh linear head (as in Ziegler et al. 2019 and InstructGPT). It reads <bos> prompt
response <eos> and its score is the head's output at the last real token (<eos>).

Loss (Bradley-Terry, the same model the simulated annotator labels with):

    loss = mean( -log sigmoid(r(chosen) - r(rejected) - margin) )

A Bradley-Terry model only fixes score *differences*, so after training the RM is normalised to
mean 0, std 1 on responses sampled from the base model (Ziegler et al. 2019, section 2.2):

    r_normalised = gain * r_raw + bias,   gain = 1 / std,   bias = -mean / std

The gain and bias are baked into the checkpoint's weights, so a plain
`AutoModelForSequenceClassification.from_pretrained(path)` gives normalised scores, and they are
recorded in lab.json. GPT-2's score head has no bias, so the bias goes into the final layer norm's
shift (ln_f.bias), which in a sequence classifier feeds nothing but the score head.
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from core import distributed, precision
from core.annotators import gold_utility
from core.config import RewardConfig, from_preset
from core.model import (CheckpointError, encode, join_text, load_lm, load_scorer, no_dropout, read_lab_json,
                        resolve_checkpoint, save_checkpoint, scorer_from_lm, sequence_scores)
from core.preferences import PreferenceError, held_out_prompts, load_preferences, sample_responses
from core.runs import Run
from core.session import Session
from core.tokenizer import load_tokenizer, same_tokenizer

PRESET_REWARD = {
    "tiny": dict(epochs=2, batch_size=16, lr=1e-3, eval_every=5, gold_pairs=40, norm_samples=32,
                 max_new_tokens=24),
    "weak": dict(),
    "small": dict(),
    "gpu": dict(batch_size=64, lr=3e-5, gold_pairs=500, norm_samples=1024),
}


class RewardError(ValueError):
    """A reward model that cannot be trained or used as asked (the message says why)."""


def reward_preset(preset: str = "small", **overrides) -> RewardConfig:
    """A RewardConfig for a size preset with optional overrides (None values are ignored)."""
    return from_preset(RewardConfig, PRESET_REWARD, preset, overrides)


# ----------------------------------------------------------------------------- the math

def pairwise_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                  margin: torch.Tensor | float | None = None) -> torch.Tensor:
    """mean(-log sigmoid(r_chosen - r_rejected - margin)); rewards (B,), margin scalar or (B,)."""
    diff = chosen_rewards - rejected_rewards                                   # (B,)
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()  # logsigmoid is stable where log(sigmoid(x)) underflows


def score_texts(model, tokenizer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N,) scores of full texts, <bos> text <eos>, right-padded in batches. Gradients flow when
    called with grad enabled (training); wrap in torch.no_grad() to just score."""
    device = next(model.parameters()).device
    n_ctx = model.config.n_positions
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = encode(tokenizer, texts[i: i + batch_size], device, add_eos=True, max_length=n_ctx)
        out.append(sequence_scores(model, ids, mask))                        # (b,)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def bake_normalisation(model, gain: float, bias: float) -> None:
    """Make the model output gain * r + bias exactly, in its own weights.

    r = w . h with h = ln_f(x) = gamma * x_hat + beta. New head w' = gain * w; shifting beta by
    d = bias * w' / |w'|^2 adds w' . d = bias to every score and changes nothing else (ln_f feeds
    only the score head in a sequence classifier).
    """
    with torch.no_grad():
        w = model.score.weight                                                # (1, D)
        w.mul_(gain)
        w_vec = w[0]
        model.transformer.ln_f.bias.add_(bias * w_vec / w_vec.dot(w_vec))


# ----------------------------------------------------------------------------- scoring API

class RewardScorer:
    """A trained reward model, ready to score texts (prompt + response), for the app and PPO.

    >>> rm = RewardScorer("reward")            # the shipped RM; or a reward run / checkpoint folder
    >>> rm.score(["the acting was great.", "the plot was dull."])
    """

    def __init__(self, spec="reward", device="cpu", batch_size: int = 64):
        self.path = resolve_checkpoint(spec)
        self.model, self.tokenizer = load_scorer(self.path, device)
        no_dropout(self.model)
        self.info = read_lab_json(self.path)
        self.batch_size = batch_size
        self.device = torch.device(device)

    @torch.no_grad()
    def score_tensor(self, texts: list[str]) -> torch.Tensor:
        """(N,) normalised scores on the RM's device."""
        if isinstance(texts, str):
            raise RewardError("score() takes a list of texts, got a single string")
        return score_texts(self.model, self.tokenizer, list(texts), self.batch_size)

    def score(self, texts: list[str]) -> list[float]:
        return self.score_tensor(texts).float().cpu().tolist()

    def score_pairs(self, prompts: list[str], responses: list[str]) -> list[float]:
        return self.score([join_text(p, r) for p, r in zip(prompts, responses)])

    def check_tokenizer(self, tokenizer, what: str = "the policy") -> None:
        """PPO scores the policy's token ids: refuse a policy whose tokenizer differs from the RM's."""
        check_same_tokenizer(self.tokenizer, tokenizer, f"the reward model ({self.path})", what)


def score(texts: list[str], spec="reward", device="cpu") -> list[float]:
    """Score texts with a reward model (loads it each call; keep a RewardScorer for repeated use)."""
    return RewardScorer(spec, device).score(texts)


def check_same_tokenizer(tok_a, tok_b, name_a: str, name_b: str) -> None:
    if not same_tokenizer(tok_a, tok_b):
        raise RewardError(f"{name_a} and {name_b} use different tokenizers (vocab {len(tok_a)} vs {len(tok_b)}); "
                          "they must come from the same pretraining run. Train the reward model from the "
                          "same base model that wrote the responses")


# ----------------------------------------------------------------------------- evaluation helpers

def fresh_gold_pairs(lm, tokenizer, n: int, profile: str = "positive", gap: float = 0.05, seed: int = 0,
                     max_new_tokens: int = 48, batch_size: int = 64) -> list[dict]:
    """Up to `n` pairs of base-model responses on prompts no preference run uses, whose gold
    utilities differ by more than `gap` ("distinct"), with their noise-free gold utilities."""
    generator = torch.Generator(device=next(lm.parameters()).device)
    generator.manual_seed(seed)
    prompts = held_out_prompts(2 * n, "gold", seed)  # about a fifth of pairs tie in gold: draw extra
    a = sample_responses(lm, tokenizer, prompts, max_new_tokens, batch_size=batch_size, generator=generator)
    b = sample_responses(lm, tokenizer, prompts, max_new_tokens, batch_size=batch_size, generator=generator)
    texts_a = [join_text(p, r) for p, r in zip(prompts, a)]
    texts_b = [join_text(p, r) for p, r in zip(prompts, b)]
    u_a, u_b = gold_utility(texts_a, profile), gold_utility(texts_b, profile)
    pairs = [{"a": ta, "b": tb, "gold_a": ua, "gold_b": ub}
             for ta, tb, ua, ub in zip(texts_a, texts_b, u_a, u_b) if abs(ua - ub) > gap and ta != tb]
    return pairs[:n]


@torch.no_grad()
def gold_agreement(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs where the RM orders the texts as the gold utility does."""
    if not pairs:
        return float("nan")
    s_a = score_texts(model, tokenizer, [p["a"] for p in pairs])
    s_b = score_texts(model, tokenizer, [p["b"] for p in pairs])
    gold_a_better = torch.tensor([p["gold_a"] > p["gold_b"] for p in pairs], device=s_a.device)
    return ((s_a > s_b) == gold_a_better).float().mean().item()


@torch.no_grad()
def evaluate_pairs(model, tokenizer, chosen: list[str], rejected: list[str], margin: float | None):
    """(loss, accuracy, chosen scores, rejected scores) on held-out pairs."""
    r_c = score_texts(model, tokenizer, chosen)
    r_r = score_texts(model, tokenizer, rejected)
    return pairwise_loss(r_c, r_r, margin).item(), (r_c > r_r).float().mean().item(), r_c, r_r


def split_by_prompt(rows: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole prompts, so validation asks about prompts the RM never trained on.
    Falls back to splitting pairs when there are too few distinct prompts."""
    if len(rows) < 2:
        raise PreferenceError(f"need at least 2 preference pairs (one to train on, one to validate), got {len(rows)}")
    rng = random.Random(seed)
    prompts = sorted({r["prompt"] for r in rows})
    if len(prompts) >= 4:
        rng.shuffle(prompts)
        n_val = max(1, round(len(prompts) * val_fraction))
        val_prompts = set(prompts[:n_val])
        train = [r for r in rows if r["prompt"] not in val_prompts]
        val = [r for r in rows if r["prompt"] in val_prompts]
        if train and val:
            return train, val
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
    return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]


def rank_share(n: int, d: distributed.Dist) -> slice:
    """This rank's contiguous rows of a global batch of n. Full batches split evenly (the world size divides
    cfg.batch_size); an epoch's last, shorter batch may not, so ranks may differ by one row (or hold none)."""
    return slice(d.rank * n // d.world_size, (d.rank + 1) * n // d.world_size)


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 10% of the steps, then linear decay to 0."""
    warmup = max(1, total // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


# ----------------------------------------------------------------------------- the stage

def usable_pairs(rows: list[dict], tokenizer, n_ctx: int) -> tuple[list[dict], str]:
    """(the pairs an RM can learn from, a note for the status). A pair whose chosen and rejected texts are the
    same once cut to the model's context (they differ only after it) teaches nothing: its loss is log 2 whatever
    the model does. Such pairs are dropped and counted; if none is left, PreferenceError. Exact duplicates are
    reported (kept: they weigh double)."""
    def cut(r, key):
        return tuple((tokenizer(join_text(r["prompt"], r[key]))["input_ids"] + [tokenizer.eos_token_id])[:n_ctx])

    keep = [r for r in rows if cut(r, "chosen") != cut(r, "rejected")]
    same = len(rows) - len(keep)
    if not keep:
        raise PreferenceError(f"all {len(rows)} pairs are identical once cut to the model's context of {n_ctx} "
                              "tokens (chosen and rejected differ only after it); shorten the prompts and responses")
    notes = []
    if same:
        notes.append(f"dropped {same} of {len(rows)} pairs whose chosen and rejected are identical within the "
                     f"model's context of {n_ctx} tokens")
    dup = len(rows) - len({(r["prompt"], r["chosen"], r["rejected"]) for r in rows})
    if dup:
        notes.append(f"{dup} pairs repeat another pair exactly (kept: they count twice)")
    return keep, "; ".join(notes)


def train_reward(cfg: RewardConfig, run: Run | None = None):
    """Train a reward model; yield {"step", "epoch", "rm/loss", "rm/accuracy", "rm/margin", "rm/lr"}
    per step, plus "rm/val_loss", "rm/val_accuracy", "rm/gold_agreement" every `eval_every` steps.

    After the last step the RM is normalised on base samples and saved (run/checkpoint, lab.json
    with gain and bias); scores.json holds validation scores and base-sample scores vs gold. The
    last dict has "final": True and the normalisation figures.

    Under torchrun every rank trains on its share of each global batch of `batch_size` pairs and the
    gradients are averaged so that every rank takes the single process's step (see the loop); rank 0 alone
    evaluates, normalises and saves (pass `run` on rank 0 only). The others yield the training rows only.
    """
    device, dd, _ = distributed.setup(cfg, "RewardConfig.batch_size")  # validate, seed, threads, world size
    used = distributed.broadcast_object(precision.setup(cfg, device, run), dd)  # fp32 | bf16 (rank 0's verdict)
    rows, pref_info = load_preferences(cfg.preferences)
    profile = cfg.profile or pref_info.get("profile") or "positive"

    lm, tokenizer = load_lm(cfg.base, device)
    no_dropout(lm)
    _check_preference_base(pref_info, tokenizer, cfg.base)
    rows, note = usable_pairs(rows, tokenizer, lm.config.n_positions)
    if note and run is not None:
        yield {"_status": "running", "step": 0, "message": note}
    model = scorer_from_lm(lm)
    no_dropout(model)  # deterministic scores: a padded batch scores exactly like one text at a time
    model.train()

    train_rows, val_rows = split_by_prompt(rows, cfg.val_fraction, cfg.seed)
    val_chosen = [join_text(r["prompt"], r["chosen"]) for r in val_rows]
    val_rejected = [join_text(r["prompt"], r["rejected"]) for r in val_rows]
    # Only rank 0 evaluates: the other ranks would repeat the same sampling and scoring on the same cores.
    gold_pairs = fresh_gold_pairs(lm, tokenizer, cfg.gold_pairs, profile, cfg.gold_gap, cfg.seed,
                                  cfg.max_new_tokens) if dd.is_main else []
    margin = cfg.margin or None

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_rows) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    rng = random.Random(cfg.seed)
    step = 0
    last_eval = {}
    session = Session(run, "reward", cfg, dd=dd)  # pause/step/stop; rank 0 decides
    for epoch in range(cfg.epochs):
        order = list(range(len(train_rows)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_size):
            # a stop ends the run without a checkpoint: a reward model is saved only normalised, at the end
            _, action = yield from session.gate(cfg, step)
            if action == "stop":
                return
            t0 = time.perf_counter()
            global_batch = order[start: start + cfg.batch_size]   # every rank draws the same order
            batch = [train_rows[i] for i in global_batch[rank_share(len(global_batch), dd)]]
            chosen = [join_text(r["prompt"], r["chosen"]) for r in batch]
            rejected = [join_text(r["prompt"], r["rejected"]) for r in batch]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, cfg.lr)
            # Data parallel: this rank's mean loss over its n pairs, scaled by W * n / N (N = the global batch),
            # and the rank-averaged gradient is the gradient of the mean over all N pairs: the single
            # process's step, even when the last batch of an epoch splits unevenly. Dropout is off, so a pair
            # scores the same whichever rank and batch it is in.
            share = dd.world_size * len(batch) / len(global_batch)   # 1.0 in one process
            optimizer.zero_grad(set_to_none=True)
            if batch:
                # one forward for both halves: (2B,) scores, chosen first
                with precision.autocast(device, used):  # the forward's matmuls; scores and loss in fp32
                    scores = score_texts(model, tokenizer, chosen + rejected, batch_size=2 * len(batch)).float()
                r_c, r_r = scores[: len(batch)], scores[len(batch):]
                loss = pairwise_loss(r_c, r_r, margin)
                (loss * share if dd.enabled else loss).backward()
                local = {"rm/loss": loss.item(), "rm/accuracy": (r_c > r_r).float().mean().item(),
                         "rm/margin": (r_c - r_r).mean().item()}
            else:  # fewer pairs than ranks in this batch: this rank contributes a zero gradient
                local = {"rm/loss": 0.0, "rm/accuracy": 0.0, "rm/margin": 0.0}
            distributed.all_reduce_grads(model.parameters(), dd)   # no-op in one process
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            if dd.enabled:  # the rank mean of (local mean * share) is the mean over the global batch
                local = distributed.all_reduce_means({k: v * share for k, v in local.items()}, dd)
            if not math.isfinite(local["rm/loss"]):  # all-reduced: every rank stops at the same step
                raise FloatingPointError(f"step {step}: the reward-model loss became NaN or inf (lr={cfg.lr:g}, "
                                         f"margin={cfg.margin:g}); lower --lr or --margin")
            metrics = {"step": step, "epoch": epoch + 1, **local, "rm/lr": optimizer.param_groups[0]["lr"],
                       "time/pairs_per_s": len(global_batch) / (time.perf_counter() - t0)}
            if dd.is_main and (step % cfg.eval_every == 0 or step == total):
                model.eval()
                val_loss, val_acc, _, _ = evaluate_pairs(model, tokenizer, val_chosen, val_rejected, margin)
                last_eval = {"rm/val_loss": val_loss, "rm/val_accuracy": val_acc,
                             "rm/gold_agreement": gold_agreement(model, tokenizer, gold_pairs)}
                metrics.update(last_eval)
                model.train()
            if step == total:
                break  # the final row is yielded after normalising and saving, below
            yield metrics

    model.eval()
    if not dd.is_main:  # rank 0 normalises, saves and yields the final figures
        metrics["final"] = True
        yield metrics
        return
    norm, norm_texts, norm_scores = normalise(model, lm, tokenizer, cfg)
    _, _, val_c, val_r = evaluate_pairs(model, tokenizer, val_chosen, val_rejected, margin)
    metrics.update({"rm/norm_gain": norm["gain"], "rm/norm_bias": norm["bias"],
                    "rm/norm_mean_after": norm["mean_after"], "rm/norm_std_after": norm["std_after"],
                    "final": True})
    if run is not None:
        extra = {"stage": "reward", "preset": cfg.preset, "base": cfg.base, "preferences": str(cfg.preferences),
                 "profile": profile, "pairs": len(rows), "train_pairs": len(train_rows), "val_pairs": len(val_rows),
                 "val_accuracy": last_eval.get("rm/val_accuracy"), "gold_agreement": last_eval.get("rm/gold_agreement"),
                 "gold_pairs": len(gold_pairs), "normalisation": norm, "input": "<bos> prompt response <eos>",
                 "seed": cfg.seed}
        run.save_checkpoint(lambda d: save_checkpoint(model, tokenizer, d, extra=extra))
        _write_scores(run, model, tokenizer, profile, val_rows, val_c, val_r, norm, norm_texts, norm_scores,
                      gold_pairs)
    train_reward.last_model = (model, tokenizer)  # notebooks: the trained RM without reloading
    yield metrics


@torch.no_grad()
def normalise(model, lm, tokenizer, cfg: RewardConfig) -> tuple[dict, list[str], list[float]]:
    """Sample responses from the base model on fresh prompts, set the RM's scores on them to
    mean 0 / std 1 (baked into the weights). Returns (figures, sample texts, their new scores)."""
    generator = torch.Generator(device=next(lm.parameters()).device)
    generator.manual_seed(cfg.seed)
    prompts = held_out_prompts(cfg.norm_samples, "norm", cfg.seed)
    responses = sample_responses(lm, tokenizer, prompts, cfg.max_new_tokens, generator=generator)
    texts = [join_text(p, r) for p, r in zip(prompts, responses)]
    raw = score_texts(model, tokenizer, texts)
    mean, std = raw.mean().item(), raw.std().item()
    if not std > 1e-8:
        raise RewardError("the reward model gives every base sample the same score (std 0); it has not learned "
                          "anything to normalise. Train longer or on more pairs")
    gain, bias = 1.0 / std, -mean / std
    bake_normalisation(model, gain, bias)
    after = score_texts(model, tokenizer, texts)
    figures = {"gain": gain, "bias": bias, "raw_mean": mean, "raw_std": std, "samples": len(texts),
               "mean_after": after.mean().item(), "std_after": after.std().item()}
    return figures, texts, after.tolist()


def _write_scores(run: Run, model, tokenizer, profile, val_rows, val_c, val_r, norm, texts, scores,
                  gold_pairs) -> None:
    """scores.json for the app: the validation histogram, proxy vs gold on base samples, and the
    fresh gold pairs the RM orders wrongly ("where it gets the preference wrong")."""
    gold = gold_utility(texts, profile)
    wrong = []
    if gold_pairs:
        with torch.no_grad():
            s_a = score_texts(model, tokenizer, [p["a"] for p in gold_pairs]).tolist()
            s_b = score_texts(model, tokenizer, [p["b"] for p in gold_pairs]).tolist()
        for p, sa, sb in zip(gold_pairs, s_a, s_b):
            if (sa > sb) != (p["gold_a"] > p["gold_b"]):
                wrong.append({**p, "score_a": sa, "score_b": sb})
    run.write_json("scores.json", {
        "val": {"chosen": val_c.tolist(), "rejected": val_r.tolist(),
                "prompt": [r["prompt"] for r in val_rows]},
        "base_samples": {"text": texts, "score": scores, "gold": gold,
                         "correlation": float(np.corrcoef(scores, gold)[0, 1]) if len(texts) > 1 else None},
        "gold_disagreements": wrong[:50],
        "normalisation": norm,
    })


def _check_preference_base(pref_info: dict, tokenizer, base_spec: str) -> None:
    """The RM is normalised on the base model's samples and PPO later feeds it that model's tokens:
    refuse a base whose tokenizer differs from the one that wrote the preference pairs."""
    pref_base = pref_info.get("base")
    if not pref_base or pref_info.get("import_file"):
        return
    try:
        pref_tok = load_tokenizer(resolve_checkpoint(pref_base))
    except (CheckpointError, ValueError):
        return  # the preference run's base is gone; the pairs are plain text and still usable
    check_same_tokenizer(tokenizer, pref_tok, f"the base model {base_spec!r}",
                         f"the model that wrote the preference pairs ({pref_base!r})")
