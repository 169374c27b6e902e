"""Run-store safety (issue 11): exclusive create/resume under races, no lost control.json keys, one liveness
rule after a kill, broken checkpoints refused by name (or recovered), poisoned control values refused, a broken
folder listed among good ones, and the CLI's one-line errors. Races use spawned processes and a barrier."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import ppo_preset, to_dict
from core.runs import Run, list_runs, read_jsonl, read_metrics
from core.session import drive
from tests.store_race_workers import create_run, write_keys
from tests.support import next_within, statused, tiny_cfg

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- races (spawned processes)

def test_two_creators_of_one_run_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    out = tmp_path / "run"
    procs = [ctx.Process(target=create_run, args=(str(out), seed, barrier, results)) for seed in (1, 2)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert [g[0] for g in got] == ["created", "refused"], got
    winner = next(g[1] for g in got if g[0] == "created")
    assert Run.open(out).config == {"seed": winner}  # the loser wrote nothing


def test_six_concurrent_control_writers_lose_no_key(tmp_path):
    run = Run.create("ppo", {}, out=tmp_path / "run", control={"kl_coef": 0.1})
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=write_keys, args=(str(run.path), w, 15, barrier)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    control = run.read_control()
    assert control["kl_coef"] == 0.1
    missing = [f"w{w}_{j}" for w in range(6) for j in range(15) if f"w{w}_{j}" not in control]
    assert missing == []


# ----------------------------------------------------------------------------- dead runs

def _cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "lab.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _wait_rows(path: Path, n: int, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_jsonl(path / "metrics.jsonl")) >= n:
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    raise AssertionError(f"no {n} metrics rows in {timeout} s")


@pytest.mark.slow
def test_a_killed_cli_run_is_dead_to_every_reader_and_resumes(tiny_base, tiny_rm, tmp_path, capsys):  # noqa: F811
    from lab.cli import main

    out = tmp_path / "runs" / "ppo"
    proc = _cli("ppo", "--preset", "tiny", "--policy", str(tiny_base), "--reward", str(tiny_rm), "--iterations",
                "500", "--device", "cpu", "--threads", "1", "--out", str(out))
    _wait_rows(out, 4, proc)  # the tiny preset checkpoints every 3 iterations
    # a second trainer of the same run, while the first lives, is refused in one line
    assert main(["ppo", "--resume", str(out), "--iterations", "6"]) == 2
    assert "in another process" in capsys.readouterr().err
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    assert main(["runs", "--runs", str(tmp_path / "runs")]) == 0
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines() if line.startswith("ppo "))
    assert row.split()[:3] == ["ppo", "ppo", "failed"] and "pid" in row
    assert main(["set", str(out), "stop=true"]) == 2
    assert "its process died" in capsys.readouterr().err
    done = json.loads((out / "checkpoint" / "lab.json").read_text())["iteration"]
    assert main(["ppo", "--resume", str(out), "--iterations", str(done + 1)]) == 0
    steps = read_metrics(out)["step"].tolist()
    assert steps == list(range(1, done + 2))  # each iteration once: the rows after the checkpoint moved aside
    assert Run.open(out).live_status()["state"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM])  # SIGHUP takes the same handler
def test_sigterm_or_sighup_stop_a_pretraining_run(tmp_path, sig):
    out = tmp_path / "pre"
    proc = _cli("pretrain", "--preset", "tiny", "--steps", "100000", "--device", "cpu", "--threads", "1",
                "--out", str(out))
    _wait_rows(out, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    st = Run.open(out).live_status()
    assert st["state"] == "stopped" and signal.Signals(sig).name in st["message"]


def test_a_run_whose_owner_died_is_failed_for_every_reader(tmp_path):
    """The liveness rule itself, without training: status says running, nobody holds the lock."""
    from lab import jobs

    run = Run.create("pretrain", {}, out=tmp_path / "r")
    run.set_status("running", iteration=7)
    assert run.live_status()["state"] == "running"  # owned by this handle: alive
    run.release()  # what the kernel does when the owner dies
    for st in (jobs.status(run.path), list_runs(tmp_path)[0]):
        assert st["state"] == "failed"
    st = Run.open(run.path).status()
    assert st["message"] == "process died" and st["iteration"] == 7
    assert Run.create("pretrain", {}, out=run.path, resume=True).owned  # and it can be taken over


# ----------------------------------------------------------------------------- broken checkpoints

COUNTER = {"ppo": "iteration", "grpo": "iteration", "dpo": "step"}  # what a stage's lab.json counts


def _run_with_checkpoint(tmp_path, stage="ppo", iteration=3) -> Run:
    """A run folder of `stage` whose checkpoint/ looks like one its trainer wrote (no training needed to refuse it)."""
    from core.config import dpo_preset, grpo_preset

    cfg = {"ppo": lambda: ppo_preset("tiny", device="cpu"), "grpo": lambda: grpo_preset("tiny", device="cpu"),
           "dpo": lambda: dpo_preset("tiny", preferences=str(tmp_path / "pairs.jsonl"), device="cpu")}[stage]()
    run = Run.create(stage, to_dict(cfg), out=tmp_path / "run")
    ckpt = run.checkpoint_dir
    ckpt.mkdir()
    for name in ("config.json", "model.safetensors"):
        (ckpt / name).write_text("{}")
    (ckpt / "lab.json").write_text(json.dumps({"stage": stage, COUNTER[stage]: iteration, "live": {}}))
    for i in range(1, iteration + 2):
        run.log_metrics({"step": i, "objective/scores": 0.1 * i})
    run.set_status("stopped", iteration=iteration + 1)
    run.release()
    return run


@pytest.mark.parametrize("stage", ["ppo", "grpo", "dpo"])
@pytest.mark.parametrize("damage, named", [
    (lambda c, s: (c / "lab.json").write_text("{corrupt"), "lab.json"),
    (lambda c, s: (c / "model.safetensors").unlink(), "model.safetensors"),
    (lambda c, s: (c / "model.safetensors").rename(c / "pytorch_model.bin"), "pytorch_model.bin"),
    (lambda c, s: (c / "lab.json").write_text(json.dumps({"stage": s, COUNTER[s]: "three"})),
     lambda s: f"{COUNTER[s]} must be an integer >= 0, got 'three'"),
    (lambda c, s: (c / "lab.json").write_text(json.dumps({"stage": "reward", COUNTER[s]: 3})), "reward"),
], ids=["corrupt", "no-weights", "pickle", "bad-counter", "other-stage"])
def test_a_broken_checkpoint_refuses_to_resume_by_name(tmp_path, capsys, damage, named, stage):
    """Every trainer's --resume (GRPO's used to start afresh at iteration 0 over the run's history)."""
    from lab.cli import main

    run = _run_with_checkpoint(tmp_path, stage)
    damage(run.checkpoint_dir, stage)
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file() and p.name != ".lock"}
    assert main([stage, "--resume", str(run.path)]) == 2
    err = capsys.readouterr().err.strip()
    named = named(stage) if callable(named) else named  # the counter's name is the stage's (DPO counts steps)
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err and "weights_only" not in err
    after = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before  # no silent fresh start over the old run, and nothing written (config, control)


