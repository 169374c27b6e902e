"""The one live panel of the PPO, GRPO/RLOO and DPO pages: the stage's live knobs, Pause / Resume / Step / Stop,
the run's state and progress, and the link that carries the knobs. One set of rules for every live stage:

- Which knobs: the fields core/config.py marks live (`live_knobs`), never a list kept here. LOOKS only says how a
  knob is drawn; a live field without a look still gets a number input.
- A new value is checked by core.session.check_live_value (the trainer's own checker) and written to control.json;
  a refusal is one line on the page, writes nothing, and the widget goes back to the value in force.
- The buttons follow the run's state under the one liveness rule (Run.live_status, through jobs.status): a run that
  has ended shows nothing live (no "— live" title, no enabled button, no "sent" note), and a click on a button
  drawn before the run ended is refused by the state read at the click.
- The widgets show the knobs in force (control.json over config.json), another tab's or the CLI's change included:
  the live fragment redraws the page when they change, and the new value is put into the widget's state before the
  widget is drawn (a keyed Streamlit widget otherwise keeps the value it had).
- A paused run has no time-left estimate: nothing moves while it waits.
- A run that ended without finishing (stopped, failed, its worker killed) can be continued from its checkpoint by its
  owner or a teacher (jobs.resume: the same folder queued again; the trainer resumes by itself, core/session.py).
- What the student should notice (collapse, reward hacking, a runaway KL, a value-loss spike) is said above the
  charts as they redraw (lab/views/alerts.py); the run's metrics download as CSV.

The rules are the pure functions at the top (tests call them directly); the Streamlit part below draws what they say.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from core import precision
from core.config import ConfigError, DPOConfig, GRPOConfig, PPOConfig, from_dict, live_knobs
from core.runs import ACTIVE_STATES, Run, RunError, read_json, read_jsonl
from core.session import check_live_value
from lab import classroom, jobs, ui
from lab.views import alerts as alerts_view
from lab.views import charts as charts_view
from lab.views import runs as runs_view
from lab import url_settings as U


@dataclass(frozen=True)
class Stage:
    config: type
    unit: str  # what the run counts: its status rows and progress say "iteration 3" or "step 3"
    step_label: str


STAGES = {"ppo": Stage(PPOConfig, "iteration", "Step one iteration"),
          "grpo": Stage(GRPOConfig, "iteration", "Step one iteration"),
          "dpo": Stage(DPOConfig, "step", "Step one batch")}
ENDED = {"done": "finished", "stopped": "was stopped", "failed": "failed"}
ACTIONS = ("pause", "resume", "step", "stop")


@dataclass(frozen=True)
class Look:
    """How one knob is drawn. kind: "slider"; "choice" (a select slider over `options`); "number"; "mode" (a bool
    shown as the two names in `options`, False first)."""
    label: str
    kind: str = "number"
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    options: tuple = ()
    help: str | None = None
    needs: str | None = None  # disabled unless this bool knob is on (a target that only the adaptive mode reads)
    fmt: str | None = None
    url: str | None = None  # its key in a link, when that is not the knob's name (links already shared say "mode")


LR_CHOICES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)
LOOKS = {
    "lr": Look("learning rate", "choice", options=LR_CHOICES),
    "kl_coef": Look("λ (kl_coef)", "slider", 0.0, 1.0, 0.01,
                    help="reward = score − λ·KL. 0 lets the policy chase the reward model anywhere."),
    "adaptive_kl": Look("λ mode", "mode", options=("fixed", "adaptive"), url="mode",
                        help="adaptive: λ follows the KL towards the target (Ziegler et al. 2019)"),
    "target_kl": Look("target KL (nats per response)", "slider", 0.5, 20.0, 0.5, needs="adaptive_kl"),
    "clip_eps": Look("clip ε", "slider", 0.05, 0.5, 0.05,
                     help="the policy ratio is clipped to [1−ε, 1+ε] in the surrogate loss"),
    "temperature": Look("temperature", "slider", 0.3, 1.5, 0.1, help="sampling temperature of the rollouts"),
}
STAGE_LOOKS = {  # one field name, two meanings: GRPO's β weighs a KL term, DPO's sits inside its loss
    "grpo": {"beta": Look("β (KL to the base model)", "slider", 0.0, 0.5, 0.01,
                          help="0: nothing pulls the policy back toward the base model")},
    "dpo": {"beta": Look("β", "number", 0.001, 5.0, 0.05, fmt="%.3f",
                         help="how far from the reference the implicit reward lets the policy go (small β: far)")},
}


# ----------------------------------------------------------------------------- the rules (no Streamlit)

def knobs_of(stage: str) -> tuple[str, ...]:
    return live_knobs(STAGES[stage].config)


def look(stage: str, knob: str) -> Look:
    return STAGE_LOOKS.get(stage, {}).get(knob) or LOOKS.get(knob) or Look(knob)


def widget_key(stage: str, knob: str) -> str:
    return f"{stage}/{knob}"


def to_widget(lk: Look, value):
    return lk.options[bool(value)] if lk.kind == "mode" else float(value)


def from_widget(lk: Look, shown):
    return shown == lk.options[1] if lk.kind == "mode" else float(shown)


def _fits(default, value) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def knobs_in_force(stage: str, config: dict, control: dict) -> dict:
    """The live knobs a run uses now: control.json over config.json over the field's default. A value of the wrong
    type (a hand-edited control.json) is one the trainer refuses and does not use, so it is not shown either."""
    defaults = {f.name: f.default for f in dataclasses.fields(STAGES[stage].config)}
    out = {}
    for knob in knobs_of(stage):
        out[knob] = defaults[knob]
        for source in (config, control):
            if knob in source and _fits(defaults[knob], source[knob]):
                out[knob] = source[knob]
    return out


def enabled(state: str | None, control: dict | None = None, allowed: bool = True) -> dict[str, bool]:
    """Which of Pause / Resume / Step / Stop mean something now (True = enabled). A queued run can only be stopped;
    a running one paused (unless a pause is asked for already), stepped or stopped; a paused one resumed, stepped or
    stopped; a run that has ended, or another student's, nothing."""
    paused = bool((control or {}).get("paused"))
    if not allowed or state not in ACTIVE_STATES:
        return dict.fromkeys(ACTIONS, False)
    if state == "queued":
        return {"pause": False, "resume": False, "step": False, "stop": True}
    if state == "running":
        return {"pause": not paused, "resume": paused, "step": True, "stop": True}
    return {"pause": False, "resume": True, "step": True, "stop": True}


