"""The frontier page's figures and tables: pure functions of frontier.csv / fits.json / samples.jsonl.

`df` is `core.frontier.read_frontier(run)`: one row per evaluated policy (method, setting, seed, iteration, kl,
sqrt_kl, gold, proxy, length, kl_measured); the row with method "base" is the base model itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.frontier import METHODS, form_of, predict, read_frontier
from core.runs import read_json, read_jsonl

METHOD_COLORS = {"ppo": "#1f77b4", "grpo": "#2ca02c", "rloo": "#9467bd", "dpo": "#d62728", "bon": "#ff7f0e",
                 "base": "#444444"}
METHOD_NAMES = {"ppo": "PPO", "grpo": "GRPO", "rloo": "RLOO", "dpo": "DPO", "bon": "best-of-n", "base": "base model"}
KNOB_SYMBOLS = {"ppo": "λ", "grpo": "β", "rloo": "β", "dpo": "β", "bon": "n"}
X_LABEL = "√KL from the base model (√nats)"
Y_LABELS = {"gold": "gold utility gained over the base model", "proxy": "proxy RM score gained over the base model"}

CAPTIONS = {
    "gold": "Each dot is one policy scored on the same prompts: a setting's checkpoints trace its path (online "
            "methods), bars span the seeds, lines are Gao et al.'s fits. Higher at the same √KL = more KL-efficient; "
            "where a curve turns down, that method has started to over-optimise the reward model. If the paths of "
            "different λ/β lie on one curve, the KL penalty only chooses where you stop on the frontier; if a "
            "larger penalty's path lies higher, it moves the frontier.",
    "proxy": "The proxy (the reward model the methods optimise) on the same policies: it should keep rising where "
             "the gold has turned down — the gap between the two plots is reward hacking.",
}


def load(run_dir) -> tuple[pd.DataFrame, dict, list[dict]]:
    """A sweep's frontier.csv, fits.json (without its notes) and samples.jsonl (empty while none is written)."""
    fits = read_json(Path(run_dir) / "fits.json", {}) or {}
    return (read_frontier(run_dir), {k: v for k, v in fits.items() if not k.startswith("_")},
            read_jsonl(Path(run_dir) / "samples.jsonl"))


