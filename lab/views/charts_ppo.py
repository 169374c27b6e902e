"""Charts for the PPO and weak-to-strong pages: pure functions, data in -> Plotly figure out.

Every chart has a title, axis labels with units, and a one-line "what healthy looks like" caption
in `CAPTIONS` (the page shows it under the chart). Nothing here reads files or touches Streamlit,
so each function is tested on a DataFrame built in the test.

Inputs follow the run store (DESIGN.md): `df` is `read_metrics(run)` (one row per PPO iteration,
column "step" plus the TRL-style metric names), sample rows come from samples.jsonl and
`inspect.json` rows from the PPO trainer ("one PPO step, slowly").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab import glossary

ITERATION = "PPO iteration (count)"
PROXY_COLOR = "#1f77b4"
GOLD_COLOR = "#d4a017"
KL_COLOR = "#9467bd"
MARK_COLORS = {"params/kl_coef": "#d62728", "params/clip_eps": "#2ca02c"}
MARK_NAMES = {"params/kl_coef": "λ", "params/clip_eps": "ε"}
# objective/entropy is TRL's −Σ_t log π(y_t) per response (core.ppo_train.response_entropy, ≈ 25 for 24 tokens), not
# per token: the axis takes the glossary's unit, so the two can never name different ones again
ENTROPY_UNIT = f"entropy ({glossary.unit('objective/entropy')})"
MAX_MARKS = 12  # beyond this the chart is a barcode; the newest changes matter most

CAPTIONS = {
    "reward": "Healthy: proxy and gold rise together. Proxy still rising while gold falls is reward "
              "hacking — the reward model is being exploited. Two panels, because a logit and the "
              "annotator's utility have no common unit; each holds 0 so both rises read honestly.",
    "kl": "Healthy: KL grows slowly and levels off (near the target with adaptive λ). A steep climb "
          "means the policy is drifting far from the base model. λ below, on its own axis from 0.",
    "ratio": "Healthy: the ratio stays near 1; mass outside the shaded band [1-ε, 1+ε] is what "
             "clipping stops.",
    "value_loss": "Healthy: falls over the first iterations and then stays low; a spike follows a sudden "
                  "change in rewards (e.g. a new λ).",
    "entropy": "Healthy: declines slowly. A collapse towards 0 means the policy repeats one answer "
               "(mode collapse); a rise means it is babbling.",
    "kl_heatmap": "Healthy: a few bright tokens where the policy chose differently from the base "
                  "model; bright everywhere means it has left the base model's language.",
    "step_tokens": "Healthy: advantages of both signs, ratios near 1, few clipped tokens (×). The reward "
                   "model's score arrives only at the last token; the KL penalty on every token.",
    "overoptimization": "Gao et al. 2022: the proxy keeps rising with √KL while gold peaks and falls; "
                        "the gold peak is where to stop (or a larger λ keeps you before it). Proxy above, gold "
                        "below: their units differ, so each has its own panel from 0.",
    "w2s_loss": "Healthy: each model's loss falls; the students learn from the weak model's labels, so "
                "their loss floor stays above the ceiling's.",
    "w2s": "Healthy: the student lands between the weak supervisor and the ceiling; PGR = (student − "
           "weak) / (ceiling − weak), 1 means the whole gap recovered.",
}


# ----------------------------------------------------------------------------- helpers

def _has(df: pd.DataFrame | None, col: str) -> bool:
    return df is not None and not df.empty and col in df.columns and df[col].notna().any()


def _empty(title: str, x: str, y: str, note: str = "waiting for the first iteration…") -> go.Figure:
    """An empty chart that still says what it will show (pages never show a blank box)."""
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=320,
                      annotations=[dict(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                                        font=dict(color="gray"))])
    return fig


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=height,
                      margin=dict(l=60, r=30, t=60, b=50),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0))
    return fig


def param_changes(df: pd.DataFrame, column: str) -> list[tuple[int, float, float]]:
    """(step, old, new) for every iteration where `column` differs from the iteration before.

    With adaptive KL the controller moves λ every iteration; those are not the student's changes, so
    rows with a truthy "params/adaptive_kl" (on both sides of the change) are skipped for λ, but the
    switch between fixed and adaptive is itself a change worth marking.
    """
    if not _has(df, column) or "step" not in df.columns:
        return []
    rows = df[["step", column] + (["params/adaptive_kl"] if "params/adaptive_kl" in df.columns else [])]
    rows = rows.dropna(subset=[column]).sort_values("step")
    out = []
    prev_value, prev_adaptive = None, None
    for row in rows.itertuples(index=False):
        step, value = int(row[0]), float(row[1])
        adaptive = bool(row[2]) if len(row) > 2 and row[2] == row[2] and row[2] is not None else False
        if prev_value is not None and not math.isclose(value, prev_value, rel_tol=1e-6, abs_tol=1e-12):
            if not (column == "params/kl_coef" and adaptive and prev_adaptive):
                out.append((step, prev_value, value))
        elif prev_value is not None and column == "params/kl_coef" and adaptive != prev_adaptive:
            out.append((step, prev_value, value))
        prev_value, prev_adaptive = value, adaptive
    return out


def label_levels(steps: list[float], span: float, min_frac: float = 0.15) -> list[int]:
    """A text row for each change label (0 = top), so that labels closer than `min_frac` of the x
    range never share a row and overlap: each takes the first row whose last label is far enough."""
    last_in_row: list[float] = []
    levels = []
    gap = max(span, 1e-9) * min_frac
    for x in steps:
        for level, last in enumerate(last_in_row):
            if x - last >= gap:
                last_in_row[level] = x
                break
        else:
            level = len(last_in_row)
            last_in_row.append(x)
        levels.append(level)
    return levels


def change_marks(df: pd.DataFrame, columns=("params/kl_coef", "params/clip_eps")) -> list[tuple[int, str, str]]:
    """(step, label, colour) per iteration where λ or ε changed; changes at one step share a label."""
    by_step: dict[int, list[tuple[str, str]]] = {}
    for column in columns:
        for step, old, new in param_changes(df, column):
            by_step.setdefault(step, []).append((f"{MARK_NAMES.get(column, column)} {old:.3g}→{new:.3g}",
                                                 MARK_COLORS.get(column, "gray")))
    marks = []
    for step in sorted(by_step)[-MAX_MARKS:]:
        parts = by_step[step]
        marks.append((step, ", ".join(t for t, _ in parts), parts[0][1] if len(parts) == 1 else "#444444"))
    return marks


def mark_param_changes(fig: go.Figure, df: pd.DataFrame, columns=("params/kl_coef", "params/clip_eps"),
                       rows: int = 1) -> int:
    """A dashed vertical line at every live change of λ or ε (through every panel of `rows`), labelled
    once in the top panel; labels of nearby changes go to lower text rows instead of overlapping.
    Returns how many changes were marked."""
    marks = change_marks(df, columns)
    if not marks:
        return 0
    steps = pd.to_numeric(df["step"], errors="coerce").dropna()
    span = float(steps.max() - steps.min()) if len(steps) else 1.0
    levels = label_levels([m[0] for m in marks], span)
    for (step, text, color), level in zip(marks, levels):
        for r in range(1, rows + 1):
            kw = {} if rows == 1 else dict(row=r, col=1)
            fig.add_vline(x=step, line=dict(color=color, dash="dash", width=1), **kw)
        fig.add_annotation(x=step, y=1.0, xref="x", yref="y domain", yanchor="top", xanchor="left", showarrow=False,
                           yshift=-2 - 14 * level, text=text, font=dict(size=10, color=color),
                           bgcolor="rgba(255,255,255,0.75)")
    return len(marks)


def _line(df, col, name, color, dash=None, **kw):
    d = df.dropna(subset=[col]).sort_values("step")
    return go.Scatter(x=d["step"], y=d[col], name=name, mode="lines+markers", marker=dict(size=5),
                      line=dict(color=color, dash=dash), **kw)


# ----------------------------------------------------------------------------- live PPO charts

def _zero_in_range(fig: go.Figure, values, row: int, min_span: float) -> None:
    """A y range that holds 0 and every value, at least `min_span` tall: a drift of 0.01 around 0 then
    looks like what it is, not like a crash, and two panels read from the same zero line."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    lo, hi = min(0.0, float(v.min()) if len(v) else 0.0), max(0.0, float(v.max()) if len(v) else 0.0)
    if hi - lo < min_span:  # widen to min_span, from 0 when the values sit on one side of it
        if lo == 0:
            hi = min_span
        elif hi == 0:
            lo = -min_span
        else:
            mid = (lo + hi) / 2
            lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = 0.08 * (hi - lo)
    fig.update_yaxes(range=[lo - pad, hi + pad], zeroline=True, zerolinecolor="#999", zerolinewidth=1, row=row, col=1)