def is_paused(state: str | None, control: dict | None) -> bool:
    """Paused, or a pause asked for that the run takes before its next iteration: either way nothing will move."""
    return state == "paused" or (state == "running" and bool((control or {}).get("paused")))


def title(state: str | None) -> str:
    return "Knobs — live" if state in ACTIVE_STATES else "Knobs"


def knobs_caption(stage: str, run_id: str | None, state: str | None, allowed: bool = True, why_not: str = "") -> str:
    if run_id is None:
        return "Settings of the next run (they become live once it runs)."
    if state in ACTIVE_STATES and not allowed:
        return (f"The run shown, {run_id}, is read-only here ({why_not}): these knobs only set the next run you "
                "start.")
    if state in ACTIVE_STATES:
        marked = "" if stage == "dpo" else " and is marked on the charts"
        return f"The run {run_id} is {state}: a change applies at its next {STAGES[stage].unit}{marked}."
    return (f"The run shown, {run_id}, {ENDED.get(state, 'is not running')}: these are the settings of the next run "
            "you start (they were read from the run shown).")


def state_caption(stage: str, run_id: str, state: str | None, paused: bool, frozen: bool) -> str:
    """One line above the charts, always there, so the charts keep their places between redraws."""
    unit = STAGES[stage].unit
    if state in ENDED:
        return f"This run {ENDED[state]}: the charts show what it recorded."
    if paused and state == "paused":
        return f"Paused: nothing trains until you resume or step one {unit}."
    if paused:
        return f"Pausing: the run stops before its next {unit} and waits until you resume or step."
    if frozen:
        return "Frozen: switch off “Freeze live charts” to follow the run again."
    return f"Redrawn about every {ui.LIVE_EVERY_S:g} s from {run_id}/metrics.jsonl"


