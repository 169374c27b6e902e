"""Pretraining throughput: tokens/s for the tiny and small presets on this machine.

    python benchmarks/pretrain.py [--steps 30] [--threads 2] [--device cpu] [--precision fp32|bf16|auto]

Prints one JSON line. The first steps are warm-up and excluded from the median.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from core.config import pretrain_preset  # noqa: E402
from core.pretrain import pretrain  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                        help="fp32, bf16 autocast, or auto (what the lab picks on this machine)")
    args = parser.parse_args()
    from core import cpu
    cpu.setup(args.threads)  # what every trainer does first (threads, heap)
    from core.precision import resolve_precision
    result = {"device": args.device, "threads": args.threads, "steps": args.steps, "precision_asked": args.precision,
              "precision": resolve_precision(args.precision, torch.device(args.device))}
    for preset in args.presets.split(","):
        cfg = pretrain_preset(preset, steps=args.steps + args.warmup, eval_every=10**6, device=args.device,
                              corpus_size=2000, precision=args.precision)
        speeds, step_s = [], []
        t = time.perf_counter()
        for m in pretrain(cfg):
            now = time.perf_counter()
            if m["step"] > args.warmup:
                speeds.append(m["time/tokens_per_s"])
                step_s.append(now - t)
            t = now
        result[preset] = {"tokens_per_s_median": round(statistics.median(speeds)),
                          "step_s_median": round(statistics.median(step_s), 4),
                          "batch_size": cfg.batch_size, "params": cfg.model.n_params()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
