"""What the side-by-side benchmarks (ppo_iteration.py, grpo_iteration.py, dpo_step.py) share: the peer scripts'
model and run flags, the statistics of the timed iterations (the first is warm-up and excluded), and the one
`SUMMARY {json}` line they print (appended to --json-out as well)."""

from __future__ import annotations

import json
import os
import statistics


def add_model_args(p) -> None:
    """The randomly initialised GPT-2 of the TRL peer benchmarks (4 layers, 128 wide, 4 heads, vocab 1024)."""
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--embd", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--n-positions", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-5)


def add_run_args(p, unit: str = "iteration") -> None:
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="fp32 (default, the peer's setting), bf16 autocast (CPU or CUDA), or auto (what the lab's "
                        "stages pick on this machine: core/precision.py)")
    p.add_argument("--bf16", action="store_const", const="bf16", dest="precision", help="= --precision bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None, help="append the JSON summary line to this file")
    p.add_argument("--quiet", action="store_true", help=f"no per-{unit} lines")


def steady(xs: list) -> list:
    """The timed values after the warm-up one (all of them when there is only one)."""
    return xs[1:] or xs


def median_after_warmup(xs: list) -> float:
    return round(statistics.median(steady(xs)), 4)


def iteration_stats(iters: list) -> dict:
    """warmup_iter_s and the mean, stdev, median and min of the other iterations: iter_s_median is the figure
    compared with the peer's."""
    rest = steady(iters)
    return {"warmup_iter_s": round(iters[0], 4),
            "iter_s_mean": round(statistics.mean(rest), 4),
            "iter_s_stdev": round(statistics.stdev(rest), 4) if len(rest) > 1 else 0.0,
            "iter_s_median": round(statistics.median(rest), 4),
            "iter_s_min": round(min(rest), 4)}


def emit(summary: dict, json_out: str | None) -> None:
    print("SUMMARY " + json.dumps(summary))
    if json_out:
        with open(json_out, "a") as f:
            f.write(json.dumps(summary) + "\n")
