"""Jobs: a training stage started from the browser runs in its own spawned process.

Why a process, not a thread: two students training at once would starve each other under the GIL,
and "spawn" is the start method that is safe with CUDA. The worker owns the model and writes only
to its run folder; the app owns nothing but widgets. It writes control.json and redraws from the
files, so a browser refresh, a second tab or a page switch loses nothing (see DESIGN.md, "Jobs").

The job contract (CONTEXT.md): each stage is a generator `fn(cfg, run)` yielding one metrics dict
per step, with a config dataclass in core/config.py. The worker rebuilds the config from the run's
config.json and drives the generator with core.runs.drive.

A note on spawn and Streamlit: Streamlit installs the entry script (lab/app.py) as `__main__`, and a
spawned child re-runs `__main__`'s file under the name `__mp_main__` to rebuild its globals. lab/app.py
therefore does all its work inside `if __name__ == "__main__":`, so a worker only imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError, to_dict
from core.runs import ACTIVE_STATES, FINAL_STATES, Run, RunError, list_runs, read_json

MAX_ACTIVE_JOBS = 4  # per runs root: more than this on a laptop CPU only makes every run crawl
JOB_FILE = "job.json"  # {pid, owner, started}: who runs this folder, so a dead worker can be told apart
ERROR_FILE = "error.log"  # the worker's full traceback when training raised


class JobError(RuntimeError):
    """A job the app refuses to start (double start, too many jobs, stage not built yet)."""


@dataclass(frozen=True)
class Stage:
    """One row of the job contract: where a stage's config and generator live."""

    name: str
    config_class: str  # class name in core.config
    module: str  # core module holding the generator
    function: str  # generator fn(cfg, run)
    handles_stop: bool = False  # True when the generator itself reads control.json "stop" (PPO)

    def available(self) -> bool:
        """The stage's core module and its config class both exist in this checkout."""
        if importlib.util.find_spec(self.module) is None:
            return False
        import core.config

        return hasattr(core.config, self.config_class)

    def config_cls(self):
        import core.config

        return getattr(core.config, self.config_class)

    def generator(self):
        return getattr(importlib.import_module(self.module), self.function)


# The job contract of CONTEXT.md. A stage whose core module has not landed yet is listed here but
# not `available()`: its page says so instead of pretending.
CONTRACT = {
    "pretrain": Stage("pretrain", "PretrainConfig", "core.pretrain", "pretrain"),
    "preferences": Stage("preferences", "PreferenceConfig", "core.preferences", "collect_preferences"),
    "reward": Stage("reward", "RewardConfig", "core.reward", "train_reward"),
    "ppo": Stage("ppo", "PPOConfig", "core.ppo_train", "train_ppo", handles_stop=True),
    "w2s": Stage("w2s", "W2SConfig", "core.w2s", "run_w2s"),
    "dpo": Stage("dpo", "DPOConfig", "core.dpo", "train_dpo", handles_stop=True),
    "bon": Stage("bon", "BoNConfig", "core.bon", "best_of_n"),
    "grpo": Stage("grpo", "GRPOConfig", "core.grpo", "train_grpo", handles_stop=True),
    "frontier": Stage("frontier", "FrontierConfig", "core.frontier", "run_frontier"),
}


def available_stages() -> dict[str, Stage]:
    """STAGES: the stages this checkout can run (their core module exists)."""
    return {name: stage for name, stage in CONTRACT.items() if stage.available()}


STAGES = available_stages()


def stage_available(name: str) -> bool:
    stage = CONTRACT.get(name)
    return stage is not None and stage.available()


# ----------------------------------------------------------------------------- the worker (child)

def _stop_on_request(run: Run, steps):
    """Pass metrics through; after each step honour control.json {"stop": true} from the app (only a real
    JSON true: a hand-written "false" string must not stop a run). Stages like PPO read their own control."""
    for metrics in steps:
        yield metrics
        if "_status" not in metrics and run.read_control().get("stop") is True:
            yield {"_status": "stopped", "step": metrics.get("step", 0), "message": "stopped from the app"}
            return


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
        from core.runs import drive

        stage = CONTRACT[stage_name]
        cfg = from_dict(stage.config_cls(), run.config)
        if not getattr(cfg, "threads", 0):
            # half the cores: a page's job shares the machine with the app and, often, another job;
            # oversubscribed torch threads make every one of them many times slower
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        steps = stage.generator()(cfg, run)
        if not stage.handles_stop:
            steps = _stop_on_request(run, steps)
        drive(run, steps)
    except BaseException as e:  # noqa: BLE001 - the worker's last duty is to say why it died
        (run.path / ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        if run.status().get("state") != "failed":  # drive() already marks failures it sees
            run.set_status("failed", message="training failed", error=f"{type(e).__name__}: {e}")
        # no re-raise: the error lives in the run folder; a traceback on the server's stderr helps nobody


# ----------------------------------------------------------------------------- the app side (parent)

_lock = threading.Lock()  # Streamlit serves every browser session from a thread of one process
_children: dict[str, multiprocessing.process.BaseProcess] = {}


def _context():
    return multiprocessing.get_context("spawn")


def active_runs(runs_root, stage: str | None = None, owner: str | None = None) -> list[dict]:
    """Runs under `runs_root` that are queued/running/paused and whose worker is alive."""
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
        out.append(entry)
    return out


def start(stage: str, cfg, runs_root, parents: dict | None = None, owner: str | None = None,
          control: dict | None = None) -> Run:
    """Validate `cfg`, create a run folder under `runs_root` and train it in a spawned process.

    `owner` identifies a browser session: one owner cannot start a second run of the same stage while
    its first is still active (two clicks on Start), but two students (owners) get two runs.
    Raises ConfigError for a bad config and JobError for a refused start.
    """
    if stage not in CONTRACT:
        raise JobError(f"unknown stage {stage!r}; stages are {sorted(CONTRACT)}")
    if not stage_available(stage):
        raise JobError(f"the {stage} stage is not part of this version yet ({CONTRACT[stage].module} is missing)")
    if not isinstance(cfg, CONTRACT[stage].config_cls()):
        raise ConfigError(f"{stage} needs a {CONTRACT[stage].config_class}, got {type(cfg).__name__}")
    cfg.validate()
    with _lock:
        busy = active_runs(runs_root, stage=stage, owner=owner) if owner is not None else []
        if busy:
            raise JobError(f"your {stage} run {busy[0]['run_id']} is still {busy[0]['state']}; "
                           "stop it or wait for it to finish before starting another")
        n_active = len(active_runs(runs_root))
        if n_active >= MAX_ACTIVE_JOBS:
            raise JobError(f"{n_active} runs are already training on this machine (limit {MAX_ACTIVE_JOBS}); "
                           "stop one first")
        run = Run.create(stage, to_dict(cfg), root=runs_root, parents=parents, control=control)
        try:
            process = _context().Process(target=_worker, args=(stage, str(run.path)),
                                         name=f"rlhf-lab {run.run_id}", daemon=True)
            process.start()
            _children[str(run.path)] = process
            run.write_json(JOB_FILE, {"pid": process.pid, "owner": owner, "started": time.time()})
            # hand the run over: while the worker starts, "queued with a live worker" counts as alive
            run.set_status("queued", iteration=0, message="starting", worker=process.pid)
        finally:
            run.release()
    return run


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


def stop(run_dir) -> None:
    """Ask a run to stop at its next step (control.json "stop"); it ends as `stopped`."""
    Run.open(run_dir).write_control(stop=True)


def kill(run_dir) -> None:
    """Last resort for a run that does not react to stop: terminate its worker and mark it stopped."""
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
