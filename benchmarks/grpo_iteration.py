#!/usr/bin/env python
"""Wall seconds per GRPO iteration of the lab's own loop, at the TRL peer benchmark's reference setting.

Same work as ../shared/peers/trl_grpo_bench.py (TRL's GRPOTrainer), with its flags: randomly initialised GPT-2s
(4 layers, 128 wide, 4 heads, 128 positions, vocab 1024, fp32, dropout off) for the policy, the frozen reference (a
copy) and the reward model (GPT2ForSequenceClassification, one label); 8 prompts of 8 tokens x 8 generations = 64
completions of exactly 24 new tokens; temperature 1.0; beta 0.04 with k3 in the loss; epsilon 0.2; mu 1 and one
optimizer step per generation batch; token-level loss averaging (TRL's default 'dapo'; with fixed lengths every
averaging gives the same loss). The timed code is core.rollout.rollout + core.grpo.advantages_of + core.grpo.grpo_update,
the functions train_grpo runs. Unlike TRL, the reward model reads the policy's token ids directly (the lab checks
that they share a tokenizer), so nothing is decoded and re-tokenized, and the policy's log-probs come with the
samples, so no extra policy forward is run when mu or steps-per-generation > 1.

    python benchmarks/grpo_iteration.py --iterations 8 --threads 2
    farm-bench -n 5 --vs "python ../shared/peers/trl_grpo_bench.py --iterations 8 --quiet --threads 2" -- \
        python benchmarks/grpo_iteration.py --iterations 8 --quiet --threads 2

Prints per-iteration times and one line `SUMMARY {json}` with iter_s_median (first iteration = warm-up, excluded)
and the split: generation, rollout forwards (reference + reward model), advantages, update (forward, backward, step).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._harness import add_model_args, add_run_args, emit, iteration_stats, median_after_warmup  # noqa: E402

LOSS_TYPES = {"dapo": "token", "bnpo": "token", "grpo": "sequence", "dr_grpo": "token"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", "--prompts-per-iteration", dest="prompts", type=int, default=8)
    p.add_argument("--generations", "--group-size", dest="generations", type=int, default=8)
    p.add_argument("--steps-per-generation", type=int, default=1, help="optimizer steps per pass (minibatches)")
    p.add_argument("--mu", "--num-iterations", dest="mu", type=int, default=1, help="passes over each batch")
    p.add_argument("--completion-length", "--response-length", dest="completion_length", type=int, default=24)
    p.add_argument("--prompt-length", type=int, default=8, help="tokens per prompt (exact)")
    p.add_argument("--num-prompts", type=int, default=256, help="size of the prompt set")
    p.add_argument("--iterations", type=int, default=6, help="iterations (the first one is warm-up)")
    add_model_args(p)
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient (k3 in the loss)")
    p.add_argument("--epsilon", "--clip-eps", dest="epsilon", type=float, default=0.2)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--loss-type", default="dapo", choices=tuple(LOSS_TYPES),
                   help="TRL's name; dapo/bnpo/dr_grpo -> token averaging, grpo -> sequence averaging")
    p.add_argument("--advantage", choices=("grpo", "rloo"), default="grpo")
    p.add_argument("--allow-eos", action="store_true", help="let completions stop at <eos> (lengths then vary)")
    add_run_args(p, "iteration")
    return p.parse_args()


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from core.config import GRPOConfig
    from core.grpo import advantages_of, grpo_update
    from core.model import no_dropout
    from core.ppo_train import make_optimizer
    from core.rollout import Models, freeze, rollout

    transformers.logging.set_verbosity_error()
    from core import cpu
    cpu.setup(args.threads)  # what every trainer does first (threads, heap)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    from core.precision import resolve_precision
    used = resolve_precision(args.precision, device)
    if args.prompt_length + args.completion_length > args.n_positions:
        sys.exit("prompt + completion exceeds n_positions")
    B = args.prompts * args.generations
    cfg = GRPOConfig(advantage=args.advantage, batch_size=B, group_size=args.generations, beta=args.beta,
                     kl_in="loss", kl_estimator="k3", clip_eps=args.epsilon, epochs=args.mu,
                     minibatches=args.steps_per_generation, loss_averaging=LOSS_TYPES[args.loss_type],
                     temperature=args.temperature, lr=args.lr, device=args.device).validate()

    pad, bos, eos = 0, 1, 2
    mcfg = GPT2Config(vocab_size=args.vocab, n_positions=args.n_positions, n_embd=args.embd, n_layer=args.layers,
                      n_head=args.heads, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    policy = GPT2LMHeadModel(mcfg)
    ref = GPT2LMHeadModel(mcfg)
    ref.load_state_dict(policy.state_dict())
    reward = GPT2ForSequenceClassification(GPT2Config(**{**mcfg.to_dict(), "num_labels": 1}))
    tok = SimpleNamespace(eos_token_id=eos, pad_token_id=pad)
    models = Models(no_dropout(policy).to(device), freeze(ref).to(device), freeze(reward).to(device), None, None, tok)
    n_params = sum(p.numel() for p in policy.parameters())
    optimizer = make_optimizer(list(models.policy.parameters()), args.lr, 0.0)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    cpu_gen = torch.Generator().manual_seed(args.seed + 1)
    prompts = torch.randint(4, args.vocab, (args.num_prompts, args.prompt_length),
                            generator=torch.Generator().manual_seed(0))

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    iters, gens, fwds, advs, upds, cpus = [], [], [], [], [], []
    t_all = time.perf_counter()
    for it in range(args.iterations):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = (torch.arange(it * args.prompts, (it + 1) * args.prompts) % len(prompts)).repeat_interleave(
            args.generations)                                                   # G copies of each prompt
        ids = prompts[rows].to(device)
        ro = rollout(models, ids, torch.ones_like(ids), args.completion_length, args.temperature, gen,
                     stop_at_eos=args.allow_eos, bf16=used == "bf16")
        t1 = time.perf_counter()
        _, advantages = advantages_of(cfg, ro, cfg.beta)
        sync()
        t2 = time.perf_counter()
        upd = grpo_update(models, optimizer, ro, advantages, clip_eps=cfg.clip_eps, beta=cfg.beta, kl_in=cfg.kl_in,
                          kl_estimator=cfg.kl_estimator, averaging=cfg.loss_averaging, temperature=cfg.temperature,
                          epochs=cfg.epochs, minibatches=cfg.minibatches, grad_clip=1.0, generator=cpu_gen,
                          bf16=used == "bf16")
        sync()
        t3 = time.perf_counter()
        iters.append(t3 - t0)
        cpus.append(time.process_time() - c0)
        gens.append(ro.times["generation"])
        fwds.append(ro.times["forwards"])
        advs.append(t2 - t1)
        upds.append(t3 - t2)
        if not args.quiet:
            print(f"iter {it + 1}: {iters[-1]:.3f}s (gen {gens[-1]:.3f}, fwd {fwds[-1]:.3f}, adv {advs[-1]:.4f}, "
                  f"update {upds[-1]:.3f}) score {ro.scores.mean().item():+.4f} kl {upd['kl']:.5f} "
                  f"len {ro.mask.sum(1).min().item():.0f}-{ro.mask.sum(1).max().item():.0f}", flush=True)
    t_all = time.perf_counter() - t_all

    summary = {
        "impl": "rlhf-lab core.grpo", "torch": torch.__version__, "transformers": transformers.__version__,
        "device": str(device), "precision": used, "precision_asked": args.precision, "threads": torch.get_num_threads(),
        "policy_params": n_params, "vocab": args.vocab, "layers": args.layers, "embd": args.embd, "heads": args.heads,
        "prompts": args.prompts, "generations": args.generations, "completions_per_iter": B,
        "prompt_length": args.prompt_length, "completion_length": args.completion_length,
        "fixed_length": not args.allow_eos, "temperature": args.temperature, "beta": args.beta,
        "epsilon": args.epsilon, "num_iterations_mu": args.mu, "steps_per_generation": args.steps_per_generation,
        "optimizer_steps_per_iter": args.mu * args.steps_per_generation, "loss_averaging": cfg.loss_averaging,
        "advantage": args.advantage, "iterations": len(iters),
        **iteration_stats(iters),
        "cpu_s_median": median_after_warmup(cpus),                      # CPU seconds (all threads): less sensitive to load
        "gen_s_median": median_after_warmup(gens),
        "rollout_fwd_s_median": median_after_warmup(fwds),              # reference + reward model, one batched forward each
        "rollout_s_median": median_after_warmup([g + f for g, f in zip(gens, fwds)]),
        "advantages_s_median": median_after_warmup(advs),
        "update_s_median": median_after_warmup(upds),                   # policy forward + backward + clip + AdamW step(s)
        "gen_tokens_per_s_overall_median": round(B * args.completion_length / median_after_warmup(iters), 1),
        "total_s": round(t_all, 2),
    }
    emit(summary, args.json_out)


if __name__ == "__main__":
    main()
