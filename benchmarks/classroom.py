#!/usr/bin/env python
"""A class on one server: N simulated students each start a tiny PPO run through the job API the pages use
(lab/jobs.py: start -> queue -> dispatch), against a limit of M jobs at once. No browsers.

    python benchmarks/classroom.py --students 30 --max-jobs 2

Prints one JSON line: students, max_jobs, total_s (first start to last run finished), max_wait_s (the longest
time a run waited in the queue), mean_wait_s, peak_active (most runs training at once: must be <= max_jobs),
peak_rss_mb (this process and its workers, summed, sampled every 0.2 s), unfinished (runs that did not end
`done`: must be 0), and the settings of the tiny run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--max-jobs", type=int, default=2)
    p.add_argument("--iterations", type=int, default=2, help="PPO iterations of each student's run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--response-length", type=int, default=8)
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--runs", default=None, help="runs root (default: a temporary folder, removed afterwards)")
    args = p.parse_args()

    import psutil

    from lab import jobs
    from lab.views import ppo as V

    os.environ[jobs.MAX_JOBS_ENV] = str(args.max_jobs)  # what `rlhf-lab app --max-jobs M` sets for the server
    tmp = None if args.runs else tempfile.TemporaryDirectory(prefix="classroom-", ignore_cleanup_errors=True)
    root = Path(args.runs or tmp.name)
    settings = dict(policy="small", reward="reward", iterations=args.iterations, batch_size=args.batch,
                    response_length=args.response_length, sample_every=args.iterations,
                    checkpoint_every=args.iterations, device="cpu", threads=1)

    me = psutil.Process()
    peak = {"rss": 0, "active": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss = 0
            for proc in [me] + me.children(recursive=True):
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            peak["rss"] = max(peak["rss"], rss)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    runs = [V.start_ppo(root, owner=f"student{i:02d}", **settings)
            for i in range(args.students)]
    jobs.ensure_dispatcher(root, every=0.2, limit=args.max_jobs)
    finals = {}
    deadline = time.monotonic() + args.timeout
    while len(finals) < len(runs) and time.monotonic() < deadline:
        jobs.dispatch(root, args.max_jobs)  # what a page draw does; the dispatcher thread does it too
        training = 0
        for run in runs:
            if run.run_id not in finals:
                st = jobs.status(run.path)
                if st["state"] in jobs.FINAL_STATES:
                    finals[run.run_id] = st["state"]
                elif not jobs.is_waiting(st):
                    training += 1
        peak["active"] = max(peak["active"], training)
        time.sleep(0.2)
    total = time.monotonic() - t0
    done.set()
    waits = []
    for run in runs:
        info = jobs.job_info(run.path)
        if info.get("started") and info.get("queued"):
            waits.append(info["started"] - info["queued"])
    unfinished = sum(1 for run in runs if finals.get(run.run_id) != "done")
    print(json.dumps({"students": args.students, "max_jobs": args.max_jobs, "total_s": round(total, 1),
                      "max_wait_s": round(max(waits), 1) if waits else None,
                      "mean_wait_s": round(sum(waits) / len(waits), 1) if waits else None,
                      "peak_active": peak["active"], "peak_rss_mb": round(peak["rss"] / 2**20),
                      "unfinished": unfinished, "cpu_count": os.cpu_count(),
                      "run": {k: settings[k] for k in ("iterations", "batch_size", "response_length", "threads")}}),
          flush=True)
    if tmp is not None:
        tmp.cleanup()  # the dispatcher thread may re-create the queue lock meanwhile: it ends with the folder
        shutil.rmtree(root, ignore_errors=True)
    return 0 if unfinished == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
