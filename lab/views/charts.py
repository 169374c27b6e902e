"""Charts for the pretraining, preferences, reward-model and compare pages: pure functions, data in ->
Plotly figure out. (PPO and weak-to-strong charts live in lab/views/charts_ppo.py, same conventions.) At the end,
what every chart and run offers to download: the one Plotly config (a chart as PNG) and a run's metrics as CSV.

Every chart has a title, axis labels with units, and a one-line "what healthy looks like" caption in
`CAPTIONS` (the page shows it under the chart). Nothing here reads files or touches Streamlit, so each
function is tested on a DataFrame built in the test. `df` is `read_metrics(run)`: one row per step,
column "step" plus the metric names of DESIGN.md; a metric logged only every few steps is NaN between.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.glossary import unit

STEP = "optimizer step (count)"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

CAPTIONS = {
    "throughput": "Healthy: steady. It drops whenever another run shares the CPU.",
    "rm_loss": "Healthy: falls below ln 2 ≈ 0.693 (a coin flip). Near 0 on the training pairs while the "
               "validation accuracy stalls means the reward model memorises.",
    "rm_accuracy": "Healthy: all three rise above 0.5 (chance). Label noise caps the accuracies; agreement "
                   "with the noise-free gold can go higher.",
    "score_hist": "Healthy: the chosen scores sit to the right of the rejected ones; the overlap is the "
                  "pairs the reward model orders wrongly.",
    "labels": "Healthy: A and B about equally often (the position of a response says nothing); many "
              "ties mean the two responses are too alike to tell apart.",
    "gold_gap": "Healthy: most pairs right of 0 (the chosen response has the higher hidden gold "
                "utility). Mass left of 0 is label noise (or a careless labeller).",
    "agreement": "Healthy: agreement rises with more pairs and falls with more noise (larger τ).",
    "compare": "Same metric, several runs, one axis: differences are the effect of their settings.",
}


# ----------------------------------------------------------------------------- helpers

def _has(df: pd.DataFrame | None, col: str) -> bool:
    return df is not None and not df.empty and col in df.columns and df[col].notna().any()


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 320) -> go.Figure:
    # the legend under the x axis title, never over the chart title; a right margin for reference labels
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=height + 40,
                      margin=dict(l=60, r=80, t=60, b=50),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, xanchor="left", x=0.0))
    return fig


def _reference_line(fig: go.Figure, y: float, text: str) -> None:
    """A dotted horizontal reference (chance, coin flip) labelled in the right margin, where no
    curve, bar or legend can cover the label and the plot edge cannot cut it."""
    fig.add_hline(y=y, line=dict(color="gray", dash="dot"))
    fig.add_annotation(text=text, x=1.0, xref="paper", xanchor="left", y=y, yref="y", yanchor="middle",
                       showarrow=False, font=dict(size=11, color="gray"), xshift=4)


def _empty(title: str, x: str, y: str, note: str = "waiting for the first step…") -> go.Figure:
    """An empty chart that still says what it will show (pages never show a blank box)."""
    fig = _layout(go.Figure(), title, x, y)
    fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(color="gray"))
    return fig


def _series(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """(step, value) rows where `col` was logged, in step order."""
    out = df[["step", col]].dropna()
    return out.sort_values("step")


def _line(df, col, name, color, dash=None, markers=False) -> go.Scatter:
    s = _series(df, col)
    markers = markers or len(s) < 3  # a line through one point draws nothing
    return go.Scatter(x=s["step"], y=s[col], name=name, mode="lines+markers" if markers else "lines",
                      line=dict(color=color, dash=dash))


# ----------------------------------------------------------------------------- pretraining

def pretrain_loss_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Language-model loss", "cross-entropy (nats/token)"
    if not _has(df, "lm/loss"):
        return _empty(title, STEP, y)
    fig = go.Figure()
    fig.add_trace(_line(df, "lm/loss", "train (lm/loss)", COLORS[0]))
    if _has(df, "lm/val_loss"):
        fig.add_trace(_line(df, "lm/val_loss", "validation (lm/val_loss)", COLORS[1], markers=True))
    return _layout(fig, title, STEP, y)


def throughput_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Training throughput", "tokens per second (tokens/s)"
    if not _has(df, "time/tokens_per_s"):
        return _empty(title, STEP, y)
    fig = go.Figure([_line(df, "time/tokens_per_s", "time/tokens_per_s", COLORS[2])])
    return _layout(fig, title, STEP, y, height=260)


def samples_by_step(samples: list[dict], prompt: str | None = None) -> pd.DataFrame:
    """Pretraining samples as a table, newest step first: how the text improves over training."""
    rows = [s for s in samples if "step" in s and "text" in s and (prompt is None or s.get("prompt") == prompt)]
    if not rows:
        return pd.DataFrame(columns=["step", "prompt", "text"])
    df = pd.DataFrame(rows)[["step", "prompt", "text"]]
    return df.sort_values(["step", "prompt"], ascending=[False, True]).reset_index(drop=True)


# ----------------------------------------------------------------------------- preferences

def label_counts_chart(pairs: pd.DataFrame) -> go.Figure:
    """Bars: how often each choice was made. `pairs` has a "choice" column (a/b/tie/skip) or, for
    simulated labels, none (every pair is one decided comparison)."""
    title, x, y = "Labels so far", "label given (A, B, tie, skip)", "pairs (count)"
    if pairs is None or pairs.empty:
        return _empty(title, x, y, "no labels yet")
    if "choice" in pairs.columns:
        counts = pairs["choice"].fillna("decided").value_counts()
    else:
        counts = pd.Series({"decided": len(pairs)})
    order = [c for c in ("a", "b", "tie", "skip", "decided") if c in counts.index]
    names = {"a": "A", "b": "B", "tie": "tie", "skip": "skip", "decided": "decided"}
    fig = go.Figure(go.Bar(x=[names[c] for c in order], y=[int(counts[c]) for c in order],
                           marker_color=COLORS[: len(order)], text=[int(counts[c]) for c in order],
                           textposition="outside"))
    return _layout(fig, title, x, y, height=280)


def gold_agreement(pairs: pd.DataFrame | None) -> tuple[float | None, int, int]:
    """(share of labels that agree with the hidden gold, pairs judged, gold ties) over the labelled
    pairs: a pair whose two texts have the same gold utility has no right answer and is left out.
    The one rule behind the page's metric, the chart and the trainer's pref/label_gold_agreement."""
    if not (_has(pairs, "gold_chosen") and _has(pairs, "gold_rejected")):
        return None, 0, 0
    gap = (pd.to_numeric(pairs["gold_chosen"], errors="coerce")
           - pd.to_numeric(pairs["gold_rejected"], errors="coerce")).dropna()
    judged = gap[gap != 0]
    return (float((judged > 0).mean()) if len(judged) else None), int(len(judged)), int((gap == 0).sum())


def gold_gap_chart(pairs: pd.DataFrame) -> go.Figure:
    """Histogram of u(chosen) - u(rejected) under the hidden gold annotator."""
    title, x, y = "How often the label agrees with the hidden gold", "gold utility gap u(chosen) − u(rejected) (utility units)", "pairs (count)"
    if not (_has(pairs, "gold_chosen") and _has(pairs, "gold_rejected")):
        return _empty(title, x, y, "no gold utilities in these pairs")
    gap = (pairs["gold_chosen"] - pairs["gold_rejected"]).dropna()
    fig = go.Figure(go.Histogram(x=gap, nbinsx=40, marker_color=COLORS[0], name="pairs"))
    fig.add_vline(x=0, line=dict(color="gray", dash="dash"))
    share, judged, ties = gold_agreement(pairs)
    if share is not None:  # in the title, where no bar can cover it
        title += f"<br><sup>{share:.0%} of {judged} labels agree with gold (right of 0)"
        title += f"; {ties} gold ties left out</sup>" if ties else "</sup>"
    return _layout(fig, title, x, y, height=300)


# ----------------------------------------------------------------------------- reward model

def rm_loss_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Reward-model loss", "pairwise loss (nats/pair)"
    if not _has(df, "rm/loss"):
        return _empty(title, STEP, y)
    fig = go.Figure([_line(df, "rm/loss", "train (rm/loss)", COLORS[0])])
    if _has(df, "rm/val_loss"):
        fig.add_trace(_line(df, "rm/val_loss", "validation (rm/val_loss)", COLORS[1], markers=True))
    _reference_line(fig, math.log(2), "coin flip<br>(ln 2)")
    return _layout(fig, title, STEP, y)


def rm_accuracy_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Reward-model accuracy", "share of pairs ordered right (fraction)"
    cols = [("rm/accuracy", "train (rm/accuracy)"), ("rm/val_accuracy", "validation (rm/val_accuracy)"),
            ("rm/gold_agreement", "agrees with gold (rm/gold_agreement)")]
    if not any(_has(df, c) for c, _ in cols):
        return _empty(title, STEP, y)
    fig = go.Figure()
    for (col, name), color in zip(cols, COLORS):
        if _has(df, col):
            fig.add_trace(_line(df, col, name, color, markers=col != "rm/accuracy"))
    _reference_line(fig, 0.5, "chance")
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, title, STEP, y)


def score_histogram(chosen, rejected) -> go.Figure:
    """Overlaid histograms of the RM's scores of chosen and rejected responses (held-out pairs)."""
    title, x, y = "Scores of chosen vs rejected (held-out pairs)", "reward-model score (normalised units)", "responses (count)"
    chosen = np.asarray(list(chosen if chosen is not None else []), dtype=float)
    rejected = np.asarray(list(rejected if rejected is not None else []), dtype=float)
    if chosen.size == 0 and rejected.size == 0:
        return _empty(title, x, y, "no scores yet: they appear when the run finishes")
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=chosen, name=f"chosen (mean {chosen.mean():.2f})" if chosen.size else "chosen",
                               marker_color=COLORS[2], opacity=0.6, nbinsx=40))
    fig.add_trace(go.Histogram(x=rejected, name=f"rejected (mean {rejected.mean():.2f})" if rejected.size else "rejected",
                               marker_color=COLORS[1], opacity=0.6, nbinsx=40))
    fig.update_layout(barmode="overlay")
    return _layout(fig, title, x, y)


