"""lab/views/charts.py: every chart has a title, axis titles with units, a caption, and plots the data given."""

import math

import numpy as np
import pandas as pd
import pytest

from lab import glossary
from lab.views import charts


def labelled(fig):
    title = fig.layout.title.text
    x, y = fig.layout.xaxis.title.text, fig.layout.yaxis.title.text
    assert title and x and y, (title, x, y)
    assert "(" in x and "(" in y, f"axis titles need units: {x!r}, {y!r}"
    return fig


def pretrain_df():
    rows = [{"step": s, "lm/loss": 7.0 - 0.1 * s, "time/tokens_per_s": 1000.0 + s} for s in range(1, 21)]
    for r in rows:
        if r["step"] % 5 == 0:
            r["lm/val_loss"] = 7.2 - 0.1 * r["step"]
    return pd.DataFrame(rows)


def test_every_caption_is_one_line():
    for name, text in charts.CAPTIONS.items():
        assert text and "\n" not in text, name


def test_pretrain_loss_chart_plots_train_and_sparse_validation():
    fig = labelled(charts.pretrain_loss_chart(pretrain_df()))
    train, val = fig.data
    assert list(train.x) == list(range(1, 21))
    assert list(val.x) == [5, 10, 15, 20]  # NaN rows between evaluations are dropped, not drawn as gaps
    assert val.y[-1] == pytest.approx(7.2 - 2.0)
    labelled(charts.throughput_chart(pretrain_df()))


@pytest.mark.parametrize("fn", [charts.pretrain_loss_chart, charts.throughput_chart, charts.rm_loss_chart,
                                charts.rm_accuracy_chart])
def test_empty_input_gives_a_labelled_placeholder(fn):
    for df in (pd.DataFrame(), pd.DataFrame({"step": [1], "other": [1.0]})):
        fig = labelled(fn(df))
        assert len(fig.data) == 0 and fig.layout.annotations  # says "waiting…" rather than a blank box


def test_rm_charts_show_chance_lines_and_the_metrics_present():
    df = pd.DataFrame({"step": [1, 2, 3, 4], "rm/loss": [0.7, 0.6, 0.5, 0.4], "rm/accuracy": [0.5, 0.6, 0.7, 0.8],
                       "rm/val_accuracy": [None, 0.6, None, 0.7], "rm/gold_agreement": [None, None, None, 0.9]})
    loss = labelled(charts.rm_loss_chart(df))
    assert any(abs(s.y0 - math.log(2)) < 1e-9 for s in loss.layout.shapes)
    acc = labelled(charts.rm_accuracy_chart(df))
    assert [t.name for t in acc.data] == ["train (rm/accuracy)", "validation (rm/val_accuracy)",
                                          "agrees with gold (rm/gold_agreement)"]
    assert list(acc.data[1].x) == [2, 4] and list(acc.data[2].y) == [0.9]
    assert any(s.y0 == 0.5 for s in acc.layout.shapes)
    # reference labels sit in the right margin (never under a curve or cut at the edge); the legend
    # sits under the plot, never over the title
    for fig, text in ((acc, "chance"), (loss, "coin flip")):
        label = next(a for a in fig.layout.annotations if text in a.text)
        assert (label.xref, label.x, label.xanchor) == ("paper", 1.0, "left") and fig.layout.margin.r >= 60
        assert fig.layout.legend.y < 0


def test_score_histogram_overlays_chosen_and_rejected():
    fig = labelled(charts.score_histogram([1.0, 2.0, 3.0], [-1.0, 0.0]))
    assert [len(t.x) for t in fig.data] == [3, 2]
    assert "mean 2.00" in fig.data[0].name and "mean -0.50" in fig.data[1].name
    assert fig.layout.barmode == "overlay"
    assert len(labelled(charts.score_histogram([], [])).data) == 0


