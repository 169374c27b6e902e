"""The one live panel (lab/live_panel.py) of the PPO, GRPO/RLOO and DPO pages: its rules as pure functions, and the
three pages under AppTest (through lab/app.py) on fake runs: folders written by hand, "live" because this test
process holds their lock, as a worker would. Nothing trains here.

Each page test is parametrised over the live stages: a new live method is covered by adding it to STAGES."""

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.config import ConfigError, dpo_preset, grpo_preset, to_dict
from core.runs import Run
from core.session import initial_control
from lab import jobs
from lab.views import ppo as ppo_view
from lab import live_panel as P

ROOT = Path(__file__).resolve().parents[2]
# stage: (page, a knob, a new value for it that another writer sets)
STAGES = {"ppo": ("4_PPO.py", "kl_coef", 0.5), "grpo": ("5_GRPO_RLOO.py", "beta", 0.2),
          "dpo": ("6_DPO.py", "beta", 0.3)}
BUTTONS = ("Pause", "Resume", "Step one iteration", "Step one batch", "Stop")


def stage_config(stage: str):
    return {"ppo": lambda: ppo_view.make_ppo_config(preset="tiny", device="cpu"),
            "grpo": lambda: grpo_preset("tiny", device="cpu"),
            "dpo": lambda: dpo_preset("tiny", preferences="pairs.jsonl", device="cpu")}[stage]()


def fake_run(root: Path, stage: str, state: str = "running", rows: int = 0) -> Run:
    """A run folder in the trainer's formats; this process owns it (holds its lock), so it counts as live."""
    cfg = stage_config(stage)
    run = Run.create(stage, to_dict(cfg), root=root, control=initial_control(cfg))
    for i in range(rows):  # ten seconds an iteration: enough for a time-left estimate
        run.log_metrics({"step": i + 1, "time": 1000.0 + 10 * i, "data/train_pairs": 64})
    run.set_status(state, iteration=rows)
    return run


@pytest.fixture()
def root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    return root


def open_page(stage: str, run: Run) -> AppTest:
    at = AppTest.from_file(str(ROOT / "lab" / "app.py"), default_timeout=60)
    at.query_params["run"] = run.run_id
    at.run()
    at.switch_page(f"../pages/{STAGES[stage][0]}").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def knob_widget(at: AppTest, stage: str, knob: str):
    label = P.look(stage, knob).label
    found = [w for kind in ("slider", "number_input", "select_slider") for w in getattr(at, kind) if w.label == label]
    assert found, f"no widget {label!r}"
    return found[0]


def buttons(at: AppTest) -> dict:
    return {b.label: not b.disabled for b in at.button if b.label in BUTTONS}


def texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "subheader", "toast")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def progress_texts(at: AppTest) -> list[str]:
    return [e.proto.text for e in at.get("progress")] + [c.value for c in at.caption if " of " in c.value]


# ----------------------------------------------------------------------------- the pages

