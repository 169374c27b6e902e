"""What a model picker shows and which option it starts on, and what a stage's "next step" may recommend.

A student picks a base model by how well it writes (its validation loss, and whether its preset writes English
at all) and a reward model by how well it learned the annotator (its gold agreement, judged by the same rules
as the Reward model page's "Do not trust this reward model yet": lab/views/preferences.py `rm_warnings`).
Every picker shows that figure in its option labels and starts on an option the lab does not warn about, and
a next step never sends a student on with a run that its own page warns against.
Pure functions of checkpoint and run folders, no Streamlit (tested directly).
"""

from __future__ import annotations

import math
from pathlib import Path

from core.model import SHIPPED, CheckpointError, read_lab_json
from core.runs import read_jsonl
from lab.views import preferences as P

# presets whose models do not write usable English (what the Pretrain page says of them, and the pickers)
QUICK_LOOK = {"tiny": "the tiny preset is for a quick look: its text stays mostly gibberish",
              "weak": "the weak preset writes broken English (it is weak-to-strong's weak supervisor)"}
SHORT = {"tiny": "tiny preset: quick look, gibberish", "weak": "weak preset: broken English"}
SHIPPED_DEFAULT = {"base": "small", "reward": "reward"}  # what the next stage starts on when a run is held back


def lab_info(spec) -> dict:
    """A checkpoint's lab.json ({} when it has none or none can be read: the label says "not measured")."""
    try:
        return read_lab_json(spec)
    except (CheckpointError, OSError, ValueError):
        return {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- the figure of each option

def base_figure(spec) -> str:
    """"val loss 1.67 nats/token", and what its preset writes when that is not English."""
    info = lab_info(spec)
    loss = info.get("val_loss")
    text = f"val loss {loss:.2f} nats/token" if _number(loss) else "val loss not measured"
    if info.get("preset") in SHORT:
        text += f" · {SHORT[info['preset']]}"
    return text


def base_cautions(spec) -> list[str]:
    """Why a base model is a poor start for preferences and RL (empty when it writes usable text)."""
    info = lab_info(spec)
    preset = info.get("preset")
    if preset not in QUICK_LOOK:
        return []
    loss = info.get("val_loss")
    return [QUICK_LOOK[preset] + (f" (validation loss {loss:.2f} nats/token)" if _number(loss) else "")]


def reward_figure(spec) -> str:
    """"gold agreement 85.5%", marked when the Reward model page would say not to trust it."""
    agreement = lab_info(spec).get("gold_agreement")
    text = f"gold agreement {agreement:.1%}" if _number(agreement) else "gold agreement not measured"
    return text + (" · do not trust" if P.rm_warnings(spec) else "")


def pairs_cautions(spec) -> list[str]:
    """Why a preference set is too small for a reward model to be trusted (its picker label says the count)."""
    n = len(read_jsonl(Path(spec) / "preferences.jsonl")) if Path(spec).is_dir() else None
    return [] if n is None or n >= P.MIN_SET_PAIRS else [f"only {n} labelled pairs"]


FIGURES = {"base": base_figure, "reward": reward_figure}
CAUTIONS = {"base": base_cautions, "reward": P.rm_warnings, "pairs": pairs_cautions}


def with_figures(options, kind: str) -> dict[str, str]:
    """label -> spec (a dict or (label, spec) pairs) with the figure that decides the choice after each label."""
    pairs = options.items() if isinstance(options, dict) else options
    return {f"{label} · {FIGURES[kind](spec)}": spec for label, spec in pairs}


def preferred(options: dict[str, str], kind: str, wanted: str | None = None) -> tuple[int, str | None]:
    """(index to start a picker on, a note or None): the run ?from= names when the lab does not warn about it,
    else the first option it does not warn about (the shipped model comes first); when it warns about every
    option, the one asked for or the first."""
    specs = list(options.values())
    fine = [not CAUTIONS[kind](spec) for spec in specs]
    asked = next((i for i, spec in enumerate(specs) if wanted and Path(str(spec)).name == wanted), None)
    first_fine = next((i for i, ok in enumerate(fine) if ok), None)
    if asked is not None and (fine[asked] or first_fine is None):
        return asked, None
    if first_fine is None:
        return 0, None
    note = None if asked is None else (f"{wanted} (from the link) is not chosen: its own page warns against it. "
                                       "Pick it yourself to use it anyway.")
    return first_fine, note


# ----------------------------------------------------------------------------- the next step of a stage page

def _shipped(kind: str) -> str | None:
    """'the shipped small model (val loss 1.67 nats/token)' when it is in assets/, else None."""
    name = SHIPPED_DEFAULT[kind]
    if not (SHIPPED[name] / "model.safetensors").exists():
        return None
    what = "small model" if kind == "base" else "reward model"
    return f"the shipped {what} ({FIGURES[kind](name)})"


def _instead(kind: str, name: str) -> str:
    shipped = _shipped(kind)
    start = f"It starts on {shipped} instead; pick" if shipped else "Pick"
    return f"{start} {name} there yourself to use it anyway."


def held_back(stage: str, run_dir, next_label: str) -> str | None:
    """Why the run of `stage` is not recommended as the next stage's input (None: it is)."""
    run_dir = Path(run_dir)
    name = run_dir.name
    if stage in ("pretrain", "reward") and not (run_dir / "checkpoint" / "config.json").exists():
        return f"it ended before it saved a model, so {next_label} has nothing of it to use."
    if stage == "pretrain":
        why = base_cautions(run_dir)
        if why:
            return (f"{why[0]}, and pairs of gibberish teach a reward model little. For text a reward model can "
                    "learn from, train the small preset here (many minutes on a laptop CPU). " + _instead("base", name))
    if stage == "reward":
        if P.rm_warnings(run_dir):
            return ("its own page says not to trust it (the warning above), and PPO against it would optimise the "
                    "wrong thing. Train a better one here (more pairs, a lower τ). " + _instead("reward", name))
    if stage == "preferences":
        n = len(read_jsonl(run_dir / "preferences.jsonl"))
        if n < 2:
            return (f"it holds {n} labelled pair(s); a reward model needs at least 2 to train at all and "
                    f"{P.MIN_SET_PAIRS} before its numbers mean anything. Label pairs above (ties and skips do "
                    "not count) or let the simulated annotator make a set.")
        if n < P.MIN_SET_PAIRS:
            return (f"it holds only {n} labelled pairs: a reward model trained on them would be luck, not a "
                    f"preference (its page will say not to trust it). Label at least {P.MIN_SET_PAIRS} (ties and "
                    f"skips do not count), or let the simulated annotator make a set; pick {name} there yourself "
                    "to see the mechanics anyway.")
    return None


def next_step_advice(stage: str, run_dir, state: str | None, next_label: str) -> dict:
    """{"text": what to say, "from": the run id the next page starts on (None: none), "held": a caution}."""
    if run_dir is None or state not in ("done", "stopped"):
        return {"text": f"When a run here has finished, continue with {next_label}.", "from": None, "held": False}
    name = Path(run_dir).name
    why = held_back(stage, run_dir, next_label)
    if why is None:
        return {"text": f"Use **{name}** on {next_label}: it is chosen there already.", "from": name, "held": False}
    return {"text": f"**{name}** is not recommended for {next_label}: {why}", "from": None, "held": True}
