"""What every `rlhf-lab` command shares: the one-line error, the progress bar, driving a run (and what Ctrl-C says
to continue it), the --out/--runs flags, and where an unexpected traceback goes."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

from core.config import ConfigError
from core.runs import DEFAULT_ROOT, Run, RunError
from core.session import RESUMABLE, drive  # RESUMABLE: the stages with --resume RUN_DIR


class CLIError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


ERROR_LOG = "error.log"  # a run's full traceback, when its command failed (the same name the app's jobs use)
_current_run: list[Run] = []  # the run the running command drives: where an unexpected traceback goes


def progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=True, file=sys.stderr)


def watch(run: Run) -> Run:
    """Name `run` as the one this command drives: an unexpected traceback goes to its folder, and Ctrl-C prints
    how to continue it (resume_hint). Every command that drives a run calls it (run_stage does)."""
    _current_run[:] = [run]
    return run


def resume_hint(run: Run | None) -> str:
    """What Ctrl-C prints after "interrupted": the command that continues `run`, or where it is kept."""
    if run is None:
        return ""
    if run.stage in RESUMABLE:
        return f"; resume it with rlhf-lab {run.stage} --resume {run.path}"
    if run.stage == "frontier":
        return f"; resume it with rlhf-lab frontier --resume --out {run.path}"
    return f"; what it wrote is kept in {run.path} (a {run.stage} run has no --resume: start it again)"


def run_stage(run: Run, steps, total: int, desc: str, postfix) -> dict | None:
    """Drive a stage generator with a progress bar; `postfix(metrics)` -> dict shown on the bar."""
    bar = progress(total, desc)
    watch(run)

    def tick(m):
        bar.update(1)
        bar.set_postfix(postfix(m), refresh=False)

    try:
        return drive(run, steps, on_metrics=tick)
    finally:
        bar.close()


def run_args(parser: argparse.ArgumentParser, seed: int | None = None, device: str | None = None,
             precision: bool = True) -> None:
    """--seed, --device, --precision (where the stage has one) and --threads: the flags of every training command,
    once. run_values(args) gives them back as config fields."""
    from core.config import PRECISION_HELP, PRECISIONS

    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--device", default=device)
    if precision:
        parser.add_argument("--precision", default=None, choices=PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def run_values(args) -> dict:
    """The run_args() flags as config fields: seed, device, threads (and precision where the command has it)."""
    values = {"seed": args.seed, "device": args.device, "threads": args.threads}
    if hasattr(args, "precision"):
        values["precision"] = args.precision
    return values


def out_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", help="run folder to create (must not hold another run)")
    group.add_argument("--runs", default=None, help=f"root folder for a new run id (default ./{DEFAULT_ROOT})")


def _fail(command: str, message, exc: BaseException | None = None) -> int:
    """Print the one-line error; an unexpected exception's traceback goes to the run's error.log (or, with no
    run yet, to a temp file), named in the line, never onto the terminal."""
    text = " ".join(str(message).split()) or type(exc).__name__
    line = f"rlhf-lab {command}: error: {text}"
    if exc is not None and not isinstance(exc, (CLIError, ConfigError, RunError)):
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log = _write_log(trace)
        if log:
            line += f" (details: {log})"
    print(line, file=sys.stderr)
    return 2


def _write_log(trace: str) -> str | None:
    candidates = [_current_run[0].path / ERROR_LOG] if _current_run else []
    try:
        fd, tmp = tempfile.mkstemp(prefix="rlhf-lab-error-", suffix=".log")
        os.close(fd)
        candidates.append(Path(tmp))
    except OSError:
        pass
    for path in candidates:
        try:
            Path(path).write_text(trace, encoding="utf-8")
        except OSError:
            continue
        for other in candidates:
            if other != path and other.name.startswith("rlhf-lab-error-"):
                Path(other).unlink(missing_ok=True)
        return str(path)
    return None