def test_a_save_killed_between_its_renames_is_recovered(tmp_path):
    from core.session import resume_point

    run = _run_with_checkpoint(tmp_path)
    run.checkpoint_dir.rename(run.path / ".checkpoint.old")  # the kill fell between the two renames
    (run.path / ".checkpoint.tmp-x1y2z3").mkdir()             # and an older save left its temp folder
    run.acquire()
    ckpt, iteration, _ = resume_point(run, "ppo")
    assert ckpt == run.checkpoint_dir and iteration == 3
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".checkpoint")) == []


def test_a_pickled_checkpoint_never_reaches_torch_load(tiny_base, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    from core.model import CheckpointError, load_lm

    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_base / "checkpoint", folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors") as e:
        load_lm(tmp_path)  # a run-like folder: checkpoint/ is found, its weights are a pickle
    assert "weights_only" not in str(e.value)


# ----------------------------------------------------------------------------- live values

def test_poisoned_control_values_are_refused_and_the_run_goes_on(tiny_base, tiny_rm, tmp_path):  # noqa: F811
    from core.ppo_train import train_ppo

    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=3, checkpoint_every=100)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run", control={"paused": "false", "step": "abc"})
    steps = statused(run, train_ppo(cfg, run))
    item = next_within(steps)
    assert item["_status"] == "running" and "refused paused='false'" in item["message"]
    assert "refused step='abc'" in item["message"]
    m = next_within(steps)  # not paused by the string "false", not killed by "abc"
    assert m["step"] == 1
    run.write_control(paused=1, step=-2)
    item = next_within(steps)
    assert "refused paused=1" in item["message"] and "refused step=-2" in item["message"]
    assert next_within(steps)["step"] == 2


