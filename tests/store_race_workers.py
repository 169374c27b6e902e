"""Bodies of the processes that race on one run folder (tests/core/test_store_safety.py, scripts/probe_store.py).
A module of its own that imports no torch: a spawned process starts in a fraction of a second."""

from __future__ import annotations

import time
from pathlib import Path

from core.runs import Run, RunError


def create_run(out: str, seed: int, barrier, results, hold: float = 0.5) -> None:
    """Wait for the others, then try to create the run; report ("created"|"refused", seed, message)."""
    barrier.wait()
    try:
        run = Run.create("ppo", {"seed": seed}, out=out)
    except RunError as e:
        results.put(("refused", seed, str(e)))
        return
    results.put(("created", seed, ""))
    time.sleep(hold)  # own the run a while, as a trainer would
    run.release()


def write_keys(run_dir: str, writer: int, n: int, barrier) -> None:
    """Wait for the others, then merge n keys of this writer's own into control.json, one write each."""
    run = Run(Path(run_dir))
    barrier.wait()
    for j in range(n):
        run.write_control(**{f"w{writer}_{j}": j})
