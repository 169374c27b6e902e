"""What a run really used: its config plus its control log (see DESIGN.md).

config.json holds the settings a run started with. A live knob turned while it trains (λ, ε, β, lr...) is not
written back there: the trainer (core/session.py apply_controls) appends one row to control_log.jsonl per change,

    {"iteration": the first iteration that uses it, "time", "key", "value", "accepted": true, "previous"}

and one row with "accepted": false for a value it refused (that one never took effect). So the settings in force at
iteration i are the config with every accepted change of iteration <= i applied, in the order they were made.

One subtlety, a resume: a run restarted from a checkpoint older than a change trains those iterations again with the
checkpoint's knobs; whatever control.json then changes is logged again as a new row. The old row belongs to the
attempt that was thrown away, and is recognised by the metrics: an iteration *before* the change was trained again
*after* the change was written (the rows a resume trains again are moved to metrics.rewound.jsonl). And the
resumed trainer logs the knobs it restored from the checkpoint, as accepted rows with "resume": true at its first
iteration, so a change the checkpoint never saw (a NaN's reset writes none) ends there.

Everything here reads files only (no torch, no config classes, no Streamlit). It is meant to be the one reader of
what a run used, so that every legend, table, knob widget and export agrees (Compare's legend and its "settings
that differ" read it).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from core.runs import Run, read_jsonl

LOG_FILE = "control_log.jsonl"


def flat_config(config: dict, prefix: str = "") -> dict:
    """A nested config as one level ("model.n_layer": 4): one setting per key."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _trained_at(run_dir: Path) -> dict[int, float]:
    """iteration -> when the metrics row that stands for it was written (the rows a resume trained again replace
    the old ones in metrics.jsonl)."""
    out = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        step, when = row.get("step"), row.get("time")
        if _number(step) and _number(when):
            out[int(step)] = float(when)
    return out


def _thrown_away(change: dict, trained_at: dict[int, float]) -> bool:
    """Did a resume discard this change? Yes when an iteration before it was trained again after it was written:
    the run went back to a checkpoint older than the change (see the module doc). A resume from the checkpoint
    just before the change trains nothing again before it: there the resume's own rows set the knobs back."""
    if not _number(change.get("time")):
        return False  # no time to compare (a hand-written row): keep it
    return any(step < change["iteration"] and when > change["time"] for step, when in trained_at.items())


def changes(run_dir) -> list[dict]:
    """The live changes that took effect, in the order they apply: {"iteration", "key", "value", "previous"}.

    Refused rows ("accepted": false) are left out: the run kept its value. So are malformed rows and rows of an
    attempt a resume threw away."""
    run_dir = Path(run_dir)
    trained_at = _trained_at(run_dir)
    out = []
    for row in read_jsonl(run_dir / LOG_FILE):
        if row.get("accepted") is not True or not isinstance(row.get("key"), str) or "value" not in row:
            continue
        it = row.get("iteration")
        if not isinstance(it, int) or isinstance(it, bool) or it < 1:
            continue
        if _thrown_away(row, trained_at):
            continue
        out.append({"iteration": it, "key": row["key"], "value": row["value"], "previous": row.get("previous")})
    # by iteration; rows of one iteration stay in the order written (a resumed attempt's row comes last and wins)
    return sorted(out, key=lambda c: c["iteration"])


def last_iteration(run_dir) -> int:
    """The last iteration the run has logged (0 before its first row)."""
    return max(_trained_at(Path(run_dir)), default=0)


def _start(run_dir) -> dict:
    """The flat config the run started with; RunError for a folder that is not a readable run."""
    return flat_config(Run.open(run_dir).config)


def settings_in_force(run_dir, through: int | None = None) -> pd.DataFrame:
    """The run's settings at every iteration: one row per iteration 1..`through` (default: the last one logged, at
    least 1: a run that has not trained yet starts with its config), one column per setting of its config.

    A change holds from its iteration on, until a later change of the same key. RunError for a folder that is not
    a run."""
    run_dir = Path(run_dir)
    start = _start(run_dir)
    found = changes(run_dir)
    for change in found:
        start.setdefault(change["key"], None)  # a knob the config does not name: unknown until it was set
    n = max(1, last_iteration(run_dir) if through is None else through)
    # object columns: each value keeps its own Python type (0.05 stays a float, True a bool, a list a list)
    frame = pd.DataFrame({key: [value] * n for key, value in start.items()},
                         index=pd.RangeIndex(1, n + 1, name="iteration"), dtype=object)
    for change in found:
        if change["iteration"] <= n:
            frame.loc[change["iteration"]:, change["key"]] = change["value"]
    return frame


def settings_at(run_dir, iteration: int | None = None) -> dict:
    """The settings used at one iteration; None: the next iteration (the knobs in force now, what a live widget
    shows). A change the trainer accepted for the next iteration counts already."""
    run_dir = Path(run_dir)
    if iteration is None:
        iteration = last_iteration(run_dir) + 1
    settings = _start(run_dir)
    for change in changes(run_dir):
        if change["iteration"] <= iteration:
            settings[change["key"]] = change["value"]
    return settings


def changed_mid_run(run_dir, through: int | None = None) -> dict[str, list[tuple[int, object]]]:
    """key -> [(1, value it started with), (iteration, new value), ...] for every setting that changed during
    iterations 1..`through` (default: the last one logged). Settings that never changed are not listed; a change
    back to the value already in force is no change."""
    run_dir = Path(run_dir)
    start = _start(run_dir)
    through = last_iteration(run_dir) if through is None else through
    history: dict[str, list[tuple[int, object]]] = {}
    for change in changes(run_dir):
        if change["iteration"] > through:
            continue  # accepted for an iteration that has not run yet: not used so far
        key = change["key"]
        steps = history.setdefault(key, [(1, start.get(key))])
        if steps[-1][0] == change["iteration"]:
            steps[-1] = (change["iteration"], change["value"])  # two changes before one iteration: the last counts
        else:
            steps.append((change["iteration"], change["value"]))
    # drop the no-ops (a value set again, a change undone before any iteration used it)
    out = {}
    for key, steps in history.items():
        kept = [steps[0]]
        for it, value in steps[1:]:
            if not _same(value, kept[-1][1]):
                kept.append((it, value))
        if len(kept) > 1:
            out[key] = kept
    return out


def _same(a, b) -> bool:
    """Equal as settings: 0 and 0.0 are one λ (the trainer stores every number as a float); True and 1 are not
    one setting, though Python says True == 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def show(value) -> str:
    """A setting as a table cell: 0.05, True, – for none."""
    return "–" if value is None else str(value)


def history_text(steps: list[tuple[int, object]]) -> str:
    """[(1, 0.2), (4, 0.1), (9, 0.3)] -> "0.2 → 0.1 (from iteration 4) → 0.3 (from iteration 9)"."""
    text = show(steps[0][1])
    for it, value in steps[1:]:
        text += f" → {show(value)} (from iteration {it})"
    return text


def settings_summary(run_dir, through: int | None = None) -> dict[str, str]:
    """key -> what the run used, in words: "0.05" for a setting that never changed, "0.05 → 0.3 (from iteration
    7)" for one that changed mid-run. Every setting of the config is listed."""
    start = _start(run_dir)
    history = changed_mid_run(run_dir, through)
    return {key: history_text(history[key]) if key in history else show(start.get(key))
            for key in {**start, **history}}