def reward_chart(df: pd.DataFrame) -> go.Figure:
    """Proxy (reward-model) score and gold utility of the same responses in two panels over one
    iteration axis. Their units differ (the RM score is a logit, the gold utility the annotator's
    scale), so neither is squeezed onto the other's axis; each panel holds 0, so "above / below the
    start" and "rising / falling" read honestly in both (see CAPTIONS["reward"])."""
    title = "Reward: proxy (reward model) vs gold (hidden annotator)"
    if not (_has(df, "objective/scores") or _has(df, "objective/gold")):
        return _empty(title, ITERATION, "proxy RM score (logit)")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("proxy: reward-model score (logit)", "gold: hidden annotator's utility"))
    proxy_values = []
    if _has(df, "objective/scores"):
        fig.add_trace(_line(df, "objective/scores", "proxy: RM score", PROXY_COLOR), row=1, col=1)
        proxy_values += list(df["objective/scores"])
    if _has(df, "objective/rlhf_reward"):
        fig.add_trace(_line(df, "objective/rlhf_reward", "proxy − λ·KL (what PPO maximises)", PROXY_COLOR,
                            dash="dot", opacity=0.6), row=1, col=1)
        proxy_values += list(df["objective/rlhf_reward"])
    if _has(df, "objective/gold"):
        fig.add_trace(_line(df, "objective/gold", "gold utility", GOLD_COLOR), row=2, col=1)
    _layout(fig, title, "", "", height=440)
    fig.update_xaxes(title_text=ITERATION, row=2, col=1)
    fig.update_yaxes(title_text="logit", row=1, col=1)
    fig.update_yaxes(title_text="utility", row=2, col=1)
    _zero_in_range(fig, proxy_values, 1, min_span=0.5)
    _zero_in_range(fig, df["objective/gold"] if _has(df, "objective/gold") else [], 2, min_span=0.2)
    mark_param_changes(fig, df, rows=2)
    return fig


