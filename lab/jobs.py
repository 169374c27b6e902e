"""Jobs: a training stage started from the browser runs in its own spawned process.

Why a process, not a thread: two students training at once would starve each other under the GIL,
and "spawn" is the start method that is safe with CUDA. The worker owns the model and writes only
to its run folder; the app owns nothing but widgets. It writes control.json and redraws from the
files, so a browser refresh, a second tab or a page switch loses nothing (see DESIGN.md, "Jobs").

The job contract (CONTEXT.md): each stage is a generator `fn(cfg, run)` yielding one metrics dict
per step, with a config dataclass in core/config/. The worker rebuilds the config from the run's
config.json and drives the generator with core.session.drive.

A note on spawn and Streamlit: Streamlit installs the entry script (lab/app.py) as `__main__`, and a
spawned child re-runs `__main__`'s file under the name `__mp_main__` to rebuild its globals. lab/app.py
therefore does all its work inside `if __name__ == "__main__":`, so a worker only imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError, to_dict
from core.runs import ACTIVE_STATES, FINAL_STATES, Run, RunError, list_runs, read_json
from core.session import RESUMABLE  # the stages a page may continue (their loop resumes itself: Session.resume)

JOB_FILE = "job.json"  # {pid, owner, started}: who runs this folder, so a dead worker can be told apart
ERROR_FILE = "error.log"  # the worker's full traceback when training raised


class JobError(RuntimeError):
    """A job the app refuses (double start, stage not built yet, another student's run)."""


MAX_UPLOAD_MB = 20  # the app's upload limit: the server's (rlhf-lab app) and every file widget's


def upload_limit_mb() -> int:
    """For st.file_uploader(max_upload_size=...) and Streamlit's --server.maxUploadSize: whole megabytes, at least 1
    (the browser refuses bigger files before they are sent; ui.read_upload checks again on the server). Here, not in
    lab/ui.py, so that `rlhf-lab app` reads it without importing the Streamlit helpers."""
    import math

    return max(1, math.ceil(MAX_UPLOAD_MB))


@dataclass(frozen=True)
class Stage:
    """One row of the job contract: where a stage's generator lives (its config class: core.config.STAGE_CONFIGS)."""

    name: str
    module: str  # core module holding the generator
    function: str  # generator fn(cfg, run)

    def config_cls(self):
        from core.config import STAGE_CONFIGS

        return STAGE_CONFIGS[self.name]

    def generator(self):
        return getattr(importlib.import_module(self.module), self.function)


# The job contract: every stage the app can start and the generator a worker drives.
CONTRACT = {
    "pretrain": Stage("pretrain", "core.pretrain", "pretrain"),
    "preferences": Stage("preferences", "core.preferences", "collect_preferences"),
    "reward": Stage("reward", "core.reward", "train_reward"),
    "ppo": Stage("ppo", "core.ppo_train", "train_ppo"),
    "w2s": Stage("w2s", "core.w2s", "run_w2s"),
    "dpo": Stage("dpo", "core.dpo", "train_dpo"),
    "bon": Stage("bon", "core.bon", "best_of_n"),
    "grpo": Stage("grpo", "core.grpo", "train_grpo"),
    "frontier": Stage("frontier", "core.frontier", "run_frontier"),
}



# ----------------------------------------------------------------------------- the worker (child)

def _worker(stage_name: str, run_dir: str) -> None:
    """Entry point of the spawned process: rebuild the config, drive the stage, record any error."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run = Run.open(run_dir)
    try:
        # the app owned the run until it handed it over (status "queued", worker = this pid); it releases
        # the lock right after: take it, or leave the run alone if someone else took it meanwhile
        run.acquire(timeout=60)
    except RunError:
        return
    try:
        from core.config import from_dict
        from core.session import drive

        stage = CONTRACT[stage_name]
        cfg = from_dict(stage.config_cls(), run.config)
        if not getattr(cfg, "threads", 0):
            # half the cores: a page's job shares the machine with the app and, often, another job;
            # oversubscribed torch threads make every one of them many times slower
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        drive(run, stage.generator()(cfg, run))  # every stage honours control.json's stop itself (core/session.py)
    except BaseException as e:  # noqa: BLE001 - the worker's last duty is to say why it died
        (run.path / ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        if run.status().get("state") != "failed":  # drive() already marks failures it sees
            run.set_status("failed", message="training failed", error=f"{type(e).__name__}: {e}")
        # no re-raise: the error lives in the run folder; a traceback on the server's stderr helps nobody


# ----------------------------------------------------------------------------- the app side (parent)

_lock = threading.RLock()  # Streamlit serves every browser session from a thread of one process
_children: dict[str, multiprocessing.process.BaseProcess] = {}
QUEUE_LOCK = ".jobs.lock"  # <runs root>/.jobs.lock: one dispatcher at a time, across threads and processes
MAX_JOBS_ENV = "RLHF_LAB_MAX_JOBS"  # set by `rlhf-lab app --max-jobs N` for the server process


def _context():
    return multiprocessing.get_context("spawn")


def default_max_jobs() -> int:
    """How many jobs train at once by default: one per GPU, else half the CPU cores (at least 1). A CPU
    job already uses several threads; more jobs than that only make every one of them crawl."""
    try:
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable torch/CUDA: count CPUs
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def max_jobs() -> int:
    """The job limit of this server: $RLHF_LAB_MAX_JOBS (what `rlhf-lab app --max-jobs` sets), else the default."""
    raw = os.environ.get(MAX_JOBS_ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    return default_max_jobs()


_queue_locks: dict[str, object] = {}


def _queue_lock(runs_root):
    """The runs root's queue lock. One FileLock object per root in this process (re-entrant: start()
    dispatches while holding it); threads of this process are kept apart by `_lock`, taken first."""
    from filelock import FileLock

    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    key = str(root)
    if key not in _queue_locks:
        _queue_locks[key] = FileLock(root / QUEUE_LOCK, thread_local=False, timeout=60)
    return _queue_locks[key]


def is_waiting(st: dict) -> bool:
    """Queued in the job queue, with no process yet (it starts when a slot frees)."""
    return st.get("state") == "queued" and st.get("waiting") is True


def active_runs(runs_root, stage: str | None = None, owner: str | None = None) -> list[dict]:
    """Runs under `runs_root` that are queued/running/paused and alive (a waiting queued run counts)."""
    multiprocessing.active_children()
    out = []
    for entry in list_runs(runs_root):
        if stage is not None and entry["stage"] != stage:
            continue
        if entry["state"] not in ACTIVE_STATES:
            continue
        st = status(entry["path"])
        if st["state"] not in ACTIVE_STATES:
            continue
        if owner is not None and job_info(entry["path"]).get("owner") != owner:
            continue
        entry = dict(entry, waiting=is_waiting(st))
        out.append(entry)
    return out


def queue(runs_root) -> list[dict]:
    """The runs waiting for a slot, first to start first (creation order; the run id breaks ties)."""
    waiting = [e for e in active_runs(runs_root) if e["waiting"]]
    return sorted(waiting, key=lambda e: (e["created"], e["run_id"]))


def queue_position(runs_root, run_dir) -> int | None:
    """1 for the next run to start, 2 for the one after...; None when the run is not waiting."""
    name = Path(run_dir).name
    for i, entry in enumerate(queue(runs_root), start=1):
        if entry["run_id"] == name:
            return i
    return None


def queue_estimate(runs_root, run_dir, limit: int | None = None) -> tuple[int | None, float | None]:
    """(position in the queue, rough seconds until it starts): the runs ahead of it, `limit` at a time, each
    taking the median time of this stage's finished page runs (None until one has finished)."""
    position = queue_position(runs_root, run_dir)
    if position is None:
        return None, None
    try:
        stage = Run.open(run_dir).stage
    except RunError:
        return position, None
    took = []
    for entry in list_runs(runs_root):
        if entry["stage"] != stage or entry["state"] != "done":
            continue
        started = job_info(entry["path"]).get("started")
        ended = Run(Path(entry["path"])).status().get("updated")
        if isinstance(started, (int, float)) and isinstance(ended, (int, float)) and ended > started:
            took.append(ended - started)
    if not took:
        return position, None
    took.sort()
    limit = max_jobs() if limit is None else limit
    return position, -(-position // max(1, limit)) * took[len(took) // 2]


def start(stage: str, cfg, runs_root, parents: dict | None = None, owner: str | None = None,
          control: dict | None = None, limit: int | None = None) -> Run:
    """Validate `cfg`, create a run folder under `runs_root`, and queue it; it trains in a spawned process
    as soon as fewer than `limit` (default `max_jobs()`) jobs train under this root: at once when a slot
    is free, else when one frees (`dispatch`, which the app calls on every page draw and from a
    background thread).

    `owner` is the student: one owner cannot have two active runs of one stage (two clicks on Start),
    but two students get two runs. Raises ConfigError for a bad config and JobError for a refused start.
    """
    if stage not in CONTRACT:
        raise JobError(f"unknown stage {stage!r}; stages are {sorted(CONTRACT)}")
    if not isinstance(cfg, CONTRACT[stage].config_cls()):
        raise ConfigError(f"{stage} needs a {CONTRACT[stage].config_cls().__name__}, got {type(cfg).__name__}")
    cfg.validate()
    with _lock, _queue_lock(runs_root):
        busy = active_runs(runs_root, stage=stage, owner=owner) if owner is not None else []
        if busy:
            raise JobError(f"your {stage} run {busy[0]['run_id']} is still {busy[0]['state']}; "
                           "stop it or wait for it to finish before starting another")
        run = Run.create(stage, to_dict(cfg), root=runs_root, parents=parents, control=control)
        try:
            run.write_json(JOB_FILE, {"pid": None, "owner": owner, "queued": time.time(), "started": None})
            run.set_status("queued", iteration=0, message="waiting for a training slot", waiting=True)
        finally:
            run.release()
        dispatch(runs_root, limit)
    return run


def resume(run_dir, actor: str | None = None, teacher: bool = False, runs_root=None,
           limit: int | None = None) -> Run:
    """Queue a stopped or failed (killed, crashed) PPO, GRPO or DPO run again, in its own folder: its worker resumes
    it from its last checkpoint (from the start when none was saved: its old rows are moved aside, never drawn
    twice) and trains the iterations left. The same rules as the CLI's --resume: only the run's owner or a teacher
    (JobError otherwise), never a run that is still alive or done, never over a broken checkpoint (refused by name
    here, before anything is queued), and one active run per owner and stage, as for start()."""
    from core.session import resume_point

    run_dir = Path(run_dir)
    runs_root = run_dir.parent if runs_root is None else Path(runs_root)
    check_control(run_dir, actor, teacher)
    run = Run.open(run_dir)
    stage = run.stage
    if stage not in RESUMABLE:
        raise JobError(f"a {stage} run cannot be continued; only {', '.join(RESUMABLE)} runs can")
    with _lock, _queue_lock(runs_root):
        state = status(run_dir).get("state")
        if state not in ("stopped", "failed"):
            raise JobError(f"run {run.run_id} is {state}: only a stopped or failed run can be continued")
        owner = run_owner(run_dir)
        busy = [e for e in active_runs(runs_root, stage=stage, owner=owner) if e["run_id"] != run.run_id] \
            if owner is not None else []
        if busy:
            raise JobError(f"the {stage} run {busy[0]['run_id']} of {owner} is still {busy[0]['state']}; stop it or "
                           "wait for it to finish before continuing this one")
        try:
            run.acquire(timeout=0.5)  # RunBusy: a CLI --resume owns it right now
        except RunError as e:
            raise JobError(str(e)) from None
        try:
            counter = RESUMABLE[stage]
            try:
                point = resume_point(run, stage, counter)
            except (ValueError, OSError, RunError) as e:  # CheckpointError (a ValueError) names the bad file
                raise JobError(str(e)) from None
            # stop: the stop that ended it must not end the new session before it starts (Session.begin clears it
            # only when a checkpoint exists); paused: "continue" means train, not wait for a Resume click
            run.write_control(stop=False, paused=False)
            run.write_json(JOB_FILE, dict(job_info(run_dir), pid=None, queued=time.time(), started=None))
            where = f"{counter} {point[1]}" if point else f"{counter} 0 (no checkpoint was saved)"
            run.set_status("queued", iteration=point[1] if point else 0, waiting=True,
                           message=f"waiting for a training slot, to continue from {where}")
        finally:
            run.release()
        dispatch(runs_root, limit)
    return run


def dispatch(runs_root, limit: int | None = None) -> list[str]:
    """Start waiting runs, oldest first, while fewer than `limit` jobs train. Safe to call from any number
    of threads and processes at once (a lock on the runs root): a queued run is started exactly once.
    A job whose worker died no longer holds a slot (the liveness rule marks it failed). Returns the
    run ids it started."""
    limit = max_jobs() if limit is None else max(1, int(limit))
    started = []
    with _lock, _queue_lock(runs_root):
        active = active_runs(runs_root)
        slots = limit - sum(not e["waiting"] for e in active)
        for entry in sorted((e for e in active if e["waiting"]), key=lambda e: (e["created"], e["run_id"])):
            if slots <= 0:
                break
            if _launch(entry["stage"], Path(entry["path"])):
                started.append(entry["run_id"])
                slots -= 1
    return started


def _launch(stage: str, run_dir: Path) -> bool:
    """Hand one waiting run to a new worker process (under the queue lock)."""
    try:
        run = Run.open(run_dir)
        run.acquire(timeout=0.5)
    except RunError:
        return False  # gone, or taken over (a CLI resume): not ours to start
    try:
        if not is_waiting(run.status()):
            return False
        process = _context().Process(target=_worker, args=(stage, str(run.path)),
                                     name=f"rlhf-lab {run.run_id}", daemon=True)
        process.start()
        _children[str(run.path)] = process
        info = job_info(run.path)
        run.write_json(JOB_FILE, dict(info, pid=process.pid, started=time.time()))
        # hand the run over: while the worker starts, "queued with a live worker" counts as alive
        run.set_status("queued", iteration=0, message="starting", worker=process.pid)
        return True
    finally:
        run.release()


_dispatchers: dict[str, threading.Thread] = {}


def ensure_dispatcher(runs_root, every: float = 2.0, limit: int | None = None) -> threading.Thread:
    """One background thread per runs root in this (server) process that starts queued runs when slots
    free, even while no page is open. Idempotent: the app calls it on every page draw."""
    key = str(Path(runs_root).resolve())
    with _lock:
        thread = _dispatchers.get(key)
        if thread is not None and thread.is_alive():
            return thread

        def loop():
            while Path(key).is_dir():  # a runs root that was removed (a test's) ends its dispatcher
                try:
                    dispatch(key, limit)
                except Exception:  # noqa: BLE001 - a bad folder or a busy lock must not end the dispatcher
                    pass
                time.sleep(every)
            with _lock:
                _dispatchers.pop(key, None)

        thread = threading.Thread(target=loop, name=f"rlhf-lab dispatcher {key}", daemon=True)
        thread.start()
        _dispatchers[key] = thread
        return thread


# ----------------------------------------------------------------------------- who may do what

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def run_path(runs_root, run_id) -> Path | None:
    """The folder of `run_id` (from a URL or a form) under `runs_root`, or None when the id could name
    anything else: a path separator, `..`, a hidden folder, a link that leads outside the root."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
        return None
    root = Path(runs_root).resolve()
    path = (root / run_id).resolve()
    return root / run_id if path.parent == root else None



def run_owner(run_dir) -> str | None:
    """The student who started the run (job.json), None for a run made by the CLI or a notebook."""
    owner = job_info(run_dir).get("owner")
    return owner if isinstance(owner, str) else None


def may_control(run_dir, actor: str | None, teacher: bool = False) -> tuple[bool, str]:
    """Whether `actor` may steer, stop, rename or delete a run: its owner, a teacher, or anyone for a run
    nobody owns (made by the CLI). `actor=None` is the local user of the CLI or a notebook (trusted); the
    app always passes the acting student."""
    if teacher or actor is None:
        return True, ""
    owner = run_owner(run_dir)
    if owner is None or owner == actor:
        return True, ""
    return False, f"this run belongs to another student, {owner}; only they (or the teacher) can change it"


def check_control(run_dir, actor: str | None, teacher: bool = False) -> None:
    """Raise JobError unless `actor` may change the run (see may_control)."""
    ok, why = may_control(run_dir, actor, teacher)
    if not ok:
        raise JobError(f"not allowed: {why}")


def control(run_dir, actor: str | None = None, teacher: bool = False, **updates) -> dict:
    """Write live knobs into control.json, for the run's owner (or a teacher) only."""
    check_control(run_dir, actor, teacher)
    return Run.open(run_dir).write_control(**updates)


def job_info(run_dir) -> dict:
    try:
        data = read_json(Path(run_dir) / JOB_FILE, {})
    except RunError:
        return {}
    return data if isinstance(data, dict) else {}


def status(run_dir) -> dict:
    """status.json under the one liveness rule of core.runs (Run.live_status): a run whose process died
    without saying so (killed, out of memory) is marked failed on disk, so the CLI and every page agree."""
    multiprocessing.active_children()  # reap our finished workers: a zombie pid would look alive
    return Run(Path(run_dir)).live_status()


def error_details(run_dir) -> str | None:
    """The worker's full traceback, when it wrote one."""
    path = Path(run_dir) / ERROR_FILE
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else None


def stop(run_dir, actor: str | None = None, teacher: bool = False) -> None:
    """Ask a run to stop at its next step (control.json "stop"); it ends as `stopped`. A run still waiting
    in the queue is taken out of it at once. Only its owner or a teacher may (JobError otherwise)."""
    check_control(run_dir, actor, teacher)
    run = Run.open(run_dir)
    run.write_control(stop=True)
    if is_waiting(run.status()):
        try:
            run.acquire(timeout=1)
        except RunError:
            return  # being started right now: the worker sees the stop
        try:
            if is_waiting(run.status()):
                run.set_status("stopped", message="taken out of the queue before it started")
        finally:
            run.release()


def kill(run_dir, actor: str | None = None, teacher: bool = False) -> None:
    """Last resort for a run that does not react to stop: terminate its worker and mark it stopped."""
    check_control(run_dir, actor, teacher)
    pid = job_info(run_dir).get("pid")
    process = _children.get(str(Path(run_dir)))
    if process is not None:
        process.terminate()
        process.join(5)
    elif pid and Run(Path(run_dir)).owner_alive():
        os.kill(int(pid), 15)
    try:
        run = Run.open(run_dir)
        run.acquire(timeout=5)  # the worker is gone once its lock is free; nobody else may write meanwhile
    except RunError:
        return  # its folder is gone, or the worker still holds it: its own status stands
    try:
        if run.status().get("state") not in FINAL_STATES:
            run.set_status("stopped", message="terminated from the app")
    finally:
        run.release()


def wait(run_dir, timeout: float = 60.0, poll: float = 0.1) -> dict:
    """Block until the run reaches a final state (tests, notebooks). Returns its status."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(run_dir)
        if st.get("state") in FINAL_STATES:
            process = _children.pop(str(Path(run_dir)), None)
            if process is not None:
                process.join(10)
            return st
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_dir} still {st.get('state')} after {timeout:.0f} s")
        time.sleep(poll)
