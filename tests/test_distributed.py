"""Data parallel training under torchrun (2 CPU processes, gloo) matches one process on the same global batch."""

import os
import subprocess
import sys

import pytest

from core.distributed import Dist, DistributedError, check_divisible
from core.runs import read_metrics


def torchrun(args, tmp_path, nproc=2):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--standalone", "-m", "lab.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


def test_world_size_must_divide_batch():
    assert check_divisible(64, Dist(rank=0, world_size=2)) == 32
    with pytest.raises(DistributedError, match="not divisible by the world size 3"):
        check_divisible(64, Dist(rank=0, world_size=3))


def test_ddp_pretraining_matches_single_process(tmp_path):
    common = ["pretrain", "--preset", "tiny", "--steps", "12", "--device", "cpu", "--batch", "16"]
    single = tmp_path / "single"
    ddp = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "lab.cli", *common, "--threads", "1", "--out", str(single)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = torchrun([*common, "--out", str(ddp)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = read_metrics(single), read_metrics(ddp)
    assert len(a) == len(b) == 12
    # Same global batches, gradients averaged over ranks instead of over all tokens: close, not identical.
    diff = (a["lm/loss"] - b["lm/loss"]).abs().max()
    assert diff < 0.02, diff
    assert a["lm/loss"].iloc[-1] < a["lm/loss"].iloc[0] - 0.3


def test_ddp_rejects_indivisible_batch(tmp_path):
    r = torchrun(["pretrain", "--preset", "tiny", "--steps", "2", "--batch", "15", "--device", "cpu",
                  "--out", str(tmp_path / "x")], tmp_path)
    assert r.returncode != 0
    assert "not divisible by the world size 2" in r.stderr + r.stdout
