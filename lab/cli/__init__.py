"""`rlhf-lab`: the command line. With no arguments it launches the app.

Each command lives in its own module of this package that defines `register(subparsers)` (pretrain, reward,
pipeline, w2s, ppo, dpo, bon, grpo, eval, frontier, set); what they share is lab/cli/common.py; this file lists
them, and holds `app` and `runs`.
Every command runs through the same `core` generators as the app and the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from core.config import ConfigError
from core.runs import DEFAULT_ROOT, RunError, list_runs
from core.session import stop_on_signals
from lab.classroom import CLASSROOM_ENV, TEACHER_CODE_ENV
from lab.cli import bon, dpo, frontier, grpo, pipeline, ppo, pretrain, reward, w2s
from lab.cli import eval as eval_command
from lab.cli import set as set_command
from lab.cli.common import _current_run, _fail, resume_hint
from lab.cli.common import CLIError  # noqa: F401 - the error every command raises, importable with main

# One module per command, each with register(subparsers): imported here by name, so the command modules depend on
# lab.cli.common only and nothing imports this package back (no cycle, no importlib).
STAGE_COMMANDS = (pretrain, reward, pipeline, w2s, ppo, dpo, bon, grpo, eval_command, frontier, set_command)


def cmd_runs(args) -> int:
    root = Path(args.runs or DEFAULT_ROOT)
    if root.exists() and not root.is_dir():
        raise CLIError(f"--runs {root} is a file, not a folder of runs")
    rows = list_runs(root)
    if not rows:
        print(f"no runs under {args.runs or DEFAULT_ROOT}")
        return 0
    print(f"{'run':40s} {'stage':12s} {'state':9s} {'iter':>6s}  key metric")
    for r in rows:
        key = "" if r["key_metric"] is None else f"{r['key_metric']}={r['key_value']:.4g}"
        if r["state"] in ("failed", "corrupt", "stopped") and r["error"]:
            key = f"{key}  error: {r['error']}".strip()
        print(f"{r['run_id']:40s} {str(r['stage']):12s} {str(r['state']):9s} {r['iteration']:>6}  {key}")
    return 0


def cmd_app(args) -> int:
    app = Path(__file__).resolve().parent.parent / "app.py"
    import socket

    from streamlit.web import cli as stcli

    from lab.jobs import upload_limit_mb

    if not 1 <= args.port <= 65535:
        raise CLIError(f"--port must be in [1, 65535], got {args.port}")

    env, notes = server_settings(args)
    host = args.host
    with socket.socket() as probe:  # a clear message instead of Streamlit silently picking another port
        try:
            probe.bind((host, args.port))
        except OSError:
            raise CLIError(f"port {args.port} on {host} is in use (another lab?), or {host} is not an address of "
                           "this machine; pass --port N or another --host") from None
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    os.environ.update(env)  # the Streamlit server runs in this process: lab.ui and lab.jobs read these
    runs = Path(args.runs or DEFAULT_ROOT).expanduser().resolve()
    # Always headless: a non-headless Streamlit asks for an e-mail address on its first run and waits on
    # stdin, which would hang a student's first `rlhf-lab`. We open the browser tab ourselves instead.
    argv = ["streamlit", "run", str(app), "--server.address", host,
            "--server.port", str(args.port), "--browser.gatherUsageStats", "false",
            "--server.headless", "true",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
            # the server's own upload limit (MB), not only the browser's: a crafted request is refused too
            "--server.maxUploadSize", str(upload_limit_mb())]
    argv += ["--", "--runs", str(runs)]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{args.port}"
    print(f"RLHF Lab: {url}  (runs in {runs}; Ctrl+C stops the server)", flush=True)
    if not args.no_browser:
        threading.Thread(target=open_browser_when_up, args=(url,), daemon=True).start()
    sys.argv = argv
    return stcli.main()


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def server_settings(args) -> tuple[dict, list[str]]:
    """The environment `rlhf-lab app` hands the server (job limit, classroom, teacher code) and what it must
    say on stderr. Refuses (CLIError) a bad --max-jobs or a teacher code too short to resist guessing."""
    from lab import jobs

    env, notes = {}, []
    if args.max_jobs is not None:
        if args.max_jobs < 1:
            raise CLIError(f"--max-jobs must be at least 1, got {args.max_jobs}")
        env[jobs.MAX_JOBS_ENV] = str(args.max_jobs)
    limit = args.max_jobs or jobs.max_jobs()
    code = args.teacher_code or os.environ.get(TEACHER_CODE_ENV, "")
    if args.classroom:
        env[CLASSROOM_ENV] = "1"
        if not code:
            import secrets

            code = secrets.token_urlsafe(6)
            notes.append(f"Classroom: the teacher code for this server is {code}  (give it only to the teacher; "
                         f"set it yourself with --teacher-code or ${TEACHER_CODE_ENV})")
        elif len(code) < 6:
            raise CLIError("the teacher code must have at least 6 characters (students will try to guess it)")
        env[TEACHER_CODE_ENV] = code
        notes.append(f"Classroom: each student gives a name; at most {limit} runs train at once, more wait in a queue.")
    elif args.host not in LOCAL_HOSTS:
        notes.append("!" * 78 + f"\nWARNING: --host {args.host} opens the lab to the network WITHOUT --classroom: "
                     "everyone who reaches it\ncan see, steer, stop and delete every run. Add --classroom "
                     "(students get names, a teacher a code).\n" + "!" * 78)
    return env, notes


def open_browser_when_up(url: str, timeout: float = 60.0) -> None:
    """Open a browser tab once the server answers its health check (no tab on a machine without one)."""
    import time
    import urllib.request
    import webbrowser

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf-lab", description="RLHF Lab: every stage of RLHF on a small GPT.")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("app", help="launch the lab in the browser (the default)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--runs", default=None, help=f"runs root (default ./{DEFAULT_ROOT})")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for a class)")
    p.add_argument("--max-jobs", type=int, default=None,
                   help="runs that train at once; more wait in a queue (default: one per GPU, else cores/2)")
    p.add_argument("--classroom", action="store_true",
                   help="one server for a class: students give names and own their runs; a teacher code")
    p.add_argument("--teacher-code", default=None,
                   help=f"the teacher's code (or ${TEACHER_CODE_ENV}; --classroom prints a random one otherwise)")
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("runs", help="list runs (stage, state, last key metric)")
    p.add_argument("--runs", default=None, help=f"runs root (default ./{DEFAULT_ROOT})")
    p.set_defaults(func=cmd_runs)

    for module in STAGE_COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["app"]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    stop_on_signals()  # SIGTERM / SIGHUP end a training run as `stopped`, not `running` forever
    _current_run.clear()
    try:
        return int(args.func(args) or 0)
    except (CLIError, ConfigError, RunError, ValueError, FileNotFoundError) as e:
        return _fail(args.command, e)
    except OSError as e:  # disk full, read-only location, a file where a folder belongs
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return _fail(args.command, f"{e.strerror or e}{where}; choose a writable location with free space", e)
    except KeyboardInterrupt as e:
        run = _current_run[0] if _current_run else None
        print(f"rlhf-lab {args.command}: {e or 'interrupted'}{resume_hint(run)}", file=sys.stderr)
        return 130
    except RecursionError as e:
        return _fail(args.command, f"input nested too deeply to read ({e})", e)
    except Exception as e:  # noqa: BLE001 - a bug or an unforeseen input: one line here, the traceback in a file
        return _fail(args.command, f"{type(e).__name__}: {e}", e)
