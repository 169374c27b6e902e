"""Data parallel training under torchrun (2 CPU processes, gloo) matches one process on the same global batch."""

import json
import os
import subprocess
import sys

import pytest

from core.distributed import Dist, DistributedError, check_divisible
from core.ppo_train import RATIO_EDGES
from core.runs import read_metrics

# Every comparison here is of 2 ranks against 1 process, number for number: it holds in fp32 only (bf16 rounds
# another reduction order differently, 3e-3 relative on rm/loss), so each pins --precision fp32. The marker runs
# them with auto forced to bf16 (tests/conftest.py): a comparison that forgot its pin fails on every machine.
pytestmark = pytest.mark.precision


def torchrun(args, tmp_path, nproc=2, env=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **(env or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--standalone", "-m", "lab.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


def single_and_ddp(common, tmp_path, ddp_env=None):
    """Run the same stage command once in one process (1 thread) and once on 2 gloo ranks; returns the
    two run folders (tmp_path/single, tmp_path/ddp). The two runs are independent processes with one
    thread each, so they run at the same time (CI has 2 cores): their numbers do not depend on it."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    log = tmp_path / "single.log"
    with open(log, "w") as out:
        one = subprocess.Popen([sys.executable, "-m", "lab.cli", *common, "--threads", "1", "--out", str(single)],
                               stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            r = torchrun([*common, "--out", str(ddp)], tmp_path, env=ddp_env)
            one.wait(timeout=600)
        finally:
            if one.poll() is None:
                one.kill()
    assert one.returncode == 0, log.read_text()[-2000:]
    assert r.returncode == 0, r.stderr[-3000:]
    return single, ddp


def test_world_size_must_divide_batch():
    assert check_divisible(64, Dist(rank=0, world_size=2)) == 32
    with pytest.raises(DistributedError, match="not divisible by the world size 3"):
        check_divisible(64, Dist(rank=0, world_size=3))


def test_ddp_pretraining_matches_single_process(tmp_path):
    common = ["pretrain", "--preset", "tiny", "--steps", "12", "--device", "cpu", "--batch", "16", "--precision", "fp32"]
    single, ddp = single_and_ddp(common, tmp_path)
    a, b = read_metrics(single), read_metrics(ddp)
    assert len(a) == len(b) == 12
    # Same global batches, gradients averaged over ranks instead of over all tokens: close, not identical.
    diff = (a["lm/loss"] - b["lm/loss"]).abs().max()
    assert diff < 0.02, diff
    assert a["lm/loss"].iloc[-1] < a["lm/loss"].iloc[0] - 0.3


def test_ddp_ppo_matches_single_process(tmp_path):
    """2 gloo ranks vs 1 process, same global batch of 32 prompts, 3 PPO iterations on the shipped weak policy
    and RM (tiny preset: 2 epochs x 2 minibatches).

    Why the metrics can be compared this tightly: with RLHF_LAB_DDP_REPLICATED_ROLLOUT=1 each rank samples
    the whole global rollout with the shared generator and keeps its 16 rows, so the sampled tokens are the
    single process's, token for token (checked exactly via the response lengths). From there the DDP path is
    exact in arithmetic, not just close: advantages are whitened with the global statistics, each rank trains
    on its own rows of the same global minibatches with its loss scaled by its share of the minibatch's tokens,
    so the averaged gradient IS the single-process gradient; the metrics are rank means of equal shares. What
    is left is float32 summation order (a forward over 16 rows instead of 32, a sum split in two), ~1e-7
    relative, carried through 6 Adam steps; 1e-4 relative leaves a wide margin for that yet fails on a real
    mistake (whitening each rank's advantages by its own statistics moves loss/policy_avg by ~14% and
    objective/scores at iteration 2 by ~20%)."""
    common = ["ppo", "--preset", "tiny", "--policy", "weak", "--reward", "reward", "--iterations", "3",
              "--device", "cpu", "--precision", "fp32"]
    single, ddp = single_and_ddp(common, tmp_path, ddp_env={"RLHF_LAB_DDP_REPLICATED_ROLLOUT": "1"})
    a, b = read_metrics(single), read_metrics(ddp)
    assert len(a) == len(b) == 3
    assert a["objective/response_length"].tolist() == b["objective/response_length"].tolist()
    for key in ("objective/scores", "objective/kl", "objective/entropy", "loss/policy_avg", "loss/value_avg",
                "policy/approxkl_avg", "policy/clipfrac_avg", "val/ratio"):
        assert b[key].tolist() == pytest.approx(a[key].tolist(), rel=1e-4, abs=1e-6), key
    # The histograms hold the same tokens. Before the first step every ratio is 1 +- float noise, right on the
    # bin edge at 1.0, so the two bins either side of it are compared merged; elsewhere a token may still sit
    # on an edge, hence 1% slack.
    one = RATIO_EDGES.index(1.0)  # bins one-1 | one meet at 1.0
    for ca, cb in zip(a["hist/ratio_counts"], b["hist/ratio_counts"]):
        ca = ca[:one - 1] + [ca[one - 1] + ca[one]] + ca[one + 1:]
        cb = cb[:one - 1] + [cb[one - 1] + cb[one]] + cb[one + 1:]
        assert sum(ca) == sum(cb)
        assert sum(abs(x - y) for x, y in zip(ca, cb)) <= 0.01 * sum(ca), (ca, cb)
    assert not list((tmp_path / "ddp").glob("*rank*"))  # one run folder, written by rank 0 only
    assert (ddp / "checkpoint" / "config.json").exists()


def reward_pairs(tmp_path, n_pairs=56):
    """Clean pairs; after the 10% prompt hold-out, 56 leave 51 to train on (3 batches of 16, then 3 pairs that
    split 1 | 2 over two ranks) and 73 leave 65 (then 1 pair: one rank trains on it, the other holds none)."""
    from core.preferences import export_preferences
    from core.reward import split_by_prompt
    from tests.support import clean_pairs

    rows = clean_pairs(n_pairs)
    train, _ = split_by_prompt(rows, 0.1, seed=0)
    assert len(train) % 16 == {56: 3, 73: 1}[n_pairs]
    return export_preferences(rows, tmp_path / "pairs.jsonl"), len(train)


@pytest.mark.parametrize("n_pairs", [56, 73])
def test_ddp_reward_matches_single_process(tmp_path, n_pairs):
    """2 gloo ranks vs 1 process, reward model on the shipped weak base (tiny preset: 2 epochs, batches of 16).

    Why exact up to float summation order: both draw the same shuffled global batches; dropout is off and the
    padding is to the right, so a pair scores the same in a batch of 8 as in a batch of 16; each rank scales its
    mean loss by its share of the global batch, so the averaged gradient is the gradient of the mean over the
    global batch, also for the short last batch of each epoch. Measured: without that scaling (a plain mean of
    the rank means) the 1 | 2 split of the 56-pair case moves rm/loss by up to 1.6% from step 5 on; in the
    73-pair case it only halves one step's gradient, which clipping and Adam hide (kept for the rank that
    holds no pair)."""
    prefs, n_train = reward_pairs(tmp_path, n_pairs)
    common = ["reward", "--preset", "tiny", "--preferences", str(prefs), "--base", "weak", "--batch", "16",
              "--device", "cpu", "--precision", "fp32"]
    single, ddp = single_and_ddp(common, tmp_path)
    a, b = read_metrics(single), read_metrics(ddp)
    assert len(a) == len(b) == 2 * -(-n_train // 16)
    for key in ("rm/loss", "rm/accuracy", "rm/margin", "rm/lr"):
        assert b[key].tolist() == pytest.approx(a[key].tolist(), rel=1e-4, abs=1e-6), key
    fa, fb = a.iloc[-1], b.iloc[-1]
    for key in ("rm/val_loss", "rm/val_accuracy", "rm/gold_agreement", "rm/norm_gain"):
        assert fb[key] == pytest.approx(fa[key], rel=1e-4, abs=1e-6), key
    # Not rm/norm_bias (-raw mean / std): the loss sees only score differences, so the raw scores' common
    # offset has a zero gradient up to float noise, which Adam scales up to lr-sized steps; the two runs'
    # offsets drift apart (73 pairs: raw mean 0.00912 vs 0.00906, std equal to 1e-6). Normalisation removes it,
    # so the saved, normalised scores agree.
    sa, sb = (json.loads((folder / "scores.json").read_text()) for folder in (single, ddp))
    assert sb["base_samples"]["text"] == sa["base_samples"]["text"]
    for got, want in ((sb["val"]["chosen"], sa["val"]["chosen"]), (sb["val"]["rejected"], sa["val"]["rejected"]),
                      (sb["base_samples"]["score"], sa["base_samples"]["score"])):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4)
    # one run folder, written by rank 0 only: the others made no run under the default ./runs either
    assert (ddp / "checkpoint" / "model.safetensors").exists() and (ddp / "scores.json").exists()
    assert not (tmp_path / "runs").exists()


def _grads_worker(rank, world, init_file, out_dir):
    """One gloo rank: gradient 'rank + 1' everywhere, rank 1 raises the NaN flag."""
    import torch
    import torch.distributed as dist

    from core.distributed import Dist, all_reduce_grads

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
        for p in params:
            p.grad = torch.full_like(p, float(rank + 1))
        params[1].grad = None if rank == 0 else params[1].grad  # a rank without a gradient counts as zeros
        flags = all_reduce_grads(params, Dist(rank=rank, world_size=world), flag=torch.tensor(float(rank == 1)))
        torch.save({"flags": float(flags), "g0": params[0].grad, "g1": params[1].grad}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_reduce_grads_averages_and_tells_every_rank_about_a_nan(tmp_path):
    """The PPO loop's guard against a hang: a rank whose loss is NaN does not raise alone (the other rank
    would wait forever in the all-reduce); its flag reaches every rank in the same collective."""
    import torch
    import torch.multiprocessing as mp

    mp.spawn(_grads_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert got["flags"] == 1.0  # both ranks know that one rank went NaN
        assert torch.equal(got["g0"], torch.full((3,), 1.5))  # mean of 1 and 2
        assert torch.equal(got["g1"], torch.full((2, 2), 1.0))  # mean of 0 (no grad) and 2


def test_ddp_refuses_an_indivisible_batch_for_every_stage(tmp_path):
    """pretrain (15 over 2 ranks), ppo (32 prompts over 3) and reward (15 over 2) refuse by name, before a run folder
    exists. The three torchruns run at the same time: each only starts, imports and refuses (three in a row cost
    ~40 s of CI for an early config check)."""
    prefs, _ = reward_pairs(tmp_path)
    cases = [(["pretrain", "--preset", "tiny", "--steps", "2", "--batch", "15"], 2,
              "not divisible by the world size 2"),
             (["ppo", "--preset", "tiny", "--policy", "weak", "--iterations", "1"], 3,
              "batch_size 32 is not divisible by the world size 3"),
             (["reward", "--preset", "tiny", "--preferences", str(prefs), "--base", "weak", "--batch", "15"], 2,
              "RewardConfig.batch_size 15 is not divisible by the world size 2")]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                               "--standalone", "-m", "lab.cli", *args, "--device", "cpu",
                               "--out", str(tmp_path / f"x{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
             for i, (args, nproc, _) in enumerate(cases)]
    for i, (proc, (args, _, message)) in enumerate(zip(procs, cases)):
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode != 0 and message in out, (args[0], out[-2000:])
        assert not (tmp_path / f"x{i}").exists(), args[0]  # refused before a run folder was made
