"""The run store: every stage writes one folder `runs/<run_id>/` (see DESIGN.md).

    config.json    the full stage config, stage name, parents, versions   (atomic write)
    status.json    {state, iteration, message, error}                     (atomic write)
    control.json   live knobs the trainer re-reads every iteration         (atomic write)
    metrics.jsonl  one JSON object per step: {"step", "time", <metric>...} (whole-line appends)
    samples.jsonl  generations with their scores                           (whole-line appends)
    checkpoint/    save_pretrained output, written to a temp dir then renamed
    .lock          the owner's lock: held by the one process that trains the run (create or resume)
    .control.lock  taken for each read-merge-write of control.json

Readers never trust the last line of a JSONL file to be complete: a trainer may be writing it.

Ownership and liveness. Creating a run and taking one over for a resume are exclusive: the process
takes `<run>/.lock` (an OS file lock, flock, via `filelock`) and keeps it while it trains. The kernel
drops the lock when the process dies, however it dies (kill -9 included), so a dead owner never holds
a run. That gives every reader one liveness rule (`Run.live_status`): a run whose status says
queued/running/paused while nobody holds its lock is dead, and is shown and treated as failed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

STATES = ("queued", "running", "paused", "done", "failed", "stopped")
FINAL_STATES = ("done", "failed", "stopped")
ACTIVE_STATES = ("queued", "running", "paused")
DEFAULT_ROOT = "runs"
LOCK_FILE = ".lock"
CONTROL_LOCK_FILE = ".control.lock"
OWNER_TIMEOUT_S = 2.0  # a reader probing the lock holds it for microseconds: an owner waits that out
DIED_MESSAGE = "process died"


class RunError(RuntimeError):
    """A run folder that is missing, corrupt, or belongs to something else."""


class RunBusy(RunError):
    """The run is owned (created, trained or resumed) by another live process."""


# ----------------------------------------------------------------------------- file primitives

def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike, default=None):
    """Read a JSON file; a missing file gives `default`, a corrupt or unreadable one raises RunError."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise RunError(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from e
    except OSError as e:  # a folder where a file belongs, no permission
        raise RunError(f"{path} cannot be read ({e.strerror or e})") from e


