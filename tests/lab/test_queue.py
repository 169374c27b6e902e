"""The job queue and who may steer a run (lab/jobs.py), driven through the job API the pages use.

A "hog" is a run this test (or a child process) owns and marks running: it holds a training slot the
way a worker does, without the cost of spawning one."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from core.config import pretrain_preset
from core.runs import Run
from lab import jobs

HOG = """
import sys, time
from core.runs import Run
run = Run.create("pretrain", {}, root=sys.argv[1])
run.set_status("running", message="hogging a slot")
print(run.path, flush=True)
time.sleep(600)
"""


def tiny_cfg(**overrides):
    values = dict(steps=4, eval_every=4, sample_every=4, checkpoint_every=4, corpus_size=300, device="cpu",
                  threads=1)
    values.update(overrides)
    return pretrain_preset("tiny", **values)


def hog(root) -> Run:
    run = Run.create("pretrain", {}, root=root)  # owned (locked) by this process until release()
    run.set_status("running", message="hogging a slot")
    return run


def forget_the_server():
    """What a server restart loses: everything the job module keeps in memory."""
    jobs._children.clear()
    jobs._queue_locks.clear()


@pytest.mark.slow
def test_starts_beyond_the_limit_wait_in_order_and_survive_a_restart(tmp_path):
    busy = hog(tmp_path)
    runs = [jobs.start("pretrain", tiny_cfg(), tmp_path, owner=name, limit=1) for name in ("ana", "ben", "cy")]
    for run in runs:
        st = jobs.status(run.path)
        assert st["state"] == "queued" and st["waiting"] is True, st
        assert jobs.job_info(run.path)["pid"] is None  # no process: it is a folder, nothing in memory
    assert [e["run_id"] for e in jobs.queue(tmp_path)] == [r.run_id for r in runs]
    assert [jobs.queue_position(tmp_path, r.path) for r in runs] == [1, 2, 3]
    assert jobs.dispatch(tmp_path, limit=1) == []  # the slot is still taken

    forget_the_server()
    busy.set_status("done", message="finished")
    busy.release()
    # four dispatchers at once (the page redraws and the background thread): the first in line starts, once
    results = []
    threads = [threading.Thread(target=lambda: results.append(jobs.dispatch(tmp_path, limit=1))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sum(results, [])) == [runs[0].run_id]
    assert jobs.queue_position(tmp_path, runs[1].path) == 1
    assert jobs.status(runs[2].path)["waiting"] is True
    assert jobs.wait(runs[0].path, timeout=120)["state"] == "done"
    assert jobs.dispatch(tmp_path, limit=1) == [runs[1].run_id]  # the slot freed: next in line
    jobs.stop(runs[2].path, actor="cy")  # a student leaves the queue: out at once, never started
    assert jobs.status(runs[2].path)["state"] == "stopped"
    assert jobs.wait(runs[1].path, timeout=120)["state"] == "done"
    assert jobs.dispatch(tmp_path, limit=1) == [] and jobs.job_info(runs[2].path)["pid"] is None


@pytest.mark.slow
def test_a_dead_worker_frees_its_slot(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOG, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        hog_dir = child.stdout.readline().strip()
        waiting = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ana", limit=1)
        assert jobs.status(waiting.path)["waiting"] is True
        assert jobs.dispatch(tmp_path, limit=1) == []
        os.kill(child.pid, signal.SIGKILL)  # out of memory, say: no final status written
        child.wait(10)
        # the server's background dispatcher starts it: no page draw, no call
        jobs.ensure_dispatcher(tmp_path, every=0.2, limit=1)
        deadline = time.monotonic() + 30
        while jobs.status(waiting.path).get("waiting") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jobs.job_info(waiting.path)["pid"] is not None
        assert jobs.status(hog_dir)["state"] == "failed"
        assert jobs.wait(waiting.path, timeout=120)["state"] == "done"
    finally:
        if child.poll() is None:
            child.kill()
        shutil.rmtree(tmp_path, ignore_errors=True)  # ends the dispatcher thread of this root


def test_one_active_run_per_student_and_stage_even_while_queued(tmp_path):
    busy = hog(tmp_path)
    try:
        first = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ana", limit=1)
        with pytest.raises(jobs.JobError, match="still queued"):
            jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ana", limit=1)
        jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ben", limit=1)
        assert len(jobs.queue(tmp_path)) == 2
        jobs.stop(first.path, actor="ana")
        jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ana", limit=1)  # the old one left the queue
    finally:
        busy.release()


def test_only_the_owner_or_a_teacher_may_steer_stop_or_kill(tmp_path):
    busy = hog(tmp_path)
    try:
        run = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ana", limit=1)
        before = Run.open(run.path).read_control()
        for action in (lambda: jobs.stop(run.path, actor="ben"), lambda: jobs.kill(run.path, actor="ben"),
                       lambda: jobs.control(run.path, actor="ben", kl_coef=1.0)):
            with pytest.raises(jobs.JobError, match="another student, ana"):
                action()
        assert Run.open(run.path).read_control() == before  # nothing changed
        assert jobs.status(run.path)["state"] == "queued"
        assert jobs.control(run.path, actor="ana", kl_coef=0.2)["kl_coef"] == 0.2
        jobs.stop(run.path, actor="ben", teacher=True)  # the teacher may
        assert jobs.status(run.path)["state"] == "stopped"
    finally:
        busy.release()


def test_the_default_job_limit_comes_from_the_machine_or_the_server_flag(monkeypatch):
    monkeypatch.delenv(jobs.MAX_JOBS_ENV, raising=False)
    assert jobs.max_jobs() == jobs.default_max_jobs() >= 1
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "7")
    assert jobs.max_jobs() == 7
    monkeypatch.setenv(jobs.MAX_JOBS_ENV, "zero")
    assert jobs.max_jobs() == jobs.default_max_jobs()


def test_a_queued_run_knows_its_place_and_a_rough_wait(tmp_path):
    busy = hog(tmp_path)
    try:
        first = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ana", limit=1)
        assert jobs.queue_estimate(tmp_path, first.path, limit=1) == (1, None)  # no finished run to go by
        finished = Run.create("pretrain", {}, root=tmp_path)
        finished.write_json(jobs.JOB_FILE, {"pid": None, "owner": "old", "queued": 0, "started": 1000.0})
        finished.set_status("done")
        finished.write_json("status.json", dict(finished.status(), updated=1040.0))  # it trained for 40 s
        finished.release()
        second = jobs.start("pretrain", tiny_cfg(), tmp_path, owner="ben", limit=1)
        assert jobs.queue_estimate(tmp_path, second.path, limit=1) == (2, 80.0)
        assert jobs.queue_estimate(tmp_path, second.path, limit=2) == (2, 40.0)
        assert jobs.queue_estimate(tmp_path, busy.path) == (None, None)
    finally:
        busy.release()
