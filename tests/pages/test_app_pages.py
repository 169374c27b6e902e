"""The pages, driven by streamlit.testing.v1.AppTest through the real entry script (lab/app.py).

Each page renders on a fresh runs folder; its main controls exist and act; starting a tiny run from the
page creates a run folder that a spawned worker trains. (PPO and weak-to-strong pages: test_app_ppo.py.)
"""

import json
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run, list_runs, read_jsonl
from lab import jobs

from tests.support import APP, TIMEOUT, texts

ROOT = Path(__file__).resolve().parents[2]
MY_PAGES = ["0_Home", "1_Pretrain", "2_Preferences", "3_Reward_model", "9_Compare_runs"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    yield root
    for entry in list_runs(root):  # never leave a worker behind
        if entry["state"] in jobs.ACTIVE_STATES:
            jobs.stop(entry["path"])
            try:
                jobs.wait(entry["path"], timeout=60)
            except TimeoutError:
                jobs.kill(entry["path"])


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def badges(at) -> str:
    """st.badge renders as Markdown like :green-badge[done · step 6]."""
    return " ".join(m.value for m in at.markdown if "-badge[" in m.value)


def button(at, label):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def only_run(root, stage):
    rows = [r for r in list_runs(root) if r["stage"] == stage]
    assert len(rows) == 1, rows
    return Path(rows[0]["path"])


@pytest.mark.parametrize("page", MY_PAGES)
def test_every_page_renders_on_a_fresh_runs_folder(runs, page):
    if not (ROOT / "pages" / f"{page}.py").exists():
        pytest.skip(f"{page} not built yet")
    at = open_page(page)
    assert at.title  # every page says what it is
    assert not at.error, [e.value for e in at.error]


def test_home_shows_the_pipeline_formulas_artifacts_and_stage_links(runs):
    at = open_page("0_Home")
    latex = " ".join(e.value for e in at.latex)
    assert r"\lambda" in latex and r"\rho_t" in latex and "clip" in latex
    assert "Quick start" in [h.value for h in at.subheader]
    assert any("small" in str(df.value) for df in at.dataframe)  # the shipped checkpoints table
    assert "No runs yet" in texts(at)
    # the sidebar frame: glossary one click away, and the freeze switch
    assert at.sidebar.toggle[0].label == "Freeze live charts"


def test_pretrain_page_starts_a_tiny_run_and_shows_it_live(runs):
    at = open_page("1_Pretrain")
    assert "▁" in texts(at) or "`" in texts(at)  # the tokenizer view shows tokens
    preset = [s for s in at.selectbox if s.label == "Model size (preset)"][0]
    assert preset.value == "tiny"
    at.number_input(key="steps/tiny").set_value(6)
    at.number_input(key="batch/tiny").set_value(8)
    button(at, "Start pretraining").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = only_run(runs, "pretrain")
    assert (run_dir / "config.json").exists()
    assert json.loads((run_dir / "config.json").read_text())["config"]["steps"] == 6
    assert jobs.wait(run_dir, timeout=120)["state"] == "done"
    at.run()
    assert not at.exception
    assert "done" in badges(at)
    assert len(at.get("plotly_chart")) >= 2  # loss and throughput
    assert at.query_params.get("run") == run_dir.name  # a refresh finds this run again
    # numbers from this run: the tiny preset's own vocabulary of 256, not the shipped model's 1024
    assert "ln 256 ≈ 5.55" in texts(at) and "ln 1024" not in texts(at)
    # the next step: Preferences, but not with this tiny-preset model chosen: its text is gibberish, and the
    # page says so instead of "it is chosen there already" (the shipped small model is chosen there)
    link = next(p.proto for p in at.get("page_link") if "Preferences" in p.proto.label)
    assert link.label == "Go to 2 · Preferences" and "from=" not in link.query_string
    said = " ".join(i.value for i in at.info)
    assert f"{run_dir.name}** is not recommended" in said and "quick look" in said and "shipped small" in said
    assert "chosen there already" not in texts(at)
    assert "quick look" in " ".join(c.value for c in at.caption)  # under the preset, before any run


def test_a_second_click_on_start_while_running_is_refused(runs):
    at = open_page("1_Pretrain")
    at.number_input(key="steps/tiny").set_value(100000)
    button(at, "Start pretraining").click().run()
    button(at, "Start pretraining").click().run()
    assert any("still" in e.value for e in at.error), [e.value for e in at.error]
    assert len(list_runs(runs)) == 1
    button(at, "Stop").click().run()
    assert jobs.wait(only_run(runs, "pretrain"), timeout=120)["state"] == "stopped"


@pytest.mark.parametrize("name,content,message", [
    ("empty.txt", b"", "is empty"),
    ("binary.txt", b"\x00\x01\x02" * 100, "binary"),
    ("short.txt", b"one line only\n", "at least 10 documents"),
    ("latin1.txt", "caf\xe9 au lait\n".encode("latin-1") * 20, "not UTF-8"),
])
def test_a_bad_corpus_upload_gives_a_clear_message(runs, name, content, message):
    at = open_page("1_Pretrain")
    at.radio[0].set_value("my own text file").run()
    at.file_uploader[0].set_value((name, content, "text/plain")).run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    button(at, "Start pretraining").click().run()
    assert any("Upload a valid corpus" in e.value for e in at.error)
    assert list_runs(runs) == []


def test_a_good_corpus_upload_is_previewed(runs):
    at = open_page("1_Pretrain")
    at.radio[0].set_value("my own text file").run()
    docs = "".join(f"review number {i} was fine\n" for i in range(12)).encode()
    at.file_uploader[0].set_value(("mine.txt", docs, "text/plain")).run()
    assert any("12 documents" in s.value for s in at.success)


def test_a_second_run_started_from_the_same_session_is_the_one_shown(runs):
    at = open_page("1_Pretrain")
    at.number_input(key="steps/tiny").set_value(3)
    button(at, "Start pretraining").click().run()
    first = only_run(runs, "pretrain")
    jobs.wait(first, timeout=120)
    at.run()
    button(at, "Start pretraining").click().run()
    second = [Path(r["path"]) for r in list_runs(runs) if r["run_id"] != first.name][0]
    assert at.query_params["run"] == second.name
    assert at.selectbox(key="picker/pretrain").value == second.name
    jobs.wait(second, timeout=120)


def test_a_run_folder_deleted_while_its_page_is_open(runs):
    at = open_page("1_Pretrain")
    at.number_input(key="steps/tiny").set_value(4)
    button(at, "Start pretraining").click().run()
    run_dir = only_run(runs, "pretrain")
    jobs.wait(run_dir, timeout=120)
    shutil.rmtree(run_dir)
    at.run()
    assert not at.exception
    assert "No pretraining run yet" in texts(at) or "is gone" in texts(at)


def test_a_run_folder_deleted_while_it_trains(runs):
    at = open_page("1_Pretrain")
    at.number_input(key="steps/tiny").set_value(100000)
    button(at, "Start pretraining").click().run()
    run_dir = only_run(runs, "pretrain")
    deadline = time.monotonic() + 120
    while jobs.status(run_dir)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    shutil.rmtree(run_dir)
    try:
        at.run()
        assert not at.exception
        assert "is gone" in texts(at) or "No pretraining run yet" in texts(at)
    finally:
        jobs.kill(run_dir)


def test_preferences_then_reward_model_from_the_pages(runs):
    at = open_page("2_Preferences")
    assert [b.label for b in at.button if b.label == "Start"]
    pairs = [n for n in at.number_input if n.label == "Pairs"][0]
    pairs.set_value(24)
    button(at, "Start").click().run()
    assert not at.error, [e.value for e in at.error]
    pref_dir = only_run(runs, "preferences")
    assert jobs.wait(pref_dir, timeout=120)["state"] == "done", jobs.status(pref_dir)
    assert len(read_jsonl(pref_dir / "preferences.jsonl")) == 24
    at.run()
    assert not at.exception
    assert any(len(df.value) == 24 for df in at.dataframe)  # the dataset table

    at = open_page("3_Reward_model")
    assert "Preference run" in [s.label for s in at.selectbox]
    button(at, "Start training").click().run()
    assert not at.error, [e.value for e in at.error]
    rm_dir = only_run(runs, "reward")
    st_ = jobs.wait(rm_dir, timeout=180)
    assert st_["state"] == "done", st_
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 3  # loss, accuracy, score histogram
    # score your own text with the model just trained
    rm = [s for s in at.selectbox if s.label == "Reward model"][0]
    rm.set_value([o for o in rm.options if rm_dir.name in o][0]).run()
    button(at, "Score it").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "reward-model score (normalised)" in [m.label for m in at.metric]


def test_human_labelling_saves_every_click_at_once(runs):
    at = open_page("2_Preferences")
    # who labels is a radio: clicking the chosen option again cannot leave no mode at all (issue 23)
    assert at.radio(key="pref_mode").value == "simulated annotator" and not at.get("button_group")
    at.radio(key="pref_mode").set_value("label pairs myself").run()
    [n for n in at.number_input if n.label == "Pairs to prepare for you"][0].set_value(4)
    button(at, "Start").click().run()
    pref_dir = only_run(runs, "preferences")
    assert jobs.wait(pref_dir, timeout=120)["state"] == "done"
    at.run()
    assert "0 of 4 decided" in at.get("progress")[0].proto.text if at.get("progress") else False
    # what "better" means, the pair in full (… where the length limit cut it), and no next step onto 0 labels
    assert any("**fluent English**" in m.value for m in at.markdown)
    from core.runs import read_jsonl as pairs_of
    from lab.views.preferences import shown_response

    first = pairs_of(pref_dir / "pairs.jsonl")[0]
    cards = [i.value for i in at.info]
    assert f"{first['prompt']} {shown_response(first['a'])}" in cards
    assert any(f"**{pref_dir.name}** is not recommended" in c and "0 labelled" in c for c in cards)
    assert "from=" not in next(p.proto for p in at.get("page_link") if "Reward" in p.proto.label).query_string
    button(at, "A is better").click().run()
    assert len(read_jsonl(pref_dir / "preferences.jsonl")) == 1  # on disk before the next pair shows
    button(at, "Skip").click().run()
    button(at, "Tie").click().run()
    assert [r["choice"] for r in read_jsonl(pref_dir / "skipped.jsonl")] == ["skip", "tie"]
    assert "3 of 4 decided" in at.get("progress")[0].proto.text
    # one agreement number everywhere: the metric, the caption and the chart (a tie is no label)
    from lab.views import charts, home as home_view, preferences as pref_view

    share, judged, _ = charts.gold_agreement(pref_view.dataset(pref_dir))
    assert judged <= 1
    metric = next(m for m in at.metric if m.label == "labels agreeing with the hidden gold")
    assert metric.value == ("–" if share is None else f"{share:.0%}")
    # Home counts the pairs labelled, not the 4 prepared
    assert home_view.runs_table(runs).set_index("run").loc[pref_dir.name, "key metric"] == "1 of 4 pairs labelled"
    # a fresh session (a refresh, a second tab) sees the same progress
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    again.query_params["run"] = pref_dir.name
    again.run()
    again.switch_page("../pages/2_Preferences.py").run()
    assert "3 of 4 decided" in again.get("progress")[0].proto.text


@pytest.mark.parametrize("name,content,message", [
    ("empty.jsonl", b"", "empty"),
    ("binary.jsonl", b"\x00\xff" * 50, "binary"),
    ("bad.jsonl", b'{"prompt": "a", "chosen": "b"\n', "not valid JSON"),
    ("onesided.jsonl", b'{"prompt": "a", "chosen": "b"}\n', "one-sided"),
    ("columns.csv", b"question,answer\nhi,there\n", "no column(s)"),
])
def test_a_bad_preference_upload_gives_a_clear_message(runs, name, content, message):
    at = open_page("2_Preferences")
    at.radio(key="pref_mode").set_value("import a file").run()
    at.file_uploader[0].set_value((name, content, "application/json")).run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    # named as the student named it, never as the app's temporary copy (issue 23)
    assert all(name in e.value and "upload." not in e.value for e in at.error), [e.value for e in at.error]
    assert list_runs(runs) == []


def test_compare_runs_overlays_two_runs_and_shows_what_differs(runs):
    from core.config import pretrain_preset, to_dict
    from core.pretrain import pretrain
    from core.runs import Run
    from core.session import drive

    for lr in (5e-3, 1e-3):
        cfg = pretrain_preset("tiny", steps=4, batch_size=4, lr=lr, corpus_size=300, sample_every=4,
                              eval_every=2, device="cpu")
        run = Run.create("pretrain", to_dict(cfg), root=runs)
        drive(run, pretrain(cfg, run))
    at = open_page("9_Compare_runs")
    assert len(at.multiselect[0].value) == 2
    diff = at.dataframe[0].value
    assert "lr" in list(diff["setting"])  # the one setting that differs (the run id is not a setting)
    assert len(at.get("plotly_chart")) == 1
    assert at.selectbox(key="compare_metric").value == "lm/val_loss"
    side = at.dataframe[1].value  # one row per prompt and run, named by the setting that differs
    # pretraining runs score nothing: no proxy and gold columns that read None in every row (issue 23)
    assert list(side.columns) == ["prompt", "model", "response"] and len(side) > 0
    assert {m.split(" (")[0] for m in side["model"]} == {"lr = 0.005", "lr = 0.001"}
    # each table downloads as CSV, so do the curves; every response can be read in full (issue 23)
    downloads = [d.proto.label for d in at.get("download_button")]
    assert downloads == ["Download this table (CSV)", "Download these curves (CSV)", "Download this table (CSV)"]
    assert f"Full responses ({len(side)})" in [e.label for e in at.expander]
    assert [t.value for t in at.text] == list(side["response"])
    assert at.get("plotly_chart")[0].proto.spec and "lr = 0.005" in at.get("plotly_chart")[0].proto.spec
    assert "optimizer step (count)" in at.get("plotly_chart")[0].proto.spec


def _picker_script():
    import streamlit as st

    from lab import ui

    picked = ui.run_picker("pretrain")
    st.markdown(f"shown={picked.name if picked else None}")
    if st.button("switch"):  # a start button drawn *after* the picker, as on the PPO page
        ui.set_current_run("pretrain", ui.runs_root() / st.session_state["target"])


def test_the_run_picker_follows_a_run_chosen_after_it_was_drawn(runs):
    from core.runs import Run

    older = Run.create("pretrain", {}, out=runs / "a-older")
    newer = Run.create("pretrain", {}, out=runs / "b-newer")
    Run.open(older.path).write_json("config.json", {**older.info(), "created": 1.0})
    for run in (older, newer):
        run.set_status("done")  # folders only: no worker behind them
    at = AppTest.from_function(_picker_script, default_timeout=TIMEOUT)
    at.session_state["target"] = older.run_id
    at.run()
    assert at.markdown[0].value == f"shown={newer.run_id}"  # newest first
    button(at, "switch").click().run()
    at.run()
    assert at.markdown[0].value == f"shown={older.run_id}"
    assert at.query_params["run"] == older.run_id


def test_a_too_large_upload_is_refused_with_its_size(runs, monkeypatch):
    import lab.jobs

    monkeypatch.setattr(lab.jobs, "MAX_UPLOAD_MB", 0.001)  # ~1 KB, so the test needs no 20 MB file
    at = open_page("1_Pretrain")
    at.radio[0].set_value("my own text file").run()
    at.file_uploader[0].set_value(("big.txt", b"a fine review of a fine thing\n" * 100, "text/plain")).run()
    assert any("the limit is 0.001 MB" in e.value for e in at.error), [e.value for e in at.error]


def test_a_crashed_run_shows_its_error_on_the_page(runs):
    bad = runs.parent / "few.txt"
    bad.write_text("too\nfew\nlines\n")
    from core.config import pretrain_preset

    run = jobs.start("pretrain", pretrain_preset("tiny", corpus_file=str(bad), device="cpu", threads=1), runs)
    assert jobs.wait(run.path, timeout=120)["state"] == "failed"
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = run.run_id  # e.g. a refresh of the page that started it
    at.run()
    at.switch_page("../pages/1_Pretrain.py").run()
    assert not at.exception
    assert any("This run failed" in e.value and "CorpusError" in e.value for e in at.error)
    assert any("Traceback" in c.value for c in at.code)  # the details, folded away in an expander


def test_home_quick_start_starts_ppo_and_opens_its_page(runs):
    from lab.views import home as home_view

    state = home_view.quick_start_state()
    if not state["available"]:
        pytest.skip(state["reason"])
    at = open_page("0_Home")
    button(at, "Quick start: PPO on the shipped models").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = only_run(runs, "ppo")
    assert (run_dir / "config.json").exists()
    assert at.query_params.get("run") == run_dir.name
    assert any("PPO" in t.value for t in at.title)  # switched to the PPO page, showing this run
    assert at.selectbox(key="picker/ppo").value == run_dir.name


def done_run(root, stage, name):
    run = Run.create(stage, {}, out=root / name)
    run.set_status("done", iteration=1, message="finished")
    return run


def test_next_step_link_opens_the_next_stage_with_the_run_chosen(runs):
    base = done_run(runs, "pretrain", "20260101-000001-pretrain")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.query_params["from"] = base.run_id  # what "Go to 2 · Preferences" on the Pretrain page opens
    at.switch_page("../pages/2_Preferences.py").run()
    assert at.selectbox[0].label.startswith("Base model") and at.selectbox[0].value.startswith(f"run: {base.run_id} ·")


def test_name_note_and_delete_a_run_from_its_page(runs):
    run = done_run(runs, "pretrain", "20260101-000002-pretrain")
    at = open_page("1_Pretrain")
    name = next(t for t in at.text_input if t.label == "Name")
    name.input("first try")
    next(t for t in at.text_area if t.label == "Note").input("loss flat: lr too low?")
    button(at, "Save name and note").click().run()
    assert json.loads((run.path / "meta.json").read_text()) == {"name": "first try", "note": "loss flat: lr too low?"}
    assert "first try" in at.selectbox(key="picker/pretrain").format_func(run.run_id)
    assert button(at, "Delete this run").disabled  # nothing goes without the confirmation
    next(c for c in at.checkbox if c.label.startswith("Yes, delete")).check().run()
    button(at, "Delete this run").click().run()
    assert not at.exception and not run.path.exists()
    assert "No pretraining run yet" in texts(at)


def test_reward_page_warns_about_a_model_trained_on_few_pairs(runs):
    run = done_run(runs, "reward", "20260101-000003-reward")
    run.checkpoint_dir.mkdir()
    for name, content in (("config.json", "{}"), ("model.safetensors", ""),
                          ("lab.json", json.dumps({"train_pairs": 3, "val_pairs": 1, "gold_agreement": 0.425}))):
        (run.checkpoint_dir / name).write_text(content)
    run.log_metrics({"step": 1, "rm/loss": 0.1, "rm/val_accuracy": 1.0, "rm/gold_agreement": 0.425})
    at = open_page("3_Reward_model")
    said = " ".join(w.value for w in at.warning)
    assert "Do not trust this reward model" in said and "only 3 pair(s)" in said and "42.5%" in said
    # and the same page does not send the student on with it: no "chosen there already", no ?from= (issue 23)
    assert "chosen there already" not in texts(at)
    assert f"**{run.run_id}** is not recommended for 4 · PPO" in " ".join(i.value for i in at.info)
    link = next(p.proto for p in at.get("page_link") if "PPO" in p.proto.label)
    assert "from=" not in link.query_string
    # its picker says why, beside the shipped model's figure
    options = at.selectbox(key="score_rm").options
    assert f"run: {run.run_id} · gold agreement 42.5% · do not trust" in options
    assert any(o.startswith("shipped: reward · gold agreement") and "do not trust" not in o for o in options)


def test_ppo_never_starts_on_a_reward_model_its_page_warns_against(runs):
    from core.model import SHIPPED

    if not (SHIPPED["reward"] / "model.safetensors").exists():
        pytest.skip("the shipped reward model is not in assets/")
    run = done_run(runs, "reward", "20260101-000004-reward")
    run.checkpoint_dir.mkdir()
    for name, content in (("config.json", "{}"), ("model.safetensors", ""),
                          ("lab.json", json.dumps({"train_pairs": 900, "val_pairs": 100, "gold_agreement": 0.45}))):
        (run.checkpoint_dir / name).write_text(content)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.query_params["from"] = run.run_id  # an old "next step" link to it
    at.switch_page("../pages/4_PPO.py").run()
    assert not at.exception, [e.value for e in at.exception]
    picker = at.selectbox(key="ppo/reward")
    assert picker.value.startswith("shipped reward model") and "gold agreement 85.5%" in picker.value
    assert any(run.run_id in o and "gold agreement 45.0% · do not trust" in o for o in picker.options)
    assert any("(from the link) is not chosen" in c.value for c in at.caption)
    policy = at.selectbox(key="ppo/policy")
    assert "val loss" in policy.value and all("val loss" in o for o in policy.options)
