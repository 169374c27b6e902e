"""The PPO and weak-to-strong pages under streamlit's AppTest, with real (tiny) runs in spawned processes."""

import math
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.model import SHIPPED
from core.runs import Run, read_json, read_metrics
from lab import jobs, live_panel
from lab.views import ppo as V
from tests.support import by_label

ROOT = Path(__file__).resolve().parents[2]
PPO_PAGE = str(ROOT / "pages" / "4_PPO.py")
W2S_PAGE = str(ROOT / "pages" / "8_Weak_to_strong.py")


def finished_run(root: Path, stage: str, name: str, fill) -> Path:
    """A finished run of `stage` under `root` whose checkpoint/ is filled by fill(folder)."""
    run = Run.create(stage, {}, out=root / name)
    fill(run.checkpoint_dir)
    run.set_status("done", iteration=1, message="finished")
    return run.path


@pytest.fixture(scope="module")
def own_rm(tmp_path_factory):
    """A reward model of the student's own (the shipped small model's backbone with a fresh score head):
    the page must work with it whether or not the shipped reward model is in assets/."""
    from core.model import load_lm, save_checkpoint, scorer_from_lm

    folder = tmp_path_factory.mktemp("own_rm") / "checkpoint"
    lm, tok = load_lm("small")
    save_checkpoint(scorer_from_lm(lm), tok, folder)
    return folder


@pytest.fixture()
def lab_root(tmp_path, own_rm, monkeypatch):
    """A runs root holding the student's own finished reward run, offered next to the shipped models."""
    root = tmp_path / "runs"
    root.mkdir()
    finished_run(root, "reward", "20260101-000001-reward", lambda d: shutil.copytree(own_rm, d))
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    return root