def test_a_live_value_that_makes_the_loss_nan_fails_at_once_and_does_not_poison_the_resume(
        tiny_base, tiny_rm, tmp_path, monkeypatch):  # noqa: F811
    import core.ppo_train as ppo_train

    real = ppo_train.policy_loss
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=4, checkpoint_every=1)

    def explodes_with_a_huge_lr(*args, **kwargs):  # stands in for what lr=0.9 does to a real model
        loss, stats = real(*args, **kwargs)
        return (loss * float("nan") if Run(tmp_path / "run").read_control().get("lr") == 0.9 else loss), stats

    monkeypatch.setattr(ppo_train, "policy_loss", explodes_with_a_huge_lr)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run")
    seen = []

    def set_lr_after_first(m):
        seen.append(m)
        if m["step"] == 1:
            run.write_control(lr=0.9)

    with pytest.raises(FloatingPointError):
        drive(run, ppo_train.train_ppo(cfg, run), on_metrics=set_lr_after_first)
    st = run.live_status()
    assert st["state"] == "failed" and "lr=0.9" in st["error"] and f"was {cfg.lr!r}" in st["error"]
    assert run.read_control()["lr"] == cfg.lr  # set back to the checkpoint's value
    drive(run, ppo_train.train_ppo(cfg, run))  # the resume is not poisoned
    assert read_metrics(run.path)["step"].tolist() == [1, 2, 3, 4]


# ----------------------------------------------------------------------------- one bad folder

def test_list_runs_shows_a_broken_folder_as_broken_and_the_rest_works(tmp_path, capsys):
    from lab.cli import main

    good = Run.create("pretrain", {}, root=tmp_path)
    drive(good, iter([{"step": 1, "lm/val_loss": 3.0}]))
    cases = {
        "status_list": lambda r: (r.path / "status.json").write_text("[1, 2]"),
        "metrics_scalars": lambda r: (r.path / "metrics.jsonl").write_text('42\nnull\n"x"\n[1]\n'),
        "metrics_folder": lambda r: (r.path / "metrics.jsonl").mkdir(),
        "string_metric": lambda r: (r.path / "metrics.jsonl").write_text('{"step": 1, "lm/val_loss": "low"}\n'),
        "stage_number": lambda r: (r.path / "config.json").write_text('{"stage": 5}'),
        "status_state": lambda r: (r.path / "status.json").write_text('{"state": 3, "iteration": "x"}'),
        "deep_json": lambda r: (r.path / "metrics.jsonl").write_text("[" * 100000 + "\n"),
    }
    for name, damage in cases.items():
        run = Run.create("pretrain", {}, out=tmp_path / name)
        run.release()
        damage(run)
    rows = {r["run_id"]: r for r in list_runs(tmp_path)}
    assert set(rows) == {good.run_id, *cases}
    assert rows[good.run_id]["state"] == "done" and rows[good.run_id]["key_value"] == 3.0
    assert rows["status_list"]["state"] == "failed" and rows["stage_number"]["state"] == "corrupt"
    assert rows["string_metric"]["key_value"] is None
    assert main(["runs", "--runs", str(tmp_path)]) == 0
    assert good.run_id in capsys.readouterr().out
    from lab.views import compare as compare_view, home as home_view  # the pages' own helpers, on the same folder

    assert len(home_view.runs_table(tmp_path)) == len(cases) + 1
    assert good.run_id in compare_view.choices(tmp_path)
    dirs = [tmp_path / name for name in rows]
    assert len(compare_view.metrics(dirs)) == len(dirs)
    compare_view.config_diff(dirs)


