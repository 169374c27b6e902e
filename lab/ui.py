"""Helpers every page shares: the runs root, the current run, run pickers, status badges, errors,
uploads, the live/frozen switch and chart rendering. Pages stay thin: widgets -> one lab call -> render.

State that must survive a browser refresh lives in the run folders and in the URL (?run=<id>), never
only in st.session_state (a refresh starts a new session). Two students are two sessions: each gets
an `owner` id, and jobs.start refuses only a second start by the *same* owner.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import ConfigError
from core.runs import DEFAULT_ROOT, Run, RunError, list_runs
from lab import classroom, glossary, jobs
from lab.views import models as models_view
from lab.views import runs as runs_view
from lab.views import wording

LIVE_EVERY_S = 1.0  # live charts redraw about once a second
STATE_COLORS = {"queued": "gray", "running": "blue", "paused": "orange", "done": "green", "failed": "red",
                "stopped": "violet", "corrupt": "red"}


# ----------------------------------------------------------------------------- where runs live

def runs_root() -> Path:
    """The runs root: `--runs ROOT` after the `--` of `streamlit run` (what `rlhf-lab app` passes), else
    $RLHF_LAB_RUNS (tests), else ./runs."""
    argv = sys.argv[1:]
    root = None
    for i, arg in enumerate(argv):
        if arg == "--runs" and i + 1 < len(argv):
            root = argv[i + 1]
        elif arg.startswith("--runs="):
            root = arg.split("=", 1)[1]
    root = root or os.environ.get("RLHF_LAB_RUNS") or DEFAULT_ROOT
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def owner() -> str:
    """The acting student. On a laptop (no --classroom) the local user, who owns every run started here;
    in a classroom the name the student gave (student_gate asks for it before any page draws)."""
    if not classroom.classroom():
        return classroom.local_name()
    return st.session_state.get("student") or ""


def is_teacher() -> bool:
    """The teacher (who entered the code) may see and stop every run. On a laptop the one user is."""
    return not classroom.classroom() or bool(st.session_state.get("teacher"))


def may_control(run_dir) -> tuple[bool, str]:
    """Whether this session may steer, stop, rename or delete the run (jobs.may_control decides)."""
    return jobs.may_control(run_dir, owner(), teacher=is_teacher())


def student_gate() -> bool:
    """In a classroom: this student's name, from the session or ?student= in the URL (so a refresh and a
    shared link keep it), else a form that asks for it once. False while there is none (the page waits)."""
    if not classroom.classroom():
        return True
    name = st.session_state.get("student")
    raw = st.query_params.get("student")
    if not name and raw:
        try:
            name = classroom.check_name(raw)
        except ValueError as e:
            st.warning(f"The name in the link was not used: {plain(e)}")
    if name:
        st.session_state["student"] = name
        if raw != name:
            st.query_params["student"] = name  # page switches drop the query: put it back
        return True
    st.title("RLHF Lab")
    with st.form("student_name"):
        typed = st.text_input("Your name", max_chars=classroom.MAX_NAME,
                              help="Your runs are kept under this name; use the same one next time.")
        if st.form_submit_button("Enter the lab", type="primary"):
            try:
                name = classroom.check_name(typed)
            except ValueError as e:
                st.error(f"Not accepted: {plain(e)}")
            else:
                st.session_state["student"] = name
                st.query_params["student"] = name
                st.rerun()
    return False


def _client() -> str:
    """Who is guessing the teacher code: the browser's address when Streamlit knows it (a refresh does not
    reset the delay), else this session."""
    ip = getattr(st.context, "ip_address", None)
    if ip:
        return f"ip:{ip}"
    st.session_state.setdefault("client", uuid.uuid4().hex)
    return st.session_state["client"]


def teacher_box() -> None:
    """Sidebar, classroom only: who is working here, and the teacher's code."""
    if not classroom.classroom():
        return
    st.caption(f"Working as **{owner()}**" + (" · teacher" if is_teacher() else ""))
    if is_teacher():
        if st.button("Leave teacher mode", key="teacher/leave"):
            st.session_state["teacher"] = False
            st.rerun()
        return
    with st.popover("Teacher", icon=":material/key:"):
        with st.form("teacher_code", border=False):
            code = st.text_input("Teacher code", type="password")
            if st.form_submit_button("Unlock"):
                if classroom.check_teacher_code(code, _client()):
                    st.session_state["teacher"] = True
                    st.rerun()
                st.error("Not accepted.")


def runs_of(stage: str | None = None, states=None) -> list[dict]:
    rows = list_runs(runs_root())
    return [r for r in rows if (stage is None or r["stage"] == stage) and (states is None or r["state"] in states)]


