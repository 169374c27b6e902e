"""`rlhf-lab frontier`: the reward-KL frontier sweep (issue 13) from the command line.

    rlhf-lab frontier --preset tiny --out runs/fr-tiny                  # seconds
    rlhf-lab frontier --methods ppo,bon --seeds 2 --out runs/fr1        # the default sweep of two methods
    rlhf-lab frontier --ppo 0,0.1,1 --bon 1,4,16 --out runs/fr2         # your own sweep values
    rlhf-lab frontier --resume --out runs/fr1                           # continue an interrupted sweep

Writes frontier.csv (one row per evaluated policy), fits.json (Gao et al.'s fits) and samples.jsonl.
"""

from __future__ import annotations

from core.config import (FRONTIER_KNOBS, FRONTIER_METHODS, PRESET_FRONTIER, FrontierConfig, from_dict, frontier_preset,
                         to_dict)
from core.runs import Run


def register(sub) -> None:
    from lab.cli.common import out_args

    p = sub.add_parser("frontier", help="sweep every method's KL knob; gold and proxy against sqrt(KL), Gao fits")
    p.add_argument("--preset", default="default", choices=tuple(PRESET_FRONTIER),
                   help="tiny (seconds), default (<= 20 min on 2 CPU cores) or gpu")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, from {','.join(FRONTIER_METHODS)} (default: every method)")
    for method in FRONTIER_METHODS:
        p.add_argument(f"--{method}", default=None, metavar="V,V,...",
                       help=f"{method}'s {FRONTIER_KNOBS[method]} values (default: the preset's)")
    p.add_argument("--seeds", type=int, default=None, help="training seeds per setting (the spread)")
    p.add_argument("--seed", type=int, default=None, help="first seed")
    p.add_argument("--iterations", type=int, default=None, help="training iterations per online setting")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate a checkpoint every N iterations")
    p.add_argument("--eval-prompts", type=int, default=None, help="fixed evaluation prompts")
    p.add_argument("--policy", default=None, help="base model (default: the shipped small)")
    p.add_argument("--reward", default=None, help="proxy reward model (default: the shipped RM)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out, keeping its finished points")
    out_args(p)
    p.set_defaults(func=cmd_frontier)


def parse_values(method: str, text: str) -> list:
    from lab.cli.common import CLIError

    parts = [x.strip() for x in text.split(",") if x.strip()]
    if not parts:
        raise CLIError(f"--{method}: the sweep is empty; give at least one {FRONTIER_KNOBS[method]}")
    try:
        return [int(x) for x in parts] if method == "bon" else [float(x) for x in parts]
    except ValueError:
        kind = "integers" if method == "bon" else "numbers"
        raise CLIError(f"--{method} takes comma-separated {kind}, got {text!r}") from None


def config_from_args(args) -> FrontierConfig:
    if args.methods is None:
        methods = list(FRONTIER_METHODS)
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sweeps = {m: parse_values(m, getattr(args, m)) for m in FRONTIER_METHODS if getattr(args, m) is not None}
    return frontier_preset(args.preset, methods=methods, seeds=args.seeds, seed=args.seed, iterations=args.iterations,
                           eval_every=args.eval_every, eval_prompts=args.eval_prompts, policy=args.policy,
                           reward=args.reward, device=args.device, threads=args.threads, **sweeps).validate()


def cmd_frontier(args) -> int:
    from core.frontier import run_frontier, sweep_points, work_units
    from core.session import drive
    from lab.cli.common import CLIError, progress, watch

    if args.resume:
        if not args.out:
            raise CLIError("--resume needs --out RUN_DIR (the sweep to continue)")
        given = [f"--{name.replace('_', '-')}" for name in ("methods", "seeds", "seed", "iterations", "eval_every",
                                                            "eval_prompts", "policy", "reward", *FRONTIER_METHODS)
                 if getattr(args, name) is not None]
        if given:
            raise CLIError(f"--resume continues the sweep with its own settings; drop {', '.join(given)}")
        run = Run.open(args.out)
        if run.stage != "frontier":
            raise CLIError(f"{run.path} is a {run.stage!r} run, not a frontier sweep")
        state = run.live_status().get("state")  # the one liveness rule: a killed sweep's process is gone
        if state in ("running", "paused"):
            raise CLIError(f"{run.path} is {state} in another process; stop it first")
        cfg = from_dict(FrontierConfig, run.config).validate()
        run.write_control(stop=False)  # the stop that ended the last session must not end this one
    else:
        cfg = config_from_args(args)
    if not args.resume:
        run = Run.create("frontier", to_dict(cfg), out=args.out, root=args.runs,
                         parents={"policy": cfg.policy, "reward": cfg.reward})
    print(f"run folder: {run.path}")
    total = 1 + sum(work_units(cfg, m) for m, _, _ in sweep_points(cfg))
    bar = progress(total, "frontier")

    def tick(m):  # one metrics row per unit of work; a best-of-n pass or a skipped finished point is several
        bar.set_postfix({"points": f"{m['frontier/points_done']}/{m['frontier/points']}"}, refresh=False)
        bar.update(m["step"] - bar.n)

    try:
        last = drive(watch(run), run_frontier(cfg, run), on_metrics=tick)
    finally:
        bar.close()
    import json

    fits = json.loads((run.path / "fits.json").read_text()) if (run.path / "fits.json").exists() else {}
    print(f"{run.status().get('state')}: {last['frontier/points_done'] if last else 0} points; "
          f"{run.path / 'frontier.csv'}, {run.path / 'fits.json'}")
    for method, fit in fits.items():
        if method.startswith("_"):
            continue
        g = fit["gold"]
        if "skipped" in g:
            print(f"  {method}: gold fit skipped ({g['skipped']})")
        else:
            where = "no peak" if g["d_star"] is None else f"peak gold +{g['peak']:.3f} at sqrt(KL) {g['d_star']:.2f}"
            print(f"  {method}: gold = d({g['alpha']:.3f} - {g['beta']:.3f} {'d' if g['form'] == 'bon' else 'log d'})"
                  f", R^2 {g['r2']:.2f}, {where}")
    return 0