def gains(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the methods with gold and proxy as gains over the base model (what the fits describe)."""
    base = df[df["method"] == "base"]
    out = df[df["method"] != "base"].copy()
    out["gold_gain"] = out["gold"] - (float(base["gold"].mean()) if len(base) else 0.0)
    out["proxy_gain"] = out["proxy"] - (float(base["proxy"].mean()) if len(base) else 0.0)
    return out


def spread(df: pd.DataFrame, target: str) -> pd.DataFrame:
    """Mean and seed spread (min, max) of √KL and the target gain per (method, setting, iteration)."""
    g = gains(df)
    col = f"{target}_gain"
    agg = g.groupby(["method", "setting", "iteration"], sort=False).agg(
        sqrt_kl=("sqrt_kl", "mean"), y=(col, "mean"), y_min=(col, "min"), y_max=(col, "max"),
        x_min=("sqrt_kl", "min"), x_max=("sqrt_kl", "max"), seeds=("seed", "nunique"))
    return agg.reset_index()


def frontier_figure(df: pd.DataFrame, fits: dict, target: str = "gold") -> go.Figure:
    """Gain in `target` (gold or proxy) against √KL: one colour per method, one marker line per setting (its
    checkpoints in order), error bars over seeds, and the fitted Gao et al. curve per method."""
    title = {"gold": "The frontier: gold gained per √KL", "proxy": "The same policies scored by the proxy RM"}[target]
    fig = go.Figure()
    pts = spread(df, target)
    if pts.empty:
        fig.add_annotation(text="no evaluated policy yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    for method in [m for m in METHODS if m in set(pts["method"])]:
        color = METHOD_COLORS[method]
        rows = pts[pts["method"] == method]
        first = True
        for setting, d in rows.groupby("setting", sort=True):
            d = d.sort_values("iteration")
            label = f"{METHOD_NAMES[method]} {KNOB_SYMBOLS[method]}={setting:g}"
            fig.add_trace(go.Scatter(
                x=d["sqrt_kl"], y=d["y"], mode="markers" if method == "bon" else "lines+markers",
                name=METHOD_NAMES[method], legendgroup=method, showlegend=first,
                line=dict(color=color, width=1, dash="dot"), marker=dict(color=color, size=8),
                error_y=dict(type="data", symmetric=False, array=d["y_max"] - d["y"], arrayminus=d["y"] - d["y_min"],
                             visible=bool((d["seeds"] > 1).any()), color=color, thickness=1),
                customdata=np.stack([d["iteration"], d["seeds"]], 1),
                hovertemplate=f"{label}<br>iteration %{{customdata[0]}}<br>√KL %{{x:.2f}}: %{{y:+.3f}}"
                              f"<br>%{{customdata[1]}} seed(s)<extra></extra>"))
            first = False
        fit = (fits.get(method) or {}).get(target) or {}
        if "alpha" in fit:
            x = np.linspace(0, max(fit["d_max"], 1e-3) * 1.15, 100)
            fig.add_trace(go.Scatter(
                x=x, y=predict(x, fit["alpha"], fit["beta"], form_of(method)), mode="lines", legendgroup=method,
                name=f"{METHOD_NAMES[method]} fit (R² {fit['r2']:.2f})", line=dict(color=color, width=2.5),
                hoverinfo="skip"))
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dash"))
    fig.update_layout(title=title, xaxis_title=X_LABEL, yaxis_title=Y_LABELS[target], height=440,
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2))
    return fig


def fits_table(fits: dict) -> pd.DataFrame:
    """One row per method and target: alpha, beta, the peak (√KL and gain), R², or why the fit was skipped."""
    rows = []
    for method in [m for m in METHODS if m in fits]:
        for target in ("gold", "proxy"):
            fit = fits[method].get(target) or {}
            if "skipped" in fit:
                rows.append({"method": METHOD_NAMES[method], "target": target, "fit": f"skipped: {fit['skipped']}"})
                continue
            form = "d(α − β·d)" if fit.get("form") == "bon" else "d(α − β·log d)"
            peak = ("no peak (keeps rising)" if fit.get("d_star") is None else
                    f"√KL {fit['d_star']:.2f}{'' if fit['peak_in_range'] else ' (beyond the measured range)'}")
            rows.append({"method": METHOD_NAMES[method], "target": target, "fit": form, "α": fit.get("alpha"),
                         "β": fit.get("beta"), "peak at": peak, "gain at peak": fit.get("peak"), "R²": fit.get("r2"),
                         "points": fit.get("points")})
    return pd.DataFrame(rows)


def at_kl_table(df: pd.DataFrame, ks: list[float], tolerance: float = 0.35) -> pd.DataFrame:
    """'At KL ≈ k, each method's gold': for each k and method, the policy whose KL is nearest k (mean over the
    seeds of that setting and iteration), shown when its KL is within tolerance × k + 0.05 nats (else —)."""
    pts = df[df["method"] != "base"].groupby(["method", "setting", "iteration"], sort=False).agg(
        kl=("kl", "mean"), gold=("gold", "mean"), proxy=("proxy", "mean")).reset_index()
    rows = []
    for k in ks:
        row = {"KL ≈": k}
        for method in [m for m in METHODS if m in set(pts["method"])]:
            d = pts[pts["method"] == method]
            i = (d["kl"] - k).abs().idxmin()
            near = abs(d.loc[i, "kl"] - k) <= tolerance * k + 0.05
            row[METHOD_NAMES[method]] = (f"{d.loc[i, 'gold']:+.3f} (KL {d.loc[i, 'kl']:.2f})" if near else "—")
        rows.append(row)
    base = df[df["method"] == "base"]
    if len(base):
        rows.insert(0, {"KL ≈": 0.0, "base model": f"{base['gold'].mean():+.3f}"})
    return pd.DataFrame(rows)


def default_ks(df: pd.DataFrame, count: int = 4) -> list[float]:
    """A few KL values for the table: halvings down from the KL a typical method reached (the median over the
    methods of their largest KL), rounded to 2 digits."""
    pts = df[df["method"] != "base"]
    if pts.empty or not (pts["kl"] > 0).any():
        return []
    top = float(pts[pts["kl"] > 0].groupby("method")["kl"].max().median())
    return sorted({float(f"{top / 2 ** i:.2g}") for i in range(count)})


def matched_samples(df: pd.DataFrame, samples: list[dict], k: float, per_method: int = 2) -> pd.DataFrame:
    """Generations of each method's policy nearest KL k, beside the base model's on the same prompts."""
    if not samples:
        return pd.DataFrame()
    s = pd.DataFrame(samples)
    out = []
    base = s[s["method"] == "base"]
    for _, r in base.head(per_method).iterrows():
        out.append({"method": "base model", "setting": "", "KL": 0.0, "prompt": r["prompt"], "response": r["response"],
                    "gold": r["gold"], "proxy": r["proxy"]})
    for method in [m for m in METHODS if m in set(s["method"])]:
        d = s[s["method"] == method]
        nearest = d.loc[(d["point_kl"] - k).abs().idxmin()]
        pick = d[(d["setting"] == nearest["setting"]) & (d["seed"] == nearest["seed"])
                 & (d["iteration"] == nearest["iteration"])]
        for _, r in pick.head(per_method).iterrows():
            out.append({"method": METHOD_NAMES[method], "setting": f"{KNOB_SYMBOLS[method]}={r['setting']:g}",
                        "KL": round(float(r["point_kl"]), 2), "prompt": r["prompt"], "response": r["response"],
                        "gold": r["gold"], "proxy": r["proxy"]})
    return pd.DataFrame(out)


def penalty_table(df: pd.DataFrame) -> pd.DataFrame:
    """Does the KL penalty move the frontier or only where you stop on it? For each online method with several
    settings: each setting's gold gain interpolated along its own path (mean over seeds) at one common √KL that
    every setting reached. Equal gains: one frontier, the penalty only picks the stopping point (Gao et al.)."""
    pts = spread(df, "gold")
    rows = []
    for method in [m for m in METHODS if m != "bon" and m in set(pts["method"])]:
        d = pts[pts["method"] == method]
        paths = {s: g.sort_values("sqrt_kl") for s, g in d.groupby("setting")}
        if len(paths) < 2:
            continue
        common = min(float(g["sqrt_kl"].max()) for g in paths.values())
        for setting, g in paths.items():
            x = np.concatenate([[0.0], g["sqrt_kl"].to_numpy()])   # every path starts at the base model
            y = np.concatenate([[0.0], g["y"].to_numpy()])
            rows.append({"method": METHOD_NAMES[method], "setting": f"{KNOB_SYMBOLS[method]}={setting:g}",
                         "common √KL": round(common, 2), "gold gain there": float(np.interp(common, x, y)),
                         "final √KL": float(g.sort_values("iteration")["sqrt_kl"].iloc[-1]),
                         "final gold gain": float(g.sort_values("iteration")["y"].iloc[-1])})
    return pd.DataFrame(rows)


def reading(df: pd.DataFrame, fits: dict) -> list[str]:
    """Plain sentences a student can check against the plots: who leads at low KL, where each gold fit peaks."""
    lines = []
    names = [METHOD_NAMES[m] for m in METHODS if m in set(df["method"])]
    for k in default_ks(df):  # the lowest KL of the table at which two or more methods can be compared
        row = at_kl_table(df, [k]).iloc[-1]
        cells = {n: float(row[n].split()[0]) for n in names if isinstance(row.get(n), str) and row[n] != "—"}
        if len(cells) >= 2:
            best = max(cells, key=cells.get)
            lines.append(f"At KL ≈ {k:g} nats the most gold is bought by **{best}** ({cells[best]:+.3f}; "
                         + ", ".join(f"{n} {v:+.3f}" for n, v in cells.items() if n != best) + ").")
            break
    for method in [m for m in METHODS if m in fits]:
        fit = fits[method].get("gold") or {}
        name = METHOD_NAMES[method]
        if "skipped" in fit:
            lines.append(f"{name}: gold fit skipped ({fit['skipped']}).")
        elif fit.get("d_star") is None:
            lines.append(f"{name}: the gold fit does not peak in this sweep (R² {fit['r2']:.2f}).")
        else:
            where = "inside" if fit["peak_in_range"] else "beyond"
            lines.append(f"{name}: gold peaks at √KL ≈ {fit['d_star']:.2f} (KL ≈ {fit['d_star'] ** 2:.1f} nats, "
                         f"{where} the measured range), gain {fit['peak']:+.3f}; R² {fit['r2']:.2f}.")
    return lines


def bon_kl_table(df: pd.DataFrame) -> pd.DataFrame:
    """Best-of-n's KL both ways, mean over seeds: analytic log n - (n-1)/n (the frontier's x) and the sampled
    estimate (each kept response's log pi_n/pi_base, its score's rank among a pool of base samples)."""
    bon = df[df["method"] == "bon"]
    if bon.empty:
        return pd.DataFrame()
    out = bon.groupby("setting").agg(analytic=("kl", "mean"), measured=("kl_measured", "mean"),
                                     measured_min=("kl_measured", "min"), measured_max=("kl_measured", "max"))
    out.index = out.index.astype(int)
    return out.reset_index().rename(columns={"setting": "n", "analytic": "KL analytic", "measured": "KL measured",
                                             "measured_min": "measured (lowest seed)",
                                             "measured_max": "measured (highest seed)"})
