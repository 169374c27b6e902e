"""How much, and how clean, preference data does a reward model need?

Trains one reward model per (number of pairs, annotator noise tau) and measures its agreement with
the noise-free gold annotator on fresh base-model pairs of distinct utility (rm/gold_agreement).
Expect agreement to fall with fewer pairs and with larger tau.

To compare like with like, the responses are sampled once: every cell uses the first N pairs of the
same pool, relabelled with Bradley-Terry noise at its tau (the pool stores the noise-free gold
utilities of both texts). Every RM sees at least --min-steps optimizer steps, so a small data set is
not also a short training run.

    python benchmarks/reward_data_scaling.py                       # the shipped small base, minutes
    python benchmarks/reward_data_scaling.py --base RUN --pairs 100,300 --taus 0.05,1 --preset tiny

Prints a table on stderr and one JSON summary line on stdout:
    {"benchmark": "reward_data_scaling", "rows": [{"pairs", "tau", "gold_agreement", ...}], ...}
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.annotators import preference_probability
from core.config import to_dict
from core.preferences import collect_preferences, export_preferences, preference_preset
from core.reward import reward_preset, train_reward
from core.runs import Run, read_jsonl
from core.session import drive


def relabel(pool: list[dict], tau: float, seed: int) -> list[dict]:
    """The same pairs, labelled by a Bradley-Terry annotator with noise tau (from the stored utilities)."""
    rng = np.random.default_rng(seed)
    u_first = np.array([r["gold_chosen"] for r in pool])
    u_second = np.array([r["gold_rejected"] for r in pool])
    p_first = preference_probability(u_first, u_second, tau)
    first_wins = rng.random(len(pool)) < p_first
    rows = []
    for r, win, p in zip(pool, first_wins, p_first):
        a, b = (r["chosen"], r["rejected"]) if win else (r["rejected"], r["chosen"])
        u_a, u_b = (r["gold_chosen"], r["gold_rejected"]) if win else (r["gold_rejected"], r["gold_chosen"])
        rows.append({"prompt": r["prompt"], "chosen": a, "rejected": b, "source": "simulated",
                     "gold_chosen": u_a, "gold_rejected": u_b, "p_chosen": float(p if win else 1 - p), "tau": tau})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="small", help="base model (shipped name, checkpoint or run folder)")
    parser.add_argument("--preset", default="small", help="size preset of the preference and reward configs")
    parser.add_argument("--pairs", default="250,1000,2500", help="comma-separated pair counts")
    parser.add_argument("--taus", default="0.05,0.5,2.0", help="comma-separated annotator noise values")
    parser.add_argument("--min-steps", type=int, default=100, help="fewest optimizer steps per reward model")
    parser.add_argument("--gold-pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="matmul precision of the training stages (core/precision.py)")
    args = parser.parse_args(argv)
    pair_counts = sorted(int(x) for x in args.pairs.split(","))
    taus = [float(x) for x in args.taus.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # one pool of pairs with noise-free utilities (tau tiny: the stored order is the gold order)
        pcfg = preference_preset(args.preset, base=args.base, pairs=max(pair_counts), tau=1e-6, seed=args.seed,
                                 device=args.device, threads=args.threads)
        prun = Run.create("preferences", to_dict(pcfg), out=tmp / "pool")
        drive(prun, collect_preferences(pcfg, prun))
        pool = read_jsonl(prun.path / "preferences.jsonl")
        t_pool = time.perf_counter() - t_start
        for tau in taus:
            labelled = relabel(pool, tau, args.seed)
            for n in pair_counts:
                data = export_preferences(labelled[:n], tmp / f"pairs_{tau}_{n}.jsonl")
                t0 = time.perf_counter()
                cfg = reward_preset(args.preset, preferences=str(data), base=args.base, seed=args.seed,
                                    gold_pairs=args.gold_pairs, device=args.device, threads=args.threads,
                                    precision=args.precision)
                steps_per_epoch = math.ceil(n * (1 - cfg.val_fraction) / cfg.batch_size)
                cfg.epochs = max(cfg.epochs, math.ceil(args.min_steps / steps_per_epoch))
                cfg.eval_every = 10**9  # evaluate once, at the end
                last = None
                for last in train_reward(cfg, None):
                    pass
                label_agreement = float(np.mean([r["gold_chosen"] > r["gold_rejected"] for r in labelled[:n]
                                                 if r["gold_chosen"] != r["gold_rejected"]]))
                row = {"pairs": n, "tau": tau, "gold_agreement": round(last["rm/gold_agreement"], 4),
                       "val_accuracy": round(last["rm/val_accuracy"], 4),
                       "label_gold_agreement": round(label_agreement, 4), "epochs": cfg.epochs,
                       "steps": last["step"], "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(f"pairs {n:6d}  tau {tau:5.2f}  labels agree with gold {label_agreement:6.1%}  "
                      f"RM gold agreement {row['gold_agreement']:6.1%}  val acc {row['val_accuracy']:6.1%}  "
                      f"({row['steps']} steps, {row['seconds']}s)", file=sys.stderr, flush=True)

    print("\n| pairs \\ tau | " + " | ".join(f"{t:g}" for t in taus) + " |", file=sys.stderr)
    print("| --- |" + " --- |" * len(taus), file=sys.stderr)
    for n in pair_counts:
        cells = [next(r for r in rows if r["pairs"] == n and r["tau"] == t)["gold_agreement"] for t in taus]
        print(f"| {n} | " + " | ".join(f"{c:.1%}" for c in cells) + " |", file=sys.stderr)
    print(json.dumps({"benchmark": "reward_data_scaling", "base": args.base, "preset": args.preset,
                      "seed": args.seed, "gold_pairs": args.gold_pairs, "pool_seconds": round(t_pool, 1),
                      "total_seconds": round(time.perf_counter() - t_start, 1), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
