"""The reward-KL frontier (issue 13) and the common evaluation (issue 12): the math against known answers, the
evaluation of the base model against itself, and one tiny sweep (interrupted, then resumed) shared by the
sweep, CLI and page tests."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import frontier as F
from core.bon import bon_kl as bon_kl_analytic
from core.config import ConfigError, frontier_preset
from core.frontier import CSV_COLUMNS, bon_distribution, fit_gao, kl_categorical
from core.runs import read_jsonl
from lab.cli import main

# ----------------------------------------------------------------------------- Gao et al.'s fits


@pytest.mark.parametrize("form,alpha,beta", [("rl", 0.6, 0.25), ("bon", 0.9, 0.3)])
def test_fit_recovers_known_alpha_beta(form, alpha, beta):
    rng = np.random.default_rng(0)
    d = np.linspace(0.1, 5.0, 40)
    y = F.predict(d, alpha, beta, form) + rng.normal(0, 0.01, d.shape)
    fit = fit_gao(d, y, form)
    assert fit["alpha"] == pytest.approx(alpha, abs=0.02) and fit["beta"] == pytest.approx(beta, abs=0.02)
    assert fit["r2"] > 0.99 and fit["points"] == 40
    # the peak is where the fitted curve is highest (a dense grid agrees with the closed form)
    grid = np.linspace(1e-3, 30, 300_000)
    curve = F.predict(grid, fit["alpha"], fit["beta"], form)
    assert fit["d_star"] == pytest.approx(grid[curve.argmax()], rel=1e-3)
    assert fit["peak"] == pytest.approx(curve.max(), rel=1e-6)


def test_fit_without_a_peak_and_with_too_few_points():
    d = np.linspace(0.5, 4, 10)
    rising = fit_gao(d, F.predict(d, 0.5, -0.1, "rl"), "rl")          # beta < 0: the proxy that never turns down
    assert rising["beta"] < 0 and rising["d_star"] is None and rising["peak_in_range"] is False
    assert "at least 3" in fit_gao([1.0, 2.0], [0.1, 0.2], "rl")["skipped"]
    assert "KL 0" in fit_gao([0.0, 0.0, 0.0], [0.1, 0.2, 0.3], "bon")["skipped"]


# ----------------------------------------------------------------------------- best-of-n KL

def test_bon_kl_analytic_formula_exact_and_sampled():
    assert bon_kl_analytic(1) == 0.0
    assert bon_kl_analytic(4) == pytest.approx(math.log(4) - 0.75)
    assert bon_kl_analytic(np.int64(4)) == bon_kl_analytic(4)   # n read from an array
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError):
            bon_kl_analytic(bad)
    rng = np.random.default_rng(0)
    K = 4000                                  # a fine categorical: ties are rare, so the formula is nearly exact
    probs = rng.dirichlet(np.ones(K))
    rewards = rng.permutation(K).astype(float)
    for n in (2, 3, 4):
        pi_n = bon_distribution(probs, rewards, n)
        assert pi_n.sum() == pytest.approx(1.0)
        exact = kl_categorical(pi_n, probs)
        assert exact == pytest.approx(bon_kl_analytic(n), abs=5e-3)
        # sampled: draw n from the base, keep the best, average log pi_n(y) / pi(y) over the kept ones
        draws = rng.choice(K, size=(20_000, n), p=probs)
        best = draws[np.arange(len(draws)), rewards[draws].argmax(1)]
        sampled = float(np.mean(np.log(pi_n[best] / probs[best])))
        assert sampled == pytest.approx(bon_kl_analytic(n), abs=0.03)


def test_bon_kl_with_ties_is_below_the_formula():
    """Beirami et al. 2024: with few outcomes (ties) the formula is only an upper bound."""
    probs, rewards = np.array([0.5, 0.5]), np.array([0.0, 1.0])
    assert kl_categorical(bon_distribution(probs, rewards, 4), probs) < bon_kl_analytic(4)


def test_bon_log_ratio_estimates_the_kl_from_a_pool():
    rng = np.random.default_rng(1)
    n, prompts = 4, 3000
    estimates = [F.bon_log_ratio(rng.normal(size=n).max(), rng.normal(size=64), n) for _ in range(prompts)]
    assert np.mean(estimates) == pytest.approx(bon_kl_analytic(n), abs=0.08)


# ----------------------------------------------------------------------------- the config

@pytest.mark.parametrize("overrides,message", [
    (dict(methods=["ppo", "sac"]), "unknown method 'sac'"),
    (dict(ppo=[]), "sweep is empty"),
    (dict(ppo=[-0.1]), "kl_coef must be >= 0"),
    (dict(dpo=[0.0]), "beta must be > 0"),
    (dict(bon=[4, 2]), "increasing"),
    (dict(bon=[0, 1]), "integers >= 1"),
    (dict(eval_every=50), "eval_every"),
])
def test_bad_sweeps_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        frontier_preset("tiny", **overrides).validate()


def test_cli_bad_input_is_one_line(capsys, tmp_path):
    assert main(["frontier", "--preset", "tiny", "--methods", "ppo,sac", "--out", str(tmp_path / "a")]) == 2
    assert main(["frontier", "--preset", "tiny", "--ppo", ",", "--out", str(tmp_path / "b")]) == 2
    assert main(["frontier", "--preset", "tiny", "--bon", "1,x", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "unknown method 'sac'" in err[0] and "sweep is empty" in err[1] and "integers" in err[2]
    assert not any((tmp_path / x).exists() for x in "abc")  # nothing created for a refused sweep


# ----------------------------------------------------------------------------- the evaluation

def test_base_model_against_itself_has_zero_kl(capsys):
    assert main(["eval", "small", "--prompts", "4", "--response-length", "8", "--samples", "2",
                 "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["kl"] == 0.0 and out["reference"] == "small" and out["prompts"] == 4
    assert {"gold", "proxy", "length"} <= set(out) and len(out["samples"]) == 2
    assert all(s["kl"] == 0.0 and s["response"] is not None for s in out["samples"])


def test_eval_refuses_a_missing_policy(capsys, tmp_path):
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one tiny sweep, interrupted and resumed

@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """A tiny PPO + best-of-n sweep, interrupted (Ctrl+C) half-way through its second PPO setting, then resumed
    with --resume. Returns (run folder, rows of the first setting before the interruption, points trained on
    resume, rows of the interrupted setting at the interruption)."""
    from core.config import to_dict
    from core.runs import Run
    from core.session import drive

    out = tmp_path_factory.mktemp("frontier") / "sweep"
    cfg = frontier_preset("tiny", methods=["ppo", "bon"], device="cpu", threads=1)
    run = Run.create("frontier", to_dict(cfg), out=out)
    iterations = cfg.iterations

    def interrupt(metrics):  # in the middle of the second PPO setting: one of its checkpoints already scored
        if metrics["step"] == 1 + iterations + iterations:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(run, F.run_frontier(cfg, run), on_metrics=interrupt)
    before = F.read_frontier(out)
    trained = []
    original = F.online_point

    def counting(cfg, judges, method, setting, seed, *rest):
        trained.append((method, setting, seed))
        return original(cfg, judges, method, setting, seed, *rest)

    F.online_point = counting
    try:
        assert main(["frontier", "--resume", "--out", str(out)]) == 0
    finally:
        F.online_point = original
    return out, before, trained


@pytest.mark.slow
def test_tiny_sweep_writes_complete_csv_and_fits(tiny_sweep):
    out, _, _ = tiny_sweep
    df = F.read_frontier(out)
    assert list(df.columns) == CSV_COLUMNS and not df.isna().any().any()
    cfg = frontier_preset("tiny")
    assert set(df["method"]) == {"base", "ppo", "bon"}
    ppo = df[df["method"] == "ppo"]
    assert sorted(ppo["setting"].unique()) == sorted(cfg.ppo)
    assert (ppo.groupby("setting")["iteration"].apply(sorted) == pd.Series({s: [1, 2] for s in cfg.ppo})).all()
    assert len(df) == len(df.drop_duplicates(["method", "setting", "seed", "iteration"]))
    bon = df[df["method"] == "bon"].set_index("setting")
    assert list(bon.index) == cfg.bon and np.allclose(bon["kl"], [bon_kl_analytic(n) for n in cfg.bon])
    base = df[df["method"] == "base"].iloc[0]
    assert base["kl"] == 0.0 and bon.loc[1, "gold"] == base["gold"]  # best-of-1 is the base model's own sample
    assert (ppo["kl"] > 0).all() and np.allclose(df["sqrt_kl"], np.sqrt(df["kl"].clip(lower=0)))
    fits = json.loads((out / "fits.json").read_text())
    for method in ("ppo", "bon"):
        for target in ("gold", "proxy"):
            fit = fits[method][target]
            assert {"alpha", "beta", "d_star", "peak", "r2"} <= set(fit), fit
    assert json.loads((out / "status.json").read_text())["state"] == "done"


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_recomputing(tiny_sweep):
    out, before, trained = tiny_sweep
    cfg = frontier_preset("tiny")
    first, second = cfg.ppo
    # the interruption kept the finished first setting and a half of the second
    assert set(before[before["method"] == "ppo"]["setting"]) == {first, second}
    assert trained == [("ppo", second, 0)]             # only the unfinished point trained again; bon was sampled
    after = F.read_frontier(out)
    kept = lambda df: df[(df["method"] == "ppo") & (df["setting"] == first)].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(kept(before), kept(after))
    assert (after[after["method"] == "ppo"].groupby("setting").size() == cfg.iterations).all()
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if not r.get("final")]
    assert steps == sorted(set(steps)), steps  # issue 22: the resume logged the base's step 1 (and more) twice


# ----------------------------------------------------------------------------- the page

@pytest.mark.slow
def test_frontier_page_renders_a_sweep(tiny_sweep, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    from tests.support import APP, TIMEOUT, texts

    out, _, _ = tiny_sweep
    root = tmp_path / "runs"
    shutil.copytree(out, root / "sweep", ignore=shutil.ignore_patterns("points"))
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("../pages/10_Frontier.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    # a fit too poor to read a peak from says so (issue 23) rather than naming one
    assert "PPO" in shown and "best-of-n" in shown and any(w in shown for w in ("peaks at", "does not peak",
                                                                                 "no peak is read"))
    tables = [t.value for t in at.dataframe]
    fits, bon_kl, at_kl, *_, samples = tables
    assert bon_kl["n"].tolist() == frontier_preset("tiny").bon                # analytic beside measured KL
    assert set(fits["method"]) == {"PPO", "best-of-n"} and "R²" in fits.columns
    assert {"PPO", "best-of-n"} <= set(at_kl.columns)
    assert {"base model", "PPO", "best-of-n"} <= set(samples["method"])  # generations beside the base model's
    assert len(at.get("plotly_chart")) == 2
    # a sweep started from the page is a job in its own process, and it stops when asked
    from lab import jobs

    [start] = [b for b in at.button if b.label == "Start sweep"]
    start.click().run()
    assert not at.exception, [e.value for e in at.exception]
    [new] = [r for r in jobs.list_runs(root) if r["stage"] == "frontier" and r["run_id"] != "sweep"]
    assert json.loads((Path(new["path"]) / "config.json").read_text())["config"]["preset"] == "tiny"
    jobs.stop(new["path"])
    assert jobs.wait(new["path"], timeout=180)["state"] in ("stopped", "done")


def synthetic_frontier() -> pd.DataFrame:
    """Two PPO settings on one curve (the penalty only stops earlier) and best-of-n, two seeds."""
    rows = [dict(method="base", setting=0, seed=0, iteration=0, kl=0.0, gold=0.1, proxy=0.0, length=20)]
    for seed in (0, 1):
        for setting, kls in ((0.0, [1.0, 4.0, 9.0]), (0.3, [0.5, 1.0, 2.0])):
            for it, kl in enumerate(kls, 1):
                rows.append(dict(method="ppo", setting=setting, seed=seed, iteration=it * 5, kl=kl,
                                 gold=0.1 + float(F.predict([kl ** 0.5], 0.3, 0.2, "rl")[0]) + 0.01 * seed,
                                 proxy=0.2 * kl, length=20))
        for n in (1, 4, 16):
            kl = bon_kl_analytic(n)
            rows.append(dict(method="bon", setting=n, seed=seed, iteration=0, kl=kl,
                             gold=0.1 + float(F.predict([kl ** 0.5], 0.5, 0.1, "bon")[0]), proxy=kl, length=20))
    df = pd.DataFrame(rows)
    df["sqrt_kl"] = np.sqrt(df["kl"])
    df["kl_measured"] = df["kl"]
    return df[CSV_COLUMNS]


def test_view_tables_from_a_known_frontier():
    from lab.views import frontier as V

    df = synthetic_frontier()
    fits = F.fit_frontier(df)
    assert fits["ppo"]["gold"]["alpha"] == pytest.approx(0.305, abs=0.01)   # seeds differ by 0.01 in gold
    assert fits["bon"]["gold"]["beta"] == pytest.approx(0.1, abs=1e-6) and fits["bon"]["gold"]["r2"] > 0.999
    table = V.at_kl_table(df, [1.0])
    assert table.iloc[0]["base model"] == "+0.100"
    assert table.iloc[1]["PPO"].endswith("(KL 1.00)")
    penalty = V.penalty_table(df)        # both settings on one curve: equal gain at the common sqrt(KL) 1.41
    assert penalty["common √KL"].tolist() == [1.41, 1.41]
    gains = penalty["gold gain there"].to_numpy()
    assert abs(gains[0] - gains[1]) < 0.02
    assert any("peaks at" in line for line in V.reading(df, fits))
    assert V.reading(df, fits)[0].startswith("The most gold over the base model is bought by **best-of-n**")
    small = df[(df["method"] != "ppo") | (df["kl"] <= 0.5)]   # a method that barely left the base: k stays > 0
    assert all(k > 0 for k in V.default_ks(small)) and V.default_ks(small)
    bon_kl = V.bon_kl_table(df)
    assert bon_kl["n"].tolist() == [1, 4, 16] and np.allclose(bon_kl["KL analytic"], bon_kl["KL measured"])
    fig = V.frontier_figure(df, fits, "gold")
    assert any("fit" in (t.name or "") for t in fig.data)


def test_online_methods_take_the_same_optimizer_steps_per_iteration():
    """The sweep compares methods per unit of KL: GRPO and RLOO get PPO's update schedule, not GRPO's own preset
    (1 epoch x 2 minibatches, which moved 8x less per iteration than PPO's 4 x 4)."""
    from core.config import frontier_preset
    from core.frontier import method_config

    for preset in ("default", "tiny"):
        cfg = frontier_preset(preset)
        _, ppo = method_config(cfg, "ppo", 0.0, 0)
        for method in ("grpo", "rloo"):
            _, grpo = method_config(cfg, method, 0.05, 0)
            assert grpo.epochs * grpo.minibatches == ppo.ppo_epochs * ppo.minibatches, (preset, method)