# ----------------------------------------------------------------------------- the current run of a page

def _key(stage: str) -> str:
    return f"run/{stage}"


def current_run(stage: str) -> Path | None:
    """The run this page shows: ?run=<id> in the URL (survives a refresh), else the one this session
    last started or picked. A folder deleted meanwhile is forgotten with a warning, not a crash."""
    candidates = []
    run_id = st.query_params.get("run")
    if run_id:
        path = jobs.run_path(runs_root(), run_id)
        if path is None:  # a forged or mangled id: never a path outside the runs root
            st.warning(f"?run={run_id[:80]!r} is not a run id; showing another run.")
            del st.query_params["run"]
        else:
            candidates.append(path)
    if st.session_state.get(_key(stage)):
        candidates.append(Path(st.session_state[_key(stage)]))
    for path in candidates:
        try:
            if Run.open(path).stage == stage:
                return path
        except RunError:
            st.warning(f"Run {path.name} is gone (its folder was deleted or is unreadable); pick another run.")
            if st.query_params.get("run") == path.name:
                del st.query_params["run"]
            st.session_state.pop(_key(stage), None)
    return None


def _remember(stage: str, path) -> None:
    st.session_state[_key(stage)] = str(path)
    st.query_params["run"] = Path(path).name


def set_current_run(stage: str, path) -> None:
    """Show `path` from now on. The run picker moves to it when it is next drawn (in this script run
    when the picker comes later on the page, else in the next one: a widget's value cannot change
    after it is drawn)."""
    _remember(stage, path)
    st.session_state[f"pending/{stage}"] = Path(path).name


def run_label(entry: dict) -> str:
    """The picker's label: the student's name for the run (if any) and its id, and whose it is when it is
    not this student's. Its state lives in the badge below, which redraws live (a picker label would go
    stale: the browser keeps a select box's labels while its value holds)."""
    label = runs_view.display_name(entry["run_id"], runs_view.read_meta(entry["path"]))
    who = jobs.run_owner(entry["path"])
    if classroom.classroom() and who is not None and who != owner():
        label += f" · {who}'s"
    return label


def mine(entry: dict) -> bool:
    return jobs.run_owner(entry["path"]) in (None, owner())


def run_picker(stage: str, label: str = "Run to show") -> Path | None:
    """A selectbox of this stage's runs, newest first, on the current run. Returns the chosen folder.
    In a classroom a student sees their own runs (and the one a link opened) unless they ask for everyone's;
    the teacher sees all."""
    rows = runs_of(stage)
    current = current_run(stage)
    if classroom.classroom() and not is_teacher():
        everyone = st.toggle("Show everyone's runs (read-only)", key=f"everyone/{stage}")
        if not everyone:
            rows = [r for r in rows if mine(r) or (current is not None and r["run_id"] == current.name)]
    if not rows:
        return None
    ids = [r["run_id"] for r in rows]
    pending = st.session_state.pop(f"pending/{stage}", None)
    if pending in ids:  # a run was just started or chosen elsewhere: the picker follows it
        st.session_state[f"picker/{stage}"] = pending
    elif st.session_state.get(f"picker/{stage}") not in ids:  # its run was deleted
        st.session_state.pop(f"picker/{stage}", None)
    index = ids.index(current.name) if current is not None and current.name in ids else 0
    if f"picker/{stage}" in st.session_state:
        index = None  # its value comes from Session State; a default as well only earns a server warning
    labels = {r["run_id"]: run_label(r) for r in rows}
    chosen = st.selectbox(label, ids, index=index, format_func=lambda i: labels[i], key=f"picker/{stage}")
    path = runs_root() / chosen
    if current is None or path != current:
        _remember(stage, path)
    return path


def preselect(options: dict[str, str], kind: str | None = None) -> int:
    """Index of the option whose run is ?from=<run id> (a "next step" link from the stage before), else 0.
    With `kind` ("base", "reward", "pairs"), a model the lab warns against is never the one a picker starts on:
    the first option it does not warn about is (the shipped model comes first), and a link to a model it warns
    against is said to be passed over (lab/views/models.py)."""
    wanted = st.query_params.get("from")
    if kind is not None:
        index, note = models_view.preferred(options, kind, wanted)
        if note:
            st.caption(note)
        return index
    for i, spec in enumerate(options.values()):
        if wanted and Path(str(spec)).name == wanted:
            return i
    return 0


