"""The PPO and weak-to-strong charts, on DataFrames built here (no training, no files)."""


import numpy as np
import pandas as pd
import pytest

from lab.views import charts_ppo as C


def ppo_df(n=8, kl_coef=None, clip_eps=None, adaptive=None):
    rng = np.random.default_rng(0)
    edges = list(np.linspace(0.5, 1.5, 21))
    rows = []
    for i in range(n):
        counts = [0] * 20
        counts[9], counts[10], counts[3], counts[17] = 50, 40, 5 + i, 3
        rows.append({
            "step": i + 1, "time": 1000.0 + i,
            "objective/scores": 0.1 * i + rng.normal(0, 0.01), "objective/gold": 0.05 * i,
            "objective/rlhf_reward": 0.08 * i, "objective/kl": 0.3 * i, "objective/entropy": 3.0 - 0.1 * i,
            "loss/value_avg": 1.0 / (i + 1), "policy/clipfrac_avg": 0.04,
            "params/kl_coef": (kl_coef or [0.1] * n)[i], "params/clip_eps": (clip_eps or [0.2] * n)[i],
            "params/adaptive_kl": (adaptive or [False] * n)[i],
            "hist/ratio_edges": edges, "hist/ratio_counts": counts,
        })
    return pd.DataFrame(rows)


def assert_labelled(fig):
    """Every chart has a title and axis labels that say their units."""
    lay = fig.layout
    assert lay.title.text, "chart has no title"
    # with stacked panels, the bottom x axis carries the label and every panel's y axis its own
    assert any(lay[k].title.text for k in lay if k.startswith("xaxis")), "x axis has no label"
    assert all(lay[k].title.text for k in lay if k.startswith("yaxis")), "y axis has no label"


def test_every_chart_has_a_caption():
    for key in ("reward", "kl", "ratio", "value_loss", "entropy", "kl_heatmap", "step_tokens",
                "overoptimization", "w2s"):
        assert C.CAPTIONS[key].startswith(("Healthy", "Gao")), key


@pytest.mark.parametrize("fn", [C.reward_chart, C.kl_chart, C.value_loss_chart, C.entropy_chart,
                                C.ratio_histogram_from_metrics])
def test_live_charts_on_metrics_and_on_nothing(fn):
    fig = fn(ppo_df())
    assert_labelled(fig)
    assert len(fig.data) >= 1
    # A fresh run has no rows yet: the chart still renders with its labels and says it is waiting.
    empty = fn(pd.DataFrame())
    assert_labelled(empty)
    assert len(empty.data) == 0
    assert "waiting" in empty.layout.annotations[0].text


def test_reward_chart_puts_proxy_and_gold_in_panels_that_both_hold_zero():
    df = ppo_df()
    df["objective/scores"] = -4.0 + 0.5 * np.arange(8)  # a logit far from 0
    df["objective/gold"] = 0.01 * np.sin(np.arange(8))  # gold flat around 0: must not look like a crash
    fig = C.reward_chart(df)
    names = [t.name for t in fig.data]
    assert any("proxy" in n for n in names) and any("gold" in n for n in names)
    gold = next(t for t in fig.data if t.name == "gold utility")
    assert gold.yaxis == "y2"  # its own panel, below the proxy's, same iteration axis
    assert list(gold.y) == pytest.approx(list(df["objective/gold"]))
    for axis in (fig.layout.yaxis, fig.layout.yaxis2):
        lo, hi = axis.range
        assert lo < 0 < hi
    lo, hi = fig.layout.yaxis2.range
    assert hi - lo >= 0.2  # a 0.02 wiggle fills a tenth of the panel, not all of it
    assert fig.layout.yaxis.range[0] < -4.0


def test_kl_and_lambda_are_on_their_own_panels_from_zero():
    fig = C.kl_chart(ppo_df())
    lam = next(t for t in fig.data if t.name == "λ (kl_coef)")
    assert lam.yaxis == "y2" and fig.layout.yaxis.rangemode == "tozero" and fig.layout.yaxis2.rangemode == "tozero"


