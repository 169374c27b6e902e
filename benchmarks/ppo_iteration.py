#!/usr/bin/env python
"""Wall seconds per PPO iteration of the lab's own loop, at the TRL peer benchmark's reference setting.

Same work as ../shared/peers/trl_ppo_bench.py (TRL 1.12 PPOTrainer): randomly initialised GPT-2s (4 layers,
128 wide, 4 heads, 128 positions, vocab 1024) for the policy, the frozen reference (a copy), the reward model
and a separate value model; a rollout batch of 64 prompts of 8 tokens; 24 new tokens each (no early stop);
temperature 0.7; k1 KL with kl_coef 0.05; GAE; 4 PPO epochs x 4 minibatches (16 AdamW steps), fp32
(--precision bf16: bf16 autocast; auto: what the lab's stages pick on this machine, core/precision.py).
The timed code is core.ppo_train.rollout / advantages_and_returns / ppo_update, the functions train_ppo runs.

    python benchmarks/ppo_iteration.py --iterations 8 --threads 2
    farm-bench -n 5 --vs "python ../shared/peers/trl_ppo_bench.py --iterations 8 --quiet --threads 2" -- \
        python benchmarks/ppo_iteration.py --iterations 8 --threads 2

Prints per-iteration times and one line `SUMMARY {json}` with iter_s_median (first iteration = warm-up,
excluded) and the breakdown: generation, rollout forwards (ref + value + reward), update (GAE + epochs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._harness import (add_model_args, add_run_args, emit, iteration_stats,  # noqa: E402
                                 median_after_warmup, steady)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="prompts per PPO iteration (rollout batch)")
    p.add_argument("--response-length", type=int, default=24, help="new tokens generated per prompt")
    p.add_argument("--prompt-length", type=int, default=8)
    p.add_argument("--iterations", type=int, default=6, help="PPO iterations (the first one is warm-up)")
    p.add_argument("--ppo-epochs", type=int, default=4)
    p.add_argument("--mini-batches", type=int, default=4)
    add_model_args(p)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--kl-estimator", choices=["k1", "k3"], default="k1")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--value-model", choices=["separate", "shared"], default="separate")
    p.add_argument("--stop-eos", action="store_true", help="stop responses at <eos> (default: full length)")
    add_run_args(p, "iteration")
    return p.parse_args()


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from core.model import no_dropout
    import core.ppo_train as T
    from core.ppo_train import advantages_and_returns, make_optimizer
    from core.rollout import Models, freeze, rollout
    ppo_update = T.ppo_update

    transformers.logging.set_verbosity_error()
    from core import cpu
    cpu.setup(args.threads)  # what every trainer does first (threads, heap)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    from core.precision import resolve_precision
    used = resolve_precision(args.precision, device)
    bf16 = used == "bf16"
    if args.prompt_length + args.response_length > args.n_positions:
        sys.exit("prompt + response exceeds n_positions")

    pad, bos, eos = 0, 1, 2
    cfg = GPT2Config(vocab_size=args.vocab, n_positions=args.n_positions, n_embd=args.embd, n_layer=args.layers,
                     n_head=args.heads, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    policy = GPT2LMHeadModel(cfg)
    ref = GPT2LMHeadModel(cfg)
    ref.load_state_dict(policy.state_dict())
    rm_cfg = GPT2Config(**{**cfg.to_dict(), "num_labels": 1})
    reward = GPT2ForSequenceClassification(rm_cfg)
    value = GPT2ForSequenceClassification(rm_cfg) if args.value_model == "separate" else None
    value_head = torch.nn.Linear(args.embd, 1) if value is None else None
    tok = SimpleNamespace(eos_token_id=eos, pad_token_id=pad)
    models = Models(no_dropout(policy).to(device), freeze(ref).to(device), freeze(reward).to(device),
                    no_dropout(value).to(device) if value is not None else None,
                    value_head.to(device) if value_head is not None else None, tok)
    n_params = sum(p.numel() for p in policy.parameters())
    optimizer = make_optimizer(models.trainable(), args.lr, 0.0)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    cpu_gen = torch.Generator().manual_seed(args.seed + 1)
    # prompts: 8 real tokens each (no padding), like the peer's
    prompts = torch.randint(3, args.vocab, (256, args.prompt_length), generator=torch.Generator().manual_seed(0))
    prompt_mask = torch.ones_like(prompts)

    iters, gens, fwds, upds, cpus = [], [], [], [], []
    t_all = time.perf_counter()
    for it in range(args.iterations):
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        t0, c0 = time.perf_counter(), time.process_time()
        rows = torch.arange(it * args.batch, (it + 1) * args.batch) % len(prompts)
        ro = rollout(models, prompts[rows].to(device), prompt_mask[rows].to(device), args.response_length,
                     args.temperature, gen, stop_at_eos=args.stop_eos, bf16=bf16)
        rewards, kl, advantages, returns = advantages_and_returns(ro, args.kl_coef, args.kl_estimator, 1.0, 0.95,
                                                                  False)
        upd = ppo_update(models, optimizer, ro, advantages, returns, clip_eps=0.2, clip_value=0.2, vf_coef=0.1,
                         temperature=args.temperature, ppo_epochs=args.ppo_epochs, minibatches=args.mini_batches,
                         grad_clip=1.0, generator=cpu_gen, bf16=bf16)
        sync()
        dt = time.perf_counter() - t0
        cpus.append(time.process_time() - c0)
        iters.append(dt)
        gens.append(ro.times["generation"])
        fwds.append(ro.times["forwards"])
        upds.append(dt - ro.times["generation"] - ro.times["forwards"])
        if not args.quiet:
            print(f"iter {it + 1}: {dt:.3f}s (gen {gens[-1]:.3f}, fwd {fwds[-1]:.3f}, update {upds[-1]:.3f}) "
                  f"score {ro.scores.mean().item():+.4f} kl {kl.sum(1).mean().item():.4f} "
                  f"clipfrac {upd['clipfrac']:.3f}", flush=True)
    t_all = time.perf_counter() - t_all

    med = statistics.median(steady(iters))
    toks = args.batch * args.response_length
    summary = {
        "impl": "rlhf-lab core.ppo_train", "torch": torch.__version__, "transformers": transformers.__version__,
        "device": str(device), "precision": used, "precision_asked": args.precision, "threads": torch.get_num_threads(),
        "policy_params": n_params, "vocab": args.vocab, "layers": args.layers, "embd": args.embd,
        "heads": args.heads, "batch": args.batch, "prompt_length": args.prompt_length,
        "response_length": args.response_length, "ppo_epochs": args.ppo_epochs, "mini_batches": args.mini_batches,
        "value_model": args.value_model, "iterations": len(iters),
        "optimizer_steps_per_iter": args.ppo_epochs * args.mini_batches,
        **iteration_stats(iters),
        "cpu_s_median": median_after_warmup(cpus),  # CPU seconds (all threads): robust to load
        "gen_s_median": median_after_warmup(gens),
        "rollout_fwd_s_median": median_after_warmup(fwds),  # ref + value + reward
        "update_s_median": median_after_warmup(upds),     # GAE + PPO epochs
        "gen_tokens_per_s_overall_median": round(toks / med, 1),
        "total_s": round(t_all, 2),
    }
    emit(summary, args.json_out)


if __name__ == "__main__":
    main()
