"""lab/jobs.py: stages run in spawned processes that write only their run folder."""

import os
import runpy
import signal
import time
from pathlib import Path

import pytest

from core.config import ConfigError, pretrain_preset
from core.runs import Run, read_metrics
from lab import jobs

ROOT = Path(__file__).resolve().parents[2]


def tiny_cfg(**overrides):
    values = dict(steps=8, eval_every=4, sample_every=8, checkpoint_every=8, corpus_size=300, device="cpu",
                  threads=1)
    values.update(overrides)
    return pretrain_preset("tiny", **values)


def wait_for_state(run_dir, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = jobs.status(run_dir)
        if st["state"] in states:
            return st
        time.sleep(0.05)
    raise AssertionError(f"run never reached {states}: {jobs.status(run_dir)}")


def test_contract_lists_every_stage_and_each_resolves():
    assert {"pretrain", "preferences", "reward", "ppo", "w2s", "grpo", "frontier", "dpo", "bon"} <= set(jobs.CONTRACT)
    from core.config import STAGE_CONFIGS, StageConfig

    assert set(jobs.CONTRACT) == set(STAGE_CONFIGS)  # a stage the app starts has a config `rlhf-lab set` can read
    for stage in jobs.CONTRACT.values():  # every stage exists: no "not built yet" guard is left to hide a typo
        assert callable(stage.generator()) and issubclass(stage.config_cls(), StageConfig)


def test_a_spawned_tiny_pretrain_run_trains_and_checkpoints(tmp_path):
    run = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="alice")
    assert run.path.parent == tmp_path and (run.path / "config.json").exists()
    assert jobs.job_info(run.path)["pid"] != os.getpid()  # trained in another process
    st = jobs.wait(run.path, timeout=120)
    assert st["state"] == "done", st
    df = read_metrics(run.path)
    assert list(df["step"]) == list(range(1, 9))
    assert (run.checkpoint_dir / "model.safetensors").exists()


def test_double_start_is_refused_for_one_owner_but_two_owners_get_two_runs(tmp_path):
    first = jobs.start("pretrain", tiny_cfg(steps=100000), tmp_path, owner="alice")
    try:
        with pytest.raises(jobs.JobError, match="still"):
            jobs.start("pretrain", tiny_cfg(), tmp_path, owner="alice")
        second = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="bob")
        assert second.path != first.path
        assert jobs.wait(second.path, timeout=120)["state"] == "done"
    finally:
        jobs.stop(first.path)
    st = jobs.wait(first.path, timeout=120)
    assert st["state"] == "stopped"
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2  # the refused click left no run


def test_a_bad_config_is_refused_before_any_folder_exists(tmp_path):
    with pytest.raises(ConfigError, match="steps"):
        jobs.start("pretrain", tiny_cfg(steps=0), tmp_path)
    with pytest.raises(ConfigError, match="PretrainConfig"):
        jobs.start("pretrain", object(), tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_crash_in_the_worker_leaves_a_failed_run_with_its_error(tmp_path):
    corpus = tmp_path / "few.txt"
    corpus.write_text("only\nfive\nlines\nof\ntext\n")  # passes validate() (a file), fails loading (< 10 docs)
    run = jobs.start("pretrain", tiny_cfg(corpus_file=str(corpus)), tmp_path / "runs")
    st = jobs.wait(run.path, timeout=120)
    assert st["state"] == "failed"
    assert "CorpusError" in st["error"] and "10 documents" in st["error"]
    assert "Traceback" in jobs.error_details(run.path)


def test_a_killed_worker_is_reported_as_failed(tmp_path):
    run = jobs.start("pretrain", tiny_cfg(steps=100000), tmp_path)
    wait_for_state(run.path, ("running",))
    os.kill(jobs.job_info(run.path)["pid"], signal.SIGKILL)
    st = wait_for_state(run.path, ("failed",), timeout=30)
    assert "ended without a final status" in st["error"]
    assert Run.open(run.path).status()["state"] == "failed"  # written to disk: the CLI agrees


def test_a_run_can_be_found_again_from_the_folder_alone(tmp_path):
    """A browser refresh loses the session: the page finds the run from the runs root."""
    run = jobs.start("pretrain", tiny_cfg(steps=100000), tmp_path, owner="alice")
    try:
        wait_for_state(run.path, ("running",))
        found = jobs.active_runs(tmp_path, stage="pretrain")
        assert [r["run_id"] for r in found] == [run.run_id]
        assert jobs.active_runs(tmp_path, stage="reward") == []
    finally:
        jobs.stop(run.path)
        jobs.wait(run.path, timeout=120)
    assert jobs.active_runs(tmp_path) == []


def test_a_spawned_worker_re_importing_the_entry_script_does_not_run_the_app(monkeypatch):
    """spawn re-runs __main__'s file as __mp_main__; Streamlit's __main__ is lab/app.py."""
    import streamlit as st

    def boom(*a, **k):
        raise AssertionError("the app ran inside a worker")

    monkeypatch.setattr(st, "navigation", boom)
    monkeypatch.setattr(st, "set_page_config", boom)
    runpy.run_path(str(ROOT / "lab" / "app.py"), run_name="__mp_main__")
