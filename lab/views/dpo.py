"""The DPO page's logic and figures: pure functions of DataFrames and run folders (tested without a browser).

Three charts a student needs to read a DPO run: the chosen and rejected log-probs (both often fall, the rejected
one faster), the implicit-reward margin and accuracy, and the online axes (gold, proxy, KL) at the evaluation
points, where DPO meets PPO and GRPO on the same scale.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.config import ConfigError, DPOConfig, dpo_preset
from core.runs import read_jsonl
from lab.views.charts import COLORS, _empty, _has, _layout, _line

STEP = "DPO step (optimizer steps)"
CAPTIONS = {
    "logps": "Summed log-probability of the chosen and the rejected responses under the policy: training batches "
             "(faint), their running mean, and the same held-out pairs at every evaluation (dashed). DPO only needs "
             "their gap to grow; often BOTH fall (the rejected one faster), and the probability goes to responses "
             "nobody labelled.",
    "margin": "Implicit reward r = β·log(π/π_ref) of the chosen minus the rejected response (nats × β), and the "
              "share of pairs it orders right. Healthy: the margin grows, train accuracy rises above 0.5 (chance) "
              "and the validation accuracy follows it; a train accuracy near 1 with a flat validation means "
              "memorised pairs.",
    "eval": "The policy's own samples on the evaluation prompts, judged like PPO's: hidden gold utility, proxy RM "
            "score, and KL to the reference (nats per response). DPO never sees the proxy; gold above the base "
            "(step 0) is the goal, KL is its price.",
}


# ----------------------------------------------------------------------------- configs and controls

def dpo_config(preferences: str, policy: str = "small", reward: str = "reward", beta: float = 0.1,
               loss_type: str = "sigmoid", epochs: int = 1, lr: float | None = None, preset: str = "small",
               **overrides) -> DPOConfig:
    """A checked DPOConfig from the page's widgets: ConfigError / PreferenceError (both ValueErrors) naming the field
    for a bad value, source, pair or tokenizer, before any run exists."""
    from core.dpo import check_inputs

    cfg = dpo_preset(preset, preferences=preferences, policy=policy, reward=reward, beta=beta, loss_type=loss_type,
                     epochs=epochs, lr=lr, **overrides).validate()
    check_inputs(cfg)
    return cfg


def initial_control(cfg: DPOConfig) -> dict:
    from core.session import initial_control as control_of

    return control_of(cfg)


# ----------------------------------------------------------------------------- figures

def logps_chart(df: pd.DataFrame, window: int = 10) -> go.Figure:
    """Training batches (faint: each batch's mean jumps with its responses' lengths), their running mean over
    `window` steps, and the same held-out pairs at every evaluation (markers: the clean trend)."""
    title, y = "Log-probabilities of the labelled responses", "log π(response | prompt), summed (nats)"
    if not _has(df, "logps/chosen") and not _has(df, "eval/logps/chosen"):
        return _empty(title, STEP, y)
    fig = go.Figure()
    for col, name, color in (("chosen", "chosen", COLORS[2]), ("rejected", "rejected", COLORS[1])):
        if _has(df, f"logps/{col}"):
            s = df[["step", f"logps/{col}"]].dropna().sort_values("step")
            fig.add_trace(go.Scatter(x=s["step"], y=s[f"logps/{col}"], name=f"{name}, batch", mode="lines",
                                     line=dict(color=color, width=1), opacity=0.3))
            fig.add_trace(go.Scatter(x=s["step"], y=s[f"logps/{col}"].rolling(window, min_periods=1).mean(),
                                     name=f"{name}, mean of {window} batches (logps/{col})", mode="lines",
                                     line=dict(color=color, width=2)))
        if _has(df, f"eval/logps/{col}"):
            fig.add_trace(_line(df, f"eval/logps/{col}", f"{name}, held-out pairs", color, dash="dash",
                                markers=True))
    fig = _layout(fig, title, STEP, y, height=380)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0))
    return fig


def _stacked(title: str, y_top: str, y_bottom: str) -> go.Figure:
    """Two panels on one step axis: each quantity on its own scale, none sharing a second y-axis."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.62, 0.38])
    fig = _layout(fig, title, "", y_top, height=460)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.15, xanchor="left", x=0.0))  # under the plot
    fig.update_yaxes(title_text=y_bottom, row=2, col=1)
    fig.update_xaxes(title_text=STEP, row=2, col=1)
    return fig


