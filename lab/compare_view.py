"""What the Compare-runs page reads: several runs' metrics, samples and the settings that differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.runs import Run, RunError, list_runs, read_jsonl


def choices(runs_root) -> dict[str, str]:
    """run id -> a label with its name (if the student gave one) and stage, newest first."""
    from lab.runs_view import display_name, read_meta

    return {r["run_id"]: f"{display_name(r['run_id'], read_meta(r['path']))} · {r['stage']}"
            for r in list_runs(runs_root) if r["state"] != "corrupt"}


def default_selection(runs_root, n: int = 2, first: str | None = None) -> list[str]:
    """The newest runs of one stage (PPO first, where there are two), so the first view compares like
    with like. With `first` (a run the student just made, from a "next step" link): that run and the
    newest others of its stage."""
    rows = [r for r in list_runs(runs_root) if r["state"] != "corrupt"]
    by_stage: dict[str, list[str]] = {}
    for r in rows:
        by_stage.setdefault(r["stage"], []).append(r["run_id"])
    chosen = next((r for r in rows if r["run_id"] == first), None)
    if chosen is not None:
        return [first] + [i for i in by_stage[chosen["stage"]] if i != first][: n - 1]
    for stage in ["ppo", *[r["stage"] for r in rows]]:
        if len(by_stage.get(stage, [])) >= n:
            return by_stage[stage][:n]
    return [rows[0]["run_id"]] if rows else []


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_diff(run_dirs: list[Path]) -> pd.DataFrame:
    """The settings that differ between the runs (one row per setting, one column per run):
    what makes their curves differ. Identical settings are left out."""
    configs = {}
    for path in run_dirs:
        try:
            run = Run.open(path)
            configs[path.name] = {"stage": run.stage, **_flat(run.config)}
        except RunError:
            continue
    if not configs:
        return pd.DataFrame()
    keys = sorted(set().union(*configs.values()))
    rows = []
    for key in keys:
        values = [configs[name].get(key) for name in configs]
        if len({repr(v) for v in values}) > 1:
            rows.append({"setting": key, **{name: "" if v is None else str(v) for name, v in zip(configs, values)}})
    return pd.DataFrame(rows, columns=["setting", *configs])


SYMBOLS = {"kl_coef": "λ", "clip_eps": "ε", "tau": "τ", "lr": "lr", "adaptive_kl": "adaptive λ",
           "target_kl": "target KL", "temperature": "T"}
# What one "step" of each stage is, for the shared x axis
STEP_UNITS = {"pretrain": "optimizer step", "reward": "optimizer step", "preferences": "batch of prompts",
              "ppo": "PPO iteration", "grpo": "iteration", "dpo": "optimizer step", "w2s": "optimizer step"}


def x_title(stages: set[str]) -> str:
    """The x axis of runs of these stages: what their "step" counts (PPO runs count iterations)."""
    units = sorted({STEP_UNITS.get(s, "step") for s in stages if s})
    if len(units) == 1:
        return f"{units[0]} (count)"
    return "step (count): " + ", ".join(f"{u} for {', '.join(sorted(s for s in stages if STEP_UNITS.get(s, 'step') == u))}"
                                         for u in units)


def legend_labels(run_dirs: list[Path], names: dict[str, str] | None = None, most: int = 2) -> dict[str, str]:
    """run id -> what a legend should say: the run's name if it has one, else the settings in which
    it differs from the other runs ("λ = 0.05"), else its id. Two runs never get the same label."""
    diff = config_diff(run_dirs)
    out = {}
    for path in run_dirs:
        run_id = path.name
        label = (names or {}).get(run_id)
        if not label and not diff.empty and run_id in diff.columns:
            rows = [r for _, r in diff.iterrows() if r["setting"] != "stage"]
            rows.sort(key=lambda r: r["setting"].split(".")[-1] not in SYMBOLS)  # the knobs students turn first
            parts = [f"{SYMBOLS.get(r['setting'].split('.')[-1], r['setting'])} = {r[run_id] or '–'}"
                     for r in rows][:most]
            label = ", ".join(parts)
        out[run_id] = label or run_id
    seen: dict[str, int] = {}
    for label in out.values():
        seen[label] = seen.get(label, 0) + 1
    return {rid: (label if seen[label] == 1 or label == rid else f"{label} ({rid})") for rid, label in out.items()}


def metrics(run_dirs: list[Path]) -> dict[str, pd.DataFrame]:
    return {path.name: Run(path).metrics() for path in run_dirs if path.is_dir()}


def samples(run_dirs: list[Path]) -> dict[str, list[dict]]:
    return {path.name: read_jsonl(path / "samples.jsonl") for path in run_dirs if path.is_dir()}


def stages(run_dirs: list[Path]) -> set[str]:
    out = set()
    for path in run_dirs:
        try:
            out.add(Run.open(path).stage)
        except RunError:
            pass
    return out
