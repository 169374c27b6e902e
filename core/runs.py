"""The run store: every stage writes one folder `runs/<run_id>/` (see DESIGN.md).

    config.json    the full stage config, stage name, parents, versions   (atomic write)
    status.json    {state, iteration, message, error}                     (atomic write)
    control.json   live knobs the trainer re-reads every iteration         (atomic write)
    metrics.jsonl  one JSON object per step: {"step", "time", <metric>...} (whole-line appends)
    samples.jsonl  generations with their scores                           (whole-line appends)
    checkpoint/    save_pretrained output, written to a temp dir then renamed

Readers never trust the last line of a JSONL file to be complete: a trainer may be writing it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

STATES = ("queued", "running", "paused", "done", "failed", "stopped")
FINAL_STATES = ("done", "failed", "stopped")
DEFAULT_ROOT = "runs"


class RunError(RuntimeError):
    """A run folder that is missing, corrupt, or belongs to something else."""


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
    """Read a JSON file; a missing file gives `default`, a corrupt one raises RunError."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e})") from e


def append_jsonl(path: str | os.PathLike, obj) -> None:
    """Append one whole line and flush, so readers see either all of it or none."""
    line = json.dumps(obj, default=_json_default, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All complete lines of a JSONL file. A partial (still being written) last line is skipped;
    a corrupt line in the middle is skipped too, so one bad line cannot hide a whole run."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # partial last line: the writer has not finished it yet
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
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
    """A handle on one run folder. Cheap to create; all state lives in the files."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, stage: str, config: dict, out: str | os.PathLike | None = None,
               root: str | os.PathLike | None = None, parents: dict | None = None,
               control: dict | None = None, resume: bool = False) -> "Run":
        """Make a new run folder (or re-open `out` when `resume` and it holds the same stage).

        `out` names the folder; otherwise a fresh id under `root` (default ./runs) is chosen.
        An `out` that already holds a *different* run is refused rather than overwritten.
        """
        if out is None:
            root = Path(root or DEFAULT_ROOT)
            root.mkdir(parents=True, exist_ok=True)
            out = root / new_run_id(stage, root)
        path = Path(out)
        existing = path / "config.json"
        if existing.exists():
            old = read_json(existing, {})
            if not resume:
                raise RunError(
                    f"{path} already holds a run (stage {old.get('stage')!r}); choose another --out, "
                    "or delete that folder first"
                )
            if old.get("stage") != stage:
                raise RunError(f"{path} holds a {old.get('stage')!r} run, not a {stage!r} run; cannot resume it")
            return cls(path)
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
            raise RunError(f"{path} exists and is not an empty folder; choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        atomic_write_json(path / "config.json", {
            "stage": stage,
            "run_id": path.name,
            "created": time.time(),
            "parents": parents or {},
            "versions": versions(),
            "config": config,
        })
        atomic_write_json(path / "control.json", control or {})
        run.set_status("queued", iteration=0, message="waiting to start")
        return run

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

    # -- files ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def info(self) -> dict:
        data = read_json(self.path / "config.json")
        if not isinstance(data, dict) or "stage" not in data:
            raise RunError(f"{self.path}/config.json is missing or has no 'stage'")
        return data

    @property
    def stage(self) -> str:
        return self.info()["stage"]

    @property
    def config(self) -> dict:
        return self.info().get("config", {})

    def status(self) -> dict:
        try:
            return read_json(self.path / "status.json", {"state": "queued", "iteration": 0})
        except RunError as e:
            return {"state": "failed", "iteration": 0, "message": "corrupt status.json", "error": str(e)}

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
        """Merge `updates` into control.json (atomic). Returns the new control dict."""
        data = self.read_control()
        data.update(updates)
        atomic_write_json(self.path / "control.json", data)
        return data

    def log_metrics(self, metrics: dict) -> None:
        row = {k: clean_number(v) for k, v in metrics.items()}
        row.setdefault("time", time.time())
        append_jsonl(self.path / "metrics.jsonl", row)

    def log_sample(self, sample: dict) -> None:
        append_jsonl(self.path / "samples.jsonl", sample)

    def metrics(self) -> pd.DataFrame:
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

    def save_checkpoint(self, save_fn, name: str = "checkpoint") -> Path:
        """Write a checkpoint atomically: `save_fn(tmp_dir)` fills a temp folder, which then replaces
        `<run>/<name>`. A crash mid-save leaves the previous good checkpoint in place."""
        target = self.path / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.path))
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


def new_run_id(stage: str, root: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{stage}"
    candidate, n = base, 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def read_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """metrics.jsonl as a DataFrame (one row per step). Tolerates a partial last line."""
    rows = read_jsonl(Path(run_dir) / "metrics.jsonl")
    return pd.DataFrame(rows)


def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> list[dict]:
    """One summary dict per run folder under `root`, newest first. Corrupt folders are listed with
    state 'corrupt' and the reason, never skipped silently and never raising."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        entry = {"run_id": path.name, "path": str(path), "stage": None, "state": None, "iteration": 0,
                 "created": path.stat().st_mtime, "key_metric": None, "key_value": None, "error": None}
        try:
            run = Run.open(path)
            info = run.info()
            st = run.status()
            entry.update(stage=info.get("stage"), created=info.get("created", entry["created"]),
                         state=st.get("state"), iteration=st.get("iteration", 0), error=st.get("error"))
            key = KEY_METRICS.get(entry["stage"])
            if key:
                rows = read_jsonl(path / "metrics.jsonl")
                for row in reversed(rows):
                    if row.get(key) is not None:
                        entry.update(key_metric=key, key_value=row[key])
                        break
        except RunError as e:
            entry.update(state="corrupt", error=str(e))
        out.append(entry)
    out.sort(key=lambda e: e["created"] or 0, reverse=True)
    return out


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

def drive(run: Run, steps, on_metrics=None) -> dict | None:
    """Run a stage generator to the end inside its run folder.

    Every yielded metrics dict is appended to metrics.jsonl and the status is kept current. An
    exception marks the run `failed` with the error (the last good checkpoint stays) and is
    re-raised. Returns the last metrics dict. A generator may yield {"_status": state, ...} to set
    a state itself (PPO's pause/stop) without logging a metrics row.
    """
    last = None
    run.set_status("running", iteration=0, message="started")
    last_write = time.monotonic()
    try:
        for metrics in steps:
            if "_status" in metrics:
                state = metrics["_status"]
                run.set_status(state, iteration=metrics.get("step"), message=metrics.get("message", ""))
                if state in FINAL_STATES:
                    return last
                continue
            run.log_metrics(metrics)
            last = metrics
            if time.monotonic() - last_write > 0.5:  # status is for humans: twice a second is plenty
                run.set_status("running", iteration=metrics.get("step", 0), message="")
                last_write = time.monotonic()
            if on_metrics is not None:
                on_metrics(metrics)
    except KeyboardInterrupt:
        run.set_status("stopped", message="interrupted")
        raise
    except Exception as e:
        run.set_status("failed", message="training failed", error=f"{type(e).__name__}: {e}")
        raise
    run.set_status("done", iteration=(last or {}).get("step", 0), message="finished")
    return last
