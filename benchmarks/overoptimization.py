#!/usr/bin/env python
"""Reward over-optimisation (Gao et al. 2022, https://arxiv.org/abs/2210.10760), reproduced on the lab's models.

For each KL coefficient lambda, run PPO from the base model against the proxy reward model and record, per
iteration, the proxy score (what PPO maximises), the gold utility of the same responses (what the hidden
annotator wanted; the RM was trained to imitate it from a few thousand noisy comparisons) and the KL from the
base model. Gao et al. plot both against sqrt(KL): the proxy rises steadily while the gold rises, peaks and
falls once the policy exploits what the RM never learned (the gold annotator's fluency term: repetition, word
salad). A larger lambda keeps the policy near the base and the gold from collapsing.

    python benchmarks/overoptimization.py --lambdas 0,0.05,0.5 --iterations 80 --threads 2

Prints a table per lambda (every --every iterations) and one line `SUMMARY {json}`: per lambda the gold at its
peak (and where), the gold and proxy at the end, and the final KL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lambdas", default="0,0.05,0.5", help="comma-separated KL coefficients")
    p.add_argument("--iterations", type=int, default=80)
    p.add_argument("--policy", default="small")
    p.add_argument("--reward", default="reward")
    p.add_argument("--lr", type=float, default=None, help="default: PPOConfig's")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--response-length", type=int, default=None)
    p.add_argument("--profile", default="positive")
    p.add_argument("--every", type=int, default=5, help="print a row every N iterations")
    p.add_argument("--smooth", type=int, default=5, help="moving average window for the peak search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="matmul precision of the training stages (core/precision.py)")
    p.add_argument("--json-out", default=None, help="append the summary (and every row) as JSON to this file")
    return p.parse_args()


def moving_average(xs, k):
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1]) for i in range(len(xs))]


def main():
    args = parse_args()
    import torch

    from core.config import ppo_preset
    from core.model import generate_texts
    from core.ppo_train import train_ppo

    if args.threads:
        torch.set_num_threads(args.threads)
    lambdas = [float(x) for x in args.lambdas.split(",")]
    results, curves = {}, {}
    for lam in lambdas:
        cfg = ppo_preset("small", policy=args.policy, reward=args.reward, kl_coef=lam, iterations=args.iterations,
                         lr=args.lr, batch_size=args.batch, response_length=args.response_length,
                         profile=args.profile, seed=args.seed, threads=args.threads, device=args.device,
                         precision=args.precision)
        t0 = time.perf_counter()
        rows = []
        print(f"\nlambda = {lam}\n{'iter':>5} {'sqrt(KL)':>9} {'proxy':>8} {'gold':>8}  sample", flush=True)
        for m in train_ppo(cfg):
            rows.append({"iteration": m["step"], "kl": m["objective/kl"], "proxy": m["objective/scores"],
                         "gold": m["objective/gold"]})
            if m["step"] % args.every == 0 or m["step"] == 1:
                print(f"{m['step']:>5} {math.sqrt(max(0.0, m['objective/kl'])):>9.3f} {m['objective/scores']:>+8.3f} "
                      f"{m['objective/gold']:>+8.3f}", flush=True)
        models = train_ppo.last_models
        texts = generate_texts(models.policy, models.tokenizer, ["the acting was", "i bought this"],
                               max_new_tokens=cfg.response_length, temperature=cfg.temperature, seed=0)
        for t in texts:
            print(f"  final sample: {t}")
        gold_s = moving_average([r["gold"] for r in rows], args.smooth)
        proxy_s = moving_average([r["proxy"] for r in rows], args.smooth)
        start = min(args.smooth, len(gold_s)) - 1          # the first full window: no peak from one noisy batch
        peak = max(range(start, len(gold_s)), key=gold_s.__getitem__)
        results[lam] = {
            "gold_start": round(gold_s[args.smooth - 1] if len(gold_s) >= args.smooth else gold_s[0], 4),
            "gold_peak": round(gold_s[peak], 4), "gold_peak_iteration": rows[peak]["iteration"],
            "gold_peak_sqrt_kl": round(math.sqrt(max(0.0, rows[peak]["kl"])), 3),
            "gold_end": round(gold_s[-1], 4), "proxy_start": round(proxy_s[args.smooth - 1], 4),
            "proxy_end": round(proxy_s[-1], 4), "kl_end": round(rows[-1]["kl"], 3),
            "sqrt_kl_end": round(math.sqrt(max(0.0, rows[-1]["kl"])), 3),
            "peaked_then_fell": bool(gold_s[peak] - gold_s[-1] > 0.05 and peak < len(rows) - args.smooth),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        curves[lam] = rows
        del models
    print(f"\n{'lambda':>7} {'gold start':>10} {'gold peak':>10} {'@sqrtKL':>8} {'gold end':>9} {'proxy start':>11} "
          f"{'proxy end':>10} {'sqrtKL end':>10}")
    for lam, r in results.items():
        print(f"{lam:>7} {r['gold_start']:>+10.3f} {r['gold_peak']:>+10.3f} {r['gold_peak_sqrt_kl']:>8.2f} "
              f"{r['gold_end']:>+9.3f} {r['proxy_start']:>+11.3f} {r['proxy_end']:>+10.3f} {r['sqrt_kl_end']:>10.2f}")
    summary = {"policy": args.policy, "reward": args.reward, "iterations": args.iterations,
               "results": {str(k): v for k, v in results.items()}}
    print("SUMMARY " + json.dumps(summary))
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(json.dumps({**summary, "curves": {str(k): v for k, v in curves.items()}}) + "\n")


if __name__ == "__main__":
    main()