def test_param_changes_are_found_and_marked():
    kl = [0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.0, 0.0]
    eps = [0.2] * 5 + [0.1] * 3
    df = ppo_df(kl_coef=kl, clip_eps=eps)
    assert C.param_changes(df, "params/kl_coef") == [(4, 0.1, 0.5), (7, 0.5, 0.0)]
    assert C.param_changes(df, "params/clip_eps") == [(6, 0.2, 0.1)]
    fig = C.reward_chart(df)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted({s.x0 for s in lines}) == [4, 6, 7]
    labels = [a.text for a in fig.layout.annotations]
    assert "λ 0.1→0.5" in labels and "ε 0.2→0.1" in labels and "λ 0.5→0" in labels
    # the same marks on every time-axis chart
    for fn in (C.kl_chart, C.value_loss_chart, C.entropy_chart):
        assert sorted({s.x0 for s in fn(df).layout.shapes if s.type == "line"}) == [4, 6, 7]


def test_labels_of_close_changes_do_not_overlap():
    # changes at iterations 6 and 7 of 8 (ε then λ): their labels go to two text rows, and two changes
    # at one iteration share one label
    df = ppo_df(kl_coef=[0.1] * 6 + [0.5] * 2, clip_eps=[0.2] * 5 + [0.1] * 3)
    marks = [a for a in C.reward_chart(df).layout.annotations if "→" in a.text]
    assert len(marks) == 2 and len({a.yshift for a in marks}) == 2
    same = ppo_df(kl_coef=[0.1] * 4 + [0.5] * 4, clip_eps=[0.2] * 4 + [0.1] * 4)
    assert [a.text for a in C.kl_chart(same).layout.annotations if "→" in a.text] == ["λ 0.1→0.5, ε 0.2→0.1"]
    assert C.label_levels([0, 50, 51, 52, 100], span=100) == [0, 0, 1, 2, 0]  # a label is ~15% of a panel wide


def test_adaptive_controller_moves_are_not_marked_but_switching_it_on_is():
    kl = [0.1, 0.1, 0.12, 0.13, 0.11, 0.1, 0.1, 0.1]
    adaptive = [False, True, True, True, True, True, True, True]
    df = ppo_df(kl_coef=kl, adaptive=adaptive)
    assert C.param_changes(df, "params/kl_coef") == [(2, 0.1, 0.1)]
    assert C.param_changes(ppo_df(kl_coef=kl), "params/kl_coef") != []  # fixed λ: every change is the student's


def test_ratio_histogram_shades_the_band_and_counts_what_is_outside():
    edges = np.linspace(0.5, 1.5, 11)  # bins of 0.1; centres 0.55 ... 1.45
    counts = np.zeros(10)
    counts[4], counts[5] = 80, 10  # centres 0.95, 1.05: inside 1 +- 0.2
    counts[0], counts[9] = 6, 4  # centres 0.55, 1.45: outside
    assert C.ratio_share_outside(edges, counts, 0.2) == pytest.approx(0.10)
    assert C.ratio_share_outside(edges, counts, 0.5) == pytest.approx(0.0)
    fig = C.ratio_histogram(edges, counts, 0.2, clipfrac=0.04, step=3)
    assert_labelled(fig)
    band = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(band) == 1 and band[0].x0 == pytest.approx(0.8) and band[0].x1 == pytest.approx(1.2)
    assert "10.0% outside the band" in fig.layout.title.text and "4.0% clipped" in fig.layout.title.text
    assert sum(fig.data[0].y) == pytest.approx(100.0)  # shares in %
    with pytest.raises(ValueError):
        C.ratio_histogram(edges[:-2], counts, 0.2)


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.5])
def test_ratio_histogram_always_shows_the_band_and_what_lies_outside(eps):
    from core.ppo_train import RATIO_EDGES

    edges = np.asarray(RATIO_EDGES)
    counts = np.zeros(len(edges) - 1)
    counts[np.searchsorted(edges, 1.0) - 1] = 90
    counts[-1] = 10  # ratios of 2 and beyond: outside any band
    fig = C.ratio_histogram(edges, counts, eps)
    lo, hi = fig.layout.xaxis.range
    assert lo < 1 - eps and hi > 1 + eps and hi >= edges[-1]
    assert "10.0% outside the band" in fig.layout.title.text and "more may be" not in fig.layout.title.text
    # a histogram recorded over [0.5, 1.5] (older runs) at ε = 0.5 cannot tell: it says so
    old = np.linspace(0.5, 1.5, 41)
    title = C.ratio_histogram(old, np.r_[5, np.zeros(38), 5], 0.5).layout.title.text
    assert "more may be outside" in title