def about_reward_model(spec) -> None:
    """Under a reward-model picker: why not to trust the chosen one, where the Reward model page would say so."""
    from lab.views import preferences as pref_view

    for warning in pref_view.rm_warnings(spec) if spec else []:
        st.warning(f"About this reward model: {warning}", icon=":material/warning:")


def model_options(options, kind: str) -> dict[str, str]:
    """A model picker's options (label -> spec) with the figure that decides the choice in each label: gold
    agreement for a reward model, validation loss for a base model."""
    return models_view.with_figures(options, kind)


def spec_options(stage: str, shipped: tuple[str, ...] = (), states=("done",)) -> dict[str, str]:
    """Choices for a parent artifact: label -> spec (shipped checkpoint names, then finished runs)."""
    options = {}
    for name in shipped:
        options[f"shipped: {name}"] = name
    for r in runs_of(stage, states=states):
        options[f"run: {r['run_id']}"] = r["path"]
    return options


# ----------------------------------------------------------------------------- status and errors

def status_badge(run_dir) -> dict:
    """A coloured badge with the run's state and iteration; a failed run shows its error (and the
    worker's traceback in an expander), never a traceback in place of the page."""
    if not (Path(run_dir) / "config.json").exists():
        st.warning(f"Run {Path(run_dir).name} is gone: its folder was deleted (or moved) while this page showed it.")
        return {"state": "gone"}
    st_ = jobs.status(run_dir)
    state = st_.get("state", "queued")
    text = f"{state} · step {st_.get('iteration', 0)}"
    if st_.get("message"):
        text += f" · {st_['message']}"
    st.badge(text, color=STATE_COLORS.get(state, "gray"))
    if state == "failed":
        st.error(f"This run failed: {plain(st_.get('error') or st_.get('message') or 'no error recorded')}")
        details = jobs.error_details(run_dir)
        if details:
            with st.expander("Technical details (the worker's traceback)"):
                st.code(details, language="text")
    return st_


def plain(error) -> str:
    """An error as a page shows it: the field as the student sees it and an upload by its own file name
    (lab/views/wording.py)."""
    return wording.plain_error(error)


def is_active(status: dict) -> bool:
    """Queued, running or paused: the page keeps redrawing it live."""
    return status.get("state") in jobs.ACTIVE_STATES


FINAL_WORDS = {"done": "finished", "stopped": "was stopped", "failed": "failed"}


def view_state(status: dict, control: dict | None = None) -> tuple:
    """What a page's look depends on (state, and whether a pause is asked for): a live fragment
    compares it with the one the page was drawn with and redraws the whole page when it changes, so
    buttons, captions and knobs never show a state the run has left."""
    return status.get("state"), bool((control or {}).get("paused"))


def follow_state(drawn: tuple, status: dict, control: dict | None = None) -> None:
    """Inside a live fragment: rerun the whole page once the run's state differs from `drawn`."""
    if view_state(status, control) != drawn:
        st.rerun()


def nothing_recorded(status: dict, df: pd.DataFrame, unit: str = "step") -> bool:
    """True (and says why on the page) when a run has ended without one recorded row: its charts
    would otherwise say "waiting for the first ..." about a run that will never have one."""
    state = status.get("state")
    if (df is not None and not df.empty) or state not in FINAL_WORDS:
        return False
    said = {"failed": f"This run failed before its first {unit}: there is nothing to draw (the error is above).",
            "stopped": f"This run was stopped before its first {unit}: there is nothing to draw.",
            "done": f"This run finished without recording a {unit}: there is nothing to draw."}
    st.info(said[state])
    return True


def start_job(stage: str, cfg, parents: dict | None = None, control: dict | None = None) -> Run | None:
    """jobs.start for this session's owner; a refused start is a message on the page, not a crash."""
    try:
        run = jobs.start(stage, cfg, runs_root(), parents=parents, owner=owner(), control=control)
    except (ConfigError, jobs.JobError, RunError, ValueError, OSError) as e:
        st.error(f"Not started: {plain(e)}")
        return None
    set_current_run(stage, run.path)
    where = jobs.queue_position(runs_root(), run.path)
    st.toast(f"Queued {run.run_id}: number {where} in line; it starts by itself when a training slot frees up"
             if where else f"Started {run.run_id}")
    return run


def start_job_with(start_fn, stage: str, **kwargs) -> Run | None:
    """Like start_job, for a lab helper that builds the config itself: start_fn(runs_root, owner=..., **kwargs)."""
    try:
        run = start_fn(runs_root(), owner=owner(), **kwargs)
    except (ConfigError, jobs.JobError, RunError, ValueError, OSError) as e:
        st.error(f"Not started: {plain(e)}")
        return None
    set_current_run(stage, run.path)
    return run


