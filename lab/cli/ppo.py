"""`rlhf-lab ppo` (stage 3 from the command line); its live controls are `rlhf-lab set` (lab/cli/set.py).

    rlhf-lab ppo --iterations 30 --kl-coef 0.05 --out runs/ppo1       # shipped base model + shipped RM
    rlhf-lab set runs/ppo1 kl_coef=0.2 clip_eps=0.1                    # applied at the next iteration
    rlhf-lab set runs/ppo1 paused=true ; rlhf-lab set runs/ppo1 step=+1 ; rlhf-lab set runs/ppo1 stop=true
    rlhf-lab ppo --resume runs/ppo1 --iterations 60                    # continue a stopped run
"""

from __future__ import annotations

from core import distributed
from core.config import PRESET_PPO, PPOConfig, ppo_preset, resolve_device
from lab.cli.common import run_values
from lab.cli.resume import online_postfix, online_report, open_run, start_config

# What `--resume` may change: the length of the run, the CPU threads, and the live knobs (which `set` may change
# anyway). Everything else defines the run (its models, data, batch, seed, device); changing it would mix two
# experiments in one metrics file, so it is refused by name.
RESUME_FIXED = (("--preset", "preset"), ("--policy", "policy"), ("--reward", "reward"), ("--batch", "batch"),
                ("--response-length", "response_length"), ("--value-model", "value_model"),
                ("--profile", "profile"), ("--seed", "seed"), ("--device", "device"))
RESUME_CHANGEABLE = (("--iterations", "iterations"), ("--threads", "threads"), ("--precision", "precision"))


def register(sub) -> None:
    from lab.cli.common import out_args, run_args

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
    run_args(p)
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
                      **run_values(args))


def resume_rules():
    from lab.cli.resume import ResumeRules

    return ResumeRules("ppo", PPOConfig, RESUME_FIXED, RESUME_CHANGEABLE)


def cmd_ppo(args) -> int:
    from core.ppo_train import require_models, train_ppo
    from lab.cli.common import run_stage

    cfg, resumed = start_config(args, resume_rules(), config_from_args, require_models)
    # Under torchrun: every rank trains; rank 0 alone owns the run folder (and control.json), the others
    # follow its broadcasts inside train_ppo.
    dd = distributed.init(resolve_device(cfg.device).type)
    distributed.check_divisible(cfg.batch_size, dd, "PPOConfig.batch_size")  # before a run folder exists
    if not dd.is_main:
        return distributed.follow(train_ppo(cfg, None), dd)
    run, done = open_run(args, "ppo", cfg, resumed)
    last = run_stage(run, train_ppo(cfg, run), max(0, cfg.iterations - done), "ppo", online_postfix)
    distributed.shutdown(dd)
    return online_report(run, last)