def planned_total(stage: str, config: dict, df: pd.DataFrame | None) -> int | None:
    """How many iterations (PPO, GRPO) or optimizer steps (DPO: epochs × batches of the pairs its step-0 row counts)
    the run will do; None while that is not known."""
    try:
        if stage in ("ppo", "grpo"):
            return int(config["iterations"])
        if df is None or "data/train_pairs" not in df.columns or df["data/train_pairs"].dropna().empty:
            return None
        pairs = int(df["data/train_pairs"].dropna().iloc[0])
        return int(config.get("epochs", 1)) * math.ceil(pairs / int(config.get("batch_size", 1)))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def progress(stage: str, config: dict, df: pd.DataFrame | None, paused: bool) -> tuple[float | None, str]:
    """(fraction done or None, "training · 12 of 100 iterations · about 38 s left"). Paused: no time left, since
    the pace so far says nothing about when someone presses Resume."""
    unit = STAGES[stage].unit
    total, done = planned_total(stage, config, df), runs_view.done_so_far(stage, df)
    doing = "paused" if paused else ("training" if df is not None and not df.empty else "loading the models")
    if not total:
        return None, f"{doing} · {done:,} {unit}s"
    parts = [doing, f"{min(done, total):,} of {total:,} {unit}s"]
    if not paused:
        parts.append(runs_view.duration(runs_view.seconds_left(df, done, total, stage)))
    return min(1.0, done / total), " · ".join(parts)


def view(status: dict, control: dict, knobs: dict) -> tuple:
    """What the page's look depends on: the live fragment redraws the whole page when this changes, so buttons,
    captions and knob widgets never show a state or a value the run has left."""
    return status.get("state"), bool(control.get("paused")), tuple(sorted(knobs.items()))


def sync(session, stage: str, run_id: str | None, knobs: dict) -> list[str]:
    """Bring the knob widgets' state (`session`: st.session_state, or a dict in a test) to the knobs in force, before
    the widgets are drawn: every knob for a run shown for the first time (or after Streamlit dropped the widgets'
    state, or after a refusal), else only the knobs that changed in the run since this session last looked, so a
    value the student is choosing for the next run stays. Returns the knobs it set."""
    seen = session.get(f"{stage}/seen") or {}
    fresh = ("run" not in seen or seen["run"] != run_id or seen.get("resync")
             or any(widget_key(stage, k) not in session for k in knobs))
    changed = [k for k, v in knobs.items() if fresh or seen["knobs"].get(k) != v]
    for knob in changed:
        session[widget_key(stage, knob)] = to_widget(look(stage, knob), knobs[knob])
    session[f"{stage}/seen"] = {"run": run_id, "knobs": dict(knobs)}
    return changed


def moved(session, stage: str) -> dict:
    """The knobs whose widget differs from the value in force this session last saw: the student moved them."""
    seen = (session.get(f"{stage}/seen") or {}).get("knobs", {})
    out = {}
    for knob in knobs_of(stage):
        if widget_key(stage, knob) in session:
            value = from_widget(look(stage, knob), session[widget_key(stage, knob)])
            if value != seen.get(knob):
                out[knob] = value
    return out


def said(knobs: dict) -> str:
    return ", ".join(f"{k} = {v}" if isinstance(v, bool) else f"{k} = {v:g}" for k, v in knobs.items())


