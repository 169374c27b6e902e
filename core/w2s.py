"""Weak-to-strong generalisation: a small model supervises a bigger one (Burns et al. 2023,
"Weak-to-strong generalization", https://arxiv.org/abs/2312.09390), rebuilt on our models.

The protocol, per seed:
  data      labelled pool -> half 1 | half 2 | test  (disjoint; the test set is the same for every seed)
  weak      the `weak` base + a score head, fine-tuned on half 1 with the gold labels (the supervisor)
  labels    the supervisor's soft predictions P(y=1) on half 2 (the weak labels)
  ceiling   the `small` base + a score head, fine-tuned on half 2 with the gold labels
  xent      the `small` base fine-tuned on half 2 with cross-entropy to the weak labels
  confidence the same with the auxiliary confidence loss (the student may disagree with confidence)

  PGR = (student - weak) / (ceiling - weak)   "performance gap recovered" (test accuracy)

Both tasks are binary and every classifier has ONE output logit z (p = sigmoid(z)), read at the last
real token like our reward model (GPT2ForSequenceClassification(num_labels=1)). For the preference
task the logit of a pair is the Bradley-Terry difference z = s(A) - s(B), which is exactly how the
reward model reads a comparison. One logit is the same as two logits [0, z] with a softmax, so the
paper's two-class loss carries over unchanged.

Where we deviate from the paper (and why):
  - The confidence loss hardens the student's predictions by *ranking*: the k = round(B * mean weak
    P(y=1)) most positive rows of the batch become 1. The paper thresholds at `torch.quantile`, which
    gives the same split up to one row of interpolation; ranking makes the positive share exact.
  - alpha warms up linearly over `warmup_frac` of training to `alpha_max` (the issue's definition;
    the paper's code ramps with the raw training fraction).
  - Models are tiny and trained on CPU: 1,600 labelled pairs (800 per half), 600 test pairs.
  - The default task is the preference task on *minimal pairs*: a held-out review and a copy with
    a run of its words scrambled, labelled by the gold annotator (which prefers fluent text; see
    core.annotators). Why this task, measured on 3 seeds with the shipped models:
      classify ("is this review positive"): the label is the sign of VADER, a bag-of-words quantity
        that the weak model reads as well as the 4-layer one or better (seed 0: weak 66.3%,
        ceiling 59.7%), so there is no gap to recover.
      flip (one sentiment word swapped) and repeat (a sentence said twice, which also moves VADER):
        the 4-layer model fine-tuned on 800 pairs is *no better* than the weak one (flip: ceiling
        57-75% vs weak 75-84% over our runs; repeat: 80% vs 79%), so these edits add no gap and, worse,
        a strong student that trusts itself gets them wrong (`--edits scramble,repeat,flip`, seed 0:
        weak 70.8%, ceiling 77.8%, confidence student 65.3%). They stay available to show exactly that.
      scramble: what pretraining taught the strong model (which word orders are English) is the
        latent knowledge, as pretrained knowledge is in the paper. Ceiling ~92%, weak ~74%.
    The weak model has 2 layers, not 1: a 1-layer model cannot see word order (its attention reads
    token + position embeddings only), so on scrambled pairs its labels were coin flips (53%) and
    carried no signal at all - the students copied the noise (PGR ~0.07). Weak-to-strong needs a
    supervisor whose labels are *noisy*, not blind.
"""

from __future__ import annotations

import math
import random
import statistics
import time

import torch
import torch.nn.functional as F

from core import cpu
from core.config import W2S_EDITS as EDITS, ConfigError, W2SConfig, resolve_device, seed_everything
from core.corpus import NEGATIVE, POSITIVE, default_corpus, synthetic_reviews
from core.model import encode, load_lm, scorer_from_lm, sequence_scores
from core.precision import autocast, setup as resolve_and_record
from core.runs import Run
from core.session import Session

STUDENTS = ("xent", "confidence")
_SIGN = {**{w: 1 for w in POSITIVE if " " not in w}, **{w: -1 for w in NEGATIVE if " " not in w}}


# ----------------------------------------------------------------------------- the two formulas

