"""`rlhf-lab pipeline`: every stage built so far, end to end, each in a sub-folder of --out.

    rlhf-lab pipeline --preset tiny --out /tmp/lab      # seconds
    rlhf-lab pipeline --preset small --out runs/full    # minutes on a laptop CPU

STAGES is the ordered tuple of (name, function). Each function gets the options (preset, seed,
device) and the folders of the stages before it, runs its stage into `out/<name>` and returns that
run folder.
A later stage adds itself with one line. A stage whose folder already holds a finished run is
reused, so re-running the command continues where it stopped: PPO continues from its checkpoint, any
other unfinished stage starts again (its failed attempt is kept beside it as `<name>.<state>-N`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import PRESETS, pretrain_preset, to_dict
from core.runs import ACTIVE_STATES, Run, RunBusy


@dataclass
class PipelineOptions:
    preset: str = "small"
    seed: int = 0
    device: str = "auto"


def _pretrain(opts: PipelineOptions, folders: dict[str, Path], out: Path) -> Path:
    from core.pretrain import pretrain
    from lab.cli.common import run_stage

    cfg = pretrain_preset(opts.preset, seed=opts.seed, device=opts.device).validate()
    run = Run.create("pretrain", to_dict(cfg), out=out)
    run_stage(run, pretrain(cfg, run), cfg.steps, f"pretrain {opts.preset}", lambda m: {"loss": f"{m['lm/loss']:.3f}"})
    return run.path


def _preferences(opts: PipelineOptions, folders: dict[str, Path], out: Path) -> Path:
    from core.preferences import preference_preset
    from lab.cli.reward import run_preferences

    cfg = preference_preset(opts.preset, base=str(folders["pretrain"]), seed=opts.seed,
                            device=opts.device).validate()
    return run_preferences(cfg, out=out)[0].path


def _reward(opts: PipelineOptions, folders: dict[str, Path], out: Path) -> Path:
    from core.reward import reward_preset
    from lab.cli.reward import run_reward

    cfg = reward_preset(opts.preset, preferences=str(folders["preferences"]), base=str(folders["pretrain"]),
                        seed=opts.seed, device=opts.device).validate()
    return run_reward(cfg, out=out)[0].path


def _ppo(opts: PipelineOptions, folders: dict[str, Path], out: Path) -> Path:
    from core.config import PPOConfig, PRESET_PPO, from_dict, ppo_preset
    from core.ppo_train import train_ppo
    from lab.cli.common import run_stage
    from core.session import initial_control

    if (out / "config.json").exists():  # a stopped or interrupted PPO stage continues from its checkpoint
        run = Run.open(out)
        cfg = from_dict(PPOConfig, run.config)
        run.write_control(stop=False)
    else:
        cfg = ppo_preset(opts.preset if opts.preset in PRESET_PPO else "small", policy=str(folders["pretrain"]),
                         reward=str(folders["reward"]), seed=opts.seed, device=opts.device).validate()
        run = Run.create("ppo", to_dict(cfg), out=out, parents={"policy": cfg.policy, "reward": cfg.reward},
                         control=initial_control(cfg))
    run_stage(run, train_ppo(cfg, run), cfg.iterations, "ppo",
              lambda m: {"score": f"{m['objective/scores']:+.3f}", "kl": f"{m['objective/kl']:.2f}"})
    return run.path


def _w2s(opts: PipelineOptions, folders: dict[str, Path], out: Path) -> Path:
    from core.config import w2s_preset
    from lab.cli.w2s import format_results, run_w2s_cli

    # The strong student is this pipeline's base model when it is bigger than the shipped weak
    # supervisor (small, gpu); the tiny and weak bases are not, so those use the shipped pair.
    if opts.preset in ("small", "gpu"):
        cfg = w2s_preset("gpu" if opts.preset == "gpu" else "default", strong_model=str(folders["pretrain"]),
                         seed=opts.seed, device=opts.device)
    else:
        cfg = w2s_preset("tiny", seed=opts.seed, device=opts.device)
    run, results = run_w2s_cli(cfg.validate(), out=out)
    print(format_results(results))
    return run.path


STAGES = (
    ("pretrain", _pretrain),
    ("preferences", _preferences),
    ("reward", _reward),
    ("ppo", _ppo),
    ("w2s", _w2s),
)


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="run the stages end to end into sub-folders of --out")
    p.add_argument("--preset", default="small", choices=PRESETS)
    p.add_argument("--out", required=True, help="folder for the pipeline; each stage gets a sub-folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--until", default=None, choices=[name for name, _ in STAGES],
                   help="stop after this stage (default: run them all)")
    p.set_defaults(func=cmd_pipeline)


def run_pipeline(preset: str, out, seed: int = 0, until: str | None = None, device: str = "auto") -> dict[str, Path]:
    """Run STAGES in order up to `until`; returns {stage name: run folder}."""
    opts = PipelineOptions(preset, seed, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders: dict[str, Path] = {}
    for name, run_one in STAGES:
        folder = out / name
        state = Run.open(folder).live_status().get("state") if (folder / "config.json").exists() else None
        if state == "done":
            print(f"{name}: already done in {folder}, reusing it")
            folders[name] = folder
        else:
            if state in ACTIVE_STATES:
                raise RunBusy(f"{folder} is {state} in another process; wait for it or stop it first")
            if state is not None and name != "ppo":  # only PPO continues from a checkpoint
                aside = next(folder.with_name(f"{name}.{state}-{n}") for n in range(1, 10_000)
                             if not folder.with_name(f"{name}.{state}-{n}").exists())
                folder.rename(aside)
                print(f"{name}: the earlier attempt ({state}) is kept in {aside}; starting it again")
            print(f"== {name}")
            folders[name] = run_one(opts, folders, folder)
        if name == until:
            break
    return folders


def cmd_pipeline(args) -> int:
    folders = run_pipeline(args.preset, args.out, args.seed, args.until, args.device)
    print("pipeline done:")
    for name, folder in folders.items():
        print(f"  {name:12s} {folder}")
    return 0