def test_label_counts_and_gold_gap():
    pairs = pd.DataFrame({"choice": ["a", "a", "b", "tie"], "gold_chosen": [1.0, 0.5, 0.2, 0.0],
                          "gold_rejected": [0.0, 0.7, 0.1, 0.0]})
    fig = labelled(charts.label_counts_chart(pairs))
    assert list(fig.data[0].x) == ["A", "B", "tie"] and list(fig.data[0].y) == [2, 1, 1]
    gap = labelled(charts.gold_gap_chart(pairs))
    assert sorted(gap.data[0].x) == pytest.approx(sorted([1.0, -0.2, 0.1, 0.0]))
    # 2 of the 3 pairs with a right answer agree; the gold tie is left out (the metric's rule too)
    assert "67% of 3 labels agree with gold" in gap.layout.title.text and "1 gold ties" in gap.layout.title.text
    assert charts.gold_agreement(pairs) == (pytest.approx(2 / 3), 3, 1)
    assert list(labelled(charts.label_counts_chart(pd.DataFrame({"prompt": ["p"] * 3}))).data[0].y) == [3]


def test_agreement_chart_groups_runs_by_tau():
    summary = pd.DataFrame({"run": ["r1", "r2", "r3"], "pairs": [100, 1000, 100], "tau": [0.1, 0.1, 1.0],
                            "gold_agreement": [0.7, 0.85, 0.6]})
    fig = labelled(charts.agreement_chart(summary))
    assert [t.name for t in fig.data] == ["τ = 0.1", "τ = 1"]
    assert list(fig.data[0].x) == [100, 1000] and fig.layout.xaxis.type == "log"


def test_compare_chart_overlays_runs_and_lists_metrics():
    a = pretrain_df()
    b = pretrain_df().assign(**{"lm/loss": lambda d: d["lm/loss"] + 1})
    c = pd.DataFrame({"step": [1], "rm/loss": [0.7]})
    fig = labelled(charts.compare_chart({"a": a, "b": b, "c": c}, "lm/loss"))
    assert [t.name for t in fig.data] == ["a", "b"]  # c never logged lm/loss
    assert np.allclose(np.array(fig.data[1].y) - np.array(fig.data[0].y), 1.0)
    metrics = charts.common_metrics({"a": a, "b": b, "c": c})
    assert metrics[:3] == ["lm/loss", "lm/val_loss", "time/tokens_per_s"] and metrics[-1] == "rm/loss" and "rm/loss" in metrics and "step" not in metrics


def test_side_by_side_has_the_base_model_and_the_scores_of_each_run():
    samples = {"λ = 0": [{"iteration": 1, "kind": "policy", "prompt": "p", "response": "old", "score": 0.1},
                         {"iteration": 0, "kind": "base", "prompt": "p", "response": "base", "score": 0.0, "gold": 0.2},
                         {"iteration": 2, "kind": "policy", "prompt": "p", "response": "new", "score": 0.9,
                          "gold": -0.3}],
               "λ = 0.1": [{"iteration": 0, "kind": "base", "prompt": "p", "response": "base", "score": 0.0},
                           {"iteration": 2, "kind": "policy", "prompt": "p", "response": "calm", "score": 0.4},
                           {"iteration": 2, "kind": "policy", "prompt": "q", "response": "other"}]}
    df = charts.side_by_side(samples)
    assert list(df.columns) == ["prompt", "model", "response", "proxy", "gold"]
    p = df[df["prompt"] == "p"]
    assert p["model"].tolist() == ["base model", "λ = 0 (iteration 2)", "λ = 0.1 (iteration 2)"]
    assert p["response"].tolist() == ["base", "new", "calm"]  # the newest policy text of each run
    assert p["proxy"].tolist() == [0.0, 0.9, 0.4] and p["gold"].tolist()[:2] == [0.2, -0.3]
    # base models that answered differently are shown once per run
    samples["λ = 0.1"][0]["response"] = "other base"
    assert charts.side_by_side(samples)["model"].tolist()[:2] == ["base model of λ = 0", "base model of λ = 0.1"]


def test_samples_by_step_newest_first():
    rows = [{"step": 10, "prompt": "the plot", "text": "a"}, {"step": 20, "prompt": "the plot", "text": "b"},
            {"step": 20, "prompt": "i bought", "text": "c"}]
    df = charts.samples_by_step(rows, prompt="the plot")
    assert list(df["text"]) == ["b", "a"]
    assert charts.samples_by_step([]).empty


