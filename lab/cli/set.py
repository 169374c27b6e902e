"""`rlhf-lab set RUN_DIR key=value ...`: the live controls of any run, one parser for all.

    rlhf-lab set runs/ppo1 kl_coef=0.2 clip_eps=0.1      # applied before the next iteration
    rlhf-lab set runs/grpo1 paused=true ; rlhf-lab set runs/grpo1 step=+1 ; rlhf-lab set runs/grpo1 stop=true
    rlhf-lab set runs/pretrain1 stop=true                # every stage: paused, step, stop

The rule, the same for every stage: a live knob (the fields core/config/ marks live: PPO, GRPO/RLOO, DPO) may be
set on any run of a stage that can resume; on a running or paused run it applies before the next iteration, on a
stopped, failed or finished one at its next `--resume`. `paused` may be set on any such run too (a resume then
starts paused); `stop` and `step` steer a live run only, and a stage that cannot resume takes flow controls only
while it runs. Every value is checked as the trainer checks it (core/session.py), so what `set` accepts the trainer
accepts.
"""

from __future__ import annotations

import dataclasses

from core.config import STAGE_CONFIGS, ConfigError, from_dict, live_knobs
from core.runs import ACTIVE_STATES, Run
from core.session import FLOW_CONTROLS, check_live_value
from lab.cli.common import RESUMABLE  # the stages with live knobs, which a stopped run takes at its --resume
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def register(sub) -> None:
    p = sub.add_parser("set", help="change live controls of a run (PPO, GRPO, DPO knobs; every stage: paused, "
                                   "step, stop): key=value ...")
    p.add_argument("run_dir")
    p.add_argument("pairs", nargs="+", metavar="key=value",
                   help="PPO: kl_coef, adaptive_kl, target_kl, clip_eps, lr, temperature; GRPO: beta, clip_eps, "
                        "lr, temperature; DPO: beta, lr; all: paused, stop, step (step=+1 runs one iteration while "
                        "paused). A stopped run takes the knobs at its next --resume")
    p.set_defaults(func=cmd_set)


def parse_pair(pair: str) -> tuple[str, str]:
    from lab.cli.common import CLIError

    if "=" not in pair:
        raise CLIError(f"expected key=value, got {pair!r}")
    key, value = pair.split("=", 1)
    return key.strip(), value.strip()


def parse_bool(key: str, text: str) -> bool:
    from lab.cli.common import CLIError

    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise CLIError(f"{key} must be true or false, got {text!r}")


def describe_state(run: Run) -> str:
    st = run.live_status()
    if st.get("message") == "process died":
        return "its process died"
    return str(st.get("state"))


def parse_controls(run: Run, pairs: list[str]) -> dict:
    """key=value strings -> a control.json update, each value checked like the trainer checks it."""
    from lab.cli.common import CLIError

    cfg = from_dict(STAGE_CONFIGS[run.stage], run.config)
    knobs = live_knobs(cfg)
    control = run.read_control()
    update = {}
    live = run.live_status().get("state") in ACTIVE_STATES
    if not live and run.stage not in RESUMABLE:
        raise CLIError(f"{run.path} is not training ({describe_state(run)}), and a {run.stage} run cannot resume: "
                       f"its controls act while it runs; start a new run instead")
    for pair in pairs:
        key, text = parse_pair(pair)
        if key not in knobs and key not in FLOW_CONTROLS:
            raise CLIError(f"unknown control {key!r} for a {run.stage} run; controls are "
                           f"{list(knobs) + list(FLOW_CONTROLS)}")
        if key in ("stop", "step") and not live:
            raise CLIError(f"{key} steers a live run, and {run.path} is not training "
                           f"({describe_state(run)}); resume it with: rlhf-lab {run.stage} --resume {run.path}")
        if key in ("paused", "stop") or isinstance(getattr(cfg, key, None), bool):
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
        if key in knobs:
            try:
                value = check_live_value(cfg, key, value)
            except ConfigError as e:
                raise CLIError(str(e)) from None
            cfg = dataclasses.replace(cfg, **{key: value})
        update[key] = value
    return update


def cmd_set(args) -> int:
    from lab.cli.common import CLIError

    run = Run.open(args.run_dir)
    if run.stage not in STAGE_CONFIGS:
        raise CLIError(f"{run.path} is a {run.stage!r} run, a stage this lab does not know")
    update = parse_controls(run, args.pairs)
    control = run.write_control(**update)
    shown = ", ".join(f"{k}={control[k]}" for k in update)
    if run.live_status().get("state") in ACTIVE_STATES:
        print(f"{run.path}: {shown} (state {run.live_status()['state']}; applied before the next iteration)")
    else:
        print(f"{run.path}: {shown} (not training: {describe_state(run)}; applied when you resume it with "
              f"rlhf-lab {run.stage} --resume {run.path})")
    return 0