def test_ratio_histogram_from_metrics_uses_newest_row_and_its_eps():
    df = ppo_df(clip_eps=[0.2] * 7 + [0.05])
    fig = C.ratio_histogram_from_metrics(df)
    band = next(s for s in fig.layout.shapes if s.type == "rect")
    assert band.x0 == pytest.approx(0.95)
    assert "iteration 8" in fig.layout.title.text


def test_kl_chart_shows_target_when_adaptive():
    fig = C.kl_chart(ppo_df(), target_kl=2.0)
    assert any(s.type == "line" and s.y0 == 2.0 for s in fig.layout.shapes)


def test_kl_heatmap_one_cell_per_token_and_wraps():
    tokens = [f"t{i}" for i in range(15)]
    kl = [0.1 * i for i in range(15)]
    fig = C.kl_heatmap(tokens, kl, per_row=12)
    assert_labelled(fig)
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (2, 12)
    assert z[1, 2] == pytest.approx(1.4)
    assert np.isnan(z[1, 3])  # padding after the last token
    assert fig.data[0].text[1][2] == "t14"
    assert "total 10.50 nats" in fig.layout.title.text
    with pytest.raises(ValueError):
        C.kl_heatmap(tokens, kl[:-1])


def inspect_row(n=5):
    return {"tokens": [f"w{i}" for i in range(n)], "logprobs": [-1.0] * n, "ref_logprobs": [-1.2] * n,
            "kl": [0.2] * n, "rewards": [-0.02] * (n - 1) + [0.98], "values": [0.5] * n,
            "advantages": [0.3, -0.1, 0.2, -0.4, 0.1][:n], "returns": [0.8, 0.4, 0.7, 0.1, 0.6][:n],
            "ratio": [1.0, 1.05, 0.7, 1.3, 1.0][:n], "clipped": [False, False, True, True, False][:n],
            "score": 1.0, "kl_coef": 0.1, "clip_eps": 0.2}


def test_ppo_step_table_and_figure():
    row = inspect_row()
    table = C.ppo_step_table(row)
    assert list(table["token"]) == ["w0", "w1", "w2", "w3", "w4"]
    assert table["clipped"].sum() == 2
    assert table["KL = log π − log π_ref"].tolist() == [0.2] * 5
    fig = C.ppo_step_figure(row)
    assert fig.layout.title.text.startswith("One PPO step")
    assert "λ=0.1" in fig.layout.title.text
    clipped = next(t for t in fig.data if t.name == "clipped")
    assert list(clipped.x) == [2, 3]
    assert fig.layout.xaxis3.title.text  # the shared token axis is labelled
    bad = dict(row, kl=[0.1])
    with pytest.raises(ValueError, match="one value per token"):
        C.ppo_step_table(bad)