def append_jsonl(path: str | os.PathLike, obj) -> None:
    """Append one whole line and flush, so readers see either all of it or none. A torn last line (its
    writer was killed mid-append) is closed first, so the new row never merges into it and gets lost."""
    line = (json.dumps(obj, default=_json_default, allow_nan=True) + "\n").encode("utf-8")
    with open(path, "ab+") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All complete lines of a JSONL file that hold a JSON object. A partial (still being written)
    last line is skipped; a corrupt line in the middle (or one that is `42`, `null`, a list, nested too
    deep to parse) is skipped too, so one bad line cannot hide a whole run. A path that is not a
    readable file (a folder, no permission) reads as no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # partial last line: the writer has not finished it yet
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except OSError:
        return rows
    return rows


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean_number(x):
    """JSON has no NaN/inf in the standard; metrics keep them as None so pandas reads NaN."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return x


def versions() -> dict:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


# ----------------------------------------------------------------------------- the run

@dataclass
class Run:
    """A handle on one run folder. Cheap to create; all state lives in the files.

    A handle that `acquire()`d the run (Run.create does, and so does a resume) owns it: it alone may
    train it, until `release()` or its process ends."""

    path: Path
    _lock: FileLock | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.path = Path(self.path)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, stage: str, config: dict, out: str | os.PathLike | None = None,
               root: str | os.PathLike | None = None, parents: dict | None = None,
               control: dict | None = None, resume: bool = False) -> "Run":
        """Make a new run folder (or take over `out` when `resume` and it holds the same stage) and own it.

        `out` names the folder; otherwise a fresh id under `root` (default ./runs) is chosen.
        An `out` that already holds a *different* run is refused rather than overwritten. Exclusive:
        of two processes creating (or resuming) one folder at once, exactly one gets it; the other
        gets a RunError (RunBusy while the first still owns it).
        """
        if out is None:
            root = Path(root or DEFAULT_ROOT)
            _mkdirs(root, "the runs root")
            while True:  # a fresh id, claimed by an atomic mkdir (two starts in one second get two ids)
                path = root / new_run_id(stage, root)
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
                except OSError as e:
                    raise RunError(f"cannot create a run folder in {root} ({e.strerror or e})") from None
        else:
            path = Path(out)
            if path.exists() and not path.is_dir():
                raise RunError(f"{path} is a file, not a folder; choose another --out")
            _mkdirs(path, "the run folder")
        run = cls(path)
        fresh = out is None  # a folder this call made: removed again if the create fails
        run._refuse_other(stage, resume)  # before waiting for the lock: the plain refusal is the clearer one
        run.acquire()  # from here on no other process can create, resume or train this folder
        try:
            if run._refuse_other(stage, resume):
                return run
            if any(p for p in path.iterdir() if not p.name.startswith(".")):
                raise RunError(f"{path} exists and is not an empty folder; choose another --out")
            atomic_write_json(path / "control.json", control or {})
            run.set_status("queued", iteration=0, message="waiting to start")
            # config.json last: a folder with a config.json is a complete run
            atomic_write_json(path / "config.json", {
                "stage": stage,
                "run_id": path.name,
                "created": time.time(),
                "parents": parents or {},
                "versions": versions(),
                "config": config,
            })
        except OSError as e:
            run._abandon(fresh)
            raise RunError(f"cannot write the run folder {path} ({e.strerror or e}); "
                           "choose a writable location with free space") from None
        except BaseException:
            run._abandon(fresh)
            raise
        return run

    def _abandon(self, fresh: bool) -> None:
        if fresh:
            shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def _refuse_other(self, stage: str, resume: bool) -> bool:
        """True when the folder holds a `stage` run that may be resumed; RunError when it holds a run that
        must not be touched; False when it holds no run yet."""
        existing = self.path / "config.json"
        if not existing.exists():
            return False
        old = read_json(existing, {})
        old_stage = old.get("stage") if isinstance(old, dict) else None
        if not resume:
            raise RunError(f"{self.path} already holds a run (stage {old_stage!r}); choose another --out, "
                           "or delete that folder first")
        if old_stage != stage:
            raise RunError(f"{self.path} holds a {old_stage!r} run, not a {stage!r} run; cannot resume it")
        return True

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        """Open an existing run; a folder without a readable config.json is a RunError."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"run folder {path} does not exist")
        if not (path / "config.json").exists():
            raise RunError(f"{path} is not a run folder (no config.json)")
        run = cls(path)
        run.info()  # raises RunError when corrupt
        return run

    # -- ownership and liveness -------------------------------------------------------------------
    @property
    def owned(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def acquire(self, timeout: float = OWNER_TIMEOUT_S) -> "Run":
        """Own the run (its `.lock`) until `release()` or the end of this process; RunBusy when another
        live process owns it."""
        if self.owned:
            return self
        lock = FileLock(self.path / LOCK_FILE, thread_local=False)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            st = self.status()
            raise RunBusy(f"{self.path} is {st.get('state', 'in use')} in another process "
                          f"(pid {st.get('pid', '?')}); stop it first, or wait for it to end") from None
        except OSError as e:
            raise RunError(f"cannot lock {self.path} ({e.strerror or e}); is the folder writable?") from None
        self._lock = lock
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release(force=True)
            self._lock = None

    def owner_alive(self) -> bool:
        """Does some live process own this run? (This handle, or another process holding `.lock`.)"""
        if self.owned:
            return True
        if not (self.path / LOCK_FILE).exists():
            return False  # nobody ever owned it (acquire creates the file first)
        probe = FileLock(self.path / LOCK_FILE, thread_local=False)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return True
        except OSError:  # cannot even open the lock (read-only copy of a run): nobody trains it here
            return False
        probe.release(force=True)
        return False

    def live_status(self) -> dict:
        """status.json under the one liveness rule every reader uses: a run that says queued, running or
        paused while no live process owns it is dead. It is marked failed on disk ("process died", with
        the pid), so the CLI, the pages and a notebook agree, and it can be resumed.

        A run queued by the app whose worker process is still starting (status `worker` = its pid,
        alive) is not dead yet: the app hands the run to the worker."""
        st = self.status()
        if st.get("state") not in ACTIVE_STATES or self.owner_alive() or _starting(st):
            return st
        try:
            with FileLock(self.path / LOCK_FILE, thread_local=False).acquire(timeout=0):
                st = self.status()  # under the lock: nobody can take over the run while we write
                if st.get("state") in ACTIVE_STATES and not _starting(st):
                    return self._mark_dead(st)
        except (Timeout, OSError, RunError):
            pass  # taken over right now (it is alive again), or a read-only folder: report what is there
        return st

    def _mark_dead(self, st: dict) -> dict:
        pid = st.get("worker") or st.get("pid")
        error = (f"the process that ran it (pid {pid}) ended without a final status (killed, or out of memory?) "
                 f"while {st.get('state')}; its last checkpoint is kept")
        dead = {"state": "failed", "iteration": st.get("iteration", 0), "message": DIED_MESSAGE, "error": error,
                "updated": time.time(), "pid": pid}
        try:
            atomic_write_json(self.path / "status.json", dead)
        except OSError:
            pass
        return dead

    # -- files ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def info(self) -> dict:
        data = read_json(self.path / "config.json")
        if not isinstance(data, dict) or not isinstance(data.get("stage"), str):
            raise RunError(f"{self.path}/config.json is missing or has no 'stage'")
        if not isinstance(data.get("config", {}), dict):
            raise RunError(f"{self.path}/config.json: 'config' is not an object")
        return data

    @property
    def stage(self) -> str:
        return self.info()["stage"]

    @property
    def config(self) -> dict:
        return self.info().get("config", {})

    def status(self) -> dict:
        """status.json as written (see live_status for what a reader should show). A corrupt status, or
        one that is JSON but not an object, reads as failed with the reason."""
        try:
            data = read_json(self.path / "status.json", {"state": "queued", "iteration": 0})
        except RunError as e:
            return {"state": "failed", "iteration": 0, "message": "corrupt status.json", "error": str(e)}
        if not isinstance(data, dict) or data.get("state") not in STATES:
            return {"state": "failed", "iteration": 0, "message": "corrupt status.json",
                    "error": f"{self.path / 'status.json'} is not a status object: {str(data)[:80]}"}
        if not isinstance(data.get("iteration", 0), int) or isinstance(data.get("iteration"), bool):
            data["iteration"] = 0
        return data

    def set_status(self, state: str, iteration: int | None = None, message: str = "", error: str | None = None,
                   **extra) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        old = self.status() if (self.path / "status.json").exists() else {}
        data = {"state": state,
                "iteration": old.get("iteration", 0) if iteration is None else int(iteration),
                "message": message, "error": error, "updated": time.time(), "pid": os.getpid()}
        data.update(extra)
        atomic_write_json(self.path / "status.json", data)

    def read_control(self) -> dict:
        """The live knobs. A corrupt control.json reads as {} (the trainer keeps its last values)."""
        try:
            data = read_json(self.path / "control.json", {})
        except RunError:
            return {}
        return data if isinstance(data, dict) else {}

    def write_control(self, **updates) -> dict:
        """Merge `updates` into control.json. Read, merge and write happen under `.control.lock`, so
        concurrent writers (the app's stop, a CLI `set`, a resume) never lose each other's keys; the
        write is atomic, so the trainer never reads half a file. Returns the new control dict."""
        try:
            with FileLock(self.path / CONTROL_LOCK_FILE, thread_local=False, timeout=30):
                data = self.read_control()
                data.update(updates)
                atomic_write_json(self.path / "control.json", data)
        except Timeout:
            raise RunError(f"{self.path}/control.json is locked by another writer for 30 s; try again") from None
        return data

    def log_metrics(self, metrics: dict) -> None:
        row = {k: clean_number(v) for k, v in metrics.items()}
        row.setdefault("time", time.time())
        append_jsonl(self.path / "metrics.jsonl", row)

    def log_sample(self, sample: dict) -> None:
        append_jsonl(self.path / "samples.jsonl", sample)

    def metrics(self) -> "pd.DataFrame":
        return read_metrics(self.path)

    def rewind(self, step: int) -> int:
        """Set metrics.jsonl and samples.jsonl back to `step`: a run resumed from a checkpoint at `step`
        trains those later iterations again, and their first rows (from the attempt that crashed or was
        killed) would otherwise sit beside the new ones and draw every chart twice. Nothing is lost: the
        moved rows are appended to metrics.rewound.jsonl / samples.rewound.jsonl. Returns how many rows moved."""
        moved = 0
        for name, key in (("metrics", "step"), ("samples", "iteration")):
            path = self.path / f"{name}.jsonl"
            kept, later = [], []
            for r in read_jsonl(path):
                (later if isinstance(r.get(key), (int, float)) and r[key] > step else kept).append(r)
            if not later:
                continue
            for r in later:
                append_jsonl(self.path / f"{name}.rewound.jsonl", r)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, default=_json_default, allow_nan=True) + "\n" for r in kept)
            os.replace(tmp, path)  # readers see the old file or the new one, never half of each
            moved += len(later)
        return moved

    def samples(self) -> list[dict]:
        return read_jsonl(self.path / "samples.jsonl")

    def write_json(self, name: str, obj) -> None:
        atomic_write_json(self.path / name, obj)

    def recover_checkpoint(self, name: str = "checkpoint") -> str | None:
        """Repair what a save killed half-way left behind (call it as the run's owner):

        - `.<name>.old` present, `<name>` missing: the kill fell between save_checkpoint's two renames;
          `.<name>.old` is the previous good checkpoint and is put back;
        - `.<name>.old` beside `<name>`: the kill fell while deleting the old one; the new one is whole;
        - `.<name>.tmp-<random>` temp folders: saves that never finished; deleted (nothing else is touched).
        Returns what was done, for the status message, or None."""
        target, old = self.path / name, self.path / f".{name}.old"
        done = None
        if old.is_dir() and not target.exists():
            os.replace(old, target)
            done = f"recovered the previous checkpoint from {old.name} (a save was interrupted)"
        elif old.exists():
            shutil.rmtree(old, ignore_errors=True)
        legacy = re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}$")  # mkdtemp names before the tmp- prefix
        for tmp in self.path.glob(f".{name}.*"):
            if tmp.is_dir() and (tmp.name.startswith(f".{name}.tmp-") or legacy.match(tmp.name)):
                shutil.rmtree(tmp, ignore_errors=True)
        return done

    def save_checkpoint(self, save_fn, name: str = "checkpoint") -> Path:
        """Write a checkpoint atomically: `save_fn(tmp_dir)` fills a temp folder, which then replaces
        `<run>/<name>`. A crash mid-save leaves the previous good checkpoint in place (or in `.<name>.old`,
        where recover_checkpoint finds it)."""
        self.recover_checkpoint(name)
        target = self.path / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=self.path))
        try:
            save_fn(tmp)
            old = None
            if target.exists():
                old = self.path / f".{name}.old"
                if old.exists():
                    shutil.rmtree(old)
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