def pgr(weak_acc: float, student_acc: float, ceiling_acc: float) -> float:
    """Performance gap recovered: 0 = the student is only as good as its supervisor, 1 = as good as
    the strong model trained on ground truth. Undefined (nan) when there is no gap to recover: when
    the ceiling does not beat the supervisor, the ratio's sign flips its meaning (a student *worse*
    than its supervisor would get a positive PGR)."""
    gap = ceiling_acc - weak_acc
    if gap <= 0:
        return float("nan")
    return (student_acc - weak_acc) / gap


def alpha_at(progress: float, alpha_max: float, warmup_frac: float) -> float:
    """Weight of the confidence term after `progress` (0..1) of training: a linear ramp from 0 that
    reaches `alpha_max` at `warmup_frac` and stays there. Early on the student's own predictions are
    noise, so it first learns from the weak labels alone."""
    if warmup_frac <= 0:
        return alpha_max
    return alpha_max * min(1.0, progress / warmup_frac)


def soft_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of one-logit predictions to soft targets in [0, 1], batch mean.

    logits (B,), targets (B,) = P(y=1).  -[t log sigmoid(z) + (1-t) log(1 - sigmoid(z))]
    """
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def harden(logits: torch.Tensor, weak_probs: torch.Tensor) -> torch.Tensor:
    """The student's own predictions made hard with the class-balance threshold.

    logits (B,), weak_probs (B,) -> (B,) of 0./1. The threshold is chosen so that the share of
    positives in the batch equals the batch mean of the weak labels' P(y=1): the k most positive
    rows are 1, k = round(B * mean(weak_probs)). Without this the student could become confident in
    a single class (the paper's "balancing"). No gradient flows through the hard labels.
    """
    B = logits.shape[0]
    k = int(math.floor(B * float(weak_probs.float().mean()) + 0.5))
    order = torch.argsort(logits.detach(), descending=True, stable=True)           # (B,)
    hard = torch.zeros(B, dtype=logits.dtype, device=logits.device)
    hard[order[:k]] = 1.0
    return hard


def confidence_loss(logits: torch.Tensor, weak_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Burns et al.'s auxiliary confidence loss for two classes (one logit per row).

    L = (1 - alpha) * CE(z, weak_probs) + alpha * CE(z, harden(z))

    The second term rewards the student for being confident in its *own* (balanced) predictions,
    so it can overrule weak labels it disagrees with instead of imitating the supervisor's errors.
    alpha = 0 is plain cross-entropy to the weak labels.
    """
    loss = soft_xent(logits, weak_probs)
    if alpha == 0:
        return loss
    return (1.0 - alpha) * loss + alpha * soft_xent(logits, harden(logits, weak_probs))


# ----------------------------------------------------------------------------- data

def gold_scores(texts: list[str], profile: str = "positive") -> list[float]:
    """The hidden gold annotator's utility of each text (core.annotators)."""
    from core.annotators import gold_utility

    return [float(u) for u in gold_utility(texts, profile)]


def held_out_texts(n: int, text_seed: int) -> list[str]:
    """Up to n distinct synthetic reviews that do not occur in the shipped models' pretraining corpus
    (so a classifier cannot lean on memorised text)."""
    seen = set(default_corpus(20000, 0))
    texts, kept = synthetic_reviews(3 * n + 100, seed=text_seed), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            kept.append(t)
            if len(kept) == n:
                break
    return kept


def label_classify(texts: list[str], utilities: list[float], n: int, seed: int):
    """(inputs, labels, utilities, threshold) for "is this text positive?".

    Positive = gold utility above the threshold, negative = below (texts exactly at it are dropped:
    their label would be arbitrary). The threshold is 0, the sign of the annotator's verdict; for a
    profile whose utilities are mostly on one side of 0 (e.g. `concise`) it falls back to the pool's
    median. Classes are balanced by taking n/2 of each (the paper balances its datasets too)."""
    half = n // 2
    median = statistics.median(utilities)
    for threshold in (0.0, median):
        pos = [(t, u) for t, u in zip(texts, utilities) if u > threshold]
        neg = [(t, u) for t, u in zip(texts, utilities) if u < threshold]
        if len(pos) >= n - half and len(neg) >= half:
            break
    if not pos or not neg:
        raise ConfigError("the w2s task has one class only: every text got the same gold utility "
                          f"({median:.3g}); use texts the annotator can tell apart")
    if len(pos) < n - half or len(neg) < half:
        raise ConfigError(f"not enough labelled texts for {n} balanced examples "
                          f"({len(pos)} positive, {len(neg)} negative); lower n_train/n_test")
    rows = [(t, 1, u) for t, u in pos[:n - half]] + [(t, 0, u) for t, u in neg[:half]]
    random.Random(seed).shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], threshold


