"""lab/views/runs.py and the warnings of lab/views/preferences.py: progress with time left, names and notes,
deleting, and when not to trust a reward model. Run folders written by hand; no training."""

import json

import pandas as pd
import pytest

from core.runs import Run
from lab import jobs
from lab.views import home as home_view, preferences as pref_view, runs as runs_view


def test_progress_says_phase_how_far_and_time_left():
    df = pd.DataFrame({"step": [1, 2, 3], "time": [100.0, 102.0, 104.0]})  # 2 s per step
    info = runs_view.progress("pretrain", {"steps": 33}, df)
    assert info["fraction"] == pytest.approx(3 / 33)
    assert info["text"] == "training · 3 of 33 steps · about 1 min left"  # 30 steps x 2 s
    assert "estimating" in runs_view.progress("ppo", {"iterations": 10}, df.head(1))["text"]
    assert runs_view.progress("ppo", {}, df)["text"] == "training · 3 steps"  # no total: no made-up ETA


def test_weak_to_strong_progress_names_the_seed_and_the_model_in_training():
    from core.config import to_dict, w2s_preset
    from core.w2s import planned_steps

    cfg = w2s_preset("tiny", seeds=3)
    df = pd.DataFrame([{"step": 1, "time": 0.0, "w2s/seed": cfg.seed + 1, "w2s/weak_loss": 0.7},
                       {"step": 2, "time": 1.0, "w2s/seed": cfg.seed + 1, "w2s/xent_loss": 0.6}])
    text = runs_view.progress("w2s", to_dict(cfg), df)["text"]
    assert text.startswith("seed 2 of 3: training the student (cross-entropy)")
    assert f"2 of {planned_steps(cfg)} steps" in text and "left" in text


def w2s_metrics(cfg, weak_s: float, strong_s: float, weak_eval_s: float, strong_eval_s: float) -> pd.DataFrame:
    """A whole weak-to-strong run's metrics rows, in core/w2s.py's order, each taking the given seconds."""
    from core.w2s import steps_per_run

    half = cfg.n_train // 2
    rows, t = [], 0.0

    def add(seconds, **metrics):
        nonlocal t
        t += seconds
        rows.append({"step": len(rows) + 1, "time": t, **metrics})

    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for _ in range(steps_per_run(half, cfg.weak_epochs, cfg.batch_size)):
            add(weak_s, **{"w2s/seed": seed, "w2s/weak_loss": 0.6})
        add(weak_eval_s, **{"w2s/seed": seed, "w2s/weak_acc": 0.7, "w2s/weak_label_acc": 0.7})
        for name in ("ceiling", "xent", "confidence"):
            for _ in range(steps_per_run(half, cfg.epochs, cfg.batch_size)):
                add(strong_s, **{"w2s/seed": seed, f"w2s/{name}_loss": 0.5})
            add(strong_eval_s, **{"w2s/seed": seed, f"w2s/{name}_acc": 0.8})
        add(0.01, **{"w2s/seed": seed, "w2s/gap": 0.1, "w2s/pgr_xent": 0.5})
    add(0.01, **{"w2s/pgr": 0.5, "final": True})
    return pd.DataFrame(rows)


def test_weak_to_strong_time_left_counts_each_models_work_left():
    """Issue 23: at step 98 of 916 the page said "about 4 min left" and the run took 12 more minutes: the cheap
    weak supervisor trains first, so the run's pace so far was the weak model's. Each model's rows left at its
    own measured pace get it right; before any strong row the figure is only a lower bound, and says so."""
    from core.config import to_dict, w2s_preset
    from core.w2s import planned_steps

    cfg = w2s_preset("default")
    config = to_dict(cfg)
    whole = w2s_metrics(cfg, weak_s=0.06, strong_s=0.76, weak_eval_s=0.9, strong_eval_s=0.4)  # one CPU thread
    assert len(whole) == len(runs_view.w2s_schedule(config)) == planned_steps(cfg) == 916
    assert runs_view.w2s_row_models(whole).tolist() == runs_view.w2s_schedule(config)
    seen = whole.head(98)
    truth = whole["time"].iloc[-1] - seen["time"].iloc[-1]
    old = runs_view.seconds_left(seen, 98, 916, "w2s")
    assert old < 0.4 * truth                                 # the old, whole-run pace: a third of it, as in the issue
    estimate, lower_bound = runs_view.w2s_seconds_left(seen, config)
    assert not lower_bound and estimate == pytest.approx(truth, rel=0.05)
    text = runs_view.progress("w2s", config, seen)["text"]
    assert f"98 of 916 steps · about {round(truth / 60)} min left" in text
    early, lower_bound = runs_view.w2s_seconds_left(whole.head(40), config)  # the weak model's pace only
    assert lower_bound and early < whole["time"].iloc[-1] - whole["time"].iloc[39]
    assert "at least" in runs_view.progress("w2s", config, whole.head(40))["text"]


