"""The PPO loop (core/ppo_train.py): the lean forward equals HF's, a seeded tiny run raises the proxy score,
live control through control.json (change, refuse, pause, step, resume, stop), resume after stop, NaN -> failed,
and the CLI's `ppo` and `set` commands. Everything on the tiny preset, in seconds, with no timing assumptions."""

from __future__ import annotations

import json

import pytest
import torch

from core import gpt2_lean as lean
from core.config import ConfigError, from_dict, ppo_preset, preset_model, to_dict
from core.model import build_lm, left_pad, load_lm, save_checkpoint, scorer_from_lm
from core.ppo_train import train_ppo
from core.runs import Run, read_jsonl, read_metrics
from core.session import drive
from tests.support import next_within, statused, tiny_cfg


# ----------------------------------------------------------------------------- the lean forward

def test_lean_forward_and_generation_match_hf(tiny_base):
    lm, tok = load_lm(tiny_base)
    lm.eval()
    ids, mask = left_pad(tok, ["the acting was great", "i", "the plot of this movie was"])
    ours = lean.hidden_states(lm.transformer, ids, mask)
    hf = lm.transformer(input_ids=ids, attention_mask=mask, position_ids=lean.position_ids_of(mask)).last_hidden_state
    torch.testing.assert_close(ours * mask[..., None], hf * mask[..., None], atol=1e-5, rtol=1e-4)
    assert torch.isfinite(ours).all()  # padding queries attend to themselves, never to nothing
    for m in (mask, None):  # the last block on the kept positions only gives the same numbers
        kept = lean.hidden_states(lm.transformer, ids, m, keep_from=3)
        torch.testing.assert_close(kept * mask[:, 3:, None], lean.hidden_states(lm.transformer, ids, m)[:, 3:]
                                   * mask[:, 3:, None], atol=1e-5, rtol=1e-4)
    resp, rmask, logprobs = lean.generate(lm, ids, mask, 10, tok.eos_token_id, tok.pad_token_id, 0.8,
                                          torch.Generator().manual_seed(0))
    full, fmask = torch.cat([ids, resp], 1), torch.cat([mask, rmask], 1)
    logits = lm(input_ids=full, attention_mask=fmask, position_ids=lean.position_ids_of(fmask)).logits
    expected = torch.log_softmax(logits[:, ids.shape[1] - 1:-1] / 0.8, -1).gather(2, resp[..., None])[..., 0]
    torch.testing.assert_close(logprobs, expected * rmask, atol=1e-4, rtol=1e-4)
    assert (resp[rmask == 0] == tok.pad_token_id).all()


# ----------------------------------------------------------------------------- learning

def test_rows_sharing_a_prompt_run_it_once_with_the_same_numbers_gradients_and_samples(tiny_base):
    """A GRPO group (G responses to one prompt) or a DPO pair runs its prompt once (prefix_len): the hidden states,
    the gradients and the sampled log-probs must be those of the plain forward over every row."""
    lm, tok = load_lm(tiny_base)
    lm.eval()
    G = 3
    ids, mask = left_pad(tok, ["the acting was great", "i"])                     # (2, P), the second left-padded
    ids, mask = ids.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)        # (6, P): two groups of 3
    P = ids.shape[1]
    resp = torch.randint(5, len(tok), (ids.shape[0], 6), generator=torch.Generator().manual_seed(0))
    rmask = torch.ones_like(resp)
    rmask[1, 3:] = 0                                                             # one response ended early
    full, fmask = torch.cat([ids, resp], 1), torch.cat([mask, rmask], 1)
    first, index = lean._shared_prefix(full, fmask, P)                           # the shared path is taken
    assert index.tolist() == [index[0]] * 3 + [index[3]] * 3 and len(first) == 2
    for keep_from in (0, P - 1, P + 2):
        w = fmask[:, keep_from:, None].float()
        outs, grads = [], []
        for prefix_len in (0, P):
            lm.zero_grad()
            h = lean.hidden_states(lm.transformer, full, fmask, keep_from=keep_from, prefix_len=prefix_len)
            (h * w).pow(2).sum().backward()
            outs.append(h.detach() * w)
            grads.append(torch.cat([p.grad.flatten() for p in lm.transformer.parameters() if p.grad is not None]))
        torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)
    # generation fills the cache of every row of a group from one prefill
    resp, rmask, logprobs = lean.generate(lm, ids, mask, 8, tok.eos_token_id, tok.pad_token_id, 1.0,
                                          torch.Generator().manual_seed(0))
    full, fmask = torch.cat([ids, resp], 1), torch.cat([mask, rmask], 1)
    logits = lm(input_ids=full, attention_mask=fmask, position_ids=lean.position_ids_of(fmask)).logits
    expected = torch.log_softmax(logits[:, P - 1:-1], -1).gather(2, resp[..., None])[..., 0]
    torch.testing.assert_close(logprobs, expected.detach() * rmask, atol=1e-4, rtol=1e-4)
    # the reward model reads each row's last real token, shared prompt or not (its last block runs from the
    # earliest last token on only)
    from core.model import scorer_from_lm, sequence_scores
    from core.rollout import sequence_score
    scorer = scorer_from_lm(lm).eval()
    with torch.no_grad():
        expected = sequence_scores(scorer, full, fmask).float()
        for prefix_len in (0, P):
            torch.testing.assert_close(sequence_score(scorer, full, fmask, prefix_len), expected, atol=1e-5, rtol=1e-4)


