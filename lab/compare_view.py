"""What the Compare-runs page reads: several runs' metrics, samples and the settings that differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.runs import Run, RunError, list_runs, read_jsonl


def choices(runs_root) -> dict[str, str]:
    """run id -> a label with its stage, newest first."""
    return {r["run_id"]: f"{r['run_id']} · {r['stage']}" for r in list_runs(runs_root) if r["state"] != "corrupt"}


def default_selection(runs_root, n: int = 2) -> list[str]:
    """The newest runs of one stage (PPO first, where there are two), so the first view compares like with like."""
    rows = [r for r in list_runs(runs_root) if r["state"] != "corrupt"]
    by_stage: dict[str, list[str]] = {}
    for r in rows:
        by_stage.setdefault(r["stage"], []).append(r["run_id"])
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
