"""Mixed precision (core/precision.py): what auto picks, the cached CPU verdict, bad input, the field on every
stage config, the CLI flag, and that a bf16 step keeps weights, optimizer state and log-probs in fp32.

bf16 is forced on (or off) in each test, so none depends on this machine having fast bf16: a CPU without it
runs bf16 autocast emulated, correctly, just slowly (the models here are tiny)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from core import precision
from core.config import (ConfigError, PPOConfig, bon_preset, dpo_preset, from_dict, grpo_preset, ppo_preset,
                         pretrain_preset, w2s_preset)
from core.reward import reward_preset


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "precision.json"
    monkeypatch.setenv(precision.CACHE_ENV, str(path))
    return path


def fake_benchmark(monkeypatch, speedup, flags=None):
    """The CPU as auto sees it: its flags (None: they cannot tell, as on ARM) and its measured bf16 speedup."""
    calls = []
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(precision, "cpu_matmul_speedup", lambda *a, **k: calls.append(1) or speedup)
    return calls


@pytest.mark.parametrize("speedup,expected", [(0.06, "fp32"), (1.1, "fp32"), (2.0, "bf16")])
def test_where_flags_cannot_tell_auto_follows_the_benchmark_and_caches_it(cache, monkeypatch, speedup, expected):
    calls = fake_benchmark(monkeypatch, speedup)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("auto", "cpu") == expected
    assert len(calls) == 1  # the second call read the cache
    entry = json.loads(cache.read_text())[precision.machine_key()]
    assert entry["speedup"] == speedup


@pytest.mark.parametrize("flags,expected", [(True, "bf16"), (False, "fp32")])
def test_where_the_cpu_flags_tell_auto_never_measures(cache, monkeypatch, flags, expected):
    """Issue 28: a verdict measured under load, or per thread count, differed between runs and between ranks."""
    calls = fake_benchmark(monkeypatch, 2.0 if not flags else 0.06, flags=flags)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert calls == [] and not cache.exists()


def test_the_verdict_is_one_for_every_thread_count(cache, monkeypatch):
    """torchrun ranks and workers run with other thread counts than the process that measured first."""
    calls = fake_benchmark(monkeypatch, 2.0)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            assert precision.resolve_precision("auto", "cpu") == "bf16"
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 1 and len(json.loads(cache.read_text())) == 1


@pytest.mark.parametrize("forced,expected", [("1", "bf16"), ("0", "fp32")])
def test_the_environment_makes_auto_resolve_as_on_another_cpu(cache, monkeypatch, forced, expected):
    """RLHF_LAB_CPU_BF16 is how the suite runs as a machine with (without) fast bf16 would: .ci/run's bf16 pass."""
    calls = fake_benchmark(monkeypatch, 1.0, flags=not int(forced))
    monkeypatch.setenv(precision.FORCE_ENV, forced)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert calls == []
    monkeypatch.setenv(precision.FORCE_ENV, "yes")
    with pytest.raises(ConfigError, match="RLHF_LAB_CPU_BF16 must be 1 .* or 0"):
        precision.resolve_precision("auto", "cpu")


def test_this_machines_flags_agree_with_its_kernel():
    """cpu_bf16_flags reads torch's cpuinfo; on Linux x86 the kernel's own flags must say the same."""
    flags = precision.cpu_bf16_flags()
    cpuinfo = Path("/proc/cpuinfo")
    if flags is None or not cpuinfo.exists():
        pytest.skip("not an x86 Linux machine")
    words = cpuinfo.read_text().split()
    assert flags == ("avx512_bf16" in words or "amx_bf16" in words)


def test_fp32_never_measures_and_bf16_on_a_slow_cpu_warns_but_runs(cache, monkeypatch):
    calls = fake_benchmark(monkeypatch, 0.06, flags=False)
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert calls == []
    with pytest.warns(UserWarning, match="slower"):
        assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_the_real_benchmark_returns_a_ratio_and_restores_the_threads(cache):
    threads = torch.get_num_threads()
    speedup = precision.cpu_matmul_speedup(n=64, reps=2)
    assert speedup > 0 and speedup == speedup
    assert torch.get_num_threads() == threads


def test_gpu_without_bf16_and_apple_gpu_refuse_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(ConfigError, match="--precision auto or fp32"):
        precision.resolve_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_precision("auto", "cuda") == "bf16"
    assert precision.resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(ConfigError, match="cpu and cuda only"):
        precision.resolve_precision("bf16", "mps")


@pytest.mark.parametrize("make", [lambda: pretrain_preset("tiny", precision="fp16"),
                                  lambda: reward_preset("tiny", preferences="x.jsonl", precision="fp16"),
                                  lambda: ppo_preset("tiny", precision="fp16"),
                                  lambda: w2s_preset("tiny", precision="fp16"),
                                  lambda: grpo_preset("tiny", precision="fp16"),
                                  lambda: dpo_preset("tiny", preferences="x.jsonl", precision="fp16"),
                                  lambda: bon_preset("tiny", precision="fp16")])
def test_every_stage_validates_the_field(make):
    with pytest.raises(ConfigError, match=r"\.precision must be one of"):
        make().validate()


def test_old_config_json_with_bf16_still_loads():
    data = {k: v for k, v in ppo_preset("tiny").__dict__.items() if k != "precision"}
    assert from_dict(PPOConfig, {**data, "bf16": True}).precision == "auto"
    assert from_dict(PPOConfig, {**data, "bf16": False}).precision == "fp32"


