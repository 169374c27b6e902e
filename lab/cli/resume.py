"""`--resume RUN_DIR` of the training commands (ppo, grpo, dpo): one set of rules for all three.

A resume continues a run in place. The flags that define the run (its models, data, batch shape, seed,
device) are refused by name; its length, threads and precision may change; the live knobs given as flags go
to control.json, where the trainer applies and logs them at its first step, as if `rlhf-lab set` had sent
them. Nothing is written before the run is owned (its lock: a second resume, or a trainer still alive, is
refused) and its checkpoint has passed the checks (a broken one is refused by name: never a silent fresh
start over the run's history).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.config import ConfigError, from_dict, live_knobs, to_dict
from core.runs import Run, atomic_write_json
from core.session import check_live_value


@dataclass(frozen=True)
class ResumeRules:
    stage: str                           # the run's stage: "ppo", "grpo", "dpo"
    config: type                         # its config dataclass
    fixed: tuple                         # (flag, args attribute): define the run, refused
    changeable: tuple                    # (flag, config field): may change (length, threads, precision)

    @property
    def live(self) -> tuple:
        """(flag, config field) of each live knob (the fields core/config/ marks live): sent to control.json."""
        return tuple((f"--{k.replace('_', '-')}", k) for k in live_knobs(self.config))


def resume_config(args, rules: ResumeRules):
    """(run, config with what a resume may change, live knobs given as flags) of `args.resume`, or CLIError /
    ConfigError naming the flag. Reads only: claim() owns the run and writes."""
    from lab.cli.common import CLIError

    if args.out or args.runs:
        raise CLIError("--resume continues RUN_DIR in place; do not give --out/--runs with it")
    fixed = [flag for flag, dest in rules.fixed if getattr(args, dest, None) is not None]
    if fixed:
        may = [flag for flag, _ in rules.changeable + rules.live]
        raise CLIError(f"{', '.join(fixed)} cannot change when resuming (they define the run); start a new run "
                       f"with --out instead. A resume may change {', '.join(may[:-1])} and {may[-1]}")
    run = Run.open(args.resume)
    if run.stage != rules.stage:
        raise CLIError(f"{run.path} is a {run.stage!r} run, not a {rules.stage.upper()} run")
    changes = {field: getattr(args, field) for _, field in rules.changeable if getattr(args, field) is not None}
    cfg = dataclasses.replace(from_dict(rules.config, run.config), **changes).validate()
    live, checked = {}, cfg
    for _, key in rules.live:
        if getattr(args, key) is not None:
            live[key] = check_live_value(checked, key, getattr(args, key))  # the trainer's own check
            checked = dataclasses.replace(checked, **{key: live[key]})  # the knobs are checked together
    return run, cfg, live


def claim(run: Run, cfg, live: dict, stage: str) -> int:
    """Own the run, check its checkpoint (resume_point raises CheckpointError naming the file), then write the
    changed config and the live knobs. Returns the iteration/step the checkpoint holds (0: none yet)."""
    from core.session import resume_point

    from core.session import RESUMABLE

    counter = RESUMABLE[stage]
    run.acquire()  # RunBusy when another live process owns it
    point = resume_point(run, stage, counter)
    total = getattr(cfg, "iterations", None) if counter == "iteration" else None
    if point and total is not None and point[1] > total:  # a resume continues a run: it never rewrites its history
        raise ConfigError(f"--iterations {total} is fewer than the {point[1]} iterations {run.path} has already "
                          f"trained; a resume cannot shorten a run (give --iterations {point[1] + 1} or more)")
    if to_dict(cfg) != run.config:
        info = run.info()
        info["config"] = to_dict(cfg)
        atomic_write_json(run.path / "config.json", info)
    run.write_control(stop=False, **live)
    return point[1] if point else 0


def start_config(args, rules: ResumeRules, config_from_args, require) -> tuple:
    """(config, resumed) of a policy-optimisation command: with --resume the run's config with what a resume may
    change, and resumed = (run, live knobs given as flags); else the flags' config, validated, with its checkpoints
    checked by `require(cfg)` (a checkpoint of the wrong kind is refused before a run folder exists), resumed None."""
    if args.resume:
        run, cfg, live = resume_config(args, rules)
        return cfg, (run, live)
    cfg = config_from_args(args).validate()
    require(cfg)
    return cfg, None


def open_run(args, stage: str, cfg, resumed: tuple | None) -> tuple[Run, int]:
    """(run, iterations it holds) for a policy-optimisation command: the resumed run claimed (`resumed` = (run, live
    knobs) from resume_config), or a new run folder whose control.json starts at the config's live knobs."""
    from core.session import initial_control

    if resumed is not None:
        run, live = resumed
        done = claim(run, cfg, live, stage)
    else:
        run = Run.create(stage, to_dict(cfg), out=args.out, root=args.runs,
                         parents={"policy": cfg.policy, "reward": cfg.reward}, control=initial_control(cfg))
        done = 0
    print(f"run folder: {run.path}")
    return run, done


def online_postfix(m: dict) -> dict:
    """What the progress bar of PPO and GRPO shows: the proxy score the policy climbs, its KL, the gold it buys."""
    return {"score": f"{m['objective/scores']:+.3f}", "kl": f"{m['objective/kl']:.2f}",
            "gold": f"{m['objective/gold']:+.3f}"}


def online_report(run: Run, last: dict | None) -> int:
    """The last line of `rlhf-lab ppo` and `grpo`: where the run ended, and with what."""
    state = run.status().get("state")
    if last is None:
        print(f"{state}: no iteration ran")
        return 0
    print(f"{state} at iteration {last['step']}: proxy score {last['objective/scores']:+.3f}, "
          f"gold {last['objective/gold']:+.3f}, KL {last['objective/kl']:.3f}, checkpoint {run.checkpoint_dir}")
    return 0
