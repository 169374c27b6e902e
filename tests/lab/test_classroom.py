"""A class on one server: names, read-only views of others' runs, the teacher, links that carry settings,
and the app's network settings. Pages under AppTest (through lab/app.py, as served); no training spawned:
a "live" run is one this test process owns (holds its lock) and marks running."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import to_dict
from core.runs import Run
from lab import classroom, jobs, live_panel, url_settings as U
from lab.views import ppo as V
from lab.cli import build_parser, server_settings
from lab.cli.common import CLIError
from tests.support import by_label

ROOT = Path(__file__).resolve().parents[2]
PPO_PAGE = "4_PPO.py"


@pytest.fixture()
def klass(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    monkeypatch.setenv(classroom.CLASSROOM_ENV, "1")
    monkeypatch.setenv(classroom.TEACHER_CODE_ENV, "s3cret-code")
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "1")
    return root


def app(query: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "lab" / "app.py"), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if page is not None:
        at.switch_page(str(Path("..") / "pages" / page)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def live_ppo_run(root, owner: str) -> Run:
    """A PPO run of `owner` that counts as running (this process holds its lock)."""
    cfg, parents, control = V.ppo_job(iterations=5)
    run = Run.create("ppo", to_dict(cfg), root=root, parents=parents, control=control)
    run.write_json(jobs.JOB_FILE, {"pid": None, "owner": owner, "queued": 0, "started": 0})
    run.set_status("running", iteration=1, message="")
    return run


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("bad,why", [("", "type your name"), ("   ", "type your name"), ("../ana", "only letters"),
                                     ("a/b", "only letters"), ("x" * 33, "at most 32"), ("<script>", "only letters")])
def test_bad_student_names_are_refused_with_what_to_do(bad, why):
    with pytest.raises(ValueError, match=why):
        classroom.check_name(bad)


def test_a_name_is_asked_once_and_kept_in_the_url_across_a_refresh(klass):
    at = app()
    assert [t.label for t in at.text_input] == ["Your name"]  # nothing else draws before a name
    at.text_input[0].set_value("../etc")
    at.button[0].click().run()
    assert any("only letters" in e.value for e in at.error) and "student" not in at.query_params
    at.text_input[0].set_value("Ana")
    at.button[0].click().run()
    assert at.query_params["student"] == "Ana" and at.session_state["student"] == "Ana"
    refreshed = app({"student": "Ana"})  # a new session from the same URL: no question asked
    assert not any(t.label == "Your name" for t in refreshed.text_input)
    assert any("Working as **Ana**" in c.value for c in refreshed.caption)


def test_on_a_laptop_no_name_is_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_RUNS", str(tmp_path))
    monkeypatch.delenv(classroom.CLASSROOM_ENV, raising=False)
    at = app()
    assert not any(t.label == "Your name" for t in at.text_input)


# ----------------------------------------------------------------------------- others' runs are read-only

def test_another_students_run_opens_read_only_and_no_control_reaches_it(klass):
    run = live_ppo_run(klass, owner="ana")
    try:
        before = run.read_control()
        at = app({"student": "ben", "run": run.run_id}, page=PPO_PAGE)
        assert any("ana's run" in i.value and "read-only" in i.value for i in at.info)
        for label in ("Pause", "Resume", "Step one iteration", "Stop"):
            assert by_label(at.button, label).disabled
        by_label(at.slider, "λ (kl_coef)").set_value(1.0).run()  # moves ben's next-run knob, not ana's run
        assert not at.exception
        assert run.read_control() == before
        with pytest.raises(jobs.JobError, match="another student, ana"):  # forced through the page's own call
            live_panel.set_knobs(run, actor="ben", kl_coef=1.0)
        # ben's own list hides ana's runs unless asked
        mine = app({"student": "ben"}, page=PPO_PAGE)
        assert not any(s.label == "PPO run shown on this page" for s in mine.selectbox)
        # ana steers her own run from the page
        hers = app({"student": "ana", "run": run.run_id}, page=PPO_PAGE)
        assert not by_label(hers.button, "Pause").disabled
        by_label(hers.button, "Pause").click().run()
        assert run.read_control()["paused"] is True
    finally:
        run.release()


# ----------------------------------------------------------------------------- the teacher

def test_a_wrong_teacher_code_gives_no_hint_and_a_growing_delay(monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_CODE_ENV, "s3cret-code")
    waits = []
    results = [classroom.check_teacher_code("guess", "client-1", sleep=waits.append) for _ in range(6)]
    assert results == [False] * 6
    assert waits == [1.0, 2.0, 4.0, 8.0]  # two free tries, then doubling
    assert classroom.check_teacher_code("s3cret-code", "client-1", sleep=waits.append)
    monkeypatch.setenv(classroom.TEACHER_CODE_ENV, "")
    assert not classroom.check_teacher_code("", "client-2", sleep=waits.append)  # no code: nobody is teacher


def test_the_teacher_sees_and_stops_any_run_and_publishes_settings(klass):
    run = live_ppo_run(klass, owner="ana")
    try:
        at = app({"student": "teach"}, page=PPO_PAGE)
        by_label(at.text_input, "Teacher code").set_value("s3cret-code")
        next(b for b in at.button if b.label == "Unlock").click().run()
        assert at.session_state["teacher"] is True
        assert by_label(at.selectbox, "PPO run shown on this page").value == run.run_id  # sees ana's run
        by_label(at.slider, "λ (kl_coef)").set_value(0.0).run()
        by_label(at.text_input, "Name for the class").set_value("λ = 0").run()
        by_label(at.button, "Publish").click().run()
        assert classroom.preset_for(klass, "ppo")["settings"]["kl_coef"] == "0"
        by_label(at.button, "Stop").click().run()
        assert run.read_control()["stop"] is True
    finally:
        run.release()
    with pytest.raises(PermissionError):
        classroom.publish_preset(klass, "ppo", "mine", {"kl_coef": "1"}, teacher=False)
    student = app({"student": "cy"}, page=PPO_PAGE)
    assert any("The teacher's settings" in i.value and "λ = 0" in i.value for i in student.info)
    by_label(student.slider, "λ (kl_coef)").set_value(0.5).run()
    by_label(student.button, "Use the teacher's settings").click().run()
    assert by_label(student.slider, "λ (kl_coef)").value == 0.0


# ----------------------------------------------------------------------------- links carry settings

def test_url_settings_round_trip_and_bad_values_fall_back_to_defaults():
    schema = live_panel.link_schema("ppo", V.make_ppo_config()) + V.link_settings()
    values = {"kl_coef": 0.0, "mode": "adaptive", "clip_eps": 0.1, "lr": 2e-4, "temperature": 0.7,
              "iterations": 50, "batch": 32}
    assert U.parse(U.encode(values, schema), schema) == (values, [])
    got, problems = U.parse({"kl_coef": "-1", "batch": "7", "iterations": "2.5", "mode": "wild", "lr": "inf",
                             "bogus": "1", "run": "x", "student": "ana"}, schema)
    assert got == {}
    assert len(problems) == 6 and any("unknown setting 'bogus'" in p for p in problems)
    assert any("kl_coef must be in [0, 1]" in p and "default" in p for p in problems)


def test_a_link_opens_the_ppo_page_with_its_settings_and_the_url_follows_the_knobs(klass, monkeypatch):
    monkeypatch.delenv(classroom.CLASSROOM_ENV)
    at = app({"kl_coef": "0", "clip_eps": "0.1", "batch": "32", "iterations": "40"}, page=PPO_PAGE)
    assert by_label(at.slider, "λ (kl_coef)").value == 0.0
    assert by_label(at.slider, "clip ε").value == pytest.approx(0.1)
    assert by_label(at.selectbox, "batch (prompts)").value == 32
    assert by_label(at.number_input, "iterations").value == 40
    by_label(at.slider, "temperature").set_value(0.7).run()
    assert at.query_params["temperature"] == "0.7" and at.query_params["kl_coef"] == "0"
    assert any("kl_coef=0" in c.value and "temperature=0.7" in c.value for c in at.code)
    bad = app({"kl_coef": "lots", "clip_eps": "9", "nonsense": "1"}, page=PPO_PAGE)
    assert not bad.exception
    assert by_label(bad.slider, "λ (kl_coef)").value == pytest.approx(V.make_ppo_config().kl_coef)
    said = " ".join(w.value for w in bad.warning)
    assert "kl_coef must be a number" in said and "clip_eps must be in" in said and "nonsense" in said


def test_a_forged_run_id_never_leaves_the_runs_root(klass, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for forged in ("../elsewhere", "..", "/etc", ".classroom", "a/../../b", "x" * 300, "", None):
        assert jobs.run_path(klass, forged) is None, forged
    (klass / "link").symlink_to(outside)
    assert jobs.run_path(klass, "link") is None
    assert jobs.run_path(klass, "20260101-000000-ppo") == klass / "20260101-000000-ppo"
    at = app({"student": "ana", "run": "../elsewhere"}, page=PPO_PAGE)
    assert any("is not a run id" in w.value for w in at.warning)


# ----------------------------------------------------------------------------- the server's flags

def test_the_server_binds_locally_warns_on_a_network_without_classroom_and_checks_its_flags(monkeypatch):
    monkeypatch.delenv(classroom.TEACHER_CODE_ENV, raising=False)
    parse = build_parser().parse_args
    assert parse(["app"]).host == "127.0.0.1"
    env, notes = server_settings(parse(["app", "--host", "0.0.0.0"]))
    assert env == {} and "WARNING" in notes[0] and "--classroom" in notes[0]
    env, notes = server_settings(parse(["app", "--host", "0.0.0.0", "--classroom", "--max-jobs", "3"]))
    assert env[classroom.CLASSROOM_ENV] == "1" and env[jobs.MAX_JOBS_ENV] == "3"
    assert len(env[classroom.TEACHER_CODE_ENV]) >= 6 and env[classroom.TEACHER_CODE_ENV] in notes[0]
    assert not any("WARNING" in n for n in notes)
    with pytest.raises(CLIError, match="at least 6"):
        server_settings(parse(["app", "--classroom", "--teacher-code", "abc"]))
    with pytest.raises(CLIError, match="--max-jobs"):
        server_settings(parse(["app", "--max-jobs", "0"]))


def test_a_start_beyond_the_limit_waits_in_line_and_the_page_says_where(klass):
    busy = live_ppo_run(klass, owner="someone")  # holds the one slot ($RLHF_LAB_MAX_JOBS=1)
    try:
        at = app({"student": "ana"}, page=PPO_PAGE)
        by_label(at.button, "Start PPO").click().run()
        assert not at.exception
        waiting = jobs.queue(klass)
        assert [jobs.run_owner(e["path"]) for e in waiting] == ["ana"]
        assert jobs.job_info(waiting[0]["path"])["pid"] is None  # nothing spawned: it waits its turn
        assert any("number 1 in line" in c.value for c in at.caption)
        by_label(at.button, "Start PPO").click().run()  # a second click is not a second job
        assert any("still queued" in e.value for e in at.error) and len(jobs.queue(klass)) == 1
        jobs.stop(waiting[0]["path"], actor="ana")
    finally:
        busy.release()


def test_grpo_and_dpo_knobs_are_refused_to_another_student_in_the_api(klass):
    """Not only the pages' disabled widgets: the function the live panel calls refuses another student."""
    from core.config import dpo_preset, grpo_preset

    for stage, cfg, knob in (("grpo", grpo_preset("tiny"), {"beta": 0.1}),
                             ("dpo", dpo_preset("tiny", preferences="prefs.jsonl"), {"beta": 0.3})):
        run = Run.create(stage, to_dict(cfg), root=klass)
        run.write_json(jobs.JOB_FILE, {"pid": None, "owner": "ana", "queued": 0, "started": 0})
        before = run.read_control()
        with pytest.raises(jobs.JobError, match="another student, ana"):
            live_panel.set_knobs(run, actor="ben", **knob)
        assert run.read_control() == before
        live_panel.set_knobs(run, actor="ana", **knob)  # the owner may
        assert run.read_control()["beta"] == knob["beta"]
        run.release()
