"""`rlhf-lab preferences` and `rlhf-lab reward`: stage 2 from the command line."""

from __future__ import annotations

from core import distributed
from core.annotators import PROFILES
from core.config import PRESETS, resolve_device, to_dict
from core.preferences import collect_preferences, preference_preset
from core.reward import reward_preset, train_reward
from core.runs import Run
from lab.cli.common import run_values


def register(sub) -> None:
    from lab.cli.common import out_args, run_args

    p = sub.add_parser("preferences", help="sample responses from a base model and label pairs of them")
    p.add_argument("--base", default="small", help="base model: shipped name, checkpoint folder or run folder "
                                                   "(default: the shipped small model)")
    p.add_argument("--preset", default="small", choices=PRESETS, help="size preset (tiny for a quick try)")
    p.add_argument("--profile", default="positive", choices=list(PROFILES), help="the simulated annotator's taste")
    p.add_argument("--tau", type=float, default=None, help="annotator noise: P(a) = sigmoid((u(a)-u(b))/tau)")
    p.add_argument("--pairs", type=int, default=None, help="number of pairs to produce")
    p.add_argument("--k", type=int, default=None, dest="responses_per_prompt", help="responses per prompt")
    p.add_argument("--human", action="store_true", help="leave the pairs unlabelled for the app's labelling page")
    p.add_argument("--import", dest="import_file", default=None, metavar="FILE",
                   help="import pairs from a .jsonl or .csv file (prompt, chosen, rejected) instead of sampling")
    run_args(p, seed=0, device="auto", precision=False)
    out_args(p)
    p.set_defaults(func=cmd_preferences)

    p = sub.add_parser("reward", help="train a reward model on preference pairs")
    p.add_argument("--preferences", required=True, metavar="RUN|FILE",
                   help="a preferences run folder, or a .jsonl/.csv file of pairs")
    p.add_argument("--base", default="small", help="base model the RM starts from and is normalised on "
                                                   "(default: the shipped small model)")
    p.add_argument("--preset", default="small", choices=PRESETS, help="size preset (tiny for a quick try)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, dest="batch_size", help="pairs per step")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--margin", type=float, default=None, help="margin in -log sigmoid(r_c - r_r - margin)")
    p.add_argument("--profile", default=None, choices=list(PROFILES),
                   help="gold profile for rm/gold_agreement (default: the preference run's)")
    run_args(p, seed=0, device="auto")
    out_args(p)
    p.set_defaults(func=cmd_reward)


def preferences_config(args):
    cfg = preference_preset(args.preset, base=args.base, profile=args.profile, tau=args.tau, pairs=args.pairs,
                            responses_per_prompt=args.responses_per_prompt,
                            annotator="human" if args.human else None, import_file=args.import_file,
                            **run_values(args))
    return cfg.validate()


def reward_config(args):
    cfg = reward_preset(args.preset, preferences=args.preferences, base=args.base, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, margin=args.margin, profile=args.profile,
                        **run_values(args))
    return cfg.validate()


def run_preferences(cfg, out=None, root=None) -> tuple[Run, dict]:
    from lab.cli.common import run_stage

    if cfg.import_file:  # fail on a bad file before a run folder exists
        from core.preferences import import_preferences

        import_preferences(cfg.import_file)
    run = Run.create("preferences", to_dict(cfg), out=out, root=root, parents={"base": cfg.base})
    print(f"run folder: {run.path}")
    K = cfg.responses_per_prompt
    total = 1 if cfg.import_file else -(-cfg.pairs // (max(1, cfg.batch_size // K) * K * (K - 1) // 2))
    last = run_stage(run, collect_preferences(cfg, run), total, "preferences",
                     lambda m: {"pairs": m["pref/pairs"]})
    return run, last


def run_reward(cfg, out=None, root=None) -> tuple[Run, dict]:
    from lab.cli.common import run_stage
    from core.preferences import load_preferences

    rows, _ = load_preferences(cfg.preferences)  # a bad file is an error before a run folder exists
    run = Run.create("reward", to_dict(cfg), out=out, root=root,
                     parents={"preferences": str(cfg.preferences), "base": cfg.base})
    print(f"run folder: {run.path}")
    n_train = len(rows) - max(1, round(len(rows) * cfg.val_fraction))
    total = cfg.epochs * -(-max(1, n_train) // cfg.batch_size)
    last = run_stage(run, train_reward(cfg, run), total, "reward",
                     lambda m: {"loss": f"{m['rm/loss']:.3f}", "acc": f"{m['rm/accuracy']:.2f}"})
    return run, last


def cmd_preferences(args) -> int:
    # bad input (PreferenceError, ConfigError, CheckpointError) is a ValueError: lab.cli prints it as one line
    cfg = preferences_config(args)
    run, last = run_preferences(cfg, args.out, args.runs)
    if cfg.annotator == "human":
        print(f"done: {last['pref/pairs']} pairs wait for your labels in {run.path / 'pairs.jsonl'} "
              "(label them on the app's Preferences page)")
    else:
        print(f"done: {last['pref/pairs']} pairs in {run.path / 'preferences.jsonl'}; the labels agree with the "
              f"noise-free gold on {last['pref/label_gold_agreement']:.1%}")
    return 0


def cmd_reward(args) -> int:
    cfg = reward_config(args)
    # Under torchrun: every rank trains its share of each batch; rank 0 alone owns the run folder.
    dd = distributed.init(resolve_device(cfg.device).type)
    distributed.check_divisible(cfg.batch_size, dd, "RewardConfig.batch_size")  # before a run folder exists
    if not dd.is_main:
        return distributed.follow(train_reward(cfg, None), dd)
    run, last = run_reward(cfg, args.out, args.runs)
    distributed.shutdown(dd)
    print(f"done: val accuracy {last['rm/val_accuracy']:.1%}, gold agreement {last['rm/gold_agreement']:.1%}, "
          f"normalised with gain {last['rm/norm_gain']:.3f} and bias {last['rm/norm_bias']:.3f}; "
          f"checkpoint {run.checkpoint_dir}")
    return 0
