"""Stage 1: pretrain a small GPT-2 on the corpus, next-token prediction, a plain loop.

`pretrain(cfg, run)` is a generator: it yields one metrics dict per optimizer step, so the CLI, the
app's worker process and the tests drive the same loop (and can stop it between steps).
"""

from __future__ import annotations

import math
import random
import time

import torch

from core import distributed, precision
from core.config import PretrainConfig
from core.corpus import default_corpus, load_text_file, synthetic_reviews
from core.model import build_lm, generate_texts, save_checkpoint
from core.runs import Run
from core.session import Session
from core.tokenizer import train_tokenizer

SAMPLE_PROMPTS = ["the acting was", "the battery", "i bought this", "the plot", "this movie", ""]


def load_corpus(cfg: PretrainConfig) -> list[str]:
    if cfg.corpus_file:
        return load_text_file(cfg.corpus_file)
    if cfg.corpus_size == 20000:
        return list(default_corpus(20000, 0))  # the shipped models' corpus, cached
    return synthetic_reviews(cfg.corpus_size, seed=0)


def split_docs(docs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(docs) * val_fraction))
    val = [docs[i] for i in order[:n_val]]
    train = [docs[i] for i in order[n_val:]]
    return train, val


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak (nanoGPT's schedule)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def make_batch(encoded: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels); padding is ignored by the loss (-100)."""
    T = max(len(x) for x in encoded)
    input_ids = torch.full((len(encoded), T), pad_id, dtype=torch.long)
    for i, x in enumerate(encoded):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    mask = (input_ids != pad_id).long()
    labels = input_ids.masked_fill(mask == 0, -100)
    return input_ids.to(device), mask.to(device), labels.to(device)


@torch.no_grad()
def evaluate_loss(model, encoded: list[list[int]], pad_id: int, device, batch_size: int = 64,
                  max_docs: int = 512) -> float:
    """Mean next-token loss per predicted token over (up to `max_docs`) held-out documents."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    docs = encoded[:max_docs]
    for i in range(0, len(docs), batch_size):
        ids, mask, labels = make_batch(docs[i: i + batch_size], pad_id, device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((target != -100).sum())
    model.train(was_training)
    return total / max(1, count)


def pretrain(cfg: PretrainConfig, run: Run | None = None, docs: list[str] | None = None):
    """Train from scratch; yield {"step", "lm/loss", "lm/lr", "time/tokens_per_s", ["lm/val_loss"]}.

    With a `run`, samples go to samples.jsonl and checkpoints to run/checkpoint (atomic).
    The last yielded dict also carries "final": True.

    Under torchrun every rank runs this loop on its slice of the same global batch (DDP averages the
    gradients); pass `run` on rank 0 only.
    """
    device, dd, per_rank = distributed.setup(cfg, "PretrainConfig.batch_size")
    # bf16 autocast (cfg.precision): matmuls in bf16; transformers casts the logits to fp32 before the loss's
    # log-softmax, and the weights and AdamW's moments stay fp32.
    used = distributed.broadcast_object(precision.setup(cfg, device, run), dd)
    docs = docs if docs is not None else load_corpus(cfg)
    train_docs, val_docs = split_docs(docs, cfg.val_fraction, cfg.seed)
    tokenizer = train_tokenizer(train_docs, vocab_size=cfg.model.vocab_size)
    model = build_lm(cfg.model, tokenizer).to(device)
    model.train()
    ddp_model = distributed.wrap(model, dd)

    n_ctx = cfg.model.n_positions
    eos = tokenizer.eos_token_id

    def enc(texts):  # <bos> text <eos>, cut to the context
        return [(tokenizer(t)["input_ids"] + [eos])[:n_ctx] for t in texts]

    train_enc, val_enc = enc(train_docs), enc(val_docs)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    rng = random.Random(cfg.seed)
    val_loss = None
    session = Session(run, "pretrain", cfg, dd=dd)  # pause/step/stop; rank 0 decides

    def checkpoint(steps_done: int):
        if not steps_done:  # stopped before its first step: nothing learnt, no checkpoint
            return
        extra = {"stage": "pretrain", "preset": cfg.preset, "step": steps_done, "val_loss": val_loss,
                 "corpus": cfg.corpus_file or f"synthetic_reviews({cfg.corpus_size}, seed=0)", "seed": cfg.seed}
        run.save_checkpoint(lambda d: save_checkpoint(model, tokenizer, d, extra=extra))

    # a stop keeps what was learnt so far: the checkpoint of the steps done (a model the next stages can use)
    session.save = checkpoint
    for step in range(cfg.steps):
        _, action = yield from session.gate(cfg, step)
        if action == "stop":
            return
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        # Every rank draws the same global batch (same rng) and trains on its own slice of it.
        batch = [train_enc[rng.randrange(len(train_enc))] for _ in range(cfg.batch_size)]
        batch = batch[dd.rank * per_rank: (dd.rank + 1) * per_rank]
        ids, mask, labels = make_batch(batch, tokenizer.pad_token_id, device)
        with precision.autocast(device, used):
            loss = ddp_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        dt = time.perf_counter() - t0
        tokens = int(mask.sum()) * dd.world_size  # ranks see about the same number of tokens
        metrics = {"step": step + 1, "lm/loss": distributed.all_reduce_mean(loss.item(), dd),
                   "lm/lr": optimizer.param_groups[0]["lr"], "time/tokens_per_s": tokens / dt}
        if not math.isfinite(metrics["lm/loss"]):  # every rank sees the same mean: all stop together
            raise FloatingPointError(f"step {step + 1}: the loss became NaN or inf (lr={cfg.lr:g}); lower --lr; "
                                     "the last checkpoint is kept")
        last = step + 1 == cfg.steps
        if dd.is_main and ((step + 1) % cfg.eval_every == 0 or last):
            val_loss = evaluate_loss(model, val_enc, tokenizer.pad_token_id, device)
            metrics["lm/val_loss"] = val_loss
        if run is not None and ((step + 1) % cfg.sample_every == 0 or last):
            texts = generate_texts(model, tokenizer, SAMPLE_PROMPTS, max_new_tokens=min(40, n_ctx - 8),
                                   temperature=1.0, seed=cfg.seed)
            for prompt, text in zip(SAMPLE_PROMPTS, texts):
                run.log_sample({"step": step + 1, "prompt": prompt, "text": text})
        yield from session.row(metrics, cfg, due=(step + 1) % cfg.checkpoint_every == 0, final=last)  # then checkpoint
    pretrain.last_model = (model, tokenizer)  # for notebooks: the trained model without reloading