@pytest.mark.parametrize("stage", list(STAGES))
def test_a_knob_another_writer_changed_shows_in_the_widget_after_the_next_rerun(root, stage):
    """Two tabs on one run: tab 2 (or `rlhf-lab set`) writes control.json; tab 1's widget shows the new value at its
    next redraw (it kept the old one for a minute), and moving it still reaches the run."""
    _, knob, new = STAGES[stage]
    run = fake_run(root, stage)
    try:
        at = open_page(stage, run)
        assert knob_widget(at, stage, knob).value == pytest.approx(getattr(stage_config(stage), knob))
        run.write_control(**{knob: new})  # the other writer
        at.run()
        assert knob_widget(at, stage, knob).value == pytest.approx(new)
        assert run.read_control()[knob] == pytest.approx(new)  # the redraw sent nothing back
        knob_widget(at, stage, knob).set_value(0.25).run()  # this tab steers it
        assert not at.exception and run.read_control()[knob] == pytest.approx(0.25)
        assert knob_widget(at, stage, knob).value == pytest.approx(0.25)
    finally:
        run.release()


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_run_that_ended_shows_nothing_live_and_a_stale_click_writes_nothing(root, stage):
    """The run ends while its page shows it live: the next redraw has no "— live" title, no enabled button, no "sent"
    note, and a click on a button drawn while it was live changes nothing."""
    _, knob, new = STAGES[stage]
    run = fake_run(root, stage, rows=2)
    try:
        at = open_page(stage, run)
        assert "Knobs — live" in [s.value for s in at.subheader]
        assert buttons(at)["Pause"] and buttons(at)["Stop"]
        knob_widget(at, stage, knob).set_value(new).run()
        assert run.read_control()[knob] == pytest.approx(new) and "sent" in texts(at)
        run.set_status("done", iteration=2, message="finished")
        pause = next(b for b in at.button if b.label == "Pause")
        pause.click().run()  # drawn while the run was live
        assert not at.exception, [e.value for e in at.exception]
        assert run.read_control()["paused"] is False
        assert "Knobs — live" not in [s.value for s in at.subheader] and "Knobs" in [s.value for s in at.subheader]
        assert not any(buttons(at).values()), buttons(at)
        said = texts(at)
        assert "sent" not in said and "applies at the next" not in said and "Redrawn about every" not in said
        assert "finished" in said
    finally:
        run.release()


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_paused_run_shows_no_time_left(root, stage):
    run = fake_run(root, stage, rows=3)
    try:
        at = open_page(stage, run)
        running = progress_texts(at)
        assert any(" of " in t and "left" in t for t in running), running  # the estimate exists while it trains
        run.write_control(paused=True)
        run.set_status("paused", iteration=3)
        at.run()
        paused = progress_texts(at)
        assert paused and all("left" not in t for t in paused), paused
        assert any(t.startswith("paused · 3 of") for t in paused), paused
        assert buttons(at)["Resume"] and not buttons(at)["Pause"]
    finally:
        run.release()


# ----------------------------------------------------------------------------- the rules, without a browser

def test_buttons_follow_the_state():
    assert P.enabled("queued") == {"pause": False, "resume": False, "step": False, "stop": True}
    assert P.enabled("running") == {"pause": True, "resume": False, "step": True, "stop": True}
    assert P.enabled("running", {"paused": True}) == {"pause": False, "resume": True, "step": True, "stop": True}
    assert P.enabled("paused", {"paused": True}) == {"pause": False, "resume": True, "step": True, "stop": True}
    for state in ("done", "stopped", "failed", None):
        assert not any(P.enabled(state).values())
    assert not any(P.enabled("running", allowed=False).values())  # another student's run
    assert P.title("paused") == "Knobs — live" and P.title("done") == P.title(None) == "Knobs"
    assert "finished" in P.knobs_caption("grpo", "r1", "done") and "next run" in P.knobs_caption("grpo", "r1", "done")
    assert "applies at its next step" in P.knobs_caption("dpo", "r1", "running")


def test_the_knobs_in_force_and_the_widgets_that_follow_them():
    assert P.knobs_of("dpo") == ("beta", "lr")  # the fields core/config marks live, nothing kept by hand
    config = {"kl_coef": 0.05, "clip_eps": 0.2, "lr": 5e-5, "adaptive_kl": False}
    knobs = P.knobs_in_force("ppo", config, {"kl_coef": 0.3, "clip_eps": "wide", "adaptive_kl": True})
    assert knobs["kl_coef"] == 0.3 and knobs["clip_eps"] == 0.2 and knobs["adaptive_kl"] is True  # "wide": refused
    session = {}
    assert set(P.sync(session, "ppo", "r1", knobs)) == set(P.knobs_of("ppo"))  # a run shown for the first time
    assert session["ppo/adaptive_kl"] == "adaptive" and session["ppo/kl_coef"] == 0.3
    session["ppo/clip_eps"] = 0.1  # the student moves ε
    assert P.moved(session, "ppo") == {"clip_eps": 0.1}
    assert P.sync(session, "ppo", "r1", {**knobs, "kl_coef": 0.5}) == ["kl_coef"]  # another tab's λ; ε stays
    assert session["ppo/kl_coef"] == 0.5 and session["ppo/clip_eps"] == 0.1
    assert P.sync(session, "ppo", "r2", knobs) and session["ppo/clip_eps"] == 0.2  # another run: all its knobs
    del session["ppo/lr"]  # Streamlit dropped a widget's state (the student was on another page)
    assert set(P.sync(session, "ppo", "r2", knobs)) == set(P.knobs_of("ppo"))


