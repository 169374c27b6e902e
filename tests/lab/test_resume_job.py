"""jobs.resume (the pages' "Continue this run"): a stopped tiny PPO run, queued again through the job runner, trains
the iterations it had left in its own folder, from its checkpoint, and ends done with every iteration logged once.
The one test here that trains: a few tiny iterations."""

from core.config import ppo_preset
from core.runs import Run, read_json
from core.session import drive
from lab import jobs


def test_a_stopped_run_continues_from_its_checkpoint_and_ends_done_with_no_step_twice(tiny_base, tiny_rm, tmp_path,
                                                                                         monkeypatch):
    from core.ppo_train import train_ppo

    root = tmp_path / "runs"
    cfg = ppo_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), device="cpu", iterations=4,
                     checkpoint_every=100)  # the only checkpoint before the end is the one the stop saves
    with monkeypatch.context() as m:  # queued by the app, trained here: the stop lands after iteration 2 exactly
        m.setattr(jobs, "dispatch", lambda runs_root, limit=None: [])
        run = jobs.start("ppo", cfg, root, owner="alice")
    run = Run.open(run.path)
    drive(run, train_ppo(cfg, run), on_metrics=lambda m: m["step"] == 2 and run.write_control(stop=True))
    assert jobs.status(run.path)["state"] == "stopped"
    first = run.metrics()
    assert first["step"].tolist() == [1, 2]
    assert read_json(run.checkpoint_dir / "lab.json")["iteration"] == 2

    jobs.resume(run.path, actor="alice", runs_root=root)  # queued again and started in a worker process
    status = jobs.wait(run.path, timeout=120)
    assert status["state"] == "done", (status, jobs.error_details(run.path))
    rows = run.metrics()
    assert rows["step"].tolist() == [1, 2, 3, 4]  # iterations 3 and 4 were the ones left; none logged twice
    assert rows["time"].iloc[:2].tolist() == first["time"].tolist()  # 1 and 2 are the first session's rows
    assert not (run.path / "metrics.rewound.jsonl").exists()  # nothing trained again: it resumed at 2
    assert read_json(run.checkpoint_dir / "lab.json")["iteration"] == 4
    assert jobs.run_owner(run.path) == "alice"