def test_glossary_states_the_signs():
    assert "kl_coef" in glossary.describe("params/kl_coef") or "lambda" in glossary.describe("params/kl_coef")
    assert "<= 0" in glossary.METRICS["objective/non_score_reward"][1]
    md = glossary.markdown()
    for name in ("objective/kl", "rm/gold_agreement", "lm/val_loss", "w2s/pgr"):
        assert f"`{name}`" in md


def test_axis_units_come_from_the_glossary():
    assert glossary.unit("rm/val_accuracy") == "fraction in [0, 1]"  # a comma inside brackets is not a cut
    assert glossary.unit("lm/loss") == "nats per token"
    assert glossary.unit("not/a_metric") == "value"
    assert charts.compare_chart({"a": pd.DataFrame({"step": [1], "lm/loss": [2.0]})},
                                "lm/loss").layout.yaxis.title.text == "value (nats per token)"  # the metric is in the title


def test_compare_legends_name_the_knob_that_differs(tmp_path):
    from core.runs import Run
    from lab.views import compare as compare_view

    dirs = []
    for kl, every in ((0.0, 10), (0.05, 50)):
        run = Run.create("ppo", {"kl_coef": kl, "checkpoint_every": every, "seed": 0}, root=tmp_path)
        dirs.append(run.path)
    labels = compare_view.legend_labels(dirs, most=1)
    assert sorted(labels.values()) == ["λ = 0.0", "λ = 0.05"]  # λ before checkpoint_every
    assert compare_view.x_title({"ppo"}) == "PPO iteration (count)"
    assert "optimizer step for pretrain" in compare_view.x_title({"ppo", "pretrain"})


# ----------------------------------------------------------------------------- downloads: charts as PNG, metrics as CSV

def test_every_chart_is_drawn_in_one_place_with_the_png_download_config():
    """st.plotly_chart is called once in the whole app, by lab/ui.chart, with charts.plotly_config: every chart then
    keeps the modebar (its "Download plot as png" works offline) and names its PNG after the run and the chart."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    calls = {}
    for path in [*root.glob("lab/**/*.py"), *root.glob("pages/*.py")]:
        text = path.read_text(encoding="utf-8")
        for hides in ("displayModeBar", "modeBarButtonsToRemove"):  # the modebar holds the PNG button
            assert hides not in text, (path, hides)
        for _ in re.finditer(r"\bplotly_chart\(", text):
            calls.setdefault(path.relative_to(root).as_posix(), []).append(text)
    assert list(calls) == ["lab/ui.py"] and len(calls["lab/ui.py"]) == 1, list(calls)
    assert re.search(r"st\.plotly_chart\([^)]*config=plotly_config\(", calls["lab/ui.py"][0])
    config = charts.plotly_config("20261204-210758-ppo", "ppo/chart/reward")
    assert config == {"displaylogo": False, "toImageButtonOptions": {
        "format": "png", "filename": "20261204-210758-ppo-reward", "scale": 2}}
    assert charts.png_filename(None, "dpo_logps") == "dpo-logps"
    assert charts.png_filename("r1", "../gold / KL?") == "r1-..-gold-KL"  # a file name, never a path
    assert charts.png_filename(None, None) == "rlhf-lab-chart"


def test_metrics_csv_parses_back_into_the_run_s_metrics(tmp_path):
    import io
    import json

    from core.runs import Run

    run = Run.create("ppo", {}, out=tmp_path / "r")
    run.log_metrics({"step": 1, "objective/kl": 0.5, "hist/ratio_counts": [1, 2, 3], "params/adaptive_kl": False})
    run.log_metrics({"step": 2, "objective/kl": float("nan"), "objective/gold": 0.25})  # NaN: logged as None
    run.release()
    df = run.metrics()
    back = pd.read_csv(io.BytesIO(charts.metrics_csv(df)))
    assert list(back.columns[:2]) == ["step", "time"] and set(back.columns) == set(df.columns)
    assert back["step"].tolist() == [1, 2] and back["time"].tolist() == pytest.approx(df["time"].tolist())
    assert back["objective/kl"].iloc[0] == 0.5 and math.isnan(back["objective/kl"].iloc[1])
    assert back["objective/gold"].iloc[1] == 0.25 and math.isnan(back["objective/gold"].iloc[0])
    assert json.loads(back["hist/ratio_counts"].iloc[0]) == [1, 2, 3]
    assert charts.metrics_csv(pd.DataFrame()) == b""