def page(path, timeout=60):
    """A page as the app serves it: through the entry script, so that `__main__` is lab/app.py (guarded)
    and a job spawned from the page does not re-run the page in its worker."""
    at = AppTest.from_file(str(ROOT / "lab" / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(str(Path("..") / "pages" / Path(path).name)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def choose_own_models(at):
    policy = by_label(at.selectbox, "policy (and frozen reference)")
    policy.select(next(o for o in policy.options if "shipped small" in o))
    reward = by_label(at.selectbox, "reward model (proxy)")
    reward.select(next(o for o in reward.options if "your run" in o))


def ppo_runs(root):
    return sorted(p for p in root.iterdir() if p.name.endswith("-ppo") or "-ppo-" in p.name)


def wait_for(predicate, timeout=90, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_ppo_page_renders_on_a_fresh_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_RUNS", str(tmp_path / "fresh"))
    at = page(PPO_PAGE)
    labels = [s.label for s in at.slider]
    for knob in ("λ (kl_coef)", "clip ε", "temperature", "target KL (nats per response)"):
        assert knob in labels
    assert by_label(at.radio, "λ mode").options == ["fixed", "adaptive"]
    # the knobs start at PPOConfig's defaults (not at the slider minimums)
    defaults = V.make_ppo_config()
    assert by_label(at.slider, "λ (kl_coef)").value == pytest.approx(defaults.kl_coef)
    assert by_label(at.slider, "clip ε").value == pytest.approx(defaults.clip_eps)
    assert by_label(at.slider, "temperature").value == pytest.approx(defaults.temperature)
    assert any(b.label == "Start PPO" for b in at.button)
    assert any("No PPO run yet" in i.value for i in at.info)


def test_start_from_the_page_creates_one_run_and_the_controls_reach_it(lab_root):
    at = page(PPO_PAGE)
    choose_own_models(at)
    by_label(at.number_input, "iterations").set_value(400)
    by_label(at.selectbox, "batch (prompts)").select(8)
    by_label(at.number_input, "response tokens").set_value(6)
    at.run()
    by_label(at.button, "Start PPO").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = ppo_runs(lab_root)
    assert len(runs) == 1
    run = Run.open(runs[0])
    try:
        # the chosen models and knobs went into the config and the initial control.json
        assert run.config["policy"] == "small" and run.config["reward"].endswith("reward")
        assert run.read_control()["kl_coef"] == pytest.approx(run.config["kl_coef"])
        assert run.config["kl_coef"] == pytest.approx(V.make_ppo_config().kl_coef)
        # a second click on Start does not make a second run: it says why
        by_label(at.button, "Start PPO").click()
        at.run()
        assert len(ppo_runs(lab_root)) == 1
        assert any("Not started" in e.value and "still" in e.value for e in at.error)

        wait_for(lambda: len(read_metrics(run.path)) >= 1, what="the first PPO iteration")
        at.run()
        assert not at.exception
        assert len(at.get("plotly_chart")) >= 5  # reward, KL, ratio histogram, value loss, entropy
        # the knobs are live: moving λ and ε writes control.json of the running job
        by_label(at.slider, "λ (kl_coef)").set_value(0.3)
        at.run()
        assert run.read_control()["kl_coef"] == pytest.approx(0.3)
        by_label(at.slider, "clip ε").set_value(0.1)
        at.run()
        assert run.read_control()["clip_eps"] == pytest.approx(0.1)
        wait_for(lambda: (read_metrics(run.path)["params/kl_coef"] == 0.3).any(), what="λ=0.3 in metrics")
        # pause, step one iteration, resume, stop
        by_label(at.button, "Pause").click()
        at.run()
        assert run.read_control()["paused"] is True
        wait_for(lambda: jobs.status(run.path)["state"] == "paused", what="paused")
        n = len(read_metrics(run.path))
        time.sleep(0.5)
        assert len(read_metrics(run.path)) == n  # nothing trains while paused
        by_label(at.button, "Step one iteration").click()
        at.run()
        assert run.read_control()["step"] == 1
        wait_for(lambda: len(read_metrics(run.path)) == n + 1, what="exactly one more iteration")
        by_label(at.button, "Resume").click()
        at.run()
        assert run.read_control()["paused"] is False
        wait_for(lambda: len(read_metrics(run.path)) > n + 1, what="training after resume")
        df = read_metrics(run.path)
        assert (df["params/clip_eps"] == 0.1).any()
        by_label(at.button, "Stop").click()
        at.run()
        assert jobs.wait(run.path, timeout=90)["state"] == "stopped"
    finally:
        if jobs.status(run.path)["state"] in jobs.ACTIVE_STATES:
            jobs.kill(run.path)
    # the finished run still renders: generations, one step slowly, over-optimisation
    at = page(PPO_PAGE)
    assert any("Iteration" in m.value for m in at.markdown)
    assert any(df.value.shape[0] >= 1 for df in at.dataframe)


def test_a_bad_live_value_is_refused_with_the_config_rule(lab_root):
    cfg, parents, control = V.ppo_job(preset="tiny", reward=str(lab_root / "20260101-000001-reward"), device="cpu")
    run = Run.create("ppo", __import__("dataclasses").asdict(cfg), root=lab_root, control=control)
    with pytest.raises(Exception, match="clip_eps"):
        live_panel.set_knobs(run, clip_eps=1.5)
    with pytest.raises(Exception, match="kl_coef"):
        live_panel.set_knobs(run, kl_coef=-0.1)
    with pytest.raises(Exception, match="unknown"):
        live_panel.set_knobs(run, kl=0.1)
    assert run.read_control()["clip_eps"] == pytest.approx(0.2)  # nothing written
    live_panel.set_knobs(run, kl_coef=0.2, adaptive_kl=True)
    assert run.read_control()["kl_coef"] == 0.2 and run.read_control()["adaptive_kl"] is True
    run.set_status("running", iteration=1)
    assert live_panel.act(run, "step")["step"] == 1 and live_panel.act(run, "step")["step"] == 2
    assert read_json(run.path / "control.json")["paused"] is True


def test_w2s_page_renders_on_a_fresh_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_RUNS", str(tmp_path / "fresh"))
    at = page(W2S_PAGE)
    task = by_label(at.radio, "task")
    assert set(task.options) == {"classify", "preference"} and task.value == "preference"
    assert by_label(at.multiselect, "edits (preference pairs)").value == ["scramble"]
    assert any(b.label == "Start weak-to-strong" for b in at.button)
    assert any("No weak-to-strong experiment yet" in i.value for i in at.info)


def test_w2s_tiny_run_from_the_page_shows_bars_pgr_and_examples(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    at = page(W2S_PAGE)
    by_label(at.radio, "size").set_value("tiny")
    at.run()
    by_label(at.button, "Start weak-to-strong").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = [p for p in root.iterdir() if p.name.endswith("-w2s")]
    assert len(runs) == 1
    assert Run.open(runs[0]).config["preset"] == "tiny"
    st = jobs.wait(runs[0], timeout=180)
    assert st["state"] == "done", st
    at = page(W2S_PAGE)
    labels = [m.label for m in at.metric]
    assert "weak supervisor" in labels and "strong ceiling" in labels and "student (confidence)" in labels
    assert any("PGR" in str(m.delta) for m in at.metric)
    assert any("Corrected" in m.value for m in at.markdown) and any("Copied" in m.value for m in at.markdown)
    assert any("accuracy by edit" in h.value for h in at.subheader)  # where the gap is, per edit kind
    # summed counts say so; the examples' seed has its own counts
    assert any("(all seeds)" in c for d in at.dataframe for c in d.value.columns)
    assert any("In the first seed" in c.value for c in at.caption)


def fake_finished_ppo_run(root: Path) -> Run:
    """A PPO run folder written by hand in the trainer's formats (metrics, samples, inspect.json)."""
    cfg, _, control = V.ppo_job(preset="tiny", device="cpu")
    run = Run.create("ppo", __import__("dataclasses").asdict(cfg), root=root, control=control)
    edges = [0.5 + 0.025 * i for i in range(41)]
    for i in range(1, 4):
        run.log_metrics({"step": i, "objective/scores": 0.1 * i, "objective/gold": 0.05 * i, "objective/kl": 0.2 * i,
                         "objective/entropy": 20 - i, "loss/value_avg": 1 / i, "policy/clipfrac_avg": 0.02,
                         "params/kl_coef": 0.05 if i < 3 else 0.2, "params/clip_eps": 0.2, "params/adaptive_kl": False,
                         "hist/ratio_edges": edges, "hist/ratio_counts": [0] * 19 + [30, 30] + [0] * 19})
    for kind, it in (("base", 0), ("policy", 2)):
        run.log_sample({"iteration": it, "kind": kind, "prompt": "the lens", "response": f"{kind} words here",
                        "score": 0.5, "gold": 0.1, "tokens": ["▁words", "▁here"], "kl": [0.0, 0.3]})
    n = 2
    run.write_json("inspect.json", {"iteration": 3, "kl_coef": 0.2, "clip_eps": 0.2, "rows": [{
        "prompt": "the lens", "response": "words here", "tokens": ["▁words", "▁here"], "logprobs": [-1.0, -2.0],
        "ref_logprobs": [-1.1, -2.2], "kl": [0.1, 0.2], "rewards": [-0.02, 0.96], "values": [0.3, 0.4],
        "advantages": [0.5, -0.5], "returns": [0.8, 0.9], "ratio": [1.0, 1.3], "clipped": [False, True],
        "score": 1.0}] * n})
    run.set_status("done", iteration=3, message="finished")
    return run


def test_page_shows_a_finished_run_and_survives_its_folder_being_deleted(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    run = fake_finished_ppo_run(root)
    at = page(PPO_PAGE)
    assert all(b.disabled for b in at.button if b.label in ("Pause", "Resume", "Step one iteration", "Stop"))
    texts = [m.value for m in at.markdown]
    assert any("Iteration 3" in t and "the lens" in t for t in texts)  # one PPO step, slowly
    gens = [d.value for d in at.dataframe if "response" in d.value.columns and "model" in d.value.columns]
    assert gens and gens[0]["response"].tolist() == ["base words here", "policy words here"]
    assert gens[0]["model"].tolist() == ["base model", "policy (iteration 2)"]
    assert gens[0]["proxy"].tolist() == [0.5, 0.5] and gens[0]["gold"].tolist() == [0.1, 0.1]
    step_tables = [d.value for d in at.dataframe if "clipped" in d.value.columns]
    assert step_tables and step_tables[0]["clipped"].tolist() == [False, True]
    shutil.rmtree(run.path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = [w.value for w in at.warning] + [i.value for i in at.info]
    assert any("gone" in t or "No PPO run yet" in t for t in said), said


def test_quick_start_ppo_is_small_visible_and_refuses_a_double_start(tmp_path, own_rm):
    # the shipped reward model is the default; an own one stands in where assets/reward is not there
    over = {} if (SHIPPED["reward"] / "model.safetensors").exists() \
        else {"reward": str(own_rm)}
    run = V.quick_start_ppo(tmp_path, owner="student", **over)
    try:
        cfg = run.config
        for key, value in V.QUICK_START.items():
            assert cfg[key] == value, key
        assert cfg["policy"] == "small"
        with pytest.raises(jobs.JobError, match="still"):
            V.quick_start_ppo(tmp_path, owner="student", **over)
        assert len([p for p in tmp_path.iterdir() if p.name.endswith("-ppo")]) == 1
        wait_for(lambda: len(read_metrics(run.path)) >= 1, what="the first quick-start iteration")
    finally:
        jobs.stop(run.path)
        jobs.wait(run.path, timeout=120)


def ppo_buttons(at) -> dict:
    return {b.label: not b.disabled for b in at.button if b.label in ("Pause", "Resume", "Step one iteration", "Stop")}


def page_text(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "subheader")
                     for e in getattr(at, kind))


def test_the_page_follows_the_run_state_paused_done_and_failed(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    run = fake_finished_ppo_run(root)
    inspect = read_json(run.path / "inspect.json")
    (run.path / "inspect.json").unlink()
    run.set_status("paused", iteration=3)  # a folder only: no worker behind it, so nothing marks it dead
    run.write_control(paused=True)
    at = page(PPO_PAGE)
    assert ppo_buttons(at) == {"Pause": False, "Resume": True, "Step one iteration": True, "Stop": True}
    assert "Knobs — live" in page_text(at)
    assert "No iteration recorded yet" in page_text(at)
    run.write_json("inspect.json", inspect)  # the run goes on and ends
    run.set_status("done", iteration=3, message="finished")
    at.run()
    text = page_text(at)
    assert "— live" not in text and "is live" not in text and "Redrawn about every" not in text
    assert "This run finished" in text
    assert not any(ppo_buttons(at).values())
    assert "Iteration 3 (the last one this run recorded)" in text  # no Load click needed
    assert "last epoch" in text  # says which epoch the ratios come from

    failed = Run.create("ppo", run.config, root=root)
    failed.set_status("failed", message="training failed", error="ValueError: tokenizers differ")
    at.query_params["run"] = failed.run_id
    at.session_state["pending/ppo"] = failed.run_id
    at.run()
    text = page_text(at)
    assert "tokenizers differ" in text and "failed before its first iteration" in text
    assert "waiting for the first iteration" not in str([c.proto for c in at.get("plotly_chart")])


def test_a_policy_the_reward_model_cannot_read_is_refused_before_start(lab_root, tiny_base):
    shutil.copytree(tiny_base, lab_root / "20260101-000002-pretrain")  # vocabulary 256, the RM's is 1024
    at = page(PPO_PAGE)
    policy = by_label(at.selectbox, "policy (and frozen reference)")
    policy.select(next(o for o in policy.options if "20260101-000002-pretrain" in o)).run()
    assert any("different tokenizers" in e.value and "256" in e.value for e in at.error), [e.value for e in at.error]
    assert by_label(at.button, "Start PPO").disabled
    assert ppo_runs(lab_root) == []


def test_your_own_prompt_base_vs_policy_with_proxy_and_gold(tmp_path, own_rm):
    run = fake_finished_ppo_run(tmp_path)
    config = {**run.config, "reward": str(own_rm)}
    run.write_json("config.json", {**Run.open(run.path).info(), "config": config})
    with pytest.raises(ValueError, match="no policy checkpoint"):
        V.try_prompt(Run.open(run.path), "the lens was")
    shutil.copytree(SHIPPED["small"], run.checkpoint_dir)  # stands in for the trained policy
    rows = V.try_prompt(Run.open(run.path), "the lens was")
    assert [r["model"].split(" (")[0] for r in rows] == ["base model", "policy"]
    assert all(r["response"] is not None and math.isfinite(r["proxy"]) and math.isfinite(r["gold"]) for r in rows)
    with pytest.raises(ValueError, match="type a prompt"):
        V.try_prompt(Run.open(run.path), "   ")
