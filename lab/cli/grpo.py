"""`rlhf-lab grpo`: GRPO or RLOO fine-tuning from the command line (live controls: `rlhf-lab set`).

    rlhf-lab grpo --iterations 30 --out runs/grpo1                     # shipped base model + shipped RM
    rlhf-lab grpo --advantage rloo --kl-in reward --beta 0.05          # RLOO, KL in the reward (PPO's form)
    rlhf-lab set runs/grpo1 beta=0.1 clip_eps=0.1                      # applied at the next iteration
    rlhf-lab grpo --resume runs/grpo1 --iterations 60                  # continue a stopped run
"""

from __future__ import annotations

from core.config import GRPO_ADVANTAGES, KL_PLACES, LOSS_AVERAGING, PRESET_GRPO, GRPOConfig, grpo_preset
from lab.cli.common import run_values
from lab.cli.resume import online_postfix, online_report, open_run, start_config

# What `--resume` may change (the rules of lab/cli/resume.py, as for PPO and DPO): the length of the run, threads,
# precision and the live knobs. The rest defines the run; changing it would mix two experiments in one metrics file.
RESUME_FIXED = (("--preset", "preset"), ("--policy", "policy"), ("--reward", "reward"), ("--advantage", "advantage"),
                ("--group-size", "group_size"), ("--prompts-per-iteration", "prompts_per_iteration"),
                ("--kl-in", "kl_in"), ("--loss-averaging", "loss_averaging"), ("--epochs", "epochs"),
                ("--minibatches", "minibatches"), ("--response-length", "response_length"), ("--profile", "profile"),
                ("--seed", "seed"), ("--device", "device"))
RESUME_CHANGEABLE = (("--iterations", "iterations"), ("--threads", "threads"), ("--precision", "precision"))


def register(sub) -> None:
    from lab.cli.common import out_args, run_args

    p = sub.add_parser("grpo", help="fine-tune the policy with GRPO or RLOO (a group of responses per prompt, "
                                    "no critic) against a reward model")
    p.add_argument("--preset", default=None, choices=tuple(PRESET_GRPO), help="default small")
    p.add_argument("--policy", default=None, help="base model: shipped name, checkpoint or run folder (default small)")
    p.add_argument("--reward", default=None, help="reward model: shipped name, checkpoint or run folder "
                                                  "(default: the shipped RM)")
    p.add_argument("--advantage", choices=GRPO_ADVANTAGES, default=None,
                   help="grpo: (score - group mean) / group std; rloo: score - mean of the other responses")
    p.add_argument("--group-size", type=int, default=None, help="G: responses per prompt (>= 2)")
    p.add_argument("--prompts-per-iteration", type=int, default=None,
                   help="prompts per iteration (responses per iteration = prompts x group size)")
    p.add_argument("--beta", type=float, default=None, help="KL coefficient to the reference (>= 0)")
    p.add_argument("--kl-in", choices=KL_PLACES, default=None,
                   help="loss: + beta * k3 per token (GRPO); reward: score - beta * KL (PPO's form)")
    p.add_argument("--clip-eps", type=float, default=None, help="clip range epsilon, in (0, 1)")
    p.add_argument("--loss-averaging", choices=LOSS_AVERAGING, default=None,
                   help="token (default): mean over all tokens; sequence: mean over responses (the GRPO paper)")
    p.add_argument("--epochs", type=int, default=None, help="passes over each batch (GRPO's mu)")
    p.add_argument("--minibatches", type=int, default=None, help="optimizer steps per pass")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--response-length", type=int, default=None, help="most tokens per response")
    p.add_argument("--profile", default=None, help="gold profile for objective/gold (positive, negative, concise)")
    run_args(p)
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a stopped GRPO run from its checkpoint (may change --iterations, a new total, "
                        "--threads, --precision and the live knobs)")
    out_args(p)
    p.set_defaults(func=cmd_grpo)


def config_from_args(args) -> GRPOConfig:
    """--prompts-per-iteration P and --group-size G set batch_size = P * G (each keeps the preset's value when not
    given); the config then checks G >= 2 and every other rule, naming the field."""
    from core.config import ConfigError

    preset_name = args.preset or "small"
    preset = PRESET_GRPO[preset_name]
    preset_group = preset.get("group_size", GRPOConfig.group_size)
    group = args.group_size if args.group_size is not None else preset_group
    prompts = args.prompts_per_iteration
    if prompts is not None and prompts < 1:
        raise ConfigError(f"--prompts-per-iteration must be >= 1, got {prompts}")
    batch = None
    if (prompts is not None or args.group_size is not None) and isinstance(group, int) and group >= 2:
        if prompts is None:
            prompts = preset.get("batch_size", GRPOConfig.batch_size) // preset_group
        batch = prompts * group
    return grpo_preset(preset_name, policy=args.policy, reward=args.reward, advantage=args.advantage,
                       group_size=args.group_size, batch_size=batch, beta=args.beta, kl_in=args.kl_in,
                       clip_eps=args.clip_eps, loss_averaging=args.loss_averaging, epochs=args.epochs,
                       minibatches=args.minibatches, lr=args.lr, temperature=args.temperature,
                       iterations=args.iterations, response_length=args.response_length, profile=args.profile,
                       **run_values(args))


def resume_rules():
    from lab.cli.resume import ResumeRules

    return ResumeRules("grpo", GRPOConfig, RESUME_FIXED, RESUME_CHANGEABLE)


def cmd_grpo(args) -> int:
    from core.grpo import train_grpo
    from core.ppo_train import require_models
    from lab.cli.common import run_stage

    cfg, resumed = start_config(args, resume_rules(), config_from_args, require_models)
    run, done = open_run(args, "grpo", cfg, resumed)
    last = run_stage(run, train_grpo(cfg, run), max(0, cfg.iterations - done), cfg.advantage, online_postfix)
    return online_report(run, last)
