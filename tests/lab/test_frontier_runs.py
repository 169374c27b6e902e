"""A student's own runs on the Frontier (issue 23): scored by the sweep's own evaluation (its prompts, its base and
reward model), cached in the run folder, drawn as theirs; a run from another reward model is listed, not drawn."""

import pytest

from core import frontier as F
from core.config import bon_preset, frontier_preset, ppo_preset, to_dict
from core.runs import Run, list_runs, read_jsonl
from core.session import drive
from lab import frontier_runs as FR
from lab.views import frontier as V


def test_own_runs_are_the_sweeps_evaluation_and_marked_as_theirs(tiny_base, tiny_rm, tmp_path, monkeypatch):
    from core.bon import best_of_n
    from core.evaluate import evaluate_policy, load_judges
    from core.model import load_lm
    from core.ppo_train import train_ppo
    from lab.views.runs import write_meta

    root = tmp_path / "runs"
    # the sweep: the base model and best-of-{1, 2} (no training), on 4 evaluation prompts
    cfg = frontier_preset("tiny", methods=["bon"], bon=[1, 2], eval_prompts=4, policy=str(tiny_base),
                          reward=str(tiny_rm), device="cpu", threads=1)
    sweep = Run.create("frontier", to_dict(cfg), out=root / "sweep")
    drive(sweep, F.run_frontier(cfg, sweep))
    # the student's runs: PPO for 2 iterations and best-of-n with the sweep's n, both on the sweep's models; and
    # a PPO run against another reward model (its config says so; it need not train to be refused)
    pcfg = ppo_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), device="cpu", iterations=2,
                      checkpoint_every=2, batch_size=8, minibatches=1, ppo_epochs=1, sample_every=2)
    ppo = Run.create("ppo", to_dict(pcfg), root=root)
    drive(ppo, train_ppo(pcfg, ppo))
    write_meta(ppo.path, "my first PPO", "")
    bcfg = bon_preset("tiny", n=[1, 2], prompts=2, policy=str(tiny_base), reward=str(tiny_rm), device="cpu")
    bon = Run.create("bon", to_dict(bcfg), root=root)
    drive(bon, best_of_n(bcfg, bon))
    other = Run.create("ppo", to_dict(ppo_preset("tiny", policy=str(tiny_base), reward="reward")), root=root)

    items, problem = FR.beside(sweep.path, list_runs(root))
    by = {item["run_id"]: item for item in items}
    assert problem is None and set(by) == {ppo.run_id, bon.run_id, other.run_id}   # the sweep is no run of theirs
    assert by[ppo.run_id]["status"] == by[bon.run_id]["status"] == FR.PENDING
    assert by[other.run_id]["status"] == FR.APART and "reward model reward" in by[other.run_id]["reason"]
    assert FR.score_pending(items, sweep.path) == 2

    # the same evaluation as the sweep's: best-of-n's points are the sweep's own rows, number for number
    sweep_rows = F.read_frontier(sweep.path)
    own = V.own_points(items)
    for n in (1, 2):
        mine = own[(own["run"] == bon.run_id) & (own["setting"] == n)].iloc[0]
        theirs = sweep_rows[(sweep_rows["method"] == "bon") & (sweep_rows["setting"] == n)].iloc[0]
        for col in ("kl", "gold", "proxy", "kl_measured"):
            assert mine[col] == pytest.approx(theirs[col], rel=1e-9, abs=1e-12), (n, col)
    # and the PPO checkpoint is scored as the sweep scores a policy: its prompts, base, RM, samples
    judges = load_judges(cfg.policy, cfg.reward, cfg.eval_prompts, cfg.profile, cfg.response_length, 1.0, 0, "cpu")
    base_samples = [s["prompt"] for s in read_jsonl(sweep.path / "samples.jsonl") if s["method"] == "base"]
    assert [s["prompt"] for s in by[ppo.run_id]["rows"][0]["samples"]] == base_samples   # the sweep's prompts
    policy, _ = load_lm(ppo.checkpoint_dir)
    expected = evaluate_policy(policy, judges, F.SAMPLES_PER_EVAL)
    point = own[own["run"] == ppo.run_id].iloc[0]
    assert (point["method"], point["iteration"], point["setting_text"]) == ("ppo", 2, f"λ = {pcfg.kl_coef}")
    for col in ("kl", "gold", "proxy", "length"):
        assert point[col] == pytest.approx(expected[col], rel=1e-6, abs=1e-9), col
    assert point["kl"] > 0   # it moved away from the base model

    # cached in the run folder: the next redraw reads it and evaluates nothing
    def no_evaluation(*_, **__):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(F, "score_checkpoint", no_evaluation)
    monkeypatch.setattr(F, "bon_points", no_evaluation)
    again, _ = FR.beside(sweep.path, list_runs(root))
    assert {i["run_id"]: i["status"] for i in again} == {ppo.run_id: FR.SCORED, bon.run_id: FR.SCORED,
                                                         other.run_id: FR.APART}
    assert (ppo.path / FR.CACHE_FILE).exists()
    pd_again = V.own_points(again)
    assert pd_again[pd_again["run"] == ppo.run_id]["gold"].iloc[0] == point["gold"]

    # marked as theirs: a star per run with its name in the legend; the refused run is listed with its reason
    df, fits, _ = V.load(sweep.path)
    fig = V.frontier_figure(df, fits, "gold", V.own_points(again))
    stars = {t.name: t for t in fig.data if getattr(t.marker, "symbol", None) == V.OWN_SYMBOL}
    assert set(stars) == {"yours: my first PPO", f"yours: {bon.run_id}"}
    assert stars["yours: my first PPO"].y[0] == pytest.approx(point["gold"] - df[df["method"] == "base"]["gold"][0])
    table = V.own_table(df, again)
    assert list(table[table["your run"] == "my first PPO"]["on the plot"]) == ["yes (★)"]
    refused = table[table["your run"] == other.run_id].iloc[0]
    assert refused["on the plot"].startswith("no: not comparable (it optimised the reward model reward")
    assert not table.isna().any().any()
    assert any(line.startswith("Your run **my first PPO** (PPO, ") for line in V.own_lines(df, again))
