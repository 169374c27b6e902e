"""`rlhf-lab w2s`: the weak-to-strong experiment (Burns et al. 2023) from the command line."""

from __future__ import annotations

from core.config import PRECISION_HELP, PRECISIONS, W2S_PRESETS, W2S_TASKS, to_dict, w2s_preset
from core.runs import Run


def register(sub) -> None:
    from lab.cli.common import out_args

    p = sub.add_parser("w2s", help="weak-to-strong: a small model's labels train a bigger one; measure PGR")
    p.add_argument("--preset", default="default", choices=W2S_PRESETS,
                   help="tiny (seconds), default (minutes on 2 CPU cores) or gpu (more data and seeds)")
    p.add_argument("--task", default=None, choices=W2S_TASKS,
                   help="classify: is the review positive; preference: which of two reviews the annotator prefers")
    p.add_argument("--edits", default=None,
                   help="preference task: edits that make the pairs, comma-separated from scramble, repeat, flip "
                        "(default scramble)")
    p.add_argument("--seeds", type=int, default=None, help="repeat with this many seeds (mean and spread)")
    p.add_argument("--alpha-max", type=float, default=None, help="final weight of the confidence loss, in [0, 1]")
    p.add_argument("--warmup-frac", type=float, default=None,
                   help="fraction of training over which alpha ramps up to --alpha-max, in [0, 1]")
    p.add_argument("--seed", type=int, default=None, help="first seed")
    p.add_argument("--weak", default=None, help="weak supervisor base: shipped name, checkpoint or run folder")
    p.add_argument("--strong", default=None, help="strong student base: shipped name, checkpoint or run folder")
    p.add_argument("--profile", default=None, help="gold annotator profile (positive, negative, concise)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=None, choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    out_args(p)
    p.set_defaults(func=cmd_w2s)


def run_w2s_cli(cfg, out=None, root=None, parents=None) -> tuple[Run, dict]:
    """Validate, create the run, drive it with a progress bar; returns (run, results)."""
    from core.w2s import check_config, planned_steps, run_w2s
    from lab.cli.common import run_stage

    check_config(cfg)  # refuse bad settings and a weak model larger than the strong one before a run exists
    run = Run.create("w2s", to_dict(cfg), out=out, root=root, parents=parents)
    print(f"run folder: {run.path}")

    def postfix(m):
        keys = [k for k in m if k.endswith("_loss") or k.endswith("_acc")]
        return {k.split("/")[-1]: f"{m[k]:.3f}" for k in keys}

    run_stage(run, run_w2s(cfg, run), planned_steps(cfg), f"w2s {cfg.preset} {cfg.task}", postfix)
    results = run_w2s.last_results
    return run, results


def format_results(r: dict) -> str:
    def pm(mean, std):
        return "n/a" if mean is None else f"{100 * mean:.1f} ± {100 * (std or 0):.1f}"

    lines = [f"task {r['task']}, {len(r['seeds'])} seed(s), test n={r['n']['test']}",
             f"  weak supervisor   acc {pm(r['weak_acc'], r['weak_acc_std'])}",
             f"  strong ceiling    acc {pm(r['ceiling_acc'], r['ceiling_acc_std'])}"]
    if r.get("gap") is not None and r["gap"] <= 0:
        lines.append("  the ceiling does not beat the supervisor: there is no gap to recover, PGR is undefined")
    for name, s in r["students"].items():
        pgr = "n/a" if s["pgr"] is None else f"{s['pgr']:.2f} ± {s['pgr_std'] or 0:.2f}"
        lines.append(f"  student {name:10s} acc {pm(s['acc'], s['acc_std'])}   PGR {pgr}   "
                     f"copied {s['copied_errors']}/{s['weak_errors']} of the supervisor's errors")
    return "\n".join(lines)


def cmd_w2s(args) -> int:
    cfg = w2s_preset(args.preset, task=args.task, edits=args.edits, seeds=args.seeds, alpha_max=args.alpha_max,
                     warmup_frac=args.warmup_frac, seed=args.seed, weak_model=args.weak,
                     strong_model=args.strong, profile=args.profile, device=args.device, precision=args.precision,
                     threads=args.threads)
    cfg.validate()
    run, results = run_w2s_cli(cfg, out=args.out, root=args.runs)
    print(format_results(results))
    print(f"results: {run.path / 'results.json'}  ({results['seconds']:.0f} s)")
    return 0