def page_path(title: str) -> Path:
    """The file of a page by its title ("Reward model" -> pages/3_Reward_model.py), for page links."""
    from lab import stages

    stage = stages.BY_TITLE.get(title)
    if stage is None or not stage.exists:
        raise FileNotFoundError(f"no page titled {title!r} in {stages.PAGES_DIR}")
    return stage.path


def stop_button(run_dir, status: dict, key: str) -> None:
    if is_active(status):
        ok, why = may_control(run_dir)
        if st.button("Stop", key=key, disabled=not ok, help=why or "ends the run after its current step; what it wrote stays"):
            try:
                jobs.stop(run_dir, owner(), teacher=is_teacher())
            except (jobs.JobError, RunError) as e:
                st.error(f"Not stopped: {plain(e)}")
            else:
                st.toast("Stop requested: the run ends after its current step")


def run_header(run_dir, live: bool, key: str, precision: bool = True) -> tuple[dict, pd.DataFrame | None]:
    """The top of a run's panel on the pages without live knobs (Pretrain, Preferences, Reward model): its state, Stop,
    whether the view follows it, how far it is and (`precision`) its matmul precision. Returns (status, metrics);
    metrics None for a run that ended without one row (the page says so)."""
    status = status_badge(run_dir)
    stop_button(run_dir, status, key=key)
    live_note(live)
    df = metrics_frame(run_dir)
    progress_line(run_dir, status, df)
    if precision:
        from core import precision as core_precision

        st.caption(core_precision.caption(run_dir))
    return status, (None if nothing_recorded(status, df) else df)


def progress_line(run_dir, status: dict, df: pd.DataFrame) -> None:
    """While a run is active: what it is doing, how far it is and roughly how long is left."""
    if not is_active(status):
        return
    try:
        run = Run.open(run_dir)
    except RunError:
        return
    if status.get("state") == "queued":
        where, eta = jobs.queue_estimate(runs_root(), run_dir) if jobs.is_waiting(status) else (None, None)
        when = (f"it should start in {runs_view.duration(eta).replace(' left', '')}" if eta is not None
                else "no estimate until a run of this stage has finished")
        st.caption(f"Queued: number {where} in line for one of the {jobs.max_jobs()} training slots; it starts "
                   f"by itself when one frees up ({when})." if where else "Queued: starting…")
        return
    info = runs_view.progress(run.stage, run.config, df)
    if info["fraction"] is None:
        st.caption(info["text"])
    else:
        st.progress(info["fraction"], text=info["text"])


def run_tools(run_dir, stage: str) -> None:
    """Name the run, write a note on it (kept in its folder as meta.json), or delete it."""
    run_dir = Path(run_dir)
    meta = runs_view.read_meta(run_dir)
    with st.expander("Name, note, delete" + (f" · {meta['name']}" if meta["name"] else ""),
                     icon=":material/edit_note:"):
        ok, why = may_control(run_dir)
        if not ok:
            st.caption(f"Read-only: {why}.")
            return
        with st.form(f"meta/{stage}/{run_dir.name}", border=False):
            name = st.text_input("Name", meta["name"], max_chars=runs_view.MAX_NAME,
                                 placeholder="e.g. λ = 0, to see reward hacking")
            note = st.text_area("Note", meta["note"], max_chars=runs_view.MAX_NOTE, height=80,
                                placeholder="what you tried and what you saw")
            if st.form_submit_button("Save name and note"):
                try:
                    runs_view.write_meta(run_dir, name, note, actor=owner(), teacher=is_teacher())
                except (ValueError, PermissionError, RunError, OSError) as e:
                    st.error(f"Not saved: {plain(e)}")
                else:
                    st.rerun()  # the picker above and every listing show the new name at once
        active = is_active(jobs.status(run_dir))
        sure = st.checkbox(f"Yes, delete {run_dir.name} and everything in it"
                           + (" (it is still running: it will be stopped first)" if active else ""),
                           key=f"delete_sure/{run_dir.name}")
        if st.button("Delete this run", icon=":material/delete:", disabled=not sure, key=f"delete/{run_dir.name}"):
            try:
                runs_view.delete_run(run_dir, owner(), teacher=is_teacher())
            except (PermissionError, RunError, OSError) as e:
                st.error(f"Not deleted: {plain(e)}")
                return
            st.session_state.pop(_key(stage), None)
            if st.query_params.get("run") == run_dir.name:
                del st.query_params["run"]
            st.toast(f"Deleted {run_dir.name}")
            st.rerun()


