"""What the Compare-runs page reads: several runs' metrics, samples and the settings that differ.

A run's settings are what it really used: its config plus the live changes of its control log (core.settings),
so a run whose λ went 0.05 → 0.3 half-way is never labelled "λ = 0.05"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import settings
from core.runs import Run, RunError, list_runs, read_jsonl


def choices(runs_root) -> dict[str, str]:
    """run id -> a label with its name (if the student gave one) and stage, newest first."""
    from lab.views.runs import display_name, read_meta

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


CHANGED = "changed mid-run"  # the column that says which settings a run changed while it trained


def run_settings(run_dirs: list[Path]) -> dict[str, tuple[dict, dict]]:
    """run id -> (the settings it started with, stage included; what changed mid-run), both from
    core.settings, the one reader of what a run used. A folder that is not a readable run is left out."""
    out = {}
    for path in run_dirs:
        try:
            run = Run.open(path)
            out[path.name] = ({"stage": run.stage, **settings.flat_config(run.config)}, settings.changed_mid_run(path))
        except RunError:
            continue
    return out


def _differing(runs: dict[str, tuple[dict, dict]]) -> list[str]:
    """The settings worth a row: those whose value differs between the runs, and those that changed mid-run
    in any run (a run that turned ε from 0.2 to 0.1 half-way did not use "ε = 0.2", even if the other did)."""
    keys = sorted(set().union(*(set(start) | set(history) for start, history in runs.values())))
    out = []
    for key in keys:
        changed = any(key in history for _, history in runs.values())
        if changed or len({repr(start.get(key)) for start, _ in runs.values()}) > 1:
            out.append(key)
    return out


def config_diff(run_dirs: list[Path]) -> pd.DataFrame:
    """The settings that differ between the runs or changed during one (one row per setting, one column per
    run): what makes their curves differ. A setting that changed mid-run reads "0.2 → 0.1 (from iteration 4)"
    in that run's column and "changed mid-run" in the last one. Settings all runs share unchanged are left out."""
    runs = run_settings(run_dirs)
    if not runs:
        return pd.DataFrame()
    rows = []
    for key in _differing(runs):
        row = {"setting": key}
        for run_id, (start, history) in runs.items():
            if key in history:
                row[run_id] = settings.history_text(history[key])
            else:
                row[run_id] = "" if start.get(key) is None else str(start[key])
        row[CHANGED] = "changed mid-run" if any(key in history for _, history in runs.values()) else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["setting", *runs, CHANGED])


# The knobs students turn, in the order a legend names them (λ first: the lab's first experiment)
SYMBOLS = {"kl_coef": "λ", "beta": "β", "clip_eps": "ε", "tau": "τ", "lr": "lr", "adaptive_kl": "adaptive λ",
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


def legend_part(key: str, start, history: list[tuple[int, object]] | None) -> str:
    """One setting in a legend: "λ = 0.05" when it held all run, "λ 0.05→0.3" when it changed mid-run."""
    name = SYMBOLS.get(key.split(".")[-1], key)
    if history:
        return f"{name} " + "→".join(settings.show(value) for _, value in history)
    return f"{name} = {settings.show(start)}"


def legend_labels(run_dirs: list[Path], names: dict[str, str] | None = None, most: int = 2) -> dict[str, str]:
    """run id -> what a legend should say: the run's name if it has one, else the settings in which
    it differs from the other runs or that it changed mid-run ("λ = 0", "λ 0.05→0.3"), else its id. Two runs
    never get the same label."""
    runs = run_settings(run_dirs)
    keys = [k for k in _differing(runs) if k != "stage"] if runs else []
    # the knobs students turn first, in SYMBOLS order; then the rest alphabetically
    order = list(SYMBOLS)
    keys.sort(key=lambda k: order.index(k.split(".")[-1]) if k.split(".")[-1] in order else len(order))
    out = {}
    for path in run_dirs:
        run_id = path.name
        label = (names or {}).get(run_id)
        if not label and run_id in runs:
            start, history = runs[run_id]
            label = ", ".join(legend_part(k, start.get(k), history.get(k)) for k in keys[:most])
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


def curves_table(frames: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """The chosen metric of every run as one long table (run, step, value), what the overlaid chart draws: the
    comparison's numbers for a CSV download. Rows where a run did not log the metric are left out."""
    parts = [pd.DataFrame({"run": label, "step": df["step"], metric: df[metric]}).dropna(subset=[metric])
             for label, df in frames.items() if df is not None and {"step", metric} <= set(df.columns)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "step", metric])


SCORE_COLUMNS = ("proxy", "gold")


def shown_generations(table: pd.DataFrame) -> pd.DataFrame:
    """The side-by-side generations without a score column that no run recorded (pretraining runs score nothing):
    a column of empty cells reads "None" in every row."""
    empty = [c for c in SCORE_COLUMNS if c in table.columns and table[c].isna().all()]
    return table.drop(columns=empty)
