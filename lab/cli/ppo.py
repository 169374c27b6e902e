"""`rlhf-lab ppo` (stage 3 from the command line); its live controls are `rlhf-lab set` (lab/cli_set.py).

    rlhf-lab ppo --iterations 30 --kl-coef 0.05 --out runs/ppo1       # shipped base model + shipped RM
    rlhf-lab set runs/ppo1 kl_coef=0.2 clip_eps=0.1                    # applied at the next iteration
    rlhf-lab set runs/ppo1 paused=true ; rlhf-lab set runs/ppo1 step=+1 ; rlhf-lab set runs/ppo1 stop=true
    rlhf-lab ppo --resume runs/ppo1 --iterations 60                    # continue a stopped run
"""

from __future__ import annotations

from core import distributed
from core.config import PRECISION_HELP, PRECISIONS, PRESET_PPO, PPOConfig, ppo_preset, resolve_device, to_dict
from core.runs import Run
from core.session import initial_control
from lab.cli.resume import claim, resume_config

# What `--resume` may change: the length of the run, the CPU threads, and the live knobs (which `set` may change
# anyway). Everything else defines the run (its models, data, batch, seed, device); changing it would mix two
# experiments in one metrics file, so it is refused by name.
RESUME_FIXED = (("--preset", "preset"), ("--policy", "policy"), ("--reward", "reward"), ("--batch", "batch"),
                ("--response-length", "response_length"), ("--value-model", "value_model"),
                ("--profile", "profile"), ("--seed", "seed"), ("--device", "device"))
RESUME_CHANGEABLE = (("--iterations", "iterations"), ("--threads", "threads"), ("--precision", "precision"))


def register(sub) -> None:
    from lab.cli.common import out_args

    p = sub.add_parser("ppo", help="fine-tune the policy with PPO against a reward model, with a KL penalty")
    p.add_argument("--preset", default=None, choices=tuple(PRESET_PPO), help="default small")
    p.add_argument("--policy", default=None, help="base model: shipped name, checkpoint or run folder (default small)")
    p.add_argument("--reward", default=None, help="reward model: shipped name, checkpoint or run folder "
                                                  "(default: the shipped RM)")
    p.add_argument("--kl-coef", type=float, default=None, help="lambda in reward = score - lambda * KL")
    p.add_argument("--adaptive-kl", action="store_true", default=None, help="adapt lambda toward --target-kl")
    p.add_argument("--target-kl", type=float, default=None, help="target KL per response (with --adaptive-kl)")
    p.add_argument("--clip-eps", type=float, default=None, help="PPO clip range epsilon, in (0, 1)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="prompts per rollout")
    p.add_argument("--response-length", type=int, default=None, help="most tokens per response")
    p.add_argument("--value-model", choices=("separate", "shared"), default=None,
                   help="separate critic from the RM (default) or a value head on the policy")
    p.add_argument("--profile", default=None, help="gold profile for objective/gold (positive, negative, concise)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default=None, choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a stopped, failed or killed PPO run from its checkpoint; may change "
                        "--iterations (a new total), --threads, --precision and the live knobs (--kl-coef, --lr, ...)")
    out_args(p)
    p.set_defaults(func=cmd_ppo)


def config_from_args(args) -> PPOConfig:
    return ppo_preset(args.preset or "small", policy=args.policy, reward=args.reward, kl_coef=args.kl_coef,
                      adaptive_kl=args.adaptive_kl, target_kl=args.target_kl, clip_eps=args.clip_eps, lr=args.lr,
                      temperature=args.temperature, iterations=args.iterations, batch_size=args.batch,
                      response_length=args.response_length, value_model=args.value_model, profile=args.profile,
                      seed=args.seed, device=args.device, precision=args.precision, threads=args.threads)


def resume_rules():
    from lab.cli.resume import ResumeRules

    return ResumeRules("ppo", PPOConfig, RESUME_FIXED, RESUME_CHANGEABLE)


def cmd_ppo(args) -> int:
    from core.ppo_train import require_models, train_ppo
    from lab.cli.common import run_stage

    if args.resume:
        run, cfg, live = resume_config(args, resume_rules())
    else:
        cfg = config_from_args(args).validate()
        require_models(cfg)  # a checkpoint of the wrong kind: refused before a run folder exists
    # Under torchrun: every rank trains; rank 0 alone owns the run folder (and control.json), the others
    # follow its broadcasts inside train_ppo.
    dd = distributed.init(resolve_device(cfg.device).type)
    distributed.check_divisible(cfg.batch_size, dd, "PPOConfig.batch_size")  # before a run folder exists
    if not dd.is_main:
        return distributed.follow(train_ppo(cfg, None), dd)
    if args.resume:
        done = claim(run, cfg, live, "ppo")
    else:
        run = Run.create("ppo", to_dict(cfg), out=args.out, root=args.runs,
                         parents={"policy": cfg.policy, "reward": cfg.reward}, control=initial_control(cfg))
        done = 0
    print(f"run folder: {run.path}")
    bar_total = max(0, cfg.iterations - done)
    last = run_stage(run, train_ppo(cfg, run), bar_total, "ppo",
                     lambda m: {"score": f"{m['objective/scores']:+.3f}", "kl": f"{m['objective/kl']:.2f}",
                                "gold": f"{m['objective/gold']:+.3f}"})
    distributed.shutdown(dd)
    state = run.status().get("state")
    if last is None:
        print(f"{state}: no iteration ran")
        return 0
    print(f"{state} at iteration {last['step']}: proxy score {last['objective/scores']:+.3f}, "
          f"gold {last['objective/gold']:+.3f}, KL {last['objective/kl']:.3f}, checkpoint {run.checkpoint_dir}")
    return 0
