"""A class on one server: student names, the teacher's code, the teacher's published settings.

No Streamlit here (tested directly). `rlhf-lab app --classroom` sets $RLHF_LAB_CLASSROOM and the teacher
code; on a laptop (no --classroom) nobody is asked for a name and every run belongs to the local user.

Who may change a run is decided in lab/jobs.py (`may_control`): its owner or the teacher.
"""

from __future__ import annotations

import getpass
import hmac
import os
import re
import threading
import time
from pathlib import Path

from core.runs import RunError, atomic_write_json, read_json

CLASSROOM_ENV = "RLHF_LAB_CLASSROOM"
TEACHER_CODE_ENV = "RLHF_LAB_TEACHER_CODE"
CLASS_DIR = ".classroom"  # <runs root>/.classroom/: the class's shared state (list_runs skips dot folders)
PRESETS_FILE = "presets.json"
MAX_NAME = 32
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]*$")
FREE_TRIES = 2  # wrong teacher codes answered at once; after that each costs a growing delay
MAX_DELAY_S = 30.0


def classroom() -> bool:
    return os.environ.get(CLASSROOM_ENV, "") == "1"


def local_name() -> str:
    """The owner of every run on a laptop (no --classroom): the login name, made a valid student name."""
    try:
        raw = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): a fixed one
        raw = ""
    name = re.sub(r"[^A-Za-z0-9 _.\-]", "", raw)[:MAX_NAME].strip(" ._-")
    return name or "me"


def check_name(raw) -> str:
    """A student's name, stripped; ValueError with what to do for an empty one, one too long, or one with
    characters that could name a path or a URL part. (A name someone else uses is allowed: the same
    student on a second device.)"""
    name = (raw if isinstance(raw, str) else "").strip()
    if not name:
        raise ValueError("type your name (letters, digits, spaces, . _ -) to start")
    if len(name) > MAX_NAME:
        raise ValueError(f"a name is at most {MAX_NAME} characters (this one has {len(name)}); shorten it")
    if not NAME_RE.match(name) or ".." in name:
        raise ValueError("use only letters, digits, spaces and . _ - in your name (no / \\ or other symbols), "
                         "starting with a letter or digit")
    return name


# ----------------------------------------------------------------------------- the teacher's code

_tries: dict[str, int] = {}  # wrong codes per client (a browser session) in this server process
_tries_lock = threading.Lock()


def teacher_code() -> str:
    return os.environ.get(TEACHER_CODE_ENV, "")


def delay_after(failures: int) -> float:
    """Seconds a wrong code waits before its answer: 0 for the first FREE_TRIES, then 1, 2, 4... up to 30."""
    if failures <= FREE_TRIES:
        return 0.0
    return min(MAX_DELAY_S, 2.0 ** (failures - FREE_TRIES - 1))


def check_teacher_code(given, client: str, sleep=time.sleep) -> bool:
    """True when `given` is the teacher code. A wrong one (or any code when the server has none) answers
    False with no hint, after a delay that grows with `client`'s failures in a row."""
    code = teacher_code()
    ok = bool(code) and isinstance(given, str) and hmac.compare_digest(given.encode(), code.encode())
    with _tries_lock:
        if ok:
            _tries.pop(client, None)
            return True
        _tries[client] = failures = _tries.get(client, 0) + 1
    wait = delay_after(failures)
    if wait:
        sleep(wait)
    return False


# ----------------------------------------------------------------------------- the teacher's settings

def presets_path(runs_root) -> Path:
    return Path(runs_root) / CLASS_DIR / PRESETS_FILE


def read_presets(runs_root) -> dict:
    """{stage: {"name", "settings", "published"}}; a missing or corrupt file reads as none."""
    try:
        data = read_json(presets_path(runs_root), {})
    except RunError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("settings"), dict)} \
        if isinstance(data, dict) else {}


def preset_for(runs_root, stage: str) -> dict | None:
    return read_presets(runs_root).get(stage)


def publish_preset(runs_root, stage: str, name: str, settings: dict, teacher: bool) -> dict:
    """Publish `settings` (already checked by the page's settings schema) as the class's settings for
    `stage`. Only the teacher may (PermissionError otherwise); ValueError for a bad name."""
    if not teacher:
        raise PermissionError("only the teacher can publish settings to the class")
    name = (name or "").strip() or "the teacher's settings"
    if len(name) > 60:
        raise ValueError(f"a preset name is at most 60 characters (this one has {len(name)})")
    from filelock import FileLock

    path = presets_path(runs_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock"), thread_local=False, timeout=30):
        presets = read_presets(runs_root)
        presets[stage] = {"name": name, "settings": dict(settings), "published": time.time()}
        atomic_write_json(path, presets)
    return presets[stage]
