"""What the GRPO/RLOO page needs besides the live panel (lab/live_panel.py): starting a job, the charts
PPO's page has where they apply (lab/views/charts_ppo.py, relabelled), and the one chart only GRPO has: one prompt's
group of responses with their scores and advantages. No Streamlit here; pure functions of run files/DataFrames.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.config import grpo_preset
from lab.views import charts_ppo as C

ITERATION = "GRPO/RLOO iteration (count)"
CPU_THREADS = 1  # as PPO's page: one torch thread per job started from the browser (a shared CPU)
POS_COLOR, NEG_COLOR, BETA_COLOR = "#2ca02c", "#d62728", "#ff7f0e"
CAPTIONS = {
    "group": "Each bar is one response to the same prompt. Its advantage is its score measured against the others "
             "in its group: above the group's mean → pushed up, below → pushed down. A group whose responses all "
             "score the same teaches nothing (all advantages 0).",
    "group_stats": "Healthy: the within-group spread of scores stays well above 0. When it shrinks, the responses "
                   "to a prompt have become alike and the advantages (and the learning signal) vanish.",
    "kl": "Healthy: KL grows slowly and levels off. β pulls the policy back toward the base model, either in the "
          "loss (GRPO) or in the reward (PPO's form); with β = 0 nothing does.",
}


# ----------------------------------------------------------------------------- starting and steering

def grpo_job(**values):
    """(cfg, parents, control) for a new GRPO/RLOO job: a validated config on the small preset, its parent
    artifacts, and a control.json that starts with the config's knobs."""
    cfg = grpo_preset("small", **values).validate()
    from core.session import initial_control

    control = initial_control(cfg)
    return cfg, {"policy": cfg.policy, "reward": cfg.reward}, control


def describe(config: dict) -> str:
    """One line naming the method of a run's config: 'GRPO, G=8, β=0.04 in the loss'."""
    kind = str(config.get("advantage", "grpo")).upper()
    place = "in the loss" if config.get("kl_in", "loss") == "loss" else "in the reward"
    return f"{kind}, G={config.get('group_size')}, β={config.get('beta')} {place}"


# ----------------------------------------------------------------------------- the group view

def newest_group(samples: list[dict], iteration: int | None = None) -> dict | None:
    """The group row (samples.jsonl, kind "group") of `iteration`, or the newest one."""
    groups = [s for s in samples if s.get("kind") == "group"]
    if iteration is not None:
        groups = [s for s in groups if s.get("iteration") == iteration]
    return groups[-1] if groups else None


def group_table(group: dict) -> pd.DataFrame:
    """One row per response of the group: text, proxy score, the reward the advantage used, advantage, gold, KL."""
    n = len(group.get("responses", []))
    cols = {"response": group.get("responses", []), "proxy score": group.get("scores"),
            "reward used": group.get("rewards"), "advantage": group.get("advantages"), "gold": group.get("gold"),
            "KL (nats)": group.get("kl")}
    df = pd.DataFrame({k: v for k, v in cols.items() if v is not None and len(v) == n})
    return df.sort_values("advantage", ascending=False, ignore_index=True) if "advantage" in df else df


def group_figure(group: dict | None) -> go.Figure:
    """Advantage of each response (bars, green up / red down) with its proxy score (dots, second axis)."""
    title = "One group: the same prompt, G responses"
    if not group or not group.get("responses"):
        return C._empty(title, "response", "advantage")
    df = group_table(group)
    labels = [f"#{i + 1}" for i in range(len(df))]
    hover = [t if len(t) < 90 else t[:87] + "…" for t in df["response"]]
    fig = go.Figure(go.Bar(x=labels, y=df["advantage"], name="advantage", hovertext=hover,
                           marker_color=[POS_COLOR if a >= 0 else NEG_COLOR for a in df["advantage"]]))
    fig.add_trace(go.Scatter(x=labels, y=df["proxy score"], name="proxy score", mode="markers",
                             marker=dict(color=C.PROXY_COLOR, size=9, symbol="diamond"), yaxis="y2"))
    C._layout(fig, f"{title} (iteration {group.get('iteration')}): “{group.get('prompt')}”",
              "response (sorted by advantage)", "advantage")
    fig.update_layout(yaxis2=dict(title="proxy RM score (logit)", overlaying="y", side="right", showgrid=False),
                      legend=dict(orientation="h", y=-0.25))
    return fig