def next_step(stage: str, run_dir, status: dict) -> None:
    """At the end of a stage page: a link to the stage that uses what this run made, with the run
    already chosen there (?from=<run id>), unless the lab warns against using it there (a tiny-preset base
    model, a reward model not to be trusted, too few labelled pairs): then it says why, and the link
    chooses nothing (lab/views/models.py next_step_advice)."""
    from lab import stages

    nxt = stages.next_of(stage)
    if nxt is None:
        return
    st.divider()
    st.subheader("Next step")
    advice = models_view.next_step_advice(stage, run_dir, status.get("state"), nxt.label)
    (st.info if advice["held"] else st.markdown)(advice["text"])
    query = {"from": advice["from"]} if advice["from"] else None
    st.page_link(str(nxt.path), label=f"Go to {nxt.label}", icon=nxt.icon, query_params=query)


# ----------------------------------------------------------------------------- uploads

def read_upload(uploaded, what: str = "file", max_mb: float | None = None) -> bytes | None:
    """The bytes of an uploaded file after the checks every upload needs; None (with a message) when
    it is empty or too large. Content checks (binary, malformed) belong to the core parser."""
    if uploaded is None:
        return None
    max_mb = jobs.MAX_UPLOAD_MB if max_mb is None else max_mb
    data = uploaded.getvalue()
    if not data:
        st.error(f"The {what} {uploaded.name!r} is empty.")
        return None
    if len(data) > max_mb * 1024 * 1024:
        st.error(f"The {what} {uploaded.name!r} is {len(data) / 2**20:.2f} MB; the limit is {max_mb:g} MB.")
        return None
    return data


def save_upload(data: bytes, suffix: str, name: str | None = None) -> Path:
    """Keep an upload under <runs root>/.uploads/<sha1>/<the student's file name> so a worker process can read
    it, and every message about it names the file as the student knows it (plain() drops the folder)."""
    folder = runs_root() / wording.UPLOADS / hashlib.sha1(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / wording.upload_file_name(name, suffix)
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- live view and charts

def live_every() -> float | None:
    """run_every for live fragments: None while the student has frozen the view (to zoom a chart)."""
    return None if st.session_state.get("freeze", False) else LIVE_EVERY_S


def live_note(live: bool) -> None:
    """Under a live view: say whether it follows the run or is frozen (and how to unfreeze)."""
    if not live:
        return
    if live_every() is None:
        st.caption("Frozen: zoom and read at will; switch off “Freeze live charts” to follow the run again.")
    else:
        st.caption(f"Live: redrawn about every {LIVE_EVERY_S:g} s from the run folder.")


def freeze_toggle() -> None:
    st.toggle("Freeze live charts", key="freeze",
              help="Charts redraw every second and that resets any zoom; freeze them to zoom and read.")


# Generations tables: the text wraps in one wide column and the scores stay in view at 1400 px
GENERATION_COLUMNS = {
    "prompt": st.column_config.TextColumn(width="small"),
    "model": st.column_config.TextColumn(width="medium"),
    "response": st.column_config.TextColumn(width="large"),
    "proxy": st.column_config.NumberColumn(format="%.3f", width="small", help="reward-model score"),
    "gold": st.column_config.NumberColumn(format="%.3f", width="small", help="hidden annotator's utility"),
}


def chart(fig, caption: str, key: str | None = None, run_id: str | None = None) -> None:
    """Every chart of the lab is drawn here, with the one config (lab/views/charts.plotly_config): the modebar's
    "Download plot as png" names the file after the run (`run_id`, else the page's ?run=) and the chart (`key`)."""
    from lab.views.charts import plotly_config

    run_id = run_id or st.query_params.get("run")
    if run_id is not None and not jobs.RUN_ID_RE.match(run_id):
        run_id = None  # a mangled ?run= names no file
    name = key or getattr(fig.layout.title, "text", None)
    st.plotly_chart(fig, key=key, width="stretch", config=plotly_config(run_id, name))
    st.caption(caption)


def glossary_popover() -> None:
    with st.popover("Glossary of metrics", icon=":material/menu_book:", width="stretch"):
        st.markdown(glossary.markdown())


def metrics_frame(run_dir) -> pd.DataFrame:
    return Run(Path(run_dir)).metrics()


def metric(container, label: str, value, fmt: str = "{:.3f}") -> None:
    """st.metric with a dash while the value does not exist yet, and no minus on a value that rounds to 0."""
    container.metric(label, "–" if value is None else wording.number(value, fmt))


def last_value(df: pd.DataFrame, col: str):
    if df is None or df.empty or col not in df.columns:
        return None
    s = df[col].dropna()
    return None if s.empty else s.iloc[-1]