def set_knobs(run: Run, actor: str | None = None, teacher: bool = False, **knobs) -> dict:
    """Check new live values with the trainer's own checker, on the run's config with the knobs in force, then write
    them to control.json (all or none). ConfigError names a refused one; jobs.JobError when `actor` may not steer
    the run (None is the local, trusted caller: a notebook, a test). Returns the new control dict."""
    stage = run.stage
    cfg = from_dict(STAGES[stage].config, run.config)
    for knob, value in knobs_in_force(stage, run.config, run.read_control()).items():
        try:
            cfg = dataclasses.replace(cfg, **{knob: check_live_value(cfg, knob, value)})
        except ConfigError:
            pass  # a value the trainer refused too: it keeps the config's
    clean = {}
    for knob, value in knobs.items():
        clean[knob] = check_live_value(cfg, knob, value)
        cfg = dataclasses.replace(cfg, **{knob: clean[knob]})
    jobs.check_control(run.path, actor, teacher)
    return run.write_control(**clean)


def act(run: Run, action: str, actor: str | None = None, teacher: bool = False) -> dict:
    """Pause, resume, step or stop the run, if its state read now (not when the page was drawn) allows it; JobError
    says why not. Step: while paused, exactly one more iteration (the trainer counts increments of "step")."""
    status, control = jobs.status(run.path), run.read_control()
    state = status.get("state")
    if not enabled(state, control)[action]:
        where = ENDED.get(state) or f"is {state}" + (" and already pausing" if control.get("paused") else "")
        raise jobs.JobError(f"this run {where}: nothing to {action}")
    jobs.check_control(run.path, actor, teacher)
    if action == "stop":
        jobs.stop(run.path, actor, teacher)  # a queued run leaves the queue at once
        return run.read_control()
    if action == "step":
        step = control.get("step")
        step = step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 0
        return run.write_control(paused=True, step=step + 1)
    return run.write_control(paused=action == "pause")


def refusals(run_dir) -> list[str]:
    """The live changes the trainer refused, oldest first (control_log.jsonl)."""
    rows = read_jsonl(Path(run_dir) / "control_log.jsonl")
    return [said for said in (r.get("control/rejected") or r.get("rejected") for r in rows) if said]


CONTINUABLE = ("stopped", "failed")  # a killed worker's run reads as failed (the liveness rule): it continues too


def may_continue(state: str | None, allowed: bool = True) -> bool:
    """Whether "Continue this run" is offered: a run that ended without finishing (stopped, failed, its worker
    killed), to its owner or a teacher. A done run has nothing left to train; a live one is still training."""
    return allowed and state in CONTINUABLE


def checkpoint_position(stage: str, run_dir) -> int | None:
    """The iteration (PPO, GRPO) or step (DPO) the run's checkpoint holds, read from its lab.json without repairing
    anything (the page does not own the run); None when there is none or it cannot be read (jobs.resume checks it
    properly and names a broken file)."""
    try:
        info = read_json(Path(run_dir) / "checkpoint" / "lab.json", {})
    except RunError:
        return None
    position = info.get("step" if stage == "dpo" else "iteration") if isinstance(info, dict) else None
    return position if isinstance(position, int) and not isinstance(position, bool) else None


def nothing_left(position: int | None, total: int | None) -> bool:
    """The checkpoint holds every planned iteration (a stop that came after the last one): nothing to continue."""
    return position is not None and total is not None and position >= total


def continue_note(stage: str, state: str | None, position: int | None, total: int | None) -> str:
    """What Continue will do, in the run's own numbers."""
    unit = STAGES[stage].unit
    if nothing_left(position, total):
        return (f"This run {ENDED.get(state, 'ended')} after its last {unit} ({position:,} of {total:,}): its "
                "checkpoint is complete and there is nothing left to continue.")
    of = f" of {total:,}" if total else ""
    start = (f"from its checkpoint at {unit} {position:,}{of}" if position else
             f"from {unit} 0: it ended before its first checkpoint (its rows so far are set aside, not drawn twice)")
    return (f"This run {ENDED.get(state, 'ended')} before it finished. Continue queues it again in the same folder: "
            f"it resumes {start} and trains the {unit}s left, with the knobs in force.")


