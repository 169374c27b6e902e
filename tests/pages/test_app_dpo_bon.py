"""The DPO and best-of-n pages (AppTest through lab/app.py) and their figures (pure functions of DataFrames)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.bon import best_of_n
from core.config import bon_preset, dpo_preset, to_dict
from core.dpo import train_dpo
from core.runs import Run, read_metrics
from core.session import drive
from lab import live_panel
from lab.views import bon as bon_view, dpo as dpo_view

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "lab" / "app.py"


@pytest.fixture(scope="module")
def finished_runs(tiny_base, tiny_rm, tmp_path_factory):
    """A finished tiny DPO run and a finished tiny best-of-n run in one runs root."""
    root = tmp_path_factory.mktemp("runs_dpo_bon")
    pairs = root.parent / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": "was good and i liked it.", "rejected": "was bad."})
                             + "\n" for p in ("the plot", "the acting", "the music", "the battery", "i bought",
                                              "the ending", "the screen", "the price")))
    cfg = dpo_preset("tiny", preferences=str(pairs), policy=str(tiny_base), reward=str(tiny_rm), device="cpu",
                     batch_size=4, epochs=2, eval_every=2)
    dpo_run = Run.create("dpo", to_dict(cfg), root=root)
    drive(dpo_run, train_dpo(cfg, dpo_run))
    cfg = bon_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), n=[1, 2, 4], prompts=4, device="cpu")
    bon_run = Run.create("bon", to_dict(cfg), root=root)
    drive(bon_run, best_of_n(cfg, bon_run))
    return root, dpo_run.path, bon_run.path


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", ["6_DPO", "7_Best_of_n"])
def test_pages_render_on_a_fresh_runs_folder(tmp_path, monkeypatch, page):
    monkeypatch.setenv("RLHF_LAB_RUNS", str(tmp_path / "runs"))
    at = open_page(page)
    assert at.title and not at.error, [e.value for e in at.error]
    assert any("start one above" in i.value for i in at.info)


def test_bon_pickers_show_their_figures_and_a_refusal_names_the_field_as_shown(tmp_path, monkeypatch):
    from core.model import SHIPPED

    if not all((SHIPPED[n] / "model.safetensors").exists() for n in ("small", "reward")):
        pytest.skip("the shipped models are not in assets/")
    monkeypatch.setenv("RLHF_LAB_RUNS", str(tmp_path / "runs"))
    at = open_page("7_Best_of_n")
    assert "val loss" in at.selectbox(key="bon/policy").value
    assert "gold agreement" in at.selectbox(key="bon/reward").value
    at.text_input(key="bon/n").set_value("1,two").run()
    next(b for b in at.button if b.label == "Start best-of-n").click().run()
    said = [e.value for e in at.error]
    assert any(e.startswith("Not started: n must be comma-separated integers") for e in said), said
    assert not any("BoNConfig" in e for e in said), said


def test_pages_show_finished_runs(finished_runs, monkeypatch):
    root, dpo_dir, bon_dir = finished_runs
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    at = open_page("6_DPO")
    assert not at.error, [e.value for e in at.error]
    assert "done" in " ".join(m.value for m in at.markdown if "-badge[" in m.value)
    assert len(at.get("plotly_chart")) == 3
    table = at.dataframe[0].value
    assert list(table["step"]) == [0, 2, 4] and table["gold"].notna().all()
    # step 0's validation accuracy is no number (every pair a tie): the cell says so instead of "None"
    assert table["validation accuracy"].iloc[0].startswith("– (policy = reference")
    at = open_page("7_Best_of_n")
    assert not at.error, [e.value for e in at.error]
    assert list(at.dataframe[0].value["n"]) == [1, 2, 4]
    assert len(at.dataframe[1].value) == 4        # one prompt's max(n) samples


def test_dpo_figures_and_knobs(finished_runs):
    _, dpo_dir, _ = finished_runs
    df = read_metrics(dpo_dir)
    names = {t.name for t in dpo_view.logps_chart(df).data}
    assert {"chosen, mean of 10 batches (logps/chosen)", "rejected, held-out pairs"} <= names
    assert "eval/logps/chosen" in df.columns and df["eval/logps/chosen"].notna().iloc[0]   # step 0: the reference's
    assert len(dpo_view.margin_chart(df).data) >= 4 and len(dpo_view.eval_chart(df).data) == 3
    assert dpo_view.logps_chart(pd.DataFrame()).layout.annotations      # empty: says what it waits for
    assert live_panel.planned_total("dpo", Run(dpo_dir).config, df) == 4
    samples = dpo_view.samples_table(dpo_view.run_samples(dpo_dir))
    assert "policy (step 4)" in samples.columns and len(samples) > 0
    run = Run(dpo_dir)
    live_panel.set_knobs(run, beta=0.3)
    assert run.read_control()["beta"] == 0.3
    assert live_panel.knobs_in_force("dpo", run.config, run.read_control())["beta"] == 0.3
    with pytest.raises(ValueError, match="DPOConfig.beta"):
        live_panel.set_knobs(run, beta=-1.0)
    assert run.read_control()["beta"] == 0.3


def test_bon_figure_and_config(finished_runs):
    _, _, bon_dir = finished_runs
    df = read_metrics(bon_dir)
    fig = bon_view.bon_chart(df)
    assert [t.name for t in fig.data] == ["gold (hidden annotator)", "proxy (reward model)", bon_view.KL_BOUND,
                                          bon_view.KL_ESTIMATE]
    # issue 23: log n − (n−1)/n is an upper bound, not exact; the run's estimate of the KL itself stands beside it
    assert "upper bound" in bon_view.KL_BOUND and "exact" not in bon_view.CAPTIONS["bon"]
    assert ((0 <= df["bon/kl_estimate"]) & (df["bon/kl_estimate"] <= df["bon/kl_analytic"] + 1e-12)).all()
    assert {"KL bound log n − (n−1)/n (nats)", "KL estimate (nats)"} <= set(bon_view.bon_table(df).columns)
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="BoNConfig.n"):
        bon_view.bon_config(n="4,2")
    with pytest.raises(ValueError, match="BoNConfig.n"):
        bon_view.bon_config(n="1,two")
    assert bon_view.bon_config(n="1, 8").n == [1, 8]


@pytest.mark.slow
def test_jobs_start_dpo_and_bon_in_spawned_workers(tiny_base, tiny_rm, finished_runs, tmp_path):
    """The app's path: jobs.start validates, creates the run and trains it in a spawned process."""
    from lab import jobs

    pairs = Path(finished_runs[0]).parent / "pairs.jsonl"
    cfg = dpo_preset("tiny", preferences=str(pairs), policy=str(tiny_base), reward=str(tiny_rm), device="cpu",
                     batch_size=4, epochs=1, eval_every=100)
    dpo_run = jobs.start("dpo", cfg, tmp_path, control=dpo_view.initial_control(cfg))
    cfg = bon_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), n=[1, 2], prompts=4, device="cpu")
    bon_run = jobs.start("bon", cfg, tmp_path)
    for run in (dpo_run, bon_run):
        assert jobs.wait(run.path, timeout=180)["state"] == "done", jobs.error_details(run.path)
    assert list(read_metrics(dpo_run.path)["step"]) == [0, 1, 2]
    assert list(read_metrics(bon_run.path)["bon/n"]) == [1, 2]


def test_live_knobs_on_the_dpo_page_reach_control_json(finished_runs, tmp_path, monkeypatch):
    """A running DPO run (this process stands in for its worker): the page shows β and lr live, a moved β reaches
    control.json (no Apply button: the same rule as PPO's and GRPO's knobs), Pause writes paused."""
    import shutil

    root = tmp_path / "runs"
    live = root / "live-dpo"
    shutil.copytree(finished_runs[1], live)
    run = Run(live).acquire()  # this process owns the run (holds its lock), as a worker would: it is live
    run.set_status("running", iteration=2)
    run.write_control(beta=0.1, lr=2e-3, paused=False, stop=False, step=0)
    monkeypatch.setenv("RLHF_LAB_RUNS", str(root))
    at = open_page("6_DPO")
    assert "Knobs — live" in [h.value for h in at.subheader]
    assert [w.value for w in at.select_slider if w.label == "learning rate"] == [2e-3]  # the value in force
    beta = [w for w in at.number_input if w.label == "β"]
    assert beta, [w.label for w in at.number_input]
    beta[0].set_value(0.25).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert run.read_control()["beta"] == 0.25
    [b for b in at.button if b.label == "Pause"][0].click().run()
    assert run.read_control()["paused"] is True