def recorded_step(gamma=1.0, lam=0.95):
    """inspect.json as the trainer writes it (core.ppo_train.inspect_payload) for a hand-made rollout of two
    responses, through the trainer's own shaping, GAE and batch whitening: no model, no training."""
    from types import SimpleNamespace

    import torch

    from core.ppo_train import advantages_and_returns, inspect_payload

    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    ro = SimpleNamespace(responses=torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]]), mask=mask,
                         scores=torch.tensor([1.5, -0.5]),
                         logprobs=torch.tensor([[-1.0, -2.0, -0.5, -0.1], [-3.0, -0.2, 0.0, 0.0]]),
                         ref_logprobs=torch.tensor([[-1.2, -1.5, -0.7, -0.1], [-2.0, -0.3, 0.0, 0.0]]),
                         values=torch.tensor([[0.2, 0.4, 0.9, 1.1], [-0.3, -0.4, 0.0, 0.0]]))
    rewards, kl, advantages, returns = advantages_and_returns(ro, 0.1, "k1", gamma, lam, False)
    models = SimpleNamespace(tokenizer=SimpleNamespace(convert_ids_to_tokens=lambda ids: [f"t{i}" for i in ids]))
    upd = {"inspect": {"rows": [0, 1], "ratio": [[1.0, 1.1, 0.9, 1.0], [1.3, 1.0]],
                       "clipped": [[False] * 4, [True, False]]}}
    return inspect_payload(models, ro, ["p0", "p1"], ["r0", "r1"], rewards, kl, advantages, returns, upd, 3, 0.1, 0.2,
                           gamma, lam)


def test_ppo_step_table_arithmetic_checks_by_hand():
    """Issue 23: "return R = Â + V" held the WHITENED Â, so the row "the" read Â 1.323, V 0.0095, R 0.5413. The
    return is built from GAE's raw advantage; the whitened one, which the policy loss uses, has its own column."""
    from lab.views import ppo as V

    data = recorded_step(gamma=0.9, lam=0.8)
    for row in V.inspect_rows(data):
        table = C.ppo_step_table(row)
        raw, value, ret = table[C.RAW_ADVANTAGE], table["value V(s)"], table[C.RETURN]
        assert ret.tolist() == pytest.approx((raw + value).tolist(), abs=1e-6)       # R = Â_raw + V, token by token
        # ... and Â_raw is GAE of the columns beside it: δ_t = r_t + γ V_{t+1} − V_t (0 after the last), Â_t = δ_t +
        # γλ Â_{t+1}, with the γ and λ the payload records, as a student would check it
        by_hand, following = [], 0.0
        r, v = table["reward (shaped)"].tolist(), value.tolist()
        for t in reversed(range(len(table))):
            following = r[t] + data["gamma"] * (v[t + 1] if t + 1 < len(v) else 0.0) - v[t] \
                + data["gamma"] * data["lam"] * following
            by_hand.insert(0, following)
        assert raw.tolist() == pytest.approx(by_hand, abs=1e-6)
        assert "whitened" in C.WHITENED_ADVANTAGE and "Â_raw" in C.RETURN
        assert table[C.WHITENED_ADVANTAGE].tolist() == pytest.approx(row["advantages"])
    whitened = [a for row in V.inspect_rows(data) for a in row["advantages"]]
    assert np.mean(whitened) == pytest.approx(0.0, abs=1e-6)  # whitened over the batch: why it cannot add up to R
    first = V.inspect_rows(data)[0]
    old = {k: v for k, v in first.items() if k != "advantages_raw"}  # inspect.json from before the raw column
    assert C.ppo_step_table(old)[C.RAW_ADVANTAGE].tolist() == pytest.approx(first["advantages_raw"], abs=1e-6)
    assert "column top to bottom" not in V.STEP_TEXT and "row" in V.STEP_TEXT and "whiten" in V.STEP_TEXT
    fig = C.ppo_step_figure(V.inspect_rows(data)[0])
    assert "whitened" in fig.layout.annotations[1].text