def margin_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Implicit reward margin and accuracy", "β · log-ratio (nats)"
    if not _has(df, "rewards/margins"):
        return _empty(title, STEP, y)
    fig = _stacked(title, y, "accuracy (share of pairs)")
    fig.add_trace(_line(df, "rewards/margins", "margin (rewards/margins)", COLORS[0]), row=1, col=1)
    fig.add_trace(_line(df, "rewards/chosen", "chosen (rewards/chosen)", COLORS[2], dash="dot"), row=1, col=1)
    fig.add_trace(_line(df, "rewards/rejected", "rejected (rewards/rejected)", COLORS[1], dash="dot"), row=1, col=1)
    fig.add_trace(_line(df, "rewards/accuracies", "train accuracy", COLORS[3]), row=2, col=1)
    if _has(df, "eval/rewards/accuracies"):
        fig.add_trace(_line(df, "eval/rewards/accuracies", "validation accuracy", COLORS[4], markers=True),
                      row=2, col=1)
    fig.add_hline(y=0.5, line=dict(color="gray", dash="dot"), row=2, col=1)   # chance
    fig.update_yaxes(range=[0, 1.05], row=2, col=1)
    return fig


def eval_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Gold, proxy and KL at the evaluation points", "score (normalised units)"
    if not _has(df, "objective/gold"):
        return _empty(title, STEP, y, "waiting for the first evaluation…")
    fig = _stacked(title, y, "KL to the reference (nats)")
    fig.add_trace(_line(df, "objective/gold", "gold (hidden annotator)", COLORS[2], markers=True), row=1, col=1)
    fig.add_trace(_line(df, "objective/scores", "proxy (reward model)", COLORS[0], markers=True), row=1, col=1)
    fig.add_trace(_line(df, "objective/kl", "KL to the reference", COLORS[7], markers=True), row=2, col=1)
    fig.update_yaxes(rangemode="tozero", row=2, col=1)
    return fig


def eval_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluation point: step, gold, proxy, KL, validation accuracy (step 0 = the base model).
    At step 0 the policy is the reference, every held-out pair a tie: its accuracy is not a number but that
    fact, said in the cell (an empty cell would show as "None")."""
    cols = {"step": "step", "objective/gold": "gold", "objective/scores": "proxy", "objective/kl": "KL (nats)",
            "eval/rewards/accuracies": "validation accuracy"}
    if not _has(df, "objective/gold"):
        return pd.DataFrame(columns=list(cols.values()))
    rows = df[df["objective/gold"].notna()]
    out = rows[[c for c in cols if c in rows.columns]].rename(columns=cols).reset_index(drop=True)
    if "validation accuracy" in out.columns:
        out["validation accuracy"] = [
            f"{v:.3f}" if pd.notna(v) else ("– (policy = reference: every pair a tie)" if step == 0 else "–")
            for step, v in zip(out["step"], out["validation accuracy"])]
    return out


def samples_table(samples: list[dict]) -> pd.DataFrame:
    """The base model's and the latest evaluation's responses to the same prompts, side by side. Before the
    first evaluation after step 0 there is no policy sample yet: the table holds the base model's columns only,
    not columns of "None" under a header "policy (step None)"."""
    base = [s for s in samples if s.get("kind") == "base"]
    later = [s for s in samples if s.get("kind") == "policy"]
    if not base:
        return pd.DataFrame(columns=["prompt", "base", "base gold", "policy", "policy gold"])
    last_step = max((s["iteration"] for s in later), default=None)
    latest = {s["prompt"]: s for s in later if s["iteration"] == last_step}
    rows = []
    for s in base:
        row = {"prompt": s["prompt"], "base": s["response"], "base gold": round(s["gold"], 3)}
        if last_step is not None:
            p = latest.get(s["prompt"])
            row[f"policy (step {last_step})"] = p["response"] if p else "(not sampled at this step)"
            row["policy gold"] = round(p["gold"], 3) if p else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def run_samples(run_dir) -> list[dict]:
    return read_jsonl(Path(run_dir) / "samples.jsonl")


__all__ = ["ConfigError", "dpo_config", "initial_control", "logps_chart", "margin_chart", "eval_chart", "eval_table",
           "samples_table", "run_samples", "CAPTIONS"]
