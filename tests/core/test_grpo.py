"""GRPO/RLOO (core/grpo.py): the math against slow obvious loops, bad input refused before training, a seeded tiny
run raises the proxy, the CLI (`grpo`, `set`, resume) and live knobs reaching a job started like the app starts it."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest
import torch

from core.config import ConfigError, GRPOConfig, grpo_preset, to_dict
from core.grpo import (average_tokens, group_advantages, group_stats, grpo_loss, kl_penalised_scores,
                       rloo_advantages, train_grpo)
from core.runs import Run, read_jsonl, read_metrics
from core.session import drive


def tiny_cfg(tiny_base, tiny_rm, **kw):
    return grpo_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), device="cpu", **kw)


# ----------------------------------------------------------------------------- math against naive loops

def naive_group_advantages(scores, G, scale, eps):
    out = []
    for g in range(0, len(scores), G):
        group = scores[g:g + G]
        mean = sum(group) / G
        std = math.sqrt(sum((s - mean) ** 2 for s in group) / (G - 1))   # Bessel
        out += [(s - mean) / (std + eps) if scale else s - mean for s in group]
    return out


def naive_rloo(scores, G):
    out = []
    for g in range(0, len(scores), G):
        group = scores[g:g + G]
        out += [group[i] - sum(group[j] for j in range(G) if j != i) / (G - 1) for i in range(G)]
    return out


@pytest.mark.parametrize("G", [2, 3, 4])
@pytest.mark.parametrize("scale", [True, False])
def test_group_advantages_match_a_loop(G, scale):
    scores = torch.randn(4 * G, generator=torch.Generator().manual_seed(G), dtype=torch.float64)
    ours = group_advantages(scores, G, scale=scale, eps=1e-4)
    expected = naive_group_advantages(scores.tolist(), G, scale, 1e-4)
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("G", [2, 5])
def test_rloo_advantages_match_a_loop(G):
    scores = torch.randn(3 * G, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(rloo_advantages(scores, G), torch.tensor(naive_rloo(scores.tolist(), G),
                                                                         dtype=torch.float64))
    # the identity in the docstring: RLOO = G/(G-1) x GRPO's unscaled advantage
    torch.testing.assert_close(rloo_advantages(scores, G), G / (G - 1) * group_advantages(scores, G, scale=False))


def test_all_equal_group_gives_zero_advantage_never_nan():
    scores = torch.tensor([0.7, 0.7, 0.7, 0.7, 1.0, 2.0, 3.0, 4.0])
    for eps in (1e-4, 0.0):
        adv = group_advantages(scores, 4, eps=eps)
        assert torch.isfinite(adv).all() and (adv[:4] == 0).all() and (adv[4:] != 0).all()
    assert (rloo_advantages(scores, 4)[:4] == 0).all()
    stats = group_stats(scores, 4)
    assert stats["group/all_equal_frac"] == 0.5
    assert stats["group/score_std_mean"] == pytest.approx((0 + torch.tensor([1.0, 2, 3, 4]).std().item()) / 2)


@pytest.mark.parametrize("G", [1, 3])
def test_group_size_that_cannot_group_the_batch_is_refused(G):
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(8), G)
    with pytest.raises(ValueError, match="group_size"):
        rloo_advantages(torch.zeros(8), G)


def naive_grpo_loss(logp, old, ref, adv, mask, eps, beta, averaging):
    """Shao et al. eq. 3 token by token, k3 as eq. 4, then the chosen average."""
    rows = []
    for i in range(len(logp)):
        terms = []
        for t in range(len(logp[0])):
            if mask[i][t] == 0:
                continue
            ratio = math.exp(logp[i][t] - old[i][t])
            surrogate = min(ratio * adv[i], max(min(ratio, 1 + eps), 1 - eps) * adv[i])
            d = ref[i][t] - logp[i][t]
            k3 = math.exp(d) - d - 1
            terms.append(-(surrogate - beta * k3))
        rows.append(terms)
    if averaging == "token":
        flat = [x for r in rows for x in r]
        return sum(flat) / len(flat)
    return sum(sum(r) / len(r) for r in rows) / len(rows)


@pytest.mark.parametrize("averaging", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_grpo_loss_matches_the_paper_token_by_token(averaging, beta):
    g = torch.Generator().manual_seed(3)
    B, T = 4, 6
    logp, old, ref = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 2 for _ in range(3))
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[0, 4:] = 0
    mask[2, 1:] = 0  # rows of different lengths: the two averagings differ
    loss, stats = grpo_loss(logp, old, ref, adv, mask, 0.2, beta, "k3", averaging)
    expected = naive_grpo_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), 0.2, beta,
                               averaging)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert 0 <= stats["clipfrac"].item() <= 1 and stats["kl"].item() >= 0
    other = "sequence" if averaging == "token" else "token"
    assert grpo_loss(logp, old, ref, adv, mask, 0.2, beta, "k3", other)[0].item() != pytest.approx(expected)


def test_kl_in_reward_subtracts_beta_times_summed_kl():
    logp, ref = torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-1.5, -2.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = kl_penalised_scores(torch.tensor([2.0]), logp, ref, mask, 0.5, "k1")
    assert out.item() == pytest.approx(2.0 - 0.5 * ((-1.0 + 1.5) + 0.0))
    assert average_tokens(torch.ones(1, 3), mask, "sequence").item() == 1.0


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad,field", [(dict(group_size=1), "group_size"), (dict(group_size=3), "group_size"),
                                       (dict(beta=-0.1), "beta"), (dict(clip_eps=1.0), "clip_eps"),
                                       (dict(kl_in="both"), "kl_in"), (dict(advantage="ppo"), "advantage"),
                                       (dict(minibatches=5), "minibatches"), (dict(beta=float("nan")), "beta")])
def test_impossible_settings_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=f"GRPOConfig.{field}"):
        GRPOConfig(**bad).validate()


def test_cli_refuses_bad_group_size_before_creating_a_run(tmp_path, capsys):
    from lab.cli import main

    assert main(["grpo", "--group-size", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "group_size" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    assert main(["grpo", "--group-size", "3", "--prompts-per-iteration", "4", "--beta", "-1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "beta" in capsys.readouterr().err


# ----------------------------------------------------------------------------- learning and the run

def test_seeded_tiny_grpo_raises_the_proxy_score(tiny_base, tiny_rm, tmp_path):  # noqa: F811
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=10, beta=0.0)
    run = Run.create("grpo", to_dict(cfg), out=tmp_path / "run")
    drive(run, train_grpo(cfg, run))
    df = read_metrics(run.path)
    assert len(df) == 10 and run.status()["state"] == "done"
    first, last = df["objective/scores"][:3].mean(), df["objective/scores"][-3:].mean()
    assert last > first + 0.5, (first, last)                  # std-1 scores: half a std in 10 tiny iterations
    for name in ("objective/gold", "objective/kl", "objective/entropy", "policy/clipfrac_avg", "loss/policy_avg",
                 "group/score_std_mean", "group/all_equal_frac", "params/beta", "time/iteration_s"):
        assert df[name].notna().all(), name
    assert df["policy/clipfrac_avg"].max() > 0             # the second minibatch is off-policy: the clip acts
    samples = read_jsonl(run.path / "samples.jsonl")
    groups = [s for s in samples if s["kind"] == "group"]
    assert len(groups) == 10 and len(groups[-1]["responses"]) == cfg.group_size
    assert sum(groups[-1]["advantages"]) == pytest.approx(0, abs=1e-4)   # GRPO advantages centre on the group
    assert {s["kind"] for s in samples} == {"base", "policy", "group"}
    assert json.loads((run.checkpoint_dir / "lab.json").read_text())["stage"] == "grpo"


def test_rloo_with_kl_in_reward_runs(tiny_base, tiny_rm):  # noqa: F811
    rows = list(train_grpo(tiny_cfg(tiny_base, tiny_rm, iterations=2, advantage="rloo", kl_in="reward",
                                    loss_averaging="sequence")))
    assert len(rows) == 2 and rows[-1]["final"] and rows[-1]["objective/non_score_reward"] <= 0


def test_cli_grpo_set_and_resume(tiny_base, tiny_rm, tmp_path, capsys):  # noqa: F811
    from lab.cli import main

    out = tmp_path / "g"
    assert main(["grpo", "--preset", "tiny", "--policy", str(tiny_base), "--reward", str(tiny_rm), "--iterations",
                 "2", "--advantage", "rloo", "--device", "cpu", "--out", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done at iteration 2") and "gold" in last and "KL" in last
    assert main(["set", str(out), "step=1"]) == 2                   # a finished run cannot be stepped
    Run.open(out).set_status("stopped", iteration=2)                  # a stopped one can (picked up on resume)
    assert main(["set", str(out), "beta=-1"]) == 2
    assert "beta" in capsys.readouterr().err
    assert main(["set", str(out), "beta=0.2", "kl_coef=1"]) == 2      # PPO's knob is not GRPO's
    assert main(["set", str(out), "beta=0.2"]) == 0
    assert main(["grpo", "--resume", str(out), "--iterations", "3", "--temperature", "0.9"]) == 0
    df = read_metrics(out)
    assert df["step"].tolist() == [1, 2, 3] and df["params/beta"].iloc[-1] == pytest.approx(0.2)
    assert df["params/temperature"].iloc[-1] == pytest.approx(0.9)  # a live knob given as a resume flag
    # Adam's moments beside the shareable checkpoint, as PPO and DPO keep them
    assert (out / "trainer_state" / "optimizer.pt").is_file() and not (out / "checkpoint" / "optimizer.pt").exists()


@pytest.mark.slow
def test_live_knobs_reach_a_running_grpo_job(tiny_base, tiny_rm, tmp_path):  # noqa: F811
    """Started the way the page starts it (lab.jobs, a spawned process); control.json steers it."""
    from lab import jobs
    from core.session import initial_control

    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=400, checkpoint_every=1000, threads=1)
    run = jobs.start("grpo", cfg, tmp_path, control=initial_control(cfg))
    try:
        deadline = time.monotonic() + 120
        while len(read_jsonl(run.path / "metrics.jsonl")) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        run.write_control(beta=0.5, clip_eps=5.0)          # one good value, one the config refuses
        while time.monotonic() < deadline:
            rows = read_jsonl(run.path / "metrics.jsonl")
            if rows and rows[-1].get("params/beta") == 0.5:
                break
            time.sleep(0.2)
        assert rows[-1]["params/beta"] == 0.5 and rows[-1]["params/clip_eps"] == cfg.clip_eps
        log = read_jsonl(run.path / "control_log.jsonl")
        assert any(r["key"] == "clip_eps" and not r["accepted"] for r in log)
        assert jobs.status(run.path)["state"] == "running"  # the refusal did not end the run
        jobs.stop(run.path)
        assert jobs.wait(run.path, timeout=120)["state"] == "stopped"
        assert (run.checkpoint_dir / "model.safetensors").exists()
    finally:
        if jobs.status(run.path)["state"] in jobs.ACTIVE_STATES:
            jobs.kill(run.path)


# ----------------------------------------------------------------------------- the page

def grpo_page(timeout=60):
    """The page as the app serves it (through lab/app.py, whose __main__ guard keeps spawned jobs clean)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[2]
    at = AppTest.from_file(str(root / "lab" / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(str(Path("..") / "pages" / "5_GRPO_RLOO.py")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_renders_fresh_and_with_a_run_shows_the_group(tiny_base, tiny_rm, tmp_path, monkeypatch):  # noqa: F811
    from lab import live_panel

    assert set(live_panel.knobs_of("grpo")) == {"beta", "clip_eps", "lr", "temperature"}  # the fields marked live
    monkeypatch.setenv("RLHF_LAB_RUNS", str(tmp_path / "runs"))
    at = grpo_page()
    assert {"β (KL to the base model)", "clip ε", "temperature"} <= {s.label for s in at.slider}
    assert [r.options for r in at.radio if r.label == "method"] == [["GRPO", "RLOO"]]
    assert any(b.label == "Start GRPO" for b in at.button)
    assert any("No GRPO or RLOO run yet" in i.value for i in at.info)

    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=2)
    run = Run.create("grpo", to_dict(cfg), out=tmp_path / "runs" / "20260101-000000-grpo")
    drive(run, train_grpo(cfg, run))
    at = grpo_page()
    assert not any("No GRPO or RLOO run yet" in i.value for i in at.info)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("One group") for t in titles), titles
    table = at.dataframe[0].value
    assert len(table) == cfg.group_size and {"response", "proxy score", "advantage"} <= set(table.columns)


def test_group_view_pieces():
    from lab.views import grpo as grpo_view

    samples = [{"kind": "base", "prompt": "p"},
               {"kind": "group", "iteration": 3, "prompt": "the plot", "responses": ["a", "b"], "scores": [1.0, 2.0],
                "rewards": [1.0, 2.0], "advantages": [-0.7, 0.7], "gold": [0.1, 0.2], "kl": [0.0, 0.1]}]
    group = grpo_view.newest_group(samples)
    assert grpo_view.group_table(group)["response"].tolist() == ["b", "a"]      # sorted by advantage
    fig = grpo_view.group_figure(group)
    assert list(fig.data[0].y) == [0.7, -0.7] and "the plot" in fig.layout.title.text
    assert grpo_view.newest_group(samples, iteration=9) is None
    assert grpo_view.group_figure(None).layout.annotations  # an empty chart that says what it will show
    df = pd.DataFrame({"step": [1, 2, 3], "objective/scores": [0.0, 0.2, 0.4], "objective/gold": [0.1, 0.2, 0.2],
                       "objective/kl": [0.0, 0.3, 0.5], "params/beta": [0.04, 0.5, 0.5], "objective/entropy": [9, 8, 8],
                       "objective/rlhf_reward": [0.0, 0.1, 0.2]})
    for fig in (grpo_view.kl_chart(df), grpo_view.reward_chart(df), grpo_view.entropy_chart(df)):
        assert any("β 0.04→0.5" in (a.text or "") for a in fig.layout.annotations)   # the live change is marked
        titles = []
        fig.for_each_xaxis(lambda ax: titles.append(ax.title.text or ""))
        assert all("PPO" not in t for t in titles) and any("GRPO" in t for t in titles), titles
    assert all("λ" not in (t.name or "") for t in grpo_view.reward_chart(df).data)  # PPO's proxy − λ·KL line is not GRPO's


def test_hand_edited_flow_controls_are_refused_not_obeyed(tiny_base, tiny_rm, tmp_path):  # noqa: F811
    """control.json edited by hand: the string "false" must not pause, "abc" must not kill the trainer."""
    cfg = tiny_cfg(tiny_base, tiny_rm, iterations=2, checkpoint_every=100)
    run = Run.create("grpo", to_dict(cfg), out=tmp_path / "run", control={"paused": "false", "step": "abc"})
    steps = train_grpo(cfg, run)
    item = next(steps)
    assert item["_status"] == "running" and "refused paused='false'" in item["message"]
    assert "refused step='abc'" in item["message"]
    assert next(steps)["step"] == 1  # trained: neither paused nor dead