def test_progress_has_no_time_left_while_paused():
    df = pd.DataFrame({"step": [1, 2, 3], "time": [0.0, 10.0, 20.0]})
    running = "training · 3 of 10 iterations · about 1 min left"
    assert P.progress("ppo", {"iterations": 10}, df, paused=False) == (0.3, running)
    assert P.progress("grpo", {"iterations": 10}, df, paused=True) == (0.3, "paused · 3 of 10 iterations")
    dpo = df.assign(**{"data/train_pairs": 64})
    assert P.planned_total("dpo", {"epochs": 2, "batch_size": 16}, dpo) == 8
    assert P.progress("dpo", {}, pd.DataFrame(), paused=False) == (None, "loading the models · 0 steps")
    assert P.is_paused("running", {"paused": True}) and not P.is_paused("done", {"paused": True})


def test_one_checker_refuses_by_name_writes_nothing_and_a_stale_action_is_refused(root):
    run = fake_run(root, "grpo")
    try:
        before = run.read_control()
        with pytest.raises(ConfigError, match="GRPOConfig.lr"):
            P.set_knobs(run, lr=2.0)  # the flag's limit, not only its type
        with pytest.raises(ConfigError, match="unknown live control"):
            P.set_knobs(run, kl_coef=0.1)  # PPO's knob, not GRPO's
        with pytest.raises(ConfigError, match="finite"):
            P.set_knobs(run, beta=float("nan"))
        assert run.read_control() == before
        assert P.set_knobs(run, beta=0.1, clip_eps=0.3)["beta"] == 0.1
        assert P.act(run, "step")["step"] == 1 and P.act(run, "step")["step"] == 2
        assert P.act(run, "resume")["paused"] is False
        run.set_status("stopped", iteration=1)
        with pytest.raises(jobs.JobError, match="was stopped: nothing to pause"):
            P.act(run, "pause")
        assert run.read_control()["paused"] is False
    finally:
        run.release()


def test_every_live_knob_has_a_widget_and_the_link_carries_it():
    for stage in STAGES:
        defaults = stage_config(stage)
        schema = {s.key for s in P.link_schema(stage, defaults)}
        for knob in P.knobs_of(stage):
            assert knob in P.LOOKS or knob in P.STAGE_LOOKS.get(stage, {}), f"{stage}.{knob} has no look"
            assert (P.look(stage, knob).url or knob) in schema


# ----------------------------------------------------------------------------- continue, alerts, downloads