def edit_text(text: str, kind: str, rng: random.Random) -> str:
    """A close variant of `text` that the gold annotator should judge differently:
      scramble  the order of a run of words shuffled (word salad: unseen word pairs)
      repeat    one sentence said twice (repetition; falls back to scramble for one sentence)
    The two texts share all their words, so a bag-of-words reader cannot tell them apart: knowing
    what fluent text looks like is what pretraining teaches. (flip pairs: `flip_pair`.)"""
    words = text.split()
    if kind == "repeat":
        sentences = [x for x in text.split(". ") if x]
        if len(sentences) > 1:
            i = rng.randrange(len(sentences))
            sentences.insert(i, sentences[i].rstrip("."))
            return ". ".join(sentences)
        kind = "scramble"
    k = min(len(words), max(3, int(len(words) * rng.uniform(0.3, 0.7))))
    start = rng.randrange(0, len(words) - k + 1)
    window = words[start: start + k]
    for _ in range(10):  # a shuffle that leaves the order as it was is no edit
        rng.shuffle(window)
        if window != words[start: start + k]:
            break
    words[start: start + k] = window
    return " ".join(words)


def flip_pair(text: str, rng: random.Random) -> tuple[str, str] | None:
    """Two copies of `text` that differ in one sentiment word: one spot gets a positive word in the
    first copy and a negative word in the second ("the acting was [superb | dull]"), or None when the
    text has no sentiment word. Neither copy is the original, so "which text is the unedited one" -
    a shortcut a fluency-aware model learns from the other edits - says nothing about these pairs:
    only the words' polarity does."""
    words = text.split()
    spots = [i for i, w in enumerate(words) if w.strip(".,") in _SIGN]
    if not spots:
        return None
    i = rng.choice(spots)
    core_word = words[i].strip(".,")
    pos, neg = list(words), list(words)
    pos[i] = words[i].replace(core_word, rng.choice(POSITIVE))
    neg[i] = words[i].replace(core_word, rng.choice(NEGATIVE))
    return " ".join(pos), " ".join(neg)


def make_pairs(texts: list[str], seed: int, edits: tuple[str, ...] = EDITS) -> list[tuple[str, str]]:
    """One pair per text, the edit kinds in turn: flip -> two copies with opposite sentiment words
    at one spot (flip_pair); scramble, repeat -> (original, edited copy)."""
    rng = random.Random(seed)
    pairs = []
    for i, t in enumerate(texts):
        kind = edits[i % len(edits)]
        if kind == "flip":  # a text with no sentiment word to flip gets scrambled instead
            pairs.append(flip_pair(t, rng) or (t, edit_text(t, "scramble", rng)))
        else:
            pairs.append((t, edit_text(t, kind, rng)))
    return pairs


def edit_kind(pair) -> str | None:
    """Which edit made a preference pair (None for a classify text). Read off the texts, exactly:
    repeat makes the second text longer, scramble keeps the same words in another order, flip swaps
    one word for another at the same spot."""
    if isinstance(pair, str):
        return None
    a, b = pair[0].split(), pair[1].split()
    if len(a) != len(b):
        return "repeat"
    return "scramble" if sorted(a) == sorted(b) else "flip"


