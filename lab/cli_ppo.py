"""`rlhf-lab ppo` (stage 3 from the command line) and `rlhf-lab set RUN_DIR key=value ...` (live controls).

    rlhf-lab ppo --iterations 30 --kl-coef 0.05 --out runs/ppo1       # shipped base model + shipped RM
    rlhf-lab set runs/ppo1 kl_coef=0.2 clip_eps=0.1                    # applied at the next iteration
    rlhf-lab set runs/ppo1 paused=true ; rlhf-lab set runs/ppo1 step=+1 ; rlhf-lab set runs/ppo1 stop=true
    rlhf-lab ppo --resume runs/ppo1 --iterations 60                    # continue a stopped run
"""

from __future__ import annotations

import dataclasses

from core import distributed
from core.config import (PRECISION_HELP, PRECISIONS, PPOConfig, PRESET_PPO, ConfigError, from_dict, ppo_preset,
                         resolve_device, to_dict)
from core.runs import ACTIVE_STATES, Run
from lab.resume import claim, resume_config

FLOW_CONTROLS = ("paused", "stop", "step")
# the stages `rlhf-lab set` can steer: stage -> (module defining LIVE_KNOBS, config class in core.config)
LIVE_STAGES = {"ppo": ("core.ppo_train", "PPOConfig"), "grpo": ("core.grpo", "GRPOConfig")}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
# What `--resume` may change: the length of the run, the CPU threads, and the live knobs (which `set` may change
# anyway). Everything else defines the run (its models, data, batch, seed, device); changing it would mix two
# experiments in one metrics file, so it is refused by name.
RESUME_FIXED = (("--preset", "preset"), ("--policy", "policy"), ("--reward", "reward"), ("--batch", "batch"),
                ("--response-length", "response_length"), ("--value-model", "value_model"),
                ("--profile", "profile"), ("--seed", "seed"), ("--device", "device"))
RESUME_CHANGEABLE = (("--iterations", "iterations"), ("--threads", "threads"), ("--precision", "precision"))
RESUME_LIVE = (("--kl-coef", "kl_coef"), ("--adaptive-kl", "adaptive_kl"), ("--target-kl", "target_kl"),
               ("--clip-eps", "clip_eps"), ("--lr", "lr"), ("--temperature", "temperature"))


def register(sub) -> None:
    from lab.cli import out_args

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

    p = sub.add_parser("set", help="change live controls of a running or paused PPO, GRPO or DPO run: key=value ...")
    p.add_argument("run_dir")
    p.add_argument("pairs", nargs="+", metavar="key=value",
                   help="PPO: kl_coef, adaptive_kl, target_kl, clip_eps, lr, temperature; GRPO: beta, clip_eps, "
                        "lr, temperature; DPO: beta, lr; all: paused, stop, step (step=+1 runs one iteration while paused)")
    p.set_defaults(func=cmd_set)


def config_from_args(args) -> PPOConfig:
    return ppo_preset(args.preset or "small", policy=args.policy, reward=args.reward, kl_coef=args.kl_coef,
                      adaptive_kl=args.adaptive_kl, target_kl=args.target_kl, clip_eps=args.clip_eps, lr=args.lr,
                      temperature=args.temperature, iterations=args.iterations, batch_size=args.batch,
                      response_length=args.response_length, value_model=args.value_model, profile=args.profile,
                      seed=args.seed, device=args.device, precision=args.precision, threads=args.threads)


def initial_control(cfg: PPOConfig) -> dict:
    from core.ppo_train import initial_control as control_of

    return control_of(cfg)


def resume_rules():
    from core.ppo_train import check_live_value
    from lab.resume import ResumeRules

    return ResumeRules("ppo", PPOConfig, RESUME_FIXED, RESUME_CHANGEABLE, RESUME_LIVE, check_live_value)