def agreement_chart(summary: pd.DataFrame) -> go.Figure:
    """One point per finished reward-model run: gold agreement against the number of training pairs,
    coloured by the annotator noise tau. `summary` columns: pairs, tau, gold_agreement, run."""
    title, x, y = "Gold agreement vs pairs and noise", "training pairs (count, log scale)", "rm/gold_agreement (fraction)"
    if summary is None or summary.empty or not _has(summary, "gold_agreement"):
        return _empty(title, x, y, "finish reward-model runs with different pairs / τ to fill this")
    fig = go.Figure()
    data = summary.dropna(subset=["gold_agreement", "pairs"])
    for i, (tau, group) in enumerate(data.groupby(data["tau"].fillna(-1.0))):
        group = group.sort_values("pairs")
        label = "τ unknown" if tau < 0 else f"τ = {tau:g}"
        fig.add_trace(go.Scatter(x=group["pairs"], y=group["gold_agreement"], mode="lines+markers", name=label,
                                 text=group.get("run"), line=dict(color=COLORS[i % len(COLORS)])))
    _reference_line(fig, 0.5, "chance")
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0.4, 1.02])
    return _layout(fig, title, x, y)


# ----------------------------------------------------------------------------- compare runs

def compare_chart(runs: dict[str, pd.DataFrame], metric: str, x_title: str = STEP) -> go.Figure:
    """One metric of several runs overlaid on one axis (`runs`: label -> metrics DataFrame)."""
    # the y title is the unit alone: a long metric name turned sideways was cut at the axis; the title names it
    title, y = f"{metric} across runs", f"value ({unit(metric)})"
    if len(y) > 32:  # too long to stand sideways next to a 360 px chart: the unit goes under the title
        title, y = f"{title}<br><sup>{unit(metric)}</sup>", "value (see above)"
    present = {name: df for name, df in runs.items() if _has(df, metric) and "step" in df.columns}
    if not present:
        return _empty(title, x_title, y, f"none of the chosen runs logged {metric}")
    fig = go.Figure()
    for i, (name, df) in enumerate(present.items()):
        fig.add_trace(_line(df, metric, name, COLORS[i % len(COLORS)]))
    return _layout(fig, title, x_title, y, height=360)