def label_preference(pairs: list[tuple[str, str]], utilities: list[tuple[float, float]], n: int, seed: int):
    """(inputs, labels, margins) for "does the annotator prefer A over B?". Ties are dropped; the
    preferred text comes first in exactly half of the pairs (balanced classes, and the position of a
    text says nothing). margins = u(A) - u(B)."""
    kept = [(a, b, ua, ub) for (a, b), (ua, ub) in zip(pairs, utilities) if ua != ub]
    if not kept:
        raise ConfigError("the w2s preference task has one class only: every pair is a tie for the gold "
                          "annotator; use texts the annotator can tell apart")
    if len(kept) < n:
        raise ConfigError(f"not enough distinct pairs for {n} examples ({len(kept)}); lower n_train/n_test")
    rows = []
    for i, (a, b, ua, ub) in enumerate(kept[:n]):
        if ua < ub:  # put the preferred one first, then flip every other pair
            a, b, ua, ub = b, a, ub, ua
        if i % 2:
            rows.append(((b, a), 0, ub - ua))
        else:
            rows.append(((a, b), 1, ua - ub))
    random.Random(seed).shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def build_task(cfg: W2SConfig, texts: list[str] | None = None, scorer=None):
    """The labelled pool of n_train + n_test examples for cfg.task:
    (inputs, labels (N,) float, utilities, classify threshold or None).

    `texts` replaces the held-out reviews, `scorer(texts) -> utilities` the gold annotator (tests)."""
    n = cfg.n_train + cfg.n_test
    if texts is None:
        texts = held_out_texts(2 * n + 200 if cfg.task == "classify" else n + n // 4 + 50, cfg.text_seed)
    score = scorer if scorer is not None else (lambda ts: gold_scores(ts, cfg.profile))
    if cfg.task == "classify":
        inputs, labels, utils, threshold = label_classify(list(texts), score(list(texts)), n, cfg.text_seed)
    else:
        pairs = make_pairs(list(texts), cfg.text_seed, cfg.edit_kinds())
        ua, ub = score([a for a, _ in pairs]), score([b for _, b in pairs])
        inputs, labels, utils = label_preference(pairs, list(zip(ua, ub)), n, cfg.text_seed)
        threshold = None
    return inputs, torch.tensor(labels, dtype=torch.float32), utils, threshold


def split_data(n: int, n_test: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Indices (half1, half2, test) of a pool of n examples: the last n_test are the test set for
    every seed; the rest are shuffled by `seed` and cut into two equal, disjoint halves."""
    if n_test >= n - 1:
        raise ConfigError(f"n_test={n_test} leaves no training examples out of {n}")
    rest = list(range(n - n_test))
    random.Random(seed).shuffle(rest)
    h = len(rest) // 2
    return rest[:h], rest[h:2 * h], list(range(n - n_test, n))


# ----------------------------------------------------------------------------- models

def check_models(weak_lm, strong_lm, weak_name: str = "weak", strong_name: str = "strong") -> None:
    """The supervisor must not be larger than the student, or the experiment is upside down."""
    n_weak = sum(p.numel() for p in weak_lm.parameters())
    n_strong = sum(p.numel() for p in strong_lm.parameters())
    if n_weak > n_strong:
        raise ConfigError(f"the weak model ({weak_name}, {n_weak:,} parameters) is larger than the strong "
                          f"model ({strong_name}, {n_strong:,}); swap weak_model and strong_model")


def check_config(cfg: W2SConfig) -> W2SConfig:
    """Everything that can be refused before a run folder exists: the fields, the checkpoints, and the
    size order of the two models (the CLI and the app call this first)."""
    cfg.validate()
    weak_lm, _ = load_lm(cfg.weak_model, "cpu")
    strong_lm, _ = load_lm(cfg.strong_model, "cpu")
    check_models(weak_lm, strong_lm, cfg.weak_model, cfg.strong_model)
    return cfg


def pair_logits(model, tokenizer, inputs: list, device, max_length: int) -> torch.Tensor:
    """(B,) one logit per example. Classify: the score of the text at its last real token (the text
    ends with <eos>, as in pretraining). Preference: z = s(A) - s(B), Bradley-Terry like the RM."""
    if isinstance(inputs[0], str):
        ids, mask = encode(tokenizer, inputs, device, add_eos=True, max_length=max_length)
        return sequence_scores(model, ids, mask)                                      # (B,)
    a, b = zip(*inputs)
    ids, mask = encode(tokenizer, list(a) + list(b), device, add_eos=True, max_length=max_length)
    s = sequence_scores(model, ids, mask)                                              # (2B,)
    return s[: len(inputs)] - s[len(inputs):]                                          # (B,)


@torch.no_grad()
def predict(model, tokenizer, inputs: list, device, batch_size: int = 128) -> torch.Tensor:
    """(N,) P(y=1) for every input."""
    was_training = model.training
    model.eval()
    max_length = model.config.n_positions
    out = [torch.sigmoid(pair_logits(model, tokenizer, inputs[i: i + batch_size], device, max_length)).float().cpu()
           for i in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def steps_per_run(n: int, epochs: int, batch_size: int) -> int:
    """Optimizer steps of one training run: the last partial batch is dropped (the confidence loss
    balances per batch, so a batch of 3 would be a poor estimate) unless it is the only batch."""
    return epochs * max(1, n // batch_size)


def train_classifier(model, tokenizer, inputs: list, targets: torch.Tensor, *, epochs: int, batch_size: int,
                     lr: float, alpha_max: float, warmup_frac: float, seed: int, device, precision: str = "fp32"):
    """Fine-tune `model` (all weights) on soft targets with the confidence loss; yields per step
    {"loss", "alpha", "lr"}. alpha_max = 0 is plain cross-entropy (the ceiling, the xent student and
    the supervisor use that). precision "bf16": the forward's matmuls under bf16 autocast, loss in fp32."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n = len(inputs)
    per_epoch = max(1, n // batch_size)
    total = epochs * per_epoch
    max_length = model.config.n_positions
    rng = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=rng).tolist()
        for b in range(per_epoch):
            idx = order[b * batch_size: (b + 1) * batch_size]
            progress = step / total
            alpha = alpha_at(progress, alpha_max, warmup_frac)
            lr_now = lr * (1.0 - progress)  # linear decay to 0
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            with autocast(device, precision):
                logits = pair_logits(model, tokenizer, [inputs[i] for i in idx], device, max_length)
            loss = confidence_loss(logits.float(), targets[idx].to(device), alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            yield {"loss": loss.item(), "alpha": alpha, "lr": lr_now}


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((probs > 0.5).float() == labels).float().mean())


def imitation(weak_probs: torch.Tensor, student_probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """How a student treats its supervisor's test errors: copied (same wrong answer) or corrected;
    and how often it breaks what the supervisor got right."""
    weak_pred = (weak_probs > 0.5).float()
    student_pred = (student_probs > 0.5).float()
    weak_wrong = weak_pred != labels
    copied = int((weak_wrong & (student_pred == weak_pred)).sum())
    corrected = int((weak_wrong & (student_pred == labels)).sum())
    broke = int((~weak_wrong & (student_pred != labels)).sum())
    n_wrong = int(weak_wrong.sum())
    return {"weak_errors": n_wrong, "copied_errors": copied, "corrected_errors": corrected,
            "copied_frac": copied / n_wrong if n_wrong else float("nan"),
            "new_errors": broke, "agreement": float((student_pred == weak_pred).float().mean())}


def by_edit(inputs: list, labels: torch.Tensor, probs: dict) -> dict:
    """Test accuracy of every model per edit kind of the preference task ({} for classify): where the
    strong model has its edge over the weak one, and where the students recover it."""
    kinds = [edit_kind(x) for x in inputs]
    out = {}
    for kind in EDITS:
        sel = torch.tensor([k == kind for k in kinds])
        if sel.any():
            out[kind] = {"n": int(sel.sum()), **{name: accuracy(p[sel], labels[sel]) for name, p in probs.items()}}
    return out


# ----------------------------------------------------------------------------- the experiment

def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _finite(x):
    """JSON has no NaN: undefined numbers become null."""
    return None if isinstance(x, float) and (math.isnan(x) or math.isinf(x)) else x


def _example(inp, label, weak_p, student_p, utility) -> dict:
    row = {"gold_label": int(label), "weak_prob": round(float(weak_p), 4),
           "student_prob": round(float(student_p), 4), "gold_utility": round(float(utility), 4)}
    if isinstance(inp, str):
        row["text"] = inp
    else:
        row["text_a"], row["text_b"] = inp
        row["edit"] = edit_kind(inp)
    return row


def planned_steps(cfg: W2SConfig) -> int:
    """How many metrics rows run_w2s yields (for a progress bar)."""
    h = cfg.n_train // 2
    per_seed = steps_per_run(h, cfg.weak_epochs, cfg.batch_size) + 3 * steps_per_run(h, cfg.epochs, cfg.batch_size)
    return cfg.seeds * (per_seed + 4 + 1) + 1  # + one eval row per model, one per seed, one final


def run_w2s(cfg: W2SConfig, run: Run | None = None, texts: list[str] | None = None, scorer=None):
    """The whole experiment as a generator: one metrics dict per optimizer step ("w2s/<model>_loss"),
    one per evaluation ("w2s/<model>_acc"), one per seed ("w2s/pgr_<student>") and a final one with
    "w2s/pgr" (the best student's mean PGR). Writes results.json into `run` at the end; the results
    dict is also kept as `run_w2s.last_results` for notebooks.

    `texts` and `scorer` replace the held-out reviews and the gold annotator (tests, own data).
    Pause, step and stop act between rows (core/session.py); a stopped experiment writes no results.
    """
    yield from Session(run, "w2s", cfg).flow(_experiment(cfg, run, texts, scorer), cfg)


def _experiment(cfg: W2SConfig, run: Run | None, texts: list[str] | None, scorer):
    cfg.validate()
    t_start = time.perf_counter()
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    device = resolve_device(cfg.device)
    used = resolve_and_record(cfg, device, run)  # fp32 | bf16
    seed_everything(cfg.seed)
    weak_lm, weak_tok = load_lm(cfg.weak_model, "cpu")
    strong_lm, strong_tok = load_lm(cfg.strong_model, "cpu")
    check_models(weak_lm, strong_lm, cfg.weak_model, cfg.strong_model)
    inputs, labels, utilities, threshold = build_task(cfg, texts=texts, scorer=scorer)

    step = 0
    per_seed = []
    examples = {"corrected": [], "copied": []}
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    for seed in seeds:
        half1, half2, test = split_data(len(inputs), cfg.n_test, seed)
        x1, x2, xt = [inputs[i] for i in half1], [inputs[i] for i in half2], [inputs[i] for i in test]
        y1, y2, yt = labels[half1], labels[half2], labels[test]
        probs, accs = {}, {}

        def fit(name, base_lm, tok, x, y, epochs, lr, alpha_max, head_seed):
            """Fine-tune a fresh classifier from `base_lm`; yields rows; leaves the model in `trained`."""
            nonlocal step
            torch.manual_seed(head_seed)
            model = scorer_from_lm(base_lm).to(device)
            for m in train_classifier(model, tok, x, y, epochs=epochs, batch_size=cfg.batch_size, lr=lr,
                                      alpha_max=alpha_max, warmup_frac=cfg.warmup_frac, seed=head_seed,
                                      device=device, precision=used):
                step += 1
                row = {"step": step, "w2s/seed": seed, f"w2s/{name}_loss": m["loss"]}
                if alpha_max > 0:
                    row["w2s/alpha"] = m["alpha"]
                yield row
            trained[name] = model

        trained = {}
        # 1. the weak supervisor learns from ground truth on half 1 ...
        yield from fit("weak", weak_lm, weak_tok, x1, y1, cfg.weak_epochs, cfg.weak_lr, 0.0, seed)
        probs["weak"] = predict(trained["weak"], weak_tok, xt, device)
        weak_labels = predict(trained["weak"], weak_tok, x2, device)  # ... and labels half 2 (soft)
        del trained["weak"]
        accs["weak"] = accuracy(probs["weak"], yt)
        step += 1
        yield {"step": step, "w2s/seed": seed, "w2s/weak_acc": accs["weak"],
               "w2s/weak_label_acc": accuracy(weak_labels, y2)}
        # 2. the strong ceiling learns from ground truth on half 2; 3. the students from weak labels.
        runs = [("ceiling", y2, 0.0), ("xent", weak_labels, 0.0), ("confidence", weak_labels, cfg.alpha_max)]
        for name, targets, alpha_max in runs:
            yield from fit(name, strong_lm, strong_tok, x2, targets, cfg.epochs, cfg.lr, alpha_max, seed + 1000)
            probs[name] = predict(trained.pop(name), strong_tok, xt, device)
            accs[name] = accuracy(probs[name], yt)
            step += 1
            yield {"step": step, "w2s/seed": seed, f"w2s/{name}_acc": accs[name]}

        row = {"seed": seed, "weak_acc": accs["weak"], "ceiling_acc": accs["ceiling"],
               "weak_label_acc": accuracy(weak_labels, y2), "by_edit": by_edit(xt, yt, probs)}
        for name in STUDENTS:
            row[name] = {"acc": accs[name], "pgr": pgr(accs["weak"], accs[name], accs["ceiling"]),
                         **imitation(probs["weak"], probs[name], yt)}
        per_seed.append(row)
        step += 1
        yield {"step": step, "w2s/seed": seed, "w2s/gap": accs["ceiling"] - accs["weak"],
               **{f"w2s/pgr_{name}": row[name]["pgr"] for name in STUDENTS}}

        # Examples for the app, from the first seed: where the confidence student overruled its
        # supervisor's mistake, and where it copied it.
        if seed == seeds[0]:
            weak_pred, stu_pred = probs["weak"] > 0.5, probs["confidence"] > 0.5
            for j in range(len(test)):
                wrong = bool(weak_pred[j]) != bool(yt[j])
                if not wrong:
                    continue
                kind = "copied" if bool(stu_pred[j]) == bool(weak_pred[j]) else "corrected"
                if len(examples[kind]) < cfg.n_examples:
                    examples[kind].append(_example(xt[j], yt[j], probs["weak"][j], probs["confidence"][j],
                                                   utilities[test[j]]))

    results = summarise(cfg, per_seed, examples, n_pool=len(inputs), seconds=time.perf_counter() - t_start)
    results["label_threshold"] = threshold
    if run is not None:
        run.write_json("results.json", results)
    run_w2s.last_results = results
    step += 1
    final = {"step": step, "w2s/weak_acc_mean": results["weak_acc"], "w2s/ceiling_acc_mean": results["ceiling_acc"],
             "w2s/pgr": results["students"][results["best_student"]]["pgr"], "final": True}
    for name in STUDENTS:
        final[f"w2s/{name}_acc_mean"] = results["students"][name]["acc"]
        final[f"w2s/pgr_{name}_mean"] = results["students"][name]["pgr"]
    yield final


def summarise(cfg: W2SConfig, per_seed: list[dict], examples: dict, n_pool: int, seconds: float) -> dict:
    """results.json: means and spreads (sample std over seeds) of every accuracy and PGR."""
    weak_mean, weak_std = _mean_std([r["weak_acc"] for r in per_seed])
    ceil_mean, ceil_std = _mean_std([r["ceiling_acc"] for r in per_seed])
    students = {}
    for name in STUDENTS:
        rows = [r[name] for r in per_seed]
        acc, acc_std = _mean_std([r["acc"] for r in rows])
        p, p_std = _mean_std([r["pgr"] for r in rows])
        students[name] = {
            "acc": acc, "acc_std": acc_std, "pgr": p, "pgr_std": p_std,
            # PGR of the mean accuracies: steadier than the mean of per-seed ratios when a gap is small
            "pgr_of_means": pgr(weak_mean, acc, ceil_mean),
            "copied_errors": sum(r["copied_errors"] for r in rows),
            "corrected_errors": sum(r["corrected_errors"] for r in rows),
            "weak_errors": sum(r["weak_errors"] for r in rows),
            "new_errors": sum(r["new_errors"] for r in rows),
            "agreement_with_weak": _mean_std([r["agreement"] for r in rows])[0],
            "acc_per_seed": [r["acc"] for r in rows], "pgr_per_seed": [r["pgr"] for r in rows],
        }
    edits = {}
    for kind in EDITS:  # mean over seeds of the per-kind accuracies
        rows = [r["by_edit"][kind] for r in per_seed if kind in r.get("by_edit", {})]
        if rows:
            edits[kind] = {"n": rows[0]["n"], **{name: statistics.fmean(r[name] for r in rows)
                                                  for name in ("weak", "ceiling", *STUDENTS)}}
    best = max(STUDENTS, key=lambda s: students[s]["acc"])  # by test accuracy: PGR is undefined without a gap
    results = {
        "task": cfg.task, "preset": cfg.preset, "weak_model": cfg.weak_model, "strong_model": cfg.strong_model,
        "weak_acc": weak_mean, "weak_acc_std": weak_std, "ceiling_acc": ceil_mean, "ceiling_acc_std": ceil_std,
        "gap": ceil_mean - weak_mean, "students": students, "best_student": best,
        "seeds": [r["seed"] for r in per_seed],
        "n": {"pool": n_pool, "half1": (cfg.n_train // 2), "half2": (cfg.n_train // 2), "test": cfg.n_test},
        "per_seed": per_seed, "examples": examples, "by_edit": edits,
        "edits": list(cfg.edit_kinds()) if cfg.task == "preference" else None, "classifier": "one logit, p = sigmoid(z)"
        + (", z = s(A) - s(B)" if cfg.task == "preference" else ""),
        "alpha_max": cfg.alpha_max, "warmup_frac": cfg.warmup_frac, "seconds": seconds,
    }
    return _clean(results)


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return _finite(obj)