@pytest.mark.slow
def test_the_home_and_compare_pages_render_beside_a_broken_folder(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    good = Run.create("pretrain", {}, root=root)
    drive(good, iter([{"step": 1, "lm/loss": 3.0, "lm/val_loss": 3.0}]))
    for name, damage in (("a", lambda r: (r.path / "status.json").write_text("7")),
                         ("b", lambda r: (r.path / "metrics.jsonl").write_text("42\nnull\n")),
                         ("c", lambda r: (r.path / "metrics.jsonl").mkdir())):
        run = Run.create("pretrain", {}, out=root / name)
        run.release()
        damage(run)
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    at = AppTest.from_file(str(ROOT / "lab" / "app.py"), default_timeout=60)
    at.run()
    for pattern in ("*_Home.py", "*_Compare_runs.py", "*_Pretrain.py", "*_PPO.py"):
        page = next((ROOT / "pages").glob(pattern))
        at.switch_page(f"../pages/{page.name}").run()
        assert not at.exception, (page.name, [e.value for e in at.exception])


# ----------------------------------------------------------------------------- one-line CLI errors

def _one_line_error(capsys, argv, *words):
    from lab.cli import main

    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_cli_one_line_errors_for_bad_locations_and_inputs(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    tiny = ["pretrain", "--preset", "tiny", "--steps", "1", "--device", "cpu"]
    _one_line_error(capsys, tiny + ["--out", str(a_file)], "is a file")
    _one_line_error(capsys, tiny + ["--out", str(a_file / "below")], "is a file")
    _one_line_error(capsys, tiny + ["--runs", str(a_file)], "file")
    _one_line_error(capsys, ["runs", "--runs", str(a_file)], "is a file")
    _one_line_error(capsys, tiny + ["--out", "/proc/rlhf-lab-cannot-be-here"], "cannot be created")
    _one_line_error(capsys, tiny + ["--seed", "-1"], "seed")
    _one_line_error(capsys, tiny + ["--threads", "100000"], "threads", "[0,")
    _one_line_error(capsys, tiny + ["--batch", "2000000"], "batch_size", "8192")
    _one_line_error(capsys, tiny + ["--lr", "inf"], "lr")
    _one_line_error(capsys, ["app", "--port", "70000", "--no-browser"], "--port", "65535")
    big = tmp_path / "big.csv"
    big.write_text("prompt,chosen,rejected\n" + "a," + "b" * 200_000 + ",c\n")
    _one_line_error(capsys, ["reward", "--preset", "tiny", "--preferences", str(big), "--out", str(tmp_path / "r")],
                    "big.csv")
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "\n")
    _one_line_error(capsys, ["reward", "--preset", "tiny", "--preferences", str(deep), "--out", str(tmp_path / "r")],
                    "deep.jsonl")
    _one_line_error(capsys, ["reward", "--preset", "tiny", "--preferences", str(deep), "--margin", "inf",
                             "--out", str(tmp_path / "r")], "margin")
    assert not (tmp_path / "r").exists()


def test_ppo_refuses_a_language_model_as_its_reward(tiny_base, tmp_path, capsys):
    _one_line_error(capsys, ["ppo", "--preset", "tiny", "--policy", str(tiny_base), "--reward", str(tiny_base),
                             "--iterations", "1", "--device", "cpu", "--out", str(tmp_path / "p")],
                    "not a reward model")


@pytest.mark.parametrize("stage, fixed, bad_live", [
    ("ppo", ("--batch", "8"), ("--lr", "5")),
    ("grpo", ("--group-size", "4"), ("--beta", "-1")),
    ("dpo", ("--loss", "ipo"), ("--beta", "-1")),
])
def test_resume_refuses_what_defines_the_run_and_bad_live_values_by_name(tmp_path, capsys, stage, fixed, bad_live):
    run = _run_with_checkpoint(tmp_path, stage)
    for flag, value in (fixed, ("--seed", "3"), ("--device", "cpu"), ("--policy", "small")):
        _one_line_error(capsys, [stage, "--resume", str(run.path), flag, value], flag, "cannot change")
    _one_line_error(capsys, [stage, "--resume", str(run.path), *bad_live], bad_live[0][2:])
    _one_line_error(capsys, [stage, "--resume", str(run.path), "--out", str(tmp_path / "x")], "--out")


def test_an_interrupted_command_names_its_own_resume(tmp_path, capsys, monkeypatch):
    import core.grpo
    from lab.cli import main

    def interrupted(cfg, run=None):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(core.grpo, "train_grpo", interrupted)
    assert main(["grpo", "--preset", "tiny", "--iterations", "1", "--device", "cpu", "--out", str(tmp_path / "g")]) == 130
    assert f"rlhf-lab grpo --resume {tmp_path / 'g'}" in capsys.readouterr().err


def test_csv_export_escapes_formula_cells_and_import_restores_them(tmp_path):
    import csv

    from core.preferences import FORMULA_START, export_preferences, import_preferences

    rows = [{"prompt": "=HYPERLINK(\"http://x\")", "chosen": "+1 great", "rejected": "@home -bad"}]
    path = export_preferences(rows, tmp_path / "p.csv")
    with open(path, newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert "'=HYPERLINK(\"http://x\")" in cells
    assert not [c for c in cells if c.startswith(FORMULA_START)]  # nothing a spreadsheet would run
    back = import_preferences(path)[0]
    assert (back["prompt"], back["chosen"].strip(), back["rejected"].strip()) == (rows[0]["prompt"], "+1 great",
                                                                                 "@home -bad")