def test_overoptimization_chart_across_runs():
    a = ppo_df()
    b = ppo_df()
    b["objective/kl"] = b["objective/kl"] / 4
    pts = C.overoptimization_points({"λ=0": a, "λ=0.5": b, "empty": pd.DataFrame()})
    assert set(pts["run"]) == {"λ=0", "λ=0.5"}
    assert pts[pts.run == "λ=0"]["sqrt_kl"].tolist() == pytest.approx(np.sqrt(0.3 * np.arange(8)))
    fig = C.overoptimization_chart({"λ=0": a, "λ=0.5": b})
    assert_labelled(fig)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.name for t in lines] == ["λ=0: proxy", "λ=0: gold", "λ=0.5: proxy", "λ=0.5: gold"]
    assert len(fig.data) == 8  # each line with its raw iterations as dots
    # the lines are moving averages of the raw points
    assert list(lines[1].y) == pytest.approx(C.smooth(0.05 * np.arange(8), 5))
    assert C.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert "√KL" in fig.layout.xaxis2.title.text  # the shared √KL axis, under the gold panel
    assert {t.yaxis for t in lines if t.name.endswith("gold")} == {"y2"}  # gold in its own panel
    assert all(ax.range[0] <= 0 <= ax.range[1] for ax in (fig.layout.yaxis, fig.layout.yaxis2))
    assert len(C.overoptimization_chart({}).data) == 0


def test_pgr_and_w2s_bars():
    assert not hasattr(C, "pgr")  # one PGR, core.w2s's (issue 22: the chart's gave 0.50 where core's gave nan)
    no_gap = C.w2s_chart({"weak": 0.70, "xent": 0.65, "ceiling": 0.60})  # the ceiling does not beat the supervisor
    assert "PGR" not in " ".join(no_gap.data[0].text) and "PGR" not in no_gap.layout.title.text
    fig = C.w2s_chart({"weak": 0.6, "xent": 0.7, "confidence": 0.75, "ceiling": 0.8})
    assert_labelled(fig)
    bar = fig.data[0]
    assert list(bar.y) == pytest.approx([60, 70, 75, 80])
    assert "PGR 0.50" in bar.text[1] and "PGR 0.75" in bar.text[2]
    assert "PGR (xent) = 0.50" in fig.layout.title.text
    # given PGRs win over computed ones; a missing bar is left out
    fig = C.w2s_chart({"weak": 0.6, "xent": 0.7, "ceiling": 0.8}, pgrs={"xent": 0.42})
    assert len(fig.data[0].x) == 3 and "PGR 0.42" in fig.data[0].text[1]
    assert len(C.w2s_chart({}).data) == 0


def test_w2s_from_results_json_and_loss_chart():
    results = {"weak_acc": 0.6, "weak_acc_std": 0.01, "ceiling_acc": 0.9, "ceiling_acc_std": 0.02,
               "students": {"xent": {"acc": 0.69, "acc_std": 0.03, "pgr": 0.3},
                            "confidence": {"acc": 0.75, "acc_std": 0.0, "pgr": 0.5}}}
    fig = C.w2s_chart_from_results(results)
    bar = fig.data[0]
    assert list(bar.y) == pytest.approx([60, 69, 75, 90])
    assert list(bar.error_y.array) == pytest.approx([1, 3, 0, 2])
    assert "PGR 0.30" in bar.text[1] and "PGR 0.50" in bar.text[2]
    df = pd.DataFrame([{"step": 1, "w2s/weak_loss": 0.7}, {"step": 2, "w2s/weak_loss": 0.6},
                       {"step": 3, "w2s/weak_acc": 0.6}, {"step": 4, "w2s/ceiling_loss": 0.69}])
    fig = C.w2s_loss_chart(df)
    assert_labelled(fig)
    assert [t.name for t in fig.data] == ["weak", "ceiling"]
    assert list(fig.data[0].y) == [0.7, 0.6]
    assert C.CAPTIONS["w2s_loss"].startswith("Healthy")
    assert len(C.w2s_loss_chart(pd.DataFrame()).data) == 0