def cmd_ppo(args) -> int:
    from core.ppo_train import require_reward_model, resume_point, train_ppo
    from lab.cli import run_stage

    if args.resume:
        run, cfg, live = resume_config(args, resume_rules())
    else:
        cfg = config_from_args(args).validate()
        require_reward_model(cfg.reward)  # before a run folder exists
    # Under torchrun: every rank trains; rank 0 alone owns the run folder (and control.json), the others
    # follow its broadcasts inside train_ppo.
    dd = distributed.init(resolve_device(cfg.device).type)
    if not dd.is_main:
        return distributed.follow(train_ppo(cfg, None), dd)
    if args.resume:
        done = claim(run, cfg, live, resume_point)
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


def parse_pair(pair: str) -> tuple[str, str]:
    from lab.cli import CLIError

    if "=" not in pair:
        raise CLIError(f"expected key=value, got {pair!r}")
    key, value = pair.split("=", 1)
    return key.strip(), value.strip()


def parse_bool(key: str, text: str) -> bool:
    from lab.cli import CLIError

    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise CLIError(f"{key} must be true or false, got {text!r}")


def parse_controls(run: Run, pairs: list[str]) -> dict:
    """key=value strings -> a control.json update, each value checked like the trainer checks it."""
    import importlib

    import core.config
    from core.ppo_train import check_live_value
    from lab.cli import CLIError

    module, config_class = LIVE_STAGES[run.stage]
    LIVE_KNOBS = importlib.import_module(module).LIVE_KNOBS
    cfg = from_dict(getattr(core.config, config_class), run.config)
    control = run.read_control()
    update = {}
    live = run.live_status().get("state") in ACTIVE_STATES
    for pair in pairs:
        key, text = parse_pair(pair)
        if key not in LIVE_KNOBS and key not in FLOW_CONTROLS:
            raise CLIError(f"unknown control {key!r}; controls are {list(LIVE_KNOBS) + list(FLOW_CONTROLS)}")
        if key in ("stop", "step") and not live:
            raise CLIError(f"{key} steers a live run, and {run.path} is not training "
                           f"({describe_state(run)}); resume it with: rlhf-lab {run.stage} --resume {run.path}")
        if key in ("paused", "stop", "adaptive_kl"):
            value = parse_bool(key, text)
        elif key == "step":
            current = control.get("step", 0)
            current = current if isinstance(current, int) and not isinstance(current, bool) and current >= 0 else 0
            try:
                value = current + int(text[1:]) if text.startswith("+") else int(text)
            except ValueError:
                raise CLIError(f"step must be an integer or +N, got {text!r}") from None
            if value < current:
                raise CLIError(f"step counts up: it is {current}, got {value}")
        else:
            try:
                value = float(text)
            except ValueError:
                raise CLIError(f"{key} must be a number, got {text!r}") from None
        if key in LIVE_KNOBS:
            try:
                value = check_live_value(cfg, key, value, LIVE_KNOBS)
            except ConfigError as e:
                raise CLIError(str(e)) from None
            cfg = dataclasses.replace(cfg, **{key: value})
        update[key] = value
    return update


def describe_state(run: Run) -> str:
    st = run.live_status()
    if st.get("message") == "process died":
        return "its process died"
    return str(st.get("state"))


def cmd_set(args) -> int:
    from lab.cli import CLIError

    run = Run.open(args.run_dir)
    if run.stage == "dpo":
        from lab.cli_dpo import set_dpo

        return set_dpo(run, args.pairs)
    if run.stage not in LIVE_STAGES:
        raise CLIError(f"{run.path} is a {run.stage!r} run; live controls exist for "
                       f"{', '.join(LIVE_STAGES)} and dpo runs only")
    update = parse_controls(run, args.pairs)
    control = run.write_control(**update)
    shown = ", ".join(f"{k}={control[k]}" for k in update)
    if run.live_status().get("state") in ACTIVE_STATES:
        print(f"{run.path}: {shown} (state {run.live_status()['state']}; applied before the next iteration)")
    else:
        print(f"{run.path}: {shown} (not training: {describe_state(run)}; applied when you resume it with "
              f"rlhf-lab {run.stage} --resume {run.path})")
    return 0