def collapsed_rows(run: Run, n: int = 30) -> None:
    """Rows of a policy that collapsed after iteration 15: empty responses, no entropy left, gold 0."""
    for i in range(1, n + 1):
        late = i > 15
        run.log_metrics({"step": i, "time": 1000.0 + 10 * i, "data/train_pairs": 64, "objective/gold": 0.0 if late
                         else 0.2, "objective/scores": 0.5, "objective/kl": 1.0, "objective/entropy": 1.1 if late
                         else 25.0, "objective/response_length": 0.3 if late else 15.0})


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stopped_run_continues_from_its_page_with_an_alert_and_downloads(root, stage, monkeypatch):
    """A stopped run shows what it recorded with the alert it raised (the policy collapsed), a CSV of its metrics,
    charts whose PNG is named after it, and "Continue this run", which queues the same folder again (the
    dispatcher is held off here: tests/lab/test_resume_job.py trains a continued run)."""
    offered, download = {}, st.download_button
    monkeypatch.setattr(jobs, "dispatch", lambda runs_root, limit=None: [])  # queued, never started here
    monkeypatch.setattr(st, "download_button", lambda label, data, **kw: offered.__setitem__(label, (data, kw))
                        or download(label, data, **kw))  # AppTest keeps no file: see what the page offers
    run = fake_run(root, stage, state="running")
    collapsed_rows(run)
    run.write_control(stop=True)
    run.set_status("stopped", iteration=30, message="stopped after iteration 30")
    run.release()  # as a worker that ended
    try:
        at = open_page(stage, run)
        assert any("The policy collapsed" in e.value and "0.3 tokens" in e.value for e in at.error), texts(at)
        data, kw = offered["Download metrics (CSV)"]
        assert kw["file_name"] == f"{run.run_id}-metrics.csv" and kw["on_click"] == "ignore"
        back = pd.read_csv(io.BytesIO(data()))  # read when clicked: the newest rows of a live run
        assert back["step"].tolist() == list(range(1, 31))
        assert back["objective/entropy"].tolist() == run.metrics()["objective/entropy"].tolist()
        configs = [json.loads(e.proto.config) for e in at.get("plotly_chart")]
        assert configs and all(c["toImageButtonOptions"]["filename"].startswith(run.run_id) for c in configs)
        assert all(c["toImageButtonOptions"]["format"] == "png" and not c["displaylogo"] for c in configs)
        assert "trains the iterations left" in texts(at) or "trains the steps left" in texts(at)
        go = next(b for b in at.button if b.label == "Continue this run")
        assert not go.disabled
        go.click().run()
        assert not at.exception, [e.value for e in at.exception]
        status = jobs.status(run.path)
        assert status["state"] == "queued" and jobs.is_waiting(status), status
        assert run.read_control()["stop"] is False  # the stop that ended it does not end it again
        assert not any(b.label == "Continue this run" for b in at.button)  # it is queued: live again
    finally:
        jobs.stop(run.path)  # out of the queue before the real dispatcher could start it


def test_continue_is_offered_for_an_unfinished_run_only_and_to_its_owner():
    assert P.may_continue("stopped") and P.may_continue("failed")  # a killed worker's run reads as failed
    for state in ("done", "running", "paused", "queued", None):
        assert not P.may_continue(state)
    assert not P.may_continue("stopped", allowed=False)  # another student's run
    note = P.continue_note("ppo", "failed", 37, 100)
    assert "failed before it finished" in note and "iteration 37 of 100" in note
    assert "before its first checkpoint" in P.continue_note("dpo", "stopped", None, None)
    assert P.nothing_left(60, 60) and "nothing left to continue" in P.continue_note("ppo", "stopped", 60, 60)
    assert not P.nothing_left(None, 60) and not P.nothing_left(37, None)


def test_only_the_owner_or_a_teacher_may_continue_a_run(root):
    run = fake_run(root, "grpo", state="stopped")
    run.release()
    run.write_json(jobs.JOB_FILE, {"owner": "alice", "pid": None})
    run.write_control(stop=True)
    with pytest.raises(jobs.JobError, match="belongs to another student, alice"):
        jobs.resume(run.path, actor="bob")
    assert jobs.status(run.path)["state"] == "stopped" and run.read_control()["stop"] is True  # nothing written
    done = fake_run(root, "ppo", state="done")
    done.release()
    with pytest.raises(jobs.JobError, match="only a stopped or failed run can be continued"):
        jobs.resume(done.path, actor="alice", teacher=True)
