"""`rlhf-lab bon`: best-of-n sampling from the base model against the reward model, for a list of n.

    rlhf-lab bon --n 1,2,4,8,16,32 --prompts 64 --out runs/bon1     # shipped base model + shipped RM

Prints one row per n (gold and proxy of the kept responses, the KL bound log n - (n-1)/n and the KL estimated from
the kept responses) and a one-line summary.
"""

from __future__ import annotations

from core.config import PRESET_BON, bon_preset, to_dict
from core.runs import Run
from core.session import drive
from lab.cli.common import run_values


def register(sub) -> None:
    from lab.cli.common import out_args, run_args

    p = sub.add_parser("bon", help="best-of-n: keep the RM's favourite of n base-model samples, for several n")
    p.add_argument("--n", default=None, help="increasing comma-separated list of n (default 1,2,4,8,16,32)")
    p.add_argument("--prompts", type=int, default=None, help="evaluation prompts (default 64)")
    p.add_argument("--preset", default="small", choices=tuple(PRESET_BON))
    p.add_argument("--policy", default=None, help="base model that samples (default small)")
    p.add_argument("--reward", default=None, help="reward model that picks (default: the shipped RM)")
    p.add_argument("--profile", default=None, help="gold profile (positive, negative, concise)")
    p.add_argument("--response-length", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    run_args(p)
    out_args(p)
    p.set_defaults(func=cmd_bon)


def parse_n(text: str | None) -> list[int] | None:
    from lab.cli.common import CLIError

    if text is None:
        return None
    try:  # an empty entry ("1,,2") is a typo, not a list of two: refused like any other bad entry
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise CLIError(f"--n must be comma-separated integers such as 1,2,4,8,16,32, got {text!r}") from None


def cmd_bon(args) -> int:
    from core.bon import best_of_n, check_inputs
    from lab.cli.common import progress, watch

    cfg = bon_preset(args.preset, n=parse_n(args.n), prompts=args.prompts, policy=args.policy, reward=args.reward,
                     profile=args.profile, response_length=args.response_length, temperature=args.temperature,
                     **run_values(args)).validate()
    check_inputs(cfg)
    run = Run.create("bon", to_dict(cfg), out=args.out, root=args.runs,
                     parents={"policy": cfg.policy, "reward": cfg.reward})
    print(f"run folder: {run.path}")
    bar = progress(None, f"bon: sampling {max(cfg.n)} per prompt")
    rows = []

    def with_progress(steps):
        for m in steps:
            if "progress" in m:
                bar.total = m["total"]
                bar.n = m["progress"]
                bar.refresh()
            yield m

    try:
        drive(watch(run), with_progress(best_of_n(cfg, run)), on_metrics=rows.append)
    finally:
        bar.close()
    if not rows:
        print("no result")
        return 0
    print(f"{'n':>5s} {'gold':>14s} {'proxy':>14s} {'KL bound':>10s} {'KL est.':>10s}")
    for m in rows:
        estimate = m.get("bon/kl_estimate", float("nan"))
        print(f"{m['bon/n']:>5d} {m['objective/gold']:+8.3f} ±{m['objective/gold_se']:.3f} "
              f"{m['objective/scores']:+8.3f} ±{m['objective/scores_se']:.3f} {m['bon/kl_analytic']:10.3f} "
              f"{estimate:10.3f}")
    first, last = rows[0], rows[-1]
    print(f"done: best-of-{last['bon/n']} on {last['bon/prompts']} prompts: gold {last['objective/gold']:+.3f} "
          f"(best-of-{first['bon/n']}: {first['objective/gold']:+.3f}), proxy {last['objective/scores']:+.3f}, "
          f"KL at most {last['bon/kl_analytic']:.3f} nats (the analytic bound), estimated "
          f"{last.get('bon/kl_estimate', float('nan')):.3f}; {run.path}")
    return 0