def kl_chart(df: pd.DataFrame, target_kl: float | None = None) -> go.Figure:
    """Summed per-token KL(policy || base) per response (top) and λ (below), each panel from 0 on its
    own axis (nats and reward units per nat do not share a scale), with the target KL as a line when
    the adaptive controller is on."""
    title = "KL from the base model, and λ"
    if not _has(df, "objective/kl"):
        return _empty(title, ITERATION, "KL per response (nats)")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.65, 0.35],
                        subplot_titles=("KL(π‖π_ref) per response (nats)", "λ = kl_coef (reward units per nat)"))
    fig.add_trace(_line(df, "objective/kl", "KL(π‖π_ref) per response", KL_COLOR), row=1, col=1)
    if _has(df, "params/kl_coef"):
        fig.add_trace(_line(df, "params/kl_coef", "λ (kl_coef)", MARK_COLORS["params/kl_coef"]), row=2, col=1)
    if target_kl is not None:
        fig.add_hline(y=float(target_kl), line=dict(color="gray", dash="dot"), row=1, col=1,
                      annotation_text=f"target KL {target_kl:g}", annotation_position="bottom right")
    _layout(fig, title, "", "", height=440)
    fig.update_xaxes(title_text=ITERATION, row=2, col=1)
    fig.update_yaxes(title_text="nats", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="λ", rangemode="tozero", row=2, col=1)
    mark_param_changes(fig, df, rows=2)
    return fig