def common_metrics(runs: dict[str, pd.DataFrame]) -> list[str]:
    """Numeric metric columns that at least one run logged, the ones all runs share first."""
    counts: dict[str, int] = {}
    for df in runs.values():
        if df is None or df.empty:
            continue
        for col in df.columns:
            if col in ("step", "time", "final") or not pd.api.types.is_numeric_dtype(df[col]):
                continue
            if df[col].notna().any():
                counts[col] = counts.get(col, 0) + 1
    return sorted(counts, key=lambda c: (-counts[c], c))


def side_by_side(samples: dict[str, list[dict]], text_key: str = "response") -> pd.DataFrame:
    """Generations of several runs on the same prompts, one row per prompt and model: the base model's
    response (once, or once per run when their base models answered differently), then each run's
    newest response, with the proxy (reward-model) and gold scores where the run recorded them. Long,
    not wide, so the scores stay in view at any number of runs (GENERATION_COLUMNS)."""
    base: dict[str, dict[str, dict]] = {}
    newest: dict[str, dict[str, dict]] = {}
    for name, rows in samples.items():
        for row in rows:
            prompt, text = row.get("prompt"), row.get(text_key, row.get("text"))
            if prompt is None or text is None:
                continue
            if row.get("kind") == "base":
                base.setdefault(prompt, {}).setdefault(name, row)  # the base model's first answer
            elif row.get("kind", "policy") == "policy":
                newest.setdefault(prompt, {})[name] = row  # later rows overwrite: the newest wins
    out = []
    for prompt in list(dict.fromkeys([*newest, *base])):
        answers = base.get(prompt, {})
        texts = {r.get(text_key, r.get("text")) for r in answers.values()}
        for name, row in answers.items():
            model = "base model" if len(texts) == 1 else f"base model of {name}"
            out.append(_generation(prompt, model, row, text_key))
            if len(texts) == 1:
                break
        for name in samples:
            if name in newest.get(prompt, {}):
                row = newest[prompt][name]
                when = (f" (iteration {row['iteration']})" if "iteration" in row
                        else f" (step {row['step']})" if "step" in row else "")
                out.append(_generation(prompt, name + when, row, text_key))
    return pd.DataFrame(out, columns=list(GENERATION_COLUMNS))