# ----------------------------------------------------------------------------- PPO's charts, where they apply

def _relabel(fig: go.Figure) -> go.Figure:
    """PPO's charts say "PPO iteration" on their x axis; here the iterations are GRPO's."""
    fig.for_each_xaxis(lambda ax: ax.update(title_text=ITERATION) if ax.title.text == C.ITERATION else None)
    return fig


def mark_beta(fig: go.Figure, df: pd.DataFrame, rows: int = 1) -> go.Figure:
    """Live changes of β as labelled vertical lines (PPO's charts mark λ and ε; ε is marked by them here too)."""
    if C._has(df, "params/beta"):
        C.mark_param_changes(fig, df.rename(columns={"params/beta": "β"}), columns=("β",), rows=rows)
    return fig


def reward_chart(df: pd.DataFrame) -> go.Figure:
    """Proxy vs gold, as on the PPO page (without PPO's 'proxy − λ·KL' line, which is not what GRPO maximises)."""
    fig = C.reward_chart(df.drop(columns=["objective/rlhf_reward"], errors="ignore"))
    return mark_beta(_relabel(fig), df, rows=2 if len(fig.layout.annotations or ()) >= 2 else 1)  # 2 panels


def kl_chart(df: pd.DataFrame) -> go.Figure:
    """KL per response (summed k1, the same measure as PPO's) above, β below, each from 0 on its own axis."""
    title = "KL from the base model, and β"
    if not C._has(df, "objective/kl"):
        return C._empty(title, ITERATION, "KL per response (nats)")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.65, 0.35],
                        subplot_titles=("KL(π‖π_ref) per response (nats)", "β (KL coefficient)"))
    fig.add_trace(C._line(df, "objective/kl", "KL(π‖π_ref) per response", C.KL_COLOR), row=1, col=1)
    if C._has(df, "params/beta"):
        fig.add_trace(C._line(df, "params/beta", "β", BETA_COLOR), row=2, col=1)
    C._layout(fig, title, "", "", height=440)
    fig.update_xaxes(title_text=ITERATION, row=2, col=1)
    fig.update_yaxes(title_text="nats", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="β", rangemode="tozero", row=2, col=1)
    return mark_beta(fig, df, rows=2)


def ratio_histogram(df: pd.DataFrame) -> go.Figure:
    return C.ratio_histogram_from_metrics(df)


def entropy_chart(df: pd.DataFrame) -> go.Figure:
    return mark_beta(_relabel(C.entropy_chart(df)), df)


def group_stats_chart(df: pd.DataFrame) -> go.Figure:
    """Mean within-group std of the scores, and the share of groups whose scores were all equal."""
    title = "How much signal the groups carry"
    if not C._has(df, "group/score_std_mean"):
        return C._empty(title, ITERATION, "within-group std of scores")
    fig = go.Figure(C._line(df, "group/score_std_mean", "mean within-group std of scores", C.PROXY_COLOR))
    if C._has(df, "group/all_equal_frac"):
        fig.add_trace(C._line(df, "group/all_equal_frac", "share of groups all equal", NEG_COLOR, dash="dot",
                              yaxis="y2"))
        fig.update_layout(yaxis2=dict(title="share of groups", overlaying="y", side="right", range=[0, 1],
                                      showgrid=False))
    C._layout(fig, title, ITERATION, "within-group std of scores")
    fig.update_yaxes(rangemode="tozero")
    return fig


def generations_table(iteration: int | None, pairs: list[dict]) -> pd.DataFrame:
    """The page's "base vs policy" table from lab/views/ppo.py side_by_side: before the policy's first sample
    it holds the base model's columns only (not "policy (iteration None)" of Nones), and a response one side
    lacks reads "–"."""
    from lab.views.wording import shown_table

    rows = []
    for p in pairs:
        base, policy = p.get("base") or {}, p.get("policy") or {}
        row = {"prompt": p.get("prompt"), "base": base.get("response")}
        if iteration is not None:
            row[f"policy (iteration {iteration})"] = policy.get("response")
        row["base gold"] = base.get("gold")
        if iteration is not None:
            row["policy gold"] = policy.get("gold")
        rows.append(row)
    return shown_table(pd.DataFrame(rows))
