"""Probe the run store with races and kills; print one JSON line of counts (issue 11).

    python scripts/probe_store.py                      # 20 trials of each store probe, 3 real PPO kills
    python scripts/probe_store.py --trials 5 --ppo-trials 0

Probes, each trial in a fresh folder:
  creators   two spawned processes create the same run folder at a barrier: exactly one may win, and the
             folder must hold the winner's config (lost: both won, or the config is the loser's)
  writers    six spawned processes merge their own keys into one control.json at a barrier (lost: a key missing)
  kill_store a trainer process (the real Run/drive/save_checkpoint code, a stand-in model of 1 MB) is killed
             with SIGKILL at a random moment, checkpoint saves included, then resumed to the end. Lost: an
             iteration missing or logged twice, a checkpoint that is not the last iteration's; unrecoverable:
             the listing still says running, or the resume fails
  kill_ppo   the same with `rlhf-lab ppo --preset tiny` (shipped models, 1 thread): SIGKILL, `rlhf-lab runs`,
             `rlhf-lab ppo --resume`

Output: {"trials": {...}, "data_lost": n, "unrecoverable": n, "details": [...]}; both counts must be 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.runs import Run, RunError, list_runs, read_jsonl  # noqa: E402
from core.session import drive
from tests.store_race_workers import create_run, write_keys  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
           TOKENIZERS_PARALLELISM="false")


# ----------------------------------------------------------------------------- races

def probe_creators(tmp: Path, trial: int) -> tuple[bool, bool, str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    out = tmp / f"creators-{trial}"
    procs = [ctx.Process(target=create_run, args=(str(out), seed, barrier, results, 0.2)) for seed in (1, 2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    winners = [seed for kind, seed, _ in got if kind == "created"]
    if len(winners) != 1:
        return len(winners) > 1, len(winners) == 0, f"creators {trial}: {len(winners)} winners"
    config = Run.open(out).config
    return config != {"seed": winners[0]}, False, "" if config == {"seed": winners[0]} else f"creators {trial}: {config}"


def probe_writers(tmp: Path, trial: int, writers: int = 6, keys: int = 10) -> tuple[bool, bool, str]:
    run = Run.create("ppo", {}, out=tmp / f"writers-{trial}", control={"kl_coef": 0.1})
    run.release()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers)
    procs = [ctx.Process(target=write_keys, args=(str(run.path), w, keys, barrier)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    control = run.read_control()
    missing = [f"w{w}_{j}" for w in range(writers) for j in range(keys) if f"w{w}_{j}" not in control]
    missing += [] if control.get("kl_coef") == 0.1 else ["kl_coef"]
    return bool(missing), False, f"writers {trial}: lost {missing[:5]}" if missing else ""


# ----------------------------------------------------------------------------- kill -9, then resume

def stand_in_trainer(run: Run, total: int, every: int = 3):
    """A stage generator with PPO's resume logic (core/ppo_train.py): repair an interrupted save, continue
    from the checkpoint, move the rows after it aside, save every `every` steps (a 1 MB stand-in model)."""
    run.recover_checkpoint()
    start = 0
    if run.checkpoint_dir.exists():
        start = json.loads((run.checkpoint_dir / "lab.json").read_text())["iteration"]
    run.rewind(start)
    for step in range(start + 1, total + 1):
        time.sleep(0.01)
        yield {"step": step, "loss": 1.0 / step}
        if step % every == 0 or step == total:  # after the yield, as PPO does: the row is logged first
            def save(d, step=step):
                (d / "model.safetensors").write_bytes(step.to_bytes(4, "little") * (1 << 18))
                (d / "lab.json").write_text(json.dumps({"iteration": step}))
            run.save_checkpoint(save)


def child_train(out: str, total: int) -> None:
    """`--child-train`: create (or resume) a run and train it with the stand-in trainer."""
    from core.session import stop_on_signals

    stop_on_signals()
    path = Path(out)
    run = Run.create("probe", {"total": total}, out=path, resume=(path / "config.json").exists())
    drive(run, stand_in_trainer(run, total))


def check_finished(out: Path, total: int, weights: bool) -> str:
    steps = [r.get("step") for r in read_jsonl(out / "metrics.jsonl")]
    if steps != list(range(1, total + 1)):
        return f"metrics steps {steps[:8]}... != 1..{total}"
    info = json.loads((out / "checkpoint" / "lab.json").read_text())
    if info.get("iteration") != total:
        return f"checkpoint at {info.get('iteration')} != {total}"
    if weights and (out / "checkpoint" / "model.safetensors").read_bytes()[:4] != total.to_bytes(4, "little"):
        return "checkpoint weights are not the last save's"
    return ""


def listed_state(out: Path) -> str:
    return next((r["state"] for r in list_runs(out.parent) if r["run_id"] == out.name), "missing")


def probe_kill_store(tmp: Path, trial: int, rng: random.Random, total: int = 60) -> tuple[bool, bool, str]:
    out = tmp / f"kill-{trial}" / "run"
    out.parent.mkdir()
    cmd = [sys.executable, __file__, "--child-train", str(out), "--total", str(total)]
    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.6))  # a random moment: between steps, mid-append, mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    state = listed_state(out)
    if state in ("queued", "running", "paused"):
        return False, True, f"kill {trial}: listed as {state} after SIGKILL"
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return False, True, f"kill {trial}: resume failed: {done.stderr.strip()[-300:]}"
    problem = check_finished(out, total, weights=True)
    return bool(problem), False, f"kill {trial}: {problem}" if problem else ""


def probe_kill_ppo(tmp: Path, trial: int, rng: random.Random, total: int = 12) -> tuple[bool, bool, str]:
    out = tmp / f"ppo-{trial}" / "ppo-run"
    out.parent.mkdir()
    cli = [sys.executable, "-m", "lab.cli"]
    proc = subprocess.Popen(cli + ["ppo", "--preset", "tiny", "--iterations", str(total), "--device", "cpu",
                                   "--threads", "1", "--out", str(out)],
                            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    target = rng.randint(1, total - 2)  # kill once this many iterations are logged, at a random point after it
    deadline = time.monotonic() + 600
    while len(read_jsonl(out / "metrics.jsonl")) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    runs = subprocess.run(cli + ["runs", "--runs", str(out.parent)], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    row = next((line.split() for line in runs.stdout.splitlines() if line.startswith("ppo-run ")), [])
    if len(row) < 3 or row[2] in ("queued", "running", "paused"):
        return False, True, f"ppo {trial}: rlhf-lab runs says {row[:3]}"
    done = subprocess.run(cli + ["ppo", "--resume", str(out)], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        return False, True, f"ppo {trial}: resume failed: {done.stderr.strip()[-300:]}"
    problem = check_finished(out, total, weights=False)
    return bool(problem), False, f"ppo {trial}: {problem}" if problem else ""


# ----------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of each store probe")
    parser.add_argument("--ppo-trials", type=int, default=3, help="kill -9 + resume trials of a real PPO run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child-train", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_train:
        try:
            child_train(args.child_train, args.total)
        except (KeyboardInterrupt, RunError):
            return 1
        return 0
    rng = random.Random(args.seed)
    counts = {"creators": 0, "writers": 0, "kill_store": 0, "kill_ppo": 0}
    lost = unrecoverable = 0
    details = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="probe-store-") as tmp:
        tmp = Path(tmp)
        plan = [("creators", lambda i: probe_creators(tmp, i)), ("writers", lambda i: probe_writers(tmp, i)),
                ("kill_store", lambda i: probe_kill_store(tmp, i, rng))]
        for name, probe in plan:
            for i in range(args.trials):
                was_lost, was_unrecoverable, detail = probe(i)
                counts[name] += 1
                lost += was_lost
                unrecoverable += was_unrecoverable
                if detail:
                    details.append(detail)
        for i in range(args.ppo_trials):
            was_lost, was_unrecoverable, detail = probe_kill_ppo(tmp, i, rng)
            counts["kill_ppo"] += 1
            lost += was_lost
            unrecoverable += was_unrecoverable
            if detail:
                details.append(detail)
    print(json.dumps({"trials": counts, "data_lost": lost, "unrecoverable": unrecoverable,
                      "seconds": round(time.time() - t0, 1), "details": details[:20]}))
    return 0 if lost == 0 and unrecoverable == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