def test_name_and_note_live_in_the_run_folder_and_show_on_home(tmp_path):
    run = Run.create("pretrain", {}, root=tmp_path)
    runs_view.write_meta(run.path, "  baseline  ", "lr 1e-3; loss flat after 200 steps")
    assert json.loads((run.path / "meta.json").read_text()) == {"name": "baseline",
                                                               "note": "lr 1e-3; loss flat after 200 steps"}
    row = home_view.runs_table(tmp_path).iloc[0]
    assert row["name"] == "baseline" and row["note"].startswith("lr 1e-3")
    with pytest.raises(ValueError, match="at most"):
        runs_view.write_meta(run.path, "x" * 61, "")


def test_delete_stops_a_running_job_first_and_refuses_another_students_run(tmp_path, monkeypatch):
    run = Run.create("pretrain", {}, root=tmp_path)
    run.set_status("running")
    run.write_json(jobs.JOB_FILE, {"pid": None, "owner": "other", "started": 0})
    with pytest.raises(PermissionError, match="another student"):
        runs_view.delete_run(run.path, owner="me")
    run.write_json(jobs.JOB_FILE, {"pid": None, "owner": "me", "started": 0})
    stopped = []
    monkeypatch.setattr(jobs, "stop", lambda d, *who, **how: stopped.append(d))
    runs_view.delete_run(run.path, owner="me", timeout=0.3)  # no worker answers: it is ended, then deleted
    assert stopped and not run.path.exists()


def test_reward_model_warnings_for_few_pairs_and_below_chance(tmp_path):
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"")
    (ckpt / "lab.json").write_text(json.dumps({"train_pairs": 3, "val_pairs": 1, "gold_agreement": 0.425}))
    few, chance = pref_view.rm_warnings(str(ckpt))
    assert "only 3 pair(s)" in few and "42.5%" in chance and "coin flip" in chance
    (ckpt / "lab.json").write_text(json.dumps({"train_pairs": 1800, "val_pairs": 200, "gold_agreement": 0.8}))
    assert pref_view.rm_warnings(str(ckpt)) == []


def test_your_own_prompt_samples_at_the_temperature_in_force(tmp_path, monkeypatch):
    """The PPO page's 'your own prompt' read the temperature from config.json: a run turned to 0.5 mid-run still
    sampled at its starting 1.0 (a sibling of Compare's labels, issue 22)."""
    import core.preferences
    from core.runs import append_jsonl
    from lab.views import ppo as V

    run = Run.create("ppo", {"temperature": 1.0, "policy": "small", "response_length": 4}, out=tmp_path / "run")
    run.checkpoint_dir.mkdir()
    (run.checkpoint_dir / "model.safetensors").write_bytes(b"")
    run.log_metrics({"step": 1})
    append_jsonl(run.path / "control_log.jsonl", {"iteration": 2, "time": 1e12, "key": "temperature", "value": 0.5,
                                                  "accepted": True, "previous": 1.0})
    used = []

    def sample(model, tok, prompts, n, temperature, **kw):
        used.append(temperature)
        raise KeyboardInterrupt  # the temperature is what is checked; scoring would need real models

    monkeypatch.setattr(V, "_lm", lambda spec, stamp: (None, None))
    monkeypatch.setattr(V, "_stamp", lambda spec: 0.0)
    monkeypatch.setattr(core.preferences, "sample_responses", sample)
    with pytest.raises(KeyboardInterrupt):
        V.try_prompt(run, "the plot")
    assert used == [0.5]