def value_loss_chart(df: pd.DataFrame) -> go.Figure:
    title = "Value (critic) loss"
    if not _has(df, "loss/value_avg"):
        return _empty(title, ITERATION, "value loss (reward units²)")
    fig = go.Figure(_line(df, "loss/value_avg", "value loss", "#8c564b"))
    _layout(fig, title, ITERATION, "value loss (reward units²)")
    fig.update_yaxes(rangemode="tozero")
    mark_param_changes(fig, df)
    return fig


def entropy_chart(df: pd.DataFrame) -> go.Figure:
    title = "Policy entropy"
    if not _has(df, "objective/entropy"):
        return _empty(title, ITERATION, ENTROPY_UNIT)
    fig = go.Figure(_line(df, "objective/entropy", "entropy", "#17becf"))
    _layout(fig, title, ITERATION, ENTROPY_UNIT)
    fig.update_yaxes(rangemode="tozero")
    mark_param_changes(fig, df)
    return fig


def _latest_with(df: pd.DataFrame | None, col: str):
    if df is None or df.empty or col not in df.columns:
        return None
    rows = df[df[col].apply(lambda v: isinstance(v, (list, tuple)) and len(v) > 0)]
    return None if rows.empty else rows.sort_values("step").iloc[-1]


def ratio_share_outside(edges, counts, clip_eps: float) -> float:
    """Share of tokens whose ratio falls outside [1-eps, 1+eps], from a histogram.

    A bin counts as outside when its centre is outside the band (bins are narrow next to eps)."""
    edges = np.asarray(edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if counts.sum() <= 0:
        return 0.0
    centres = 0.5 * (edges[:-1] + edges[1:])
    outside = (centres < 1 - clip_eps) | (centres > 1 + clip_eps)
    return float(counts[outside].sum() / counts.sum())


def ratio_x_range(edges, counts, clip_eps: float) -> tuple[float, float]:
    """An x range that always shows the whole clip band, a margin beyond it, and every bin that holds
    a token (the trainer's bins run wider than any band, so what lies outside is drawn too)."""
    edges = np.asarray(edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    filled = np.nonzero(counts > 0)[0]
    lo, hi = 1 - clip_eps, 1 + clip_eps
    if len(filled):
        lo, hi = min(lo, edges[filled[0]]), max(hi, edges[filled[-1] + 1])
    margin = max(0.05, 0.15 * clip_eps)
    return float(lo - margin), float(hi + margin)


def ratio_histogram(edges, counts, clip_eps: float, clipfrac: float | None = None, step=None) -> go.Figure:
    """The per-token policy ratio π_θ/π_old of one iteration's updates as a histogram, with the clip
    band [1-ε, 1+ε] shaded. `clipfrac` (policy/clipfrac_avg) is the share where the clipped term was
    the active one (outside the band *and* on the side the advantage pushes), shown next to the
    plain share outside the band. The trainer puts ratios beyond its bins into the end bins; when the
    band reaches an end bin, the share outside cannot be told and the subtitle says so."""
    title = "Policy ratio π_θ/π_old" + (f" (iteration {int(step)})" if step is not None else "")
    x_label, y_label = "ratio π_θ/π_old (1 = unchanged)", "tokens (% of the iteration's updates)"
    if edges is None or counts is None or len(counts) == 0:
        return _empty(title, x_label, y_label)
    edges = np.asarray(edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram needs len(edges) == len(counts) + 1, got {len(edges)} and {len(counts)}")
    total = counts.sum()
    share = 100 * counts / total if total > 0 else counts
    outside = ratio_share_outside(edges, counts, clip_eps)
    centres = 0.5 * (edges[:-1] + edges[1:])
    colors = ["#d62728" if (c < 1 - clip_eps or c > 1 + clip_eps) else PROXY_COLOR for c in centres]
    fig = go.Figure(go.Bar(x=centres, y=share, width=np.diff(edges), marker_color=colors, name="tokens",
                           hovertemplate="ratio %{x:.3f}: %{y:.2f}%<extra></extra>"))
    fig.add_vrect(x0=1 - clip_eps, x1=1 + clip_eps, fillcolor="#2ca02c", opacity=0.12, line_width=0,
                  annotation_text=f"clip band 1±{clip_eps:g}", annotation_position="top left")
    fig.add_vline(x=1.0, line=dict(color="gray", dash="dot", width=1))
    band_covers_an_end = 1 - clip_eps <= edges[1] or 1 + clip_eps >= edges[-2]
    if band_covers_an_end:
        shares = (f"{100 * outside:.1f}% outside the band in [{edges[0]:g}, {edges[-1]:g}]; ratios beyond that "
                  "were binned at its ends, inside the band, so more may be outside")
    else:
        shares = f"{100 * outside:.1f}% outside the band"
    if clipfrac is not None and not (isinstance(clipfrac, float) and math.isnan(clipfrac)):
        shares += f", {100 * float(clipfrac):.1f}% clipped"
    full_title = f"{title}<br><sup>{shares}</sup>"
    _layout(fig, full_title, x_label, y_label)
    fig.update_layout(showlegend=False, bargap=0)
    fig.update_xaxes(range=list(ratio_x_range(edges, counts, clip_eps)))
    return fig


def ratio_histogram_from_metrics(df: pd.DataFrame) -> go.Figure:
    """The ratio histogram of the newest iteration that logged one."""
    row = _latest_with(df, "hist/ratio_counts")
    if row is None:
        return ratio_histogram(None, None, 0.2)
    has_eps = "params/clip_eps" in row and row["params/clip_eps"] == row["params/clip_eps"]  # NaN != NaN
    eps = float(row["params/clip_eps"]) if has_eps else 0.2
    clipfrac = row.get("policy/clipfrac_avg") if hasattr(row, "get") else None
    return ratio_histogram(row["hist/ratio_edges"], row["hist/ratio_counts"], eps, clipfrac=clipfrac, step=row["step"])


# ----------------------------------------------------------------------------- per-token views

def kl_heatmap(tokens: list[str], kl: list[float], title: str = "Per-token KL", per_row: int = 12) -> go.Figure:
    """One cell per response token, coloured by its KL estimate log π(a|s) − log π_ref(a|s), the
    token text written in the cell; long responses wrap into rows of `per_row` tokens."""
    x_label, y_label = "token position in the row", "row of tokens"
    if not tokens:
        return _empty(title, x_label, y_label, note="no tokens")
    if len(kl) != len(tokens):
        raise ValueError(f"need one KL value per token, got {len(kl)} values for {len(tokens)} tokens")
    n_rows = (len(tokens) + per_row - 1) // per_row
    z = np.full((n_rows, per_row), np.nan)
    text = [["" for _ in range(per_row)] for _ in range(n_rows)]
    for i, (tok, v) in enumerate(zip(tokens, kl)):
        r, c = divmod(i, per_row)
        z[r, c] = np.nan if v is None else float(v)
        text[r][c] = str(tok).replace("Ġ", "").replace("▁", "").replace("\n", "⏎") or "␣"
    span = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    span = max(span, 1e-3)
    fig = go.Figure(go.Heatmap(
        z=z, text=text, texttemplate="%{text}", textfont=dict(size=11), colorscale="RdBu", reversescale=True,
        zmin=-span, zmax=span, zmid=0.0, xgap=2, ygap=2,
        colorbar=dict(title=dict(text="KL (nats)", side="right")),
        hovertemplate="%{text}: %{z:.3f} nats<extra></extra>"))
    _layout(fig, f"{title} (total {np.nansum(z):.2f} nats)", x_label, y_label, height=90 + 45 * n_rows)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return fig


STEP_COLUMNS = ("tokens", "logprobs", "ref_logprobs", "kl", "rewards", "values", "advantages", "returns",
                "ratio", "clipped")


RAW_ADVANTAGE = "advantage Â_raw (GAE)"
RETURN = "return R = Â_raw + V"
WHITENED_ADVANTAGE = "advantage Â, whitened (the policy loss's)"


def ppo_step_table(row: dict) -> pd.DataFrame:
    """One row of inspect.json as a per-token table, one token per row, its quantities in the order PPO computes
    them. The return is built from the RAW GAE advantage (core.ppo.gae: R = Â_raw + V); whitening over the whole
    batch (mean 0, std 1) comes after and feeds the policy loss only, so it has its own column: a student adding
    Â_raw and V finds R."""
    missing = [c for c in STEP_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"inspect row lacks {missing}")
    n = len(row["tokens"])
    bad = [c for c in STEP_COLUMNS + ("advantages_raw",) if c in row and len(row[c]) != n]
    if bad:
        raise ValueError(f"inspect row: {bad} do not have one value per token ({n})")
    values, returns = np.asarray(row["values"], dtype=float), np.asarray(row["returns"], dtype=float)
    # inspect.json from before "advantages_raw" was recorded: gae() defines R = Â_raw + V, so Â_raw = R − V
    raw = row["advantages_raw"] if "advantages_raw" in row else list(returns - values)
    return pd.DataFrame({
        "token": row["tokens"],
        "log π (policy)": row["logprobs"],
        "log π_ref (base)": row["ref_logprobs"],
        "KL = log π − log π_ref": row["kl"],
        "reward (shaped)": row["rewards"],
        "value V(s)": values,
        RAW_ADVANTAGE: raw,
        RETURN: returns,
        WHITENED_ADVANTAGE: row["advantages"],
        "ratio π_θ/π_old": row["ratio"],
        "clipped": [bool(c) for c in row["clipped"]],
    })


def ppo_step_figure(row: dict) -> go.Figure:
    """The per-token signals of one response in one iteration: the shaped reward (−λ·KL on every
    token, plus the RM score at the last), the critic's value and the return, the whitened advantage the
    policy loss used, and the ratio, with clipped tokens marked. The panels share the token axis, so one
    token's quantities stand one above the other."""
    table = ppo_step_table(row)
    n = len(table)
    x = list(range(n))
    labels = [f"{i}:{t}" for i, t in enumerate(table["token"])]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("shaped reward, value and return (reward units)",
                                        "advantage Â, whitened over the batch (std units)",
                                        "ratio π_θ/π_old"))
    fig.add_trace(go.Bar(x=x, y=table["reward (shaped)"], name="reward", marker_color=GOLD_COLOR), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=table["value V(s)"], name="value", mode="lines+markers",
                             line=dict(color="#8c564b")), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=table[RETURN], name=RETURN, mode="lines",
                             line=dict(color="#8c564b", dash="dot")), row=1, col=1)
    adv = table[WHITENED_ADVANTAGE]
    fig.add_trace(go.Bar(x=x, y=adv, name="advantage (whitened)",
                         marker_color=["#2ca02c" if a >= 0 else "#d62728" for a in adv]), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=table["ratio π_θ/π_old"], name="ratio", mode="lines+markers",
                             line=dict(color=PROXY_COLOR)), row=3, col=1)
    clipped = table[table["clipped"]]
    if not clipped.empty:
        fig.add_trace(go.Scatter(x=list(clipped.index), y=clipped["ratio π_θ/π_old"], name="clipped", mode="markers",
                                 marker=dict(symbol="x", size=11, color="#d62728")), row=3, col=1)
    eps = row.get("clip_eps")
    if eps is not None:
        fig.add_hrect(y0=1 - eps, y1=1 + eps, fillcolor="#2ca02c", opacity=0.12, line_width=0, row=3, col=1)
    title = "One PPO step, token by token"
    if row.get("score") is not None:
        title += f" — RM score {float(row['score']):.2f}"
    if row.get("kl_coef") is not None:
        title += f", λ={float(row['kl_coef']):.3g}"
    _layout(fig, title, "", "", height=640)
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.01))
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=labels, tickangle=-60, row=3, col=1)
    fig.update_xaxes(title_text="response token (position:text)", row=3, col=1)
    fig.update_yaxes(title_text="reward units", row=1, col=1)
    fig.update_yaxes(title_text="Â (whitened)", row=2, col=1)
    fig.update_yaxes(title_text="ratio", row=3, col=1)
    return fig