def _starting(st: dict) -> bool:
    """A run the app queued and handed to a worker process that is still alive (starting up), or one
    waiting in the app's job queue for a training slot (`waiting`: no process yet, by design; it is a
    folder, so it survives a server restart)."""
    if st.get("state") != "queued":
        return False
    if st.get("waiting") is True:
        return True
    return bool(st.get("worker")) and pid_alive(st.get("worker"))


def pid_alive(pid) -> bool:
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, OSError):
        return False
    return True


def _mkdirs(path: Path, what: str) -> None:
    """mkdir -p with a one-line RunError for what the OS refuses (a file in the way, read-only, disk full)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunError(f"{what} {path} cannot be created: a file is in the way (it or a folder above it is a "
                       "file); choose another location") from None
    except NotADirectoryError:
        raise RunError(f"{what} {path} cannot be created: a folder above it is a file; choose another "
                       "location") from None
    except OSError as e:
        raise RunError(f"{what} {path} cannot be created ({e.strerror or e}); choose a writable location") from None


def new_run_id(stage: str, root: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{stage}"
    candidate, n = base, 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def read_metrics(run_dir: str | os.PathLike) -> "pd.DataFrame":
    """metrics.jsonl as a DataFrame (one row per step). Tolerates a partial last line."""
    import pandas as pd  # here, not at the top: the run store itself (locks, status, control) needs no pandas
    rows = read_jsonl(Path(run_dir) / "metrics.jsonl")
    return pd.DataFrame(rows)


def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> list[dict]:
    """One summary dict per run folder under `root`, newest first. Never raises: a folder that cannot be
    read as a run is listed with state 'corrupt' and the reason, never skipped silently. States follow
    the liveness rule (Run.live_status): a run whose process died is 'failed', not 'running'."""
    root = Path(root)
    try:
        paths = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []
    out = []
    for path in paths:
        try:
            if not path.is_dir() or path.name.startswith("."):
                continue
            if not (path / "config.json").exists() and Run(path).owner_alive():
                continue  # being created right now: it is a run in a moment
            out.append(_summary(path))
        except Exception as e:  # noqa: BLE001 - one broken folder must not hide the others
            out.append({"run_id": path.name, "path": str(path), "stage": None, "state": "corrupt", "iteration": 0,
                        "created": 0.0, "key_metric": None, "key_value": None,
                        "error": f"{type(e).__name__}: {str(e)[:200]}"})
    out.sort(key=lambda e: e["created"], reverse=True)
    return out


def _summary(path: Path) -> dict:
    try:
        created = path.stat().st_mtime
    except OSError:
        created = 0.0
    entry = {"run_id": path.name, "path": str(path), "stage": None, "state": None, "iteration": 0,
             "created": created, "key_metric": None, "key_value": None, "error": None}
    try:
        run = Run.open(path)
        info = run.info()
        st = run.live_status()
    except RunError as e:
        entry.update(state="corrupt", error=str(e))
        return entry
    made = info.get("created")
    entry.update(stage=info["stage"], state=st["state"], iteration=st["iteration"],
                 created=float(made) if _is_number(made) else created,
                 error=st.get("error") if isinstance(st.get("error"), (str, type(None))) else str(st.get("error")))
    key = KEY_METRICS.get(entry["stage"])
    if key:
        for row in reversed(read_jsonl(path / "metrics.jsonl")):
            if _is_number(row.get(key)):
                entry.update(key_metric=key, key_value=row[key])
                break
    return entry


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# The metric shown for a stage in run listings.
KEY_METRICS = {
    "pretrain": "lm/val_loss",
    "preferences": "pref/pairs",
    "reward": "rm/val_accuracy",
    "ppo": "objective/scores",
    "w2s": "w2s/pgr",
    "dpo": "objective/gold",
    "bon": "objective/gold",
    "grpo": "objective/scores",
    "frontier": "frontier/points_done",
}


# ----------------------------------------------------------------------------- driving a stage
