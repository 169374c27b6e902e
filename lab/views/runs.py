"""What every page says about a run besides its charts: how far it is and how long is left, the
student's name and note for it, and deleting it. No Streamlit here (tested directly).

Progress comes from what the run already writes (config.json for the planned total, metrics.jsonl for
how far it got and how fast), so the browser shows what the CLI's progress bars show.
"""

from __future__ import annotations

import math
import shutil
from functools import lru_cache
from pathlib import Path

import pandas as pd

from core.runs import Run, RunError, read_json

META_FILE = "meta.json"  # {"name": str, "note": str}, written by the app, read wherever runs are listed
MAX_NAME, MAX_NOTE = 60, 2000


# ----------------------------------------------------------------------------- progress

def planned_total(stage: str, config: dict, run_dir=None) -> tuple[int | None, str]:
    """(how many units the run will do, what a unit is) from its config, as the CLI's progress bar
    counts them; None when the config does not say."""
    try:
        if stage == "pretrain":
            return int(config["steps"]), "steps"
        if stage == "ppo":
            return int(config["iterations"]), "iterations"
        if stage == "preferences":
            return (int(config["pairs"]), "pairs") if not config.get("import_file") else (None, "pairs")
        if stage == "reward":
            n = _pairs_in(str(config["preferences"]), _mtime(config["preferences"]))
            n_train = n - max(1, round(n * config["val_fraction"]))
            return int(config["epochs"]) * -(-max(1, n_train) // int(config["batch_size"])), "steps"
        if stage == "w2s":
            from core.config import W2SConfig, from_dict
            from core.w2s import planned_steps

            return planned_steps(from_dict(W2SConfig, config)), "steps"
    except Exception:  # an old or hand-written config: no total, the page says only how far it is
        return None, "steps"
    return None, "steps"


@lru_cache(maxsize=16)
def _pairs_in(spec: str, stamp: float) -> int:
    """How many pairs a reward run trains on (read once per file version: pages redraw every second)."""
    from core.preferences import load_preferences

    return len(load_preferences(spec)[0])


def _mtime(spec) -> float:
    path = Path(spec)
    target = path / "preferences.jsonl" if path.is_dir() else path
    return target.stat().st_mtime if target.exists() else 0.0


def done_so_far(stage: str, df: pd.DataFrame) -> int:
    col = "pref/pairs" if stage == "preferences" else "step"
    if df is None or df.empty or col not in df.columns or df[col].dropna().empty:
        return 0
    return int(df[col].dropna().iloc[-1])


def seconds_left(df: pd.DataFrame, done: int, total: int | None, stage: str = "") -> float | None:
    """Time left at the pace of the run so far (first to last metrics row): None until two rows
    exist or without a total."""
    col = "pref/pairs" if stage == "preferences" else "step"
    if total is None or df is None or len(df) < 2 or "time" not in df.columns or col not in df.columns:
        return None
    d = df[["time", col]].dropna()
    if len(d) < 2:
        return None
    units = float(d[col].iloc[-1] - d[col].iloc[0])
    spent = float(d["time"].iloc[-1] - d["time"].iloc[0])
    if units <= 0 or spent <= 0:
        return None
    return max(0.0, (total - done) * spent / units)


def duration(seconds: float | None, at_least: bool = False) -> str:
    """"about 4 min left"; with at_least, "at least 4 min left" (a lower bound: part of the work has no pace yet)."""
    if seconds is None or not math.isfinite(seconds):
        return "time left: estimating…"
    if seconds < 60:
        amount = f"{max(1, round(seconds))} s"
    elif seconds < 3600:
        amount = f"{round(seconds / 60)} min"
    else:
        amount = f"{seconds / 3600:.1f} h"
    return f"{'at least' if at_least else 'about'} {amount} left"


# ----------------------------------------------------------------------------- weak-to-strong: time by model
# A weak-to-strong run trains two models of very different cost per step in turn: per seed the weak supervisor
# (by default 75 steps of `weak`, 25k parameters), then three runs of the strong model (225 steps of `small`, 941k
# parameters; a step took 0.76 s against the weak model's 0.058 s on one CPU thread, measured). The pace of the rows
# so far, taken over the whole run, is the weak model's pace at first: at step 98 of 916 it said "about 4 min left"
# and the run took 12 more minutes. So time left is counted per model: the rows left of each model (from the
# schedule core/w2s.py follows) times the seconds per row measured on that model's own rows. Model sizes do not
# give the ratio (38x the parameters cost 13x the time: at this size overheads dominate); only measuring tells.

W2S_STRONG = ("ceiling", "xent", "confidence")  # the strong model's three runs, in order (core/w2s.py)


def w2s_schedule(config: dict) -> list[str]:
    """The model behind each metrics row of a weak-to-strong run, in order: "weak" or "strong" for a training step
    or that model's evaluation, "" for a row no model works for (a seed's summary, the final row). The order of
    core/w2s.py's _experiment; its length is planned_steps (a test holds the two together)."""
    from core.config import W2SConfig, from_dict
    from core.w2s import steps_per_run

    cfg = from_dict(W2SConfig, config)
    half = cfg.n_train // 2
    weak = ["weak"] * (steps_per_run(half, cfg.weak_epochs, cfg.batch_size) + 1)      # + its evaluation row
    strong = ["strong"] * (steps_per_run(half, cfg.epochs, cfg.batch_size) + 1)
    return (weak + strong * len(W2S_STRONG) + [""]) * cfg.seeds + [""]


def w2s_row_models(df: pd.DataFrame) -> pd.Series:
    """Which model each metrics row belongs to, read from its metrics ("weak", "strong" or "")."""
    models = pd.Series("", index=df.index, dtype=object)
    for model, names in (("weak", ("weak",)), ("strong", W2S_STRONG)):
        cols = [c for name in names for c in (f"w2s/{name}_loss", f"w2s/{name}_acc") if c in df.columns]
        if cols:
            models[df[cols].notna().any(axis=1)] = model
    return models


def w2s_seconds_left(df: pd.DataFrame, config: dict) -> tuple[float | None, bool]:
    """(seconds left, is it only a lower bound) of a weak-to-strong run: for each model, its rows still to come
    times its seconds per row, measured between consecutive rows of that model's (its evaluations included, so
    their share is counted too). Before the first strong rows the strong model's pace is unknown: the weak one's
    stands in for it, and since the strong model is at least as large (core.w2s.check_models) the figure is a
    lower bound. (None, False) before any pace exists or when the config does not say the schedule."""
    if df is None or len(df) < 2 or not {"time", "step"} <= set(df.columns):
        return None, False
    try:
        schedule = w2s_schedule(config)
    except Exception:  # an old or hand-written config: no schedule, no made-up time
        return None, False
    d = df.dropna(subset=["time", "step"]).sort_values("step")
    models = w2s_row_models(d)
    after = (d["step"].diff() == 1).to_numpy()          # the time since the row before is this row's cost
    seconds = d["time"].diff().to_numpy()
    pace = {}
    for model in ("weak", "strong"):
        own = after & (models == model).to_numpy()
        if own.any():
            pace[model] = float(seconds[own].mean())
    done = int(d["step"].iloc[-1])
    left = {model: schedule[done:].count(model) for model in ("weak", "strong")}
    if not pace:
        return None, False
    lower_bound = left["strong"] > 0 and "strong" not in pace
    per_row = {"weak": pace.get("weak", pace.get("strong")), "strong": pace.get("strong", pace.get("weak"))}
    return max(0.0, sum(left[m] * per_row[m] for m in left)), lower_bound


W2S_PHASES = {"weak": "training the weak supervisor", "ceiling": "training the strong ceiling (gold labels)",
              "xent": "training the student (cross-entropy)", "confidence": "training the student (+ confidence loss)"}


def phase(stage: str, df: pd.DataFrame, config: dict) -> str:
    """What the run is doing now, in words."""
    if df is None or df.empty:
        return {"pretrain": "loading data, training the tokenizer", "ppo": "loading the models",
                "w2s": "loading the models and building the task"}.get(stage, "starting")
    if stage == "w2s":
        seeds = int(config.get("seeds", 1) or 1)
        first = int(config.get("seed", 0) or 0)
        last = df.iloc[-1]
        seed = last.get("w2s/seed")
        which = next((p for k, p in W2S_PHASES.items() if pd.notna(last.get(f"w2s/{k}_loss"))), "evaluating")
        if seed is not None and pd.notna(seed):
            return f"seed {int(seed) - first + 1} of {seeds}: {which}"
        return which
    return {"pretrain": "training", "ppo": "training", "reward": "training",
            "preferences": "sampling and labelling pairs"}.get(stage, "running")


def progress(stage: str, config: dict, df: pd.DataFrame) -> dict:
    """{"fraction": 0..1 or None, "text": "phase · 120 of 300 steps · about 2 min left"}."""
    total, unit = planned_total(stage, config)
    done = done_so_far(stage, df)
    parts = [phase(stage, df, config)]
    if total:
        parts.append(f"{min(done, total):,} of {total:,} {unit}")
        # one pace for the whole run, except weak-to-strong, whose two models differ ~13x in cost per step
        parts.append(duration(*w2s_seconds_left(df, config)) if stage == "w2s"
                     else duration(seconds_left(df, done, total, stage)))
    else:
        parts.append(f"{done:,} {unit}")
    return {"fraction": None if not total else min(1.0, done / total), "text": " · ".join(parts)}


# ----------------------------------------------------------------------------- name and note

def read_meta(run_dir) -> dict:
    """The student's name and note for a run ({"name": "", "note": ""} when none)."""
    try:
        data = read_json(Path(run_dir) / META_FILE, {})
    except RunError:
        data = {}
    data = data if isinstance(data, dict) else {}
    return {"name": str(data.get("name") or ""), "note": str(data.get("note") or "")}


def write_meta(run_dir, name: str, note: str, actor: str | None = None, teacher: bool = False) -> dict:
    """Store a run's name and note in its folder (atomic). Raises ValueError for a name or note too long,
    PermissionError for another student's run."""
    from lab import jobs

    ok, why = jobs.may_control(run_dir, actor, teacher)
    if not ok:
        raise PermissionError(why)
    name, note = (name or "").strip(), (note or "").strip()
    if len(name) > MAX_NAME:
        raise ValueError(f"a run name is at most {MAX_NAME} characters (this one has {len(name)}); shorten it")
    if len(note) > MAX_NOTE:
        raise ValueError(f"a note is at most {MAX_NOTE} characters (this one has {len(note)}); shorten it")
    meta = {"name": name, "note": note}
    Run.open(run_dir).write_json(META_FILE, meta)
    return meta


def display_name(run_id: str, meta: dict) -> str:
    """How a run is called where it is listed: "name (run id)" when it has a name."""
    return f"{meta['name']} ({run_id})" if meta.get("name") else run_id


# ----------------------------------------------------------------------------- deleting

def may_delete(run_dir, owner: str | None, teacher: bool = False) -> tuple[bool, str]:
    """A student may delete a run that is theirs or that nobody owns (made by the CLI or a notebook); the
    teacher any; another student's run is refused with the reason (jobs.may_control decides)."""
    from lab import jobs

    return jobs.may_control(run_dir, owner, teacher)


def delete_run(run_dir, owner: str | None, timeout: float = 30.0, teacher: bool = False) -> None:
    """Delete a run folder: a running job is asked to stop first (and ended if it does not), so no
    worker writes into a folder that is gone. Raises PermissionError for another student's run."""
    from lab import jobs

    ok, why = may_delete(run_dir, owner, teacher)
    if not ok:
        raise PermissionError(why)
    run_dir = Path(run_dir)
    if jobs.status(run_dir).get("state") in jobs.ACTIVE_STATES:
        jobs.stop(run_dir, actor=owner, teacher=teacher)
        try:
            jobs.wait(run_dir, timeout=timeout)
        except TimeoutError:
            jobs.kill(run_dir, actor=owner, teacher=teacher)
    shutil.rmtree(run_dir)


def notes_of(run_dirs) -> dict[str, dict]:
    return {Path(p).name: read_meta(p) for p in run_dirs}