GENERATION_COLUMNS = ("prompt", "model", "response", "proxy", "gold")


def _generation(prompt: str, model: str, row: dict, text_key: str) -> dict:
    def num(key):
        v = row.get(key)
        return float(v) if isinstance(v, (int, float)) else None

    return {"prompt": prompt, "model": model, "response": row.get(text_key, row.get("text")),
            "proxy": num("score"), "gold": num("gold")}


# ----------------------------------------------------------------------------- downloads (a chart's PNG, metrics CSV)

def png_filename(run_id: str | None, chart: str | None) -> str:
    """`<run id>-<chart>` for a chart's PNG: the run it shows and which chart, so a folder of downloads reads by
    itself. `chart` is the widget key ("ppo/chart/reward" -> "reward"): its words that say nothing ("chart") or
    repeat the run id ("ppo") are left out. Only letters, digits, '.', '_' and '-' (a file name on every OS)."""
    run_words = set((run_id or "").split("-"))
    words = [w for w in re.split(r"[^A-Za-z0-9.]+", chart or "") if w and w != "chart" and w not in run_words]
    name = "-".join([w for w in [run_id, *words] if w]) or "rlhf-lab-chart"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:150]


def plotly_config(run_id: str | None = None, chart: str | None = None) -> dict:
    """st.plotly_chart's config, the one every chart of the lab is drawn with (lab/ui.py chart()). The modebar
    stays (never hidden): its camera button, "Download plot as png", renders the PNG in the browser
    with the plotly.js Streamlit ships, so it works offline; the PNG is named after the run and the chart."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": png_filename(run_id, chart), "scale": 2}}


def metrics_csv(df: pd.DataFrame | None) -> bytes:
    """A run's metrics.jsonl as CSV bytes (UTF-8), one row per logged row, `step` first. A cell that holds a list
    (the ratio histogram's edges and counts) is written as JSON, so `json.loads` gives the list back; a metric a
    row did not log is an empty cell (NaN when read back)."""
    if df is None or df.empty:
        return b""
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, tuple, dict))).any():
            out[col] = out[col].map(lambda v: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
    first = [c for c in ("step", "time") if c in out.columns]
    out = out[first + [c for c in out.columns if c not in first]]
    return out.to_csv(index=False).encode("utf-8")