# ----------------------------------------------------------------------------- across runs

def overoptimization_points(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long table run, step, sqrt_kl, proxy, gold from each run's metrics (rows with all three)."""
    parts = []
    for name, df in runs.items():
        if not all(_has(df, c) for c in ("objective/kl", "objective/scores", "objective/gold")):
            continue
        d = df.dropna(subset=["objective/kl", "objective/scores", "objective/gold"]).sort_values("step")
        parts.append(pd.DataFrame({"run": name, "step": d["step"].to_numpy(),
                                   "sqrt_kl": np.sqrt(np.clip(d["objective/kl"].to_numpy(dtype=float), 0, None)),
                                   "proxy": d["objective/scores"].to_numpy(dtype=float),
                                   "gold": d["objective/gold"].to_numpy(dtype=float)}))
    if not parts:
        return pd.DataFrame(columns=["run", "step", "sqrt_kl", "proxy", "gold"])
    return pd.concat(parts, ignore_index=True)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    out = np.empty(len(values))
    for i in range(len(values)):
        out[i] = np.mean(values[max(0, i - window + 1): i + 1])
    return out


def overoptimization_chart(runs: dict[str, pd.DataFrame], window: int = 5) -> go.Figure:
    """Proxy (top) and gold (below) reward against √KL, one colour per run (Gao et al. 2022, "Scaling
    laws for reward model overoptimization"). Two panels over one √KL axis, each holding 0, for the
    reason of reward_chart: a logit and the annotator's utility have no common unit. One rollout batch
    is noisy, so each run is drawn as a moving average over `window` iterations (of √KL and of the
    rewards alike), with the raw iterations as faint dots."""
    title = "Over-optimisation: proxy and gold reward vs √KL"
    x_label = "√KL from the base model (√nats)"
    pts = overoptimization_points(runs)
    if pts.empty:
        return _empty(title, x_label, "proxy RM score (logit)", note="no run with KL, proxy and gold yet")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("proxy: reward-model score (logit)", "gold: hidden annotator's utility"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for i, (name, d) in enumerate(pts.groupby("run", sort=False)):
        color = palette[i % len(palette)]
        x = smooth(d["sqrt_kl"].to_numpy(), window)
        for col, dash, row in (("proxy", None, 1), ("gold", "dash", 2)):
            fig.add_trace(go.Scatter(x=x, y=smooth(d[col].to_numpy(), window), name=f"{name}: {col}",
                                     mode="lines", line=dict(color=color, dash=dash, width=2.5),
                                     hovertemplate="√KL %{x:.2f}: %{y:.3f}<extra>" + f"{name} {col}</extra>"),
                          row=row, col=1)
            fig.add_trace(go.Scatter(x=d["sqrt_kl"], y=d[col], mode="markers", showlegend=False, hoverinfo="skip",
                                     marker=dict(color=color, size=4, opacity=0.25,
                                                 symbol="diamond" if row == 2 else "circle")), row=row, col=1)
    _layout(fig, title + f"<br><sup>moving average over {window} iterations; dots: single iterations</sup>",
            "", "", height=520)
    fig.update_xaxes(title_text=x_label, row=2, col=1)
    fig.update_yaxes(title_text="logit", row=1, col=1)
    fig.update_yaxes(title_text="utility", row=2, col=1)
    _zero_in_range(fig, pts["proxy"], 1, min_span=0.5)
    _zero_in_range(fig, pts["gold"], 2, min_span=0.2)
    return fig


# ----------------------------------------------------------------------------- weak-to-strong

W2S_BARS = (("weak", "weak supervisor"), ("xent", "student, cross-entropy"),
            ("confidence", "student, + confidence loss"), ("ceiling", "strong ceiling (gold labels)"))


def w2s_chart(accuracy: dict, pgrs: dict | None = None, metric: str = "accuracy",
              spread: dict | None = None) -> go.Figure:
    """Bars weak / student (xent) / student (confidence) / ceiling, test accuracy in %, with each
    student's PGR written on its bar. `accuracy` maps "weak", "xent", "confidence", "ceiling" to a
    number in [0, 1] (missing bars are left out); PGR is computed when not given. `spread` (same
    keys) draws ± one standard deviation over seeds as error bars."""
    title = "Weak-to-strong: does the strong student beat its weak supervisor?"
    y_label = f"test {metric} on gold labels (%)"
    present = [(k, label) for k, label in W2S_BARS if accuracy.get(k) is not None]
    if not present:
        return _empty(title, "model", y_label, note="no results yet")
    from core.w2s import pgr  # the one PGR (torch is imported only when the bars are drawn)

    pgrs = dict(pgrs or {})
    weak, ceiling = accuracy.get("weak"), accuracy.get("ceiling")
    for k in ("xent", "confidence"):
        if k not in pgrs and accuracy.get(k) is not None and weak is not None and ceiling is not None:
            pgrs[k] = pgr(weak, accuracy[k], ceiling)  # core.w2s's: nan when the ceiling does not beat weak
    colors = {"weak": "#7f7f7f", "xent": PROXY_COLOR, "confidence": "#ff7f0e", "ceiling": "#2ca02c"}
    xs = [label for _, label in present]
    ys = [100 * float(accuracy[k]) for k, _ in present]
    text = []
    for (k, _), y in zip(present, ys):
        t = f"{y:.1f}%"
        if k in pgrs and pgrs[k] is not None and not math.isnan(pgrs[k]):
            t += f"<br>PGR {pgrs[k]:.2f}"
        text.append(t)
    error_y = None
    if spread:
        errs = [100 * float(spread.get(k) or 0.0) for k, _ in present]
        error_y = dict(type="data", array=errs, visible=True, color="#444")
    # numbers inside the top of each bar, where error bars cannot cover them
    fig = go.Figure(go.Bar(x=xs, y=ys, text=text, textposition="inside", insidetextanchor="end",
                           textfont=dict(color="white"), error_y=error_y,
                           marker_color=[colors[k] for k, _ in present]))
    low = min(ys)
    top = max(y + (e if error_y else 0) for y, e in zip(ys, error_y["array"] if error_y else [0] * len(ys)))
    fig.update_yaxes(range=[max(0.0, low - 15), min(100.0, top + 5)])
    parts = [f"PGR ({k}) = {pgrs[k]:.2f}" for k in ("xent", "confidence") if k in pgrs and not math.isnan(pgrs[k])]
    _layout(fig, title + ("<br><sup>" + ", ".join(parts) + "</sup>" if parts else ""), "model", y_label, height=400)
    fig.update_layout(showlegend=False)
    return fig


def w2s_chart_from_results(results: dict) -> go.Figure:
    """The bars from core.w2s results.json (means over seeds, ± std as error bars)."""
    students = results.get("students", {})
    accuracy = {"weak": results.get("weak_acc"), "ceiling": results.get("ceiling_acc")}
    spread = {"weak": results.get("weak_acc_std"), "ceiling": results.get("ceiling_acc_std")}
    pgrs = {}
    for name in ("xent", "confidence"):
        if name in students:
            accuracy[name] = students[name].get("acc")
            spread[name] = students[name].get("acc_std")
            if students[name].get("pgr") is not None:
                pgrs[name] = students[name]["pgr"]
    return w2s_chart(accuracy, pgrs=pgrs, spread=spread)


W2S_LOSS_COLORS = {"weak": "#7f7f7f", "ceiling": "#2ca02c", "xent": PROXY_COLOR, "confidence": "#ff7f0e"}


def w2s_loss_chart(df: pd.DataFrame) -> go.Figure:
    """Training loss of each model of the experiment while it runs (w2s/<model>_loss)."""
    title = "Weak-to-strong training: loss of each model"
    x_label, y_label = "optimizer step (count, all models in turn)", "loss (nats per example)"
    cols = [(name, f"w2s/{name}_loss") for name in W2S_LOSS_COLORS if _has(df, f"w2s/{name}_loss")]
    if not cols:
        return _empty(title, x_label, y_label, note="waiting for the first step…")
    fig = go.Figure()
    for name, col in cols:
        d = df.dropna(subset=[col]).sort_values("step")
        fig.add_trace(go.Scattergl(x=d["step"], y=d[col], name=name, mode="lines",
                                   line=dict(color=W2S_LOSS_COLORS[name])))
    _layout(fig, title, x_label, y_label)
    return fig