def test_written_out_attention_equals_the_fused_kernel_a_gpu_runs():
    """_attend on the CPU is three ops; on a GPU it hands the same additive mask to scaled_dot_product_attention.
    Both must be one function: causal, a shared prefix with padding, fewer queries than keys."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, n, 8, generator=g) for n in (5, 7, 7))
    allowed = torch.ones(7, 7, dtype=torch.bool).tril()[2:][None, None].repeat(3, 1, 1, 1)   # (3, 1, 5, 7)
    allowed[1, :, :, :2] = False                                                             # row 1: 2 pad keys
    bias = lean._additive(allowed, q.dtype)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(lean._attend(q, k, v, bias), fused)


def test_sampling_by_inverse_cdf_draws_each_token_with_its_probability():
    """The sampler generate() uses: frequencies match exp(logp) (a chi-square far below its 1e-6 quantile) and a
    token of probability 0 is never drawn, whatever the uniform (its CDF step is empty)."""
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.1, 0.2, 0.3, 0.4, 0.0]])
    logp = probs.log()
    gen = torch.Generator().manual_seed(0)
    n = 20_000
    draws = lean.sample(logp.repeat(n, 1), gen).view(n, 3)                  # row-major: (n, 3)
    for row in range(3):
        counts = torch.bincount(draws[:, row], minlength=5).double()
        assert counts[probs[row] == 0].sum() == 0
        expected = probs[row].double() * n
        real = expected > 0
        chi2 = (((counts - expected)[real] ** 2) / expected[real]).sum().item()
        assert chi2 < 30, (row, counts.tolist())          # df <= 3: P(chi2 > 30) < 1e-6


def test_seeded_tiny_ppo_raises_the_proxy_score(tiny_base, tiny_rm, tmp_path):
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=12, kl_coef=0.0)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run")
    drive(run, train_ppo(cfg, run))
    df = read_metrics(run.path)
    assert len(df) == 12 and run.status()["state"] == "done"
    first, last = df["objective/scores"][:3].mean(), df["objective/scores"][-3:].mean()
    assert last > first + 0.5, (first, last)                  # std-1 scores: half a std in 12 tiny iterations
    assert df["objective/kl"].iloc[-1] > df["objective/kl"].iloc[0]   # it got there by moving away from the base
    for name in ("objective/gold", "objective/entropy", "policy/clipfrac_avg", "val/ratio", "params/clip_eps",
                 "time/tokens_per_s", "loss/value_avg", "objective/rlhf_reward", "objective/non_score_reward"):
        assert df[name].notna().all(), name
    row = df.iloc[-1]
    assert len(row["hist/ratio_edges"]) == len(row["hist/ratio_counts"]) + 1 and sum(row["hist/ratio_counts"]) > 0
    samples = read_jsonl(run.path / "samples.jsonl")
    assert {s["kind"] for s in samples} == {"base", "policy"}
    s = samples[-1]
    assert set(s) >= {"iteration", "kind", "prompt", "response", "score", "gold", "tokens", "kl"}
    assert len(s["tokens"]) == len(s["kl"])
    inspect = json.loads((run.path / "inspect.json").read_text())
    r = inspect["rows"][0]
    n = len(r["tokens"])
    for key in ("logprobs", "ref_logprobs", "kl", "rewards", "values", "advantages", "returns", "ratio", "clipped"):
        assert len(r[key]) == n, key
    assert inspect["iteration"] == 12 and "kl_coef" in inspect and "clip_eps" in inspect
    assert (run.checkpoint_dir / "model.safetensors").exists()
    assert (run.checkpoint_dir / "value" / "model.safetensors").exists()


def test_kl_penalty_keeps_kl_lower(tiny_base, tiny_rm, tmp_path):
    kls = {}
    for lam in (0.0, 1.0):
        cfg = tiny_cfg(tiny_base, tiny_rm, iterations=10, kl_coef=lam)
        kls[lam] = sum(m["objective/kl"] for m in list(train_ppo(cfg))[-3:]) / 3
    assert kls[1.0] < kls[0.0], kls


def test_shared_value_head_runs(tiny_base, tiny_rm):
    rows = list(train_ppo(tiny_cfg(tiny_base, tiny_rm, iterations=2, value_model="shared")))
    assert len(rows) == 2 and all(r["loss/value_avg"] >= 0 for r in rows)


# ----------------------------------------------------------------------------- live control

def test_live_control_change_refuse_pause_step_resume_stop_and_resume_after_stop(tiny_base, tiny_rm, tmp_path):
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=20, checkpoint_every=100)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run", control={"paused": False, "stop": False, "step": 0})
    run.set_status("running", iteration=0)
    steps = statused(run, train_ppo(cfg, run))
    m = next_within(steps)
    assert m["step"] == 1 and m["params/clip_eps"] == pytest.approx(0.2)

    run.write_control(kl_coef=0.3, clip_eps=0.1, lr=1e-4, temperature=0.9)      # change
    m = next_within(steps)
    assert (m["step"], m["params/kl_coef"], m["params/clip_eps"]) == (2, 0.3, 0.1)
    assert (m["params/lr"], m["params/temperature"]) == (1e-4, 0.9)

    run.write_control(clip_eps=1.5, kl_coef="lots")                              # refused, run goes on
    item = next_within(steps)
    assert item["_status"] == "running" and "clip_eps" in item["message"] and "kl_coef" in item["message"]
    m = next_within(steps)
    assert m["step"] == 3 and m["params/clip_eps"] == 0.1 and m["params/kl_coef"] == 0.3
    assert "clip_eps" in m["control/rejected"]
    log = read_jsonl(run.path / "control_log.jsonl")
    assert [r["key"] for r in log if not r["accepted"]] == ["kl_coef", "clip_eps"]
    assert "clip_eps" in run.status()["message"]

    run.write_control(adaptive_kl=True, target_kl=0.5)                           # adaptive from the current lambda
    m = next_within(steps)
    assert m["params/adaptive_kl"] is True and m["params/kl_coef"] == pytest.approx(0.3)

    run.write_control(paused=True)                                                # pause
    assert next_within(steps) == {"_status": "paused", "step": 4, "message": "paused"}
    assert run.status()["state"] == "paused"
    metrics_before = len(read_metrics(run.path)) if (run.path / "metrics.jsonl").exists() else 0
    run.write_control(step=1)                                                     # exactly one iteration
    m = next_within(steps)
    assert m["step"] == 5
    run.write_control(step=2)
    assert next_within(steps)["step"] == 6
    assert metrics_before == 0  # the test drives the generator itself: nothing was logged behind its back

    run.write_control(paused=False)                                               # resume
    assert next_within(steps)["_status"] == "running"
    assert next_within(steps)["step"] == 7

    run.write_control(stop=True)                                                  # stop: checkpoint kept
    item = next_within(steps)
    assert item["_status"] == "stopped" and item["step"] == 7
    with pytest.raises(StopIteration):
        next_within(steps)
    info = json.loads((run.checkpoint_dir / "lab.json").read_text())
    assert info["iteration"] == 7 and info["stage"] == "ppo"

    # resume after stop: the iteration count continues, the stop is cleared, live values survive
    cfg2 = from_dict(type(cfg), run.config)
    cfg2.iterations = 9
    rows = [r for r in train_ppo(cfg2, run) if "_status" not in r]
    assert [r["step"] for r in rows] == [8, 9]
    assert rows[0]["params/clip_eps"] == 0.1
    assert run.read_control()["stop"] is False


def test_live_control_with_drive_in_a_thread(tiny_base, tiny_rm, tmp_path):
    """The way the app and the CLI do it: the trainer runs under drive(); another thread writes control.json."""
    import threading

    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=200, checkpoint_every=1000)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run")
    seen = []
    t = threading.Thread(target=drive, args=(run, train_ppo(cfg, run), seen.append), daemon=True)
    t.start()
    import time

    deadline = time.monotonic() + 120
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.write_control(stop=True)
    t.join(timeout=120)
    assert not t.is_alive()
    assert run.status()["state"] == "stopped"
    assert (run.checkpoint_dir / "model.safetensors").exists()
    assert 2 <= len(read_metrics(run.path)) < 200


# ----------------------------------------------------------------------------- failures and bad input

def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tiny_base, tiny_rm, tmp_path, monkeypatch):
    import core.ppo_train as ppo_train

    real = ppo_train.policy_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, stats = real(*args, **kwargs)
        return (loss * float("nan") if calls["n"] > 4 else loss), stats   # iteration 1 has 2x2 minibatches

    monkeypatch.setattr(ppo_train, "policy_loss", poisoned)
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=5, checkpoint_every=1)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run")
    with pytest.raises(FloatingPointError):
        drive(run, train_ppo(cfg, run))
    status = run.status()
    assert status["state"] == "failed" and "iteration 2" in status["error"]
    assert json.loads((run.checkpoint_dir / "lab.json").read_text())["iteration"] == 1


@pytest.mark.parametrize("bad", [dict(clip_eps=0.0), dict(clip_eps=1.0), dict(kl_coef=-0.1), dict(target_kl=0.0),
                                 dict(temperature=0.0), dict(minibatches=3), dict(response_length=0)])
def test_impossible_knobs_are_config_errors(bad):
    with pytest.raises(ConfigError):
        ppo_preset("tiny", **bad).validate()


def test_response_longer_than_context_is_refused(tiny_base, tiny_rm):
    n_ctx = preset_model("tiny").n_positions
    cfg = tiny_cfg(tiny_base, tiny_rm, response_length=n_ctx)
    with pytest.raises(ConfigError, match="context"):
        next(train_ppo(cfg))


def test_policy_and_reward_with_different_tokenizers_are_refused(tiny_base, tmp_path):
    from core.tokenizer import train_tokenizer

    other_tok = train_tokenizer(["completely different words here", "another corpus entirely"] * 50, 128)
    other = scorer_from_lm(build_lm(preset_model("tiny"), other_tok))
    save_checkpoint(other, other_tok, tmp_path / "other_rm")
    with pytest.raises(ConfigError, match="tokenizers"):
        next(train_ppo(ppo_preset("tiny", policy=str(tiny_base), reward=str(tmp_path / "other_rm"), device="cpu")))


# ----------------------------------------------------------------------------- CLI

def test_cli_ppo_set_and_resume(tiny_base, tiny_rm, tmp_path, capsys):
    from lab.cli import main

    out = tmp_path / "run"
    assert main(["ppo", "--preset", "tiny", "--policy", str(tiny_base), "--reward", str(tiny_rm), "--iterations",
                 "2", "--device", "cpu", "--out", str(out)]) == 0
    assert len(read_metrics(out)) == 2
    # a run that is not training takes live knobs for its resume, but not step/stop (nothing to steer)
    Run.open(out).set_status("stopped", iteration=2)
    assert main(["set", str(out), "kl_coef=0.2", "clip_eps=0.15", "adaptive_kl=false"]) == 0
    assert "applied when you resume it" in capsys.readouterr().out
    assert main(["set", str(out), "step=+1"]) == 2
    control = Run.open(out).read_control()
    assert (control["kl_coef"], control["clip_eps"], control["adaptive_kl"]) == (0.2, 0.15, False)
    for bad in (["clip_eps=1.5"], ["kl_coef=abc"], ["nonsense=1"], ["temperature=-1"], ["paused=maybe"], ["kl_coef"]):
        assert main(["set", str(out)] + bad) == 2, bad
    err = capsys.readouterr().err
    assert "clip_eps" in err and "nonsense" in err
    assert Run.open(out).read_control()["clip_eps"] == 0.15       # refused values never reach control.json
    assert main(["ppo", "--resume", str(out), "--iterations", "3"]) == 0
    df = read_metrics(out)
    assert list(df["step"]) == [1, 2, 3] and df["params/clip_eps"].iloc[-1] == 0.15
    assert main(["ppo", "--preset", "tiny", "--clip-eps", "1.2", "--out", str(tmp_path / "bad")]) == 2


def test_pipeline_ppo_stage(tiny_base, tiny_rm, tmp_path):
    from lab.cli.pipeline import STAGES, PipelineOptions, _ppo

    assert [name for name, _ in STAGES].index("ppo") == [name for name, _ in STAGES].index("reward") + 1
    folder = _ppo(PipelineOptions("tiny", 0, "cpu"), {"pretrain": tiny_base, "reward": tiny_rm}, tmp_path / "ppo")
    run = Run.open(folder)
    assert run.status()["state"] == "done" and len(read_metrics(folder)) == ppo_preset("tiny").iterations
    assert run.info()["parents"] == {"policy": str(tiny_base), "reward": str(tiny_rm)}


def test_minibatch_order_is_a_permutation_that_gives_every_rank_the_same_share():
    """Each minibatch takes one row of every block of `minibatches` consecutive rollout rows, so a rank that
    holds a contiguous slice of the rollout owns the same number of rows of every minibatch (no rank waits
    for the other at the gradient all-reduce), and the order still changes with the generator."""
    from core.ppo_train import minibatch_order

    g = torch.Generator().manual_seed(0)
    B, M = 64, 4
    mb = B // M
    orders = [minibatch_order(B, M, g) for _ in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(B))
        for j in range(M):
            rows = order[j * mb:(j + 1) * mb]
            assert sorted((rows // M).tolist()) == list(range(mb))  # one row per block
            for world in (2, 4, 8):
                shares = torch.bincount(rows // (B // world), minlength=world)
                assert shares.tolist() == [mb // world] * world
    assert not torch.equal(orders[0], orders[1])


def test_resume_after_a_crash_trains_lost_iterations_again_and_draws_each_once(tiny_base, tiny_rm, tmp_path):
    """A run killed after iteration 3 with its last checkpoint at 2 resumes at 3: the old row of iteration 3
    moves to metrics.rewound.jsonl (nothing is lost) and metrics.jsonl holds each iteration once."""
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=4, checkpoint_every=2)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "run")
    steps = train_ppo(cfg, run)
    for m in steps:  # what drive() does, until the process "dies" after logging iteration 3
        if "_status" not in m:
            run.log_metrics(m)
        if m.get("step") == 3:
            break
    steps.close()
    assert json.loads((run.checkpoint_dir / "lab.json").read_text())["iteration"] == 2
    assert read_metrics(run.path)["step"].tolist() == [1, 2, 3]

    drive(run, train_ppo(cfg, run))
    assert read_metrics(run.path)["step"].tolist() == [1, 2, 3, 4]
    assert [r["step"] for r in read_jsonl(run.path / "metrics.rewound.jsonl")] == [3]
    assert run.status()["state"] == "done"


def test_resume_reads_the_optimizer_state_beside_the_checkpoint_and_an_old_run_s_inside_it(
        tiny_base, tiny_rm, tmp_path, monkeypatch):
    """checkpoint/ is a plain save_pretrained folder (nothing to upload but the model); Adam's moments sit
    in <run>/trainer_state/ and a resume continues them. A run of the old layout (checkpoint/optimizer.pt)
    still resumes with its moments."""
    import shutil

    from core import ppo_train

    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=1, checkpoint_every=1)
    run = Run.create("ppo", to_dict(cfg), out=tmp_path / "new")
    drive(run, train_ppo(cfg, run))
    assert not [p.name for p in run.checkpoint_dir.iterdir() if p.suffix == ".pt" and p.name != "value_head.pt"]
    saved = torch.load(run.path / "trainer_state" / "optimizer.pt", weights_only=True)
    steps_at_checkpoint = int(next(iter(saved["state"].values()))["step"])
    old = tmp_path / "old"
    shutil.copytree(run.path, old)
    shutil.move(old / "trainer_state" / "optimizer.pt", old / "checkpoint" / "optimizer.pt")
    shutil.rmtree(old / "trainer_state")

    made = []
    real_make = ppo_train.make_optimizer
    monkeypatch.setattr(ppo_train, "make_optimizer", lambda *a, **k: made.append(real_make(*a, **k)) or made[-1])
    for path in (run.path, old):
        more = tiny_cfg(tiny_base, tiny_rm, iterations=2, checkpoint_every=1)
        resumed = Run.open(path)
        drive(resumed, train_ppo(more, resumed))
        assert read_metrics(path)["step"].tolist() == [1, 2]
        # the moments continued: Adam's step count went on from the checkpoint's (a fresh start counts from 0)
        assert int(next(iter(made[-1].state.values()))["step"]) == 2 * steps_at_checkpoint, path.name
    assert (old / "trainer_state" / "optimizer.pt").exists()  # the old run now saves the new way