def test_autocast_runs_matmuls_in_bf16_only_when_asked():
    a = torch.randn(4, 8)
    with precision.autocast("cpu", "bf16"):
        assert (a @ a.T).dtype == torch.bfloat16
    with precision.autocast("cpu", "fp32"):
        assert (a @ a.T).dtype == torch.float32
    from core.ppo_train import autocast as ppo_autocast  # the loop's helper: bf16 on the CPU too, not CUDA only
    with ppo_autocast(torch.device("cpu"), True):
        assert (a @ a.T).dtype == torch.bfloat16


def tiny_models():
    from core.model import no_dropout
    from core.rollout import Models, freeze

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=2,
                     pad_token_id=0)
    policy = GPT2LMHeadModel(cfg)
    ref = GPT2LMHeadModel(cfg)
    ref.load_state_dict(policy.state_dict())
    rm_cfg = GPT2Config(**{**cfg.to_dict(), "num_labels": 1})
    tok = type("Tok", (), {"eos_token_id": 2, "pad_token_id": 0})()
    return Models(no_dropout(policy), freeze(ref), freeze(GPT2ForSequenceClassification(rm_cfg)),
                  no_dropout(GPT2ForSequenceClassification(rm_cfg)), None, tok)


def test_a_bf16_ppo_step_keeps_weights_optimizer_state_and_logprobs_fp32():
    from core.ppo_train import advantages_and_returns, make_optimizer, ppo_update
    from core.rollout import rollout

    models = tiny_models()
    before = [p.detach().clone() for p in models.trainable()]
    optimizer = make_optimizer(models.trainable(), 1e-3, 0.0)
    prompts = torch.randint(3, 64, (8, 4), generator=torch.Generator().manual_seed(0))
    ro = rollout(models, prompts, torch.ones_like(prompts), 6, 1.0, torch.Generator().manual_seed(0),
                 stop_at_eos=False, bf16=True)
    for name in ("logprobs", "ref_logprobs", "values", "scores"):
        assert getattr(ro, name).dtype == torch.float32, name
    _, kl, advantages, returns = advantages_and_returns(ro, 0.05, "k1", 1.0, 0.95, False)
    assert kl.dtype == advantages.dtype == returns.dtype == torch.float32
    stats = ppo_update(models, optimizer, ro, advantages, returns, clip_eps=0.2, clip_value=0.2, vf_coef=0.1,
                       temperature=1.0, ppo_epochs=1, minibatches=2, grad_clip=1.0, bf16=True)
    assert all(v == v for k, v in stats.items() if isinstance(v, float))
    params = models.trainable()
    assert all(p.dtype == torch.float32 for p in params)
    assert any(not torch.equal(p, b) for p, b in zip(params, before))  # it did train
    state = [s for s in optimizer.state.values()]
    assert state and all(t.dtype == torch.float32 for s in state for k, t in s.items()
                         if k in ("exp_avg", "exp_avg_sq"))


def test_the_cli_flag_reaches_the_config_and_the_run_records_what_it_used(tmp_path, cache, monkeypatch):
    from lab.cli import build_parser, main
    from lab.cli.ppo import config_from_args

    args = build_parser().parse_args(["ppo", "--preset", "tiny", "--precision", "bf16"])
    assert config_from_args(args).precision == "bf16"
    assert config_from_args(build_parser().parse_args(["ppo", "--preset", "tiny"])).precision == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", "--precision", "fp16"])

    fake_benchmark(monkeypatch, 0.5, flags=False)  # auto -> fp32 on this "CPU"
    out = tmp_path / "pre"
    assert main(["pretrain", "--preset", "tiny", "--steps", "2", "--device", "cpu", "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["precision"] == "auto"
    assert info["precision"] == {"asked": "auto", "used": "fp32"}
    assert precision.used_by(info) == "fp32"


def test_a_bf16_pretrain_run_learns_and_saves_fp32_weights(tmp_path, cache):
    from safetensors import safe_open

    from core.config import to_dict
    from core.pretrain import pretrain
    from core.runs import Run
    from core.session import drive

    cfg = pretrain_preset("tiny", steps=6, eval_every=6, corpus_size=300, precision="bf16", device="cpu")
    run = Run.create("pretrain", to_dict(cfg), out=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "emulated and slower" on a CPU without fast bf16
        last = drive(run, pretrain(cfg, run))
    assert last["lm/val_loss"] == last["lm/val_loss"] and last["lm/val_loss"] < 10
    assert precision.used_by(run.info()) == "bf16"
    with safe_open(str(run.checkpoint_dir / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}



def test_the_page_caption_says_what_a_run_used(tmp_path):
    from core.runs import atomic_write_json

    atomic_write_json(tmp_path / "config.json", {"stage": "ppo", "config": {"precision": "auto"},
                                                 "precision": {"asked": "auto", "used": "fp32"}})
    assert precision.caption(tmp_path).startswith("Precision: fp32 (auto: bf16 is not faster")
    atomic_write_json(tmp_path / "config.json", {"stage": "ppo", "config": {"precision": "bf16"}})
    assert "decided when the run starts" in precision.caption(tmp_path)
    assert "before runs chose" in precision.caption(tmp_path / "missing")


@pytest.mark.precision
def test_a_precision_test_runs_as_on_a_bf16_cpu_in_every_process_it_starts():
    """The marker's promise (tests/conftest.py): auto is bf16 here and in a subprocess, as on a CPU with fast bf16;
    what a test pins stays pinned."""
    import subprocess
    import sys

    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    code = "from core.precision import resolve_precision as r; print(r('auto', 'cpu'), r('fp32', 'cpu'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["bf16", "fp32"]
