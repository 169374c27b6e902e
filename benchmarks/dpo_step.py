#!/usr/bin/env python
"""Wall seconds per DPO optimizer step of the lab's own loop, at the TRL peer benchmark's reference setting.

Same work as ../shared/peers/trl_dpo_bench.py (TRL DPOTrainer): a randomly initialised GPT-2 (4 layers, 128 wide,
4 heads, 128 positions, vocab 1024, fp32, dropout off) as the policy and a frozen copy as the reference; 64 pairs per
optimizer step; every chosen and rejected sequence is 8 prompt tokens + 23 response tokens + <eos> = 32 tokens, no
padding; beta 0.1, sigmoid loss; AdamW, gradient clipping at 1.0; the reference's log-probs computed in every step
(--precompute-ref moves them before the first step, as train_dpo does). Token ids are drawn directly: chosen answers
from one half of the vocabulary, rejected from the other, as the peer's word lists do.
The timed code is core.dpo.sequence_logps (reference) and core.dpo.dpo_step, the functions train_dpo runs.

    python benchmarks/dpo_step.py --iterations 10 --threads 2
    farm-bench -n 5 --vs "python ../shared/peers/trl_dpo_bench.py --iterations 10 --quiet --threads 2" -- \
        python benchmarks/dpo_step.py --iterations 10 --threads 2

Prints per-step times and one line `SUMMARY {json}` with iter_s_median (first step = warm-up, excluded) and the
split: ref_fwd_s (reference forward), policy_fwd_loss_s (policy forward + loss), backward_opt_rest_s (the rest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._harness import (add_model_args, add_run_args, emit, iteration_stats,  # noqa: E402
                                 median_after_warmup, steady)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="preference pairs per optimizer step")
    p.add_argument("--prompt-length", type=int, default=8, help="prompt tokens (exact)")
    p.add_argument("--completion-length", type=int, default=24, help="response tokens including <eos> (exact)")
    p.add_argument("--max-length", type=int, default=32, help="truncation limit of prompt + response")
    p.add_argument("--num-pairs", type=int, default=None, help="data set size (default: batch x iterations)")
    p.add_argument("--iterations", type=int, default=10, help="optimizer steps (the first one is warm-up)")
    add_model_args(p)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--loss-type", default="sigmoid", choices=["sigmoid", "ipo"])
    p.add_argument("--precompute-ref", action="store_true", help="reference log-probs once, before the timed steps")
    p.add_argument("--grad-ckpt", action="store_true", help="accepted for flag parity; not used (nothing to save)")
    add_run_args(p, "step")
    return p.parse_args()


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    from core.dpo import PairTokens, dpo_step, pair_batch, reference_logps, sequence_logps
    from core.model import no_dropout
    from core.ppo_train import make_optimizer
    from core.rollout import autocast, freeze

    transformers.logging.set_verbosity_error()
    from core import cpu
    cpu.setup(args.threads)  # what every trainer does first (threads, heap)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    from core.precision import resolve_precision
    bf16 = resolve_precision(args.precision, device) == "bf16"
    length = min(args.prompt_length + args.completion_length, args.max_length)
    if length > args.n_positions:
        sys.exit("sequence exceeds n_positions")

    pad, bos, eos = 0, 2, 1
    cfg = GPT2Config(vocab_size=args.vocab, n_positions=args.n_positions, n_embd=args.embd, n_layer=args.layers,
                     n_head=args.heads, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    policy = no_dropout(GPT2LMHeadModel(cfg)).to(device)
    ref = GPT2LMHeadModel(cfg)
    ref.load_state_dict(policy.state_dict())
    ref = freeze(ref).to(device)
    n_params = sum(p.numel() for p in policy.parameters())

    # pairs: prompt words from the whole list, chosen from the first half, rejected from the second; <eos> last
    g = torch.Generator().manual_seed(args.seed)
    n_pairs = args.num_pairs or args.batch * args.iterations
    first, half = 4, (args.vocab - 4) // 2
    k = args.completion_length - 1
    prompts = torch.randint(first, args.vocab, (n_pairs, args.prompt_length), generator=g)
    chosen = torch.randint(first, first + half, (n_pairs, k), generator=g)
    rejected = torch.randint(first + half, args.vocab, (n_pairs, k), generator=g)
    eos_col = torch.full((n_pairs, 1), eos)
    chosen_seqs = torch.cat([prompts, chosen, eos_col], 1)[:, :length].tolist()
    rejected_seqs = torch.cat([prompts, rejected, eos_col], 1)[:, :length].tolist()
    starts = [args.prompt_length] * n_pairs
    pairs = PairTokens(chosen_seqs, rejected_seqs, starts, list(starts), 0)

    optimizer = make_optimizer(policy.parameters(), args.lr, 0.0)
    if args.precompute_ref:
        with autocast(device, bf16):
            ref_c_all, ref_r_all = reference_logps(ref, pairs, pad, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    iters, refs, fwds, rests, cpus = [], [], [], [], []
    t_all = time.perf_counter()
    for it in range(args.iterations):
        idx = [(it * args.batch + i) % n_pairs for i in range(args.batch)]
        times: dict = {}
        t0, c0 = time.perf_counter(), time.process_time()
        batch = pair_batch(pairs, idx, pad, device)                                    # 3 x (2b, T)
        with autocast(device, bf16):
            if args.precompute_ref:
                ref_c, ref_r = ref_c_all[idx], ref_r_all[idx]
                t_ref = 0.0
            else:
                tr = time.perf_counter()
                with torch.inference_mode():
                    ref_logps = sequence_logps(ref, *batch)                              # (2b,)
                ref_c, ref_r = ref_logps[: len(idx)].clone(), ref_logps[len(idx):].clone()
                t_ref = time.perf_counter() - tr
            loss, stats, _ = dpo_step(policy, optimizer, batch, ref_c, ref_r, args.beta, args.loss_type, 1.0, times)
        sync()
        dt = time.perf_counter() - t0
        iters.append(dt)
        cpus.append(time.process_time() - c0)
        refs.append(t_ref)
        fwds.append(times["forward_loss"])
        rests.append(dt - t_ref - times["forward_loss"])
        if not args.quiet:
            print(f"step {it + 1}: {dt:.3f}s (ref {t_ref:.3f}, policy fwd+loss {fwds[-1]:.3f}, rest {rests[-1]:.3f}) "
                  f"loss {loss:.4f} acc {stats['rewards/accuracies']:.3f} margin {stats['rewards/margins']:+.4f}",
                  flush=True)
    t_all = time.perf_counter() - t_all

    med = statistics.median(steady(iters))
    summary = {
        "impl": "rlhf-lab core.dpo", "torch": torch.__version__, "transformers": transformers.__version__,
        "device": str(device), "threads": torch.get_num_threads(), "policy_params": n_params, "vocab": args.vocab,
        "layers": args.layers, "embd": args.embd, "heads": args.heads, "batch_pairs": args.batch,
        "prompt_length": args.prompt_length, "completion_length": args.completion_length,
        "max_length": args.max_length, "batch_shape": [2 * args.batch, length], "beta": args.beta,
        "loss_type": args.loss_type, "precompute_ref": args.precompute_ref,
        "dtype": "bf16" if bf16 else "fp32", "precision_asked": args.precision,
        "iterations": len(iters), "optimizer_steps_per_iter": 1,
        **iteration_stats(iters),
        "cpu_s_median": median_after_warmup(cpus),   # CPU seconds (all threads): robust to load
        "ref_fwd_s_mean": round(statistics.mean(steady(refs)), 4),
        "policy_fwd_loss_s_mean": round(statistics.mean(steady(fwds)), 4),
        "backward_opt_rest_s_mean": round(statistics.mean(steady(rests)), 4),
        "backward_opt_rest_s_median": median_after_warmup(rests),
        "train_tokens_per_s_median": round(2 * args.batch * length / med, 1),
        "total_s": round(t_all, 2),
    }
    emit(summary, args.json_out)


if __name__ == "__main__":
    main()