def link_schema(stage: str, defaults) -> list[U.Setting]:
    """The settings a link carries for the stage's live knobs, with the widgets' ranges."""
    out = []
    for knob in knobs_of(stage):
        lk, default = look(stage, knob), getattr(defaults, knob)
        if lk.kind == "mode":
            out.append(U.Setting(lk.url or knob, "choice", lk.options[bool(default)], choices=lk.options))
        elif lk.kind == "choice":
            out.append(U.Setting(lk.url or knob, "float", min(lk.options, key=lambda c: abs(c - default)),
                                 min(lk.options), max(lk.options), choices=lk.options, snap=True))
        elif lk.lo is not None and lk.hi is not None:
            out.append(U.Setting(lk.url or knob, "float", float(default), lk.lo, lk.hi))
    return out


# ----------------------------------------------------------------------------- the panel (Streamlit)

@dataclass
class Panel:
    """What one page run knows about the run shown: read once at the top, before any knob widget is drawn."""
    stage: str
    run_dir: Path | None
    status: dict
    control: dict
    knobs: dict  # in force
    allowed: bool = True
    why_not: str = ""
    defaults: object = None  # the stage's default config: the next run's knobs while no run is shown

    @property
    def run(self) -> Run | None:
        return Run(self.run_dir) if self.run_dir is not None else None

    @property
    def state(self) -> str | None:
        return self.status.get("state")

    @property
    def live(self) -> bool:
        return self.run_dir is not None and self.state in ACTIVE_STATES

    @property
    def run_id(self) -> str | None:
        return self.run_dir.name if self.run_dir is not None else None

    def key(self, knob: str) -> str:
        return widget_key(self.stage, knob)

    def values(self) -> dict:
        """The knobs as the widgets show them, in the config's types (what Start starts the next run with)."""
        return {k: from_widget(look(self.stage, k), st.session_state[self.key(k)]) for k in knobs_of(self.stage)
                if self.key(k) in st.session_state}

    def view(self) -> tuple:
        return view(self.status, self.control, self.knobs)


def _read(stage: str, run_dir: Path | None, defaults=None) -> Panel:
    if run_dir is None:
        knobs = {k: getattr(defaults, k) for k in knobs_of(stage)} if defaults is not None \
            else knobs_in_force(stage, {}, {})
        return Panel(stage, None, {}, {}, knobs, defaults=defaults)
    run = Run(run_dir)
    status, control = jobs.status(run_dir), run.read_control()
    try:
        config = run.config
    except RunError:
        config = {}  # its folder went away meanwhile: the page says so where it draws the run
    allowed, why_not = ui.may_control(run_dir)
    return Panel(stage, Path(run_dir), status, control, knobs_in_force(stage, config, control), allowed, why_not,
                 defaults)


def open_panel(stage: str, run_dir: Path | None, defaults) -> Panel:
    """Read the run shown and bring the knob widgets to its knobs in force. Call it before any knob widget."""
    panel = _read(stage, run_dir, defaults)
    sync(st.session_state, stage, panel.run_id, panel.knobs)
    return panel


def _draw(panel: Panel, knob: str) -> None:
    lk, key = look(panel.stage, knob), panel.key(knob)
    shown = st.session_state[key]
    if lk.kind == "mode":
        st.radio(lk.label, list(lk.options), key=key, horizontal=True, help=lk.help)
        return
    if lk.kind == "choice":  # the value in force is always one of the options, even one no link or slider offers
        st.select_slider(lk.label, sorted(set(lk.options) | {shown}), key=key, format_func=lambda v: f"{v:g}",
                         help=lk.help)
        return
    disabled = lk.needs is not None and not from_widget(look(panel.stage, lk.needs),
                                                        st.session_state.get(panel.key(lk.needs)))
    lo = None if lk.lo is None else min(lk.lo, shown)  # a value set from the CLI beyond the widget's range is shown
    hi = None if lk.hi is None else max(lk.hi, shown)
    if lk.kind == "slider":
        st.slider(lk.label, lo, hi, step=lk.step, key=key, help=lk.help, disabled=disabled)
    else:
        st.number_input(lk.label, min_value=lo, max_value=hi, step=lk.step, format=lk.fmt or "%g", key=key,
                        help=lk.help, disabled=disabled)


