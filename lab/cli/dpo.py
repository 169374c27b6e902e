"""`rlhf-lab dpo`: direct preference optimisation of the policy on preference pairs, judged like PPO.

    rlhf-lab preferences --pairs 2000 --out runs/prefs           # pairs from the shipped annotator (or --import FILE)
    rlhf-lab dpo --preferences runs/prefs --beta 0.1 --out runs/dpo1
    rlhf-lab set runs/dpo1 beta=0.3 lr=5e-5                        # live, applied before the next step
    rlhf-lab set runs/dpo1 paused=true ; rlhf-lab set runs/dpo1 step=+1 ; rlhf-lab set runs/dpo1 stop=true
    rlhf-lab dpo --resume runs/dpo1 --epochs 4                     # continue a stopped or killed run

DPO needs pairs, and there is no silent default: without --preferences the command says how to make them
(one `rlhf-lab preferences` run, which samples the shipped base model and labels with the shipped annotator).
"""

from __future__ import annotations

import math

from core.config import PRESET_DPO, DPOConfig, dpo_preset, to_dict
from core.runs import Run, read_jsonl
from core.session import drive, initial_control
from lab.cli.common import run_values
from lab.cli.resume import claim, resume_config

# What `--resume` may change (as for PPO, lab/cli/ppo.py): the length of the run, threads, precision and the live
# knobs. The rest defines the run (its pairs, models, batch, seed); changing it would mix two experiments.
RESUME_FIXED = (("--preferences", "preferences"), ("--preset", "preset"), ("--policy", "policy"), ("--ref", "ref"),
                ("--reward", "reward"), ("--loss", "loss_type"), ("--batch", "batch"), ("--eval-every", "eval_every"),
                ("--eval-prompts", "eval_prompts"), ("--profile", "profile"), ("--seed", "seed"),
                ("--device", "device"))
RESUME_CHANGEABLE = (("--epochs", "epochs"), ("--threads", "threads"), ("--precision", "precision"))


def register(sub) -> None:
    from lab.cli.common import out_args, run_args

    p = sub.add_parser("dpo", help="fine-tune the policy on preference pairs with DPO (no reward model, no RL)")
    p.add_argument("--preferences", default=None, metavar="RUN|FILE",
                   help="a preferences run folder or a .jsonl/.csv file of (prompt, chosen, rejected); required "
                        "(make one with `rlhf-lab preferences --out runs/prefs`)")
    p.add_argument("--preset", default=None, choices=tuple(PRESET_DPO), help="default small")
    p.add_argument("--policy", default=None, help="starting policy: shipped name, checkpoint or run folder "
                                                  "(default small)")
    p.add_argument("--ref", default=None, help="frozen reference (default: the starting policy)")
    p.add_argument("--reward", default=None, help="proxy RM that judges the evaluation samples (default: shipped)")
    p.add_argument("--beta", type=float, default=None, help="beta of the loss (default 0.1); live")
    p.add_argument("--loss", dest="loss_type", choices=("sigmoid", "ipo"), default=None,
                   help="sigmoid: DPO (default); ipo: IPO's squared loss")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="pairs per optimizer step")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate; live")
    p.add_argument("--eval-every", type=int, default=None, help="steps between gold/proxy/KL evaluations")
    p.add_argument("--eval-prompts", type=int, default=None, help="evaluation prompts per evaluation")
    p.add_argument("--profile", default=None, help="gold profile (default: the preference run's)")
    run_args(p)
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a stopped or killed DPO run from its checkpoint (with --epochs: a new total; "
                        "--beta/--lr/--threads/--precision may change too)")
    out_args(p)
    p.set_defaults(func=cmd_dpo)


def config_from_args(args) -> DPOConfig:
    return dpo_preset(args.preset or "small", preferences=args.preferences, policy=args.policy, ref=args.ref,
                      reward=args.reward, beta=args.beta, loss_type=args.loss_type, epochs=args.epochs,
                      batch_size=args.batch, lr=args.lr, eval_every=args.eval_every, eval_prompts=args.eval_prompts,
                      profile=args.profile, **run_values(args))


def resume_rules():
    from lab.cli.resume import ResumeRules

    return ResumeRules("dpo", DPOConfig, RESUME_FIXED, RESUME_CHANGEABLE)


def cmd_dpo(args) -> int:
    from core.dpo import check_inputs, train_dpo
    from lab.cli.common import progress, watch

    first: dict = {}
    if args.resume:
        run, cfg, live = resume_config(args, resume_rules())
        done = claim(run, cfg, live, "dpo")
        check_inputs(cfg)  # the pairs file may have moved or changed since
        first.update(next((r for r in read_jsonl(run.path / "metrics.jsonl") if r.get("step") == 0), {}))
    else:
        cfg = config_from_args(args).validate()
        check_inputs(cfg)  # a bad source, pair or tokenizer: one line, and no failed run folder left behind
        run = Run.create("dpo", to_dict(cfg), out=args.out, root=args.runs,
                         parents={"preferences": cfg.preferences, "policy": cfg.policy, "reward": cfg.reward},
                         control=initial_control(cfg))
    print(f"run folder: {run.path}")
    bar = progress(None, "dpo")
    if first.get("data/train_pairs"):  # a resume: the length is known from the first run's step-0 row
        bar.total = cfg.epochs * math.ceil(first["data/train_pairs"] / cfg.batch_size)
        bar.n = done
        bar.refresh()

    def tick(m):
        if m["step"] == 0:  # the base model's evaluation: now the number of steps is known
            first.update(m)
            bar.total = cfg.epochs * math.ceil(m["data/train_pairs"] / cfg.batch_size)
            bar.refresh()
            return
        bar.update(1)
        bar.set_postfix({"acc": f"{m['rewards/accuracies']:.2f}", "margin": f"{m['rewards/margins']:+.3f}",
                         "logp_c": f"{m['logps/chosen']:.1f}"}, refresh=False)

    try:
        last = drive(watch(run), train_dpo(cfg, run), on_metrics=tick)
    finally:
        bar.close()
    state = run.status().get("state")
    if last is None or last["step"] == 0:
        print(f"{state}: no step ran")
        return 0
    gold = last.get("objective/gold")
    shown = (f"gold {gold:+.3f} (base {first.get('objective/gold', float('nan')):+.3f}), proxy {last['objective/scores']:+.3f}, "
             f"KL {last['objective/kl']:.3f}, " if gold is not None else "")
    print(f"{state} at step {last['step']}: {shown}train accuracy {last['rewards/accuracies']:.2f}, "
          f"margin {last['rewards/margins']:+.3f}, checkpoint {run.checkpoint_dir}")
    return 0
