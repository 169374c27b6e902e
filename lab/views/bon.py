"""The best-of-n page's logic and figures: pure functions of DataFrames and run folders (tested without a browser)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.config import BoNConfig, ConfigError, bon_preset
from core.runs import read_jsonl
from lab.views.charts import COLORS, _empty, _has, _layout

N_AXIS = "n (responses sampled per prompt, log scale)"
KL_BOUND = "KL ≤ log n − (n−1)/n (upper bound)"
KL_ESTIMATE = "KL estimated from the kept responses"
CAPTIONS = {
    "bon": "Gold and proxy of the kept response (mean over the evaluation prompts, ± one standard error) against "
           "n (top), and the price in KL from the base model (bottom): log n − (n − 1)/n is an upper bound "
           "(Beirami et al. 2024), tight when the base model rarely draws the same response twice; the dashed line "
           "estimates the KL itself from the kept responses' base-model probabilities, and falls below the bound "
           "when responses repeat. The proxy always rises with n; the gold rises as long as the reward model's "
           "favourite is also the annotator's, and flattens or falls where the proxy is over-optimised.",
}


def parse_n(text: str) -> list[int]:
    """'1, 2, 4' -> [1, 2, 4]; ConfigError naming BoNConfig.n otherwise (the order is checked by validate)."""
    try:
        return [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"BoNConfig.n must be comma-separated integers such as 1,2,4,8,16,32, got {text!r}") from None


def bon_config(policy: str = "small", reward: str = "reward", n: str = "1,2,4,8,16,32", prompts: int = 64,
               preset: str = "small", **overrides) -> BoNConfig:
    """A checked BoNConfig from the page's widgets (ConfigError naming the field; tokenizers checked too)."""
    from core.bon import check_inputs

    cfg = bon_preset(preset, policy=policy, reward=reward, n=parse_n(n), prompts=prompts, **overrides).validate()
    check_inputs(cfg)
    return cfg


def bon_chart(df: pd.DataFrame) -> go.Figure:
    title, y = "Best-of-n: gold and proxy against n", "kept response (score units)"
    if not _has(df, "bon/n"):
        return _empty(title, N_AXIS, y, "sampling… the chart appears when every prompt has its n responses")
    d = df.dropna(subset=["bon/n"]).sort_values("bon/n")
    # two panels on one n axis: the scores, and the KL price on its own scale from 0 (no second y-axis)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.62, 0.38])
    for col, name, color in (("objective/gold", "gold (hidden annotator)", COLORS[2]),
                             ("objective/scores", "proxy (reward model)", COLORS[0])):
        se = d.get(f"{col}_se")
        fig.add_trace(go.Scatter(x=d["bon/n"], y=d[col], name=name, mode="lines+markers", line=dict(color=color),
                                 error_y=dict(type="data", array=se, visible=se is not None)), row=1, col=1)
    fig.add_trace(go.Scatter(x=d["bon/n"], y=d["bon/kl_analytic"], name=KL_BOUND,
                             mode="lines+markers", line=dict(color=COLORS[7])), row=2, col=1)
    if _has(d, "bon/kl_estimate"):  # runs from before the estimate was logged have the bound only
        fig.add_trace(go.Scatter(x=d["bon/n"], y=d["bon/kl_estimate"], name=KL_ESTIMATE, mode="lines+markers",
                                 line=dict(color=COLORS[3], dash="dash")), row=2, col=1)
    ticks = dict(type="log", tickvals=list(d["bon/n"]), ticktext=[str(int(n)) for n in d["bon/n"]])
    fig.update_xaxes(**ticks, row=1, col=1)
    fig.update_xaxes(**ticks, title_text=N_AXIS, row=2, col=1)
    fig = _layout(fig, title, "", y, height=480)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.15, xanchor="left", x=0.0))  # under the plot
    fig.update_xaxes(title_text=N_AXIS, row=2, col=1)
    fig.update_yaxes(title_text="KL to base (nats)", rangemode="tozero", row=2, col=1)
    return fig


def bon_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = {"bon/n": "n", "objective/gold": "gold", "objective/gold_se": "gold ± (se)",
            "objective/scores": "proxy", "objective/scores_se": "proxy ± (se)",
            "bon/kl_analytic": "KL bound log n − (n−1)/n (nats)", "bon/kl_estimate": "KL estimate (nats)",
            "objective/response_length": "length (tokens)"}
    if not _has(df, "bon/n"):
        return pd.DataFrame(columns=list(cols.values()))
    d = df.dropna(subset=["bon/n"]).sort_values("bon/n")
    out = d[[c for c in cols if c in d.columns]].rename(columns=cols).reset_index(drop=True)
    out["n"] = out["n"].astype(int)
    return out


def run_samples(run_dir) -> list[dict]:
    return [s for s in read_jsonl(Path(run_dir) / "samples.jsonl") if s.get("kind") == "bon"]


def samples_table(sample: dict) -> pd.DataFrame:
    """One prompt's max(n) responses with their RM score and gold, and for which n each one is the kept one."""
    kept_by: dict[int, list[str]] = {}
    for n, index in sample.get("kept", {}).items():
        kept_by.setdefault(int(index), []).append(n)
    rows = [{"#": j + 1, "response": text, "RM score": round(score, 3), "gold": round(gold, 3),
             "kept for n =": ", ".join(sorted(kept_by.get(j, []), key=int))}
            for j, (text, score, gold) in enumerate(zip(sample["responses"], sample["scores"], sample["gold"]))]
    return pd.DataFrame(rows)