def knobs(panel: Panel, columns: int = 3) -> dict:
    """The knobs title, what they act on, one widget per live knob; a knob the student moved is sent to a live run
    of theirs. Returns the widgets' values (the next run's knobs)."""
    st.subheader(title(panel.state))
    st.caption(knobs_caption(panel.stage, panel.run_id, panel.state, panel.allowed, panel.why_not))
    names = knobs_of(panel.stage)
    cols = st.columns(max(1, min(columns, len(names))))
    per = math.ceil(len(names) / len(cols))
    for i, knob in enumerate(names):
        with cols[i // per]:
            _draw(panel, knob)
    for run_id, text in st.session_state.pop(f"{panel.stage}/refused", []):
        if run_id == panel.run_id and panel.live:
            st.error(text)
    send(panel)
    return panel.values()


def send(panel: Panel) -> None:
    """Write the knobs the student moved to the live run (also from inside the live fragment: a slider moved while
    the fragment redraws reaches the server in a fragment run, where an on_change callback can be skipped). A refused
    value writes nothing: its message waits in the session and the page redraws with the widgets in force."""
    if not (panel.live and panel.allowed):
        return
    changes = moved(st.session_state, panel.stage)
    seen = st.session_state[f"{panel.stage}/seen"]
    sent, refused = {}, []
    for knob, value in changes.items():  # one at a time: a refused knob does not hold back another
        try:
            panel.control = set_knobs(panel.run, actor=ui.owner(), teacher=ui.is_teacher(), **{knob: value})
        except (ConfigError, RunError, OSError, jobs.JobError) as e:
            refused.append((panel.run_id, f"Not applied: {ui.plain(e)}"))
            continue
        sent[knob] = panel.knobs[knob] = seen["knobs"][knob] = panel.control[knob]
    if sent:
        st.toast(f"{said(sent)} sent to {panel.run_id}: it applies at the next {STAGES[panel.stage].unit}.",
                 icon=":material/tune:")
    if refused:
        st.session_state[f"{panel.stage}/refused"] = refused
        seen["resync"] = True
        st.rerun()


SAID = {"pause": "Pause requested: the run pauses before its next {unit}", "resume": "Resumed",
        "step": "One more {unit} requested", "stop": "Stop requested: the run ends with a checkpoint"}
ICONS = {"pause": "pause", "resume": "play_arrow", "step": "skip_next", "stop": "stop"}


def buttons(panel: Panel) -> None:
    """Pause / Resume / Step / Stop, enabled by the run's state; read-only (and saying whose it is) for another
    student's run. Then Continue (a run that ended unfinished) and the metrics as CSV."""
    if panel.run_dir is None:
        return
    on = enabled(panel.state, panel.control, panel.allowed)
    if not panel.allowed:
        st.info(f"You are viewing {jobs.run_owner(panel.run_dir)}'s run {panel.run_id}: read-only, its controls are "
                "theirs.", icon=":material/visibility:")
    unit = STAGES[panel.stage].unit
    labels = {"pause": "Pause", "resume": "Resume", "step": STAGES[panel.stage].step_label, "stop": "Stop"}
    helps = {"step": f"pauses the run (if it is not) and runs exactly one more {unit}",
             "stop": f"ends the run after this {unit} (with a checkpoint), or takes it out of the queue"}
    for col, action in zip(st.columns([1, 1, 1.4, 1, 3]), ACTIONS):
        if col.button(labels[action], icon=f":material/{ICONS[action]}:", disabled=not on[action],
                      key=f"{panel.stage}/button/{action}", help=helps.get(action)):
            try:
                act(panel.run, action, actor=ui.owner(), teacher=ui.is_teacher())
            except (jobs.JobError, RunError, OSError) as e:
                st.error(f"Not done: {ui.plain(e)}")
                continue
            st.toast(SAID[action].format(unit=unit))
            if action in ("pause", "resume"):
                st.rerun()  # the buttons and captions follow the new state at once
    continue_button(panel)
    download_metrics(panel)


def continue_button(panel: Panel) -> None:
    """"Continue this run" for a stopped or failed run (its worker killed included): jobs.resume queues the same
    folder again and its trainer resumes from the checkpoint (core/session.py), as `rlhf-lab <stage> --resume`
    does. Offered to its owner or a teacher only; for anyone else it is drawn disabled, saying why."""
    if panel.run_dir is None or panel.state not in CONTINUABLE:
        return
    try:
        config = panel.run.config
    except RunError:
        return
    total = planned_total(panel.stage, config, ui.metrics_frame(panel.run_dir))
    position = checkpoint_position(panel.stage, panel.run_dir)
    st.caption(continue_note(panel.stage, panel.state, position, total))
    if nothing_left(position, total):
        return
    if st.button("Continue this run", icon=":material/play_circle:", type="primary", key=f"{panel.stage}/continue",
                 disabled=not may_continue(panel.state, panel.allowed), help=panel.why_not or None):
        try:
            jobs.resume(panel.run_dir, actor=ui.owner(), teacher=ui.is_teacher(), runs_root=ui.runs_root())
        except (jobs.JobError, RunError, OSError) as e:
            st.error(f"Not continued: {ui.plain(e)}")
            return
        st.toast(f"{panel.run_id} is queued again: it continues from its checkpoint")
        st.rerun()  # the page follows the run live again


def download_metrics(panel: Panel) -> None:
    """The run's metrics as CSV, read from its folder when the button is clicked (a live run's newest rows), so a
    redraw every second costs nothing; no rerun on click."""
    if panel.run_dir is None:
        return
    run_dir = panel.run_dir
    st.download_button("Download metrics (CSV)", lambda: charts_view.metrics_csv(ui.metrics_frame(run_dir)),
                       file_name=f"{panel.run_id}-metrics.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:", key=f"{panel.stage}/download_csv",
                       help="every row of metrics.jsonl, one column per metric (DESIGN.md's names)")


def follow(stage: str, run_dir: Path, drawn: tuple) -> tuple[dict | None, pd.DataFrame | None]:
    """The top of a live page's fragment: a knob moved meanwhile is sent, the state badge, and a redraw of the whole
    page as soon as the run's state or knobs differ from what the page was drawn with; then one caption and the
    progress. Returns (status, metrics), or (None, None) when the run's folder is gone."""
    if not Path(run_dir).is_dir():
        st.warning(f"The folder of run {Path(run_dir).name} was deleted; pick another run or start a new one.")
        return None, None
    send(_read(stage, run_dir))
    status = ui.status_badge(run_dir)
    control = Run(run_dir).read_control()
    try:
        config = Run(run_dir).config
    except RunError:
        return None, None
    if view(status, control, knobs_in_force(stage, config, control)) != drawn:
        st.rerun()
    state, paused = status.get("state"), is_paused(status.get("state"), control)
    df = ui.metrics_frame(run_dir)
    st.caption(state_caption(stage, Path(run_dir).name, state, paused, ui.live_every() is None))
    if state == "queued":
        ui.progress_line(run_dir, status, df)
    elif state in ACTIVE_STATES:
        fraction, text = progress(stage, config, df, paused)
        if fraction is None:
            st.caption(text)
        else:
            st.progress(fraction, text=text)
    st.caption(precision.caption(run_dir))
    refused = refusals(run_dir) if state in ACTIVE_STATES else []
    if refused:
        st.warning(f"The run refused a live change: {refused[-1]}")
    show_alerts(stage, df)
    return status, df


def show_alerts(stage: str, df: pd.DataFrame | None) -> None:
    """What the student should notice in the run now (lab/views/alerts.py), above its charts, redrawn with them."""
    for alert in alerts_view.alerts(stage, df):
        (st.error if alert.level == "error" else st.warning)(alert.text, icon=":material/warning:")


# ----------------------------------------------------------------------------- the link that carries the knobs

def take_link(panel: Panel, extra: dict | None = None) -> None:
    """Settings from the URL (a shared link) or the teacher's preset, into the widgets: once per new link, and never
    into a live run of this student's (that would steer it without a touch: its knobs are what the widgets show).
    `extra`: {setting: session key} of the page's other settings (e.g. iterations). Call it before the widgets."""
    stage, schema = panel.stage, link_schema(panel.stage, panel.defaults) + [s for s in (extra or {})]
    keys = {**{look(stage, k).url or k: panel.key(k) for k in knobs_of(stage)},
            **{s.key: key for s, key in (extra or {}).items()}}
    query = st.query_params.to_dict()
    url_key = tuple(sorted((k, v) for k, v in query.items() if k not in U.OTHER_KEYS))
    incoming = st.session_state.pop(f"{stage}/pending_settings", None)
    if incoming is None and url_key and st.session_state.get(f"{stage}/url_seen") != url_key:
        incoming = query
    if incoming is not None:
        values, problems = U.parse(incoming, schema)
        notes = [f"From the link: {p}" for p in problems]
        if values and panel.live and panel.allowed:
            notes.append(f"The link's settings were not applied: your run {panel.run_id} is live, and the knobs show "
                         "its values.")
        else:
            for setting, value in values.items():
                st.session_state[keys[setting]] = value
        st.session_state[f"{stage}/url_notes"] = notes
    for note in st.session_state.get(f"{stage}/url_notes", []):
        st.warning(note, icon=":material/link:")


def share_link(panel: Panel, extra: dict | None = None) -> None:
    """The URL follows the widgets, so the address bar is always a link to them; a copyable link; in a classroom the
    teacher's published settings for this stage, and (for the teacher) publishing these. Call it after the widgets."""
    stage, schema = panel.stage, link_schema(panel.stage, panel.defaults) + [s for s in (extra or {})]
    now = {**{look(stage, k).url or k: st.session_state[panel.key(k)] for k in knobs_of(stage)},
           **{s.key: st.session_state[key] for s, key in (extra or {}).items() if key in st.session_state}}
    encoded = U.encode(now, schema)
    for key in [k for k in st.query_params if k not in encoded and k not in U.OTHER_KEYS]:
        del st.query_params[key]
    for key, value in encoded.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    written = tuple(sorted(encoded.items()))
    if st.session_state.get(f"{stage}/url_seen") not in (None, written):
        st.session_state.pop(f"{stage}/url_notes", None)  # the student changed something since: old notes are moot
    st.session_state[f"{stage}/url_seen"] = written
    with st.expander("Copy a link to these settings", icon=":material/link:"):
        st.code(U.link(st.context.url or "", now, schema), language=None)
        st.caption("Opens this page with these settings (not your name, not your run).")
    root = ui.runs_root()
    preset = classroom.preset_for(root, stage) if classroom.classroom() else None
    if preset:
        st.info(f"The teacher's settings — **{preset['name']}**: "
                + ", ".join(f"{k} = {v}" for k, v in preset["settings"].items()), icon=":material/school:")
        if st.button("Use the teacher's settings", key=f"{stage}/use_preset"):
            st.session_state[f"{stage}/pending_settings"] = preset["settings"]
            st.rerun()
    if classroom.classroom() and ui.is_teacher():
        with st.popover("Publish these settings to the class", icon=":material/campaign:"):
            name = st.text_input("Name for the class", key=f"{stage}/preset_name",
                                 placeholder="e.g. no KL leash: watch the reward hacking")
            if st.button("Publish", key=f"{stage}/publish"):
                try:
                    classroom.publish_preset(root, stage, name, encoded, teacher=ui.is_teacher())
                except (ValueError, PermissionError, OSError) as e:
                    st.error(f"Not published: {ui.plain(e)}")
                else:
                    st.toast(f"Published: every student's {stage.upper()} page shows these settings")
