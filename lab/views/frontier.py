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
from lab.views import wording

NONE = "—"                     # every empty cell and meaningless number reads this, never None / NaN / −0.00
FIT_PARAMETERS = 2             # alpha and beta: an R² of that many points (or one more) says nothing
OWN_SYMBOL = "star"            # a student's own runs on the frontier: a star with a dark rim, a legend entry each

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


def frontier_figure(df: pd.DataFrame, fits: dict, target: str = "gold", own: pd.DataFrame | None = None) -> go.Figure:
    """Gain in `target` (gold or proxy) against √KL: one colour per method, one marker line per setting (its
    checkpoints in order), error bars over seeds, and the fitted Gao et al. curve per method. `own`
    (own_points): the student's runs, as stars in their method's colour, one legend entry per run."""
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
                name=f"{METHOD_NAMES[method]} fit (R² {r2_text(fit)})", line=dict(color=color, width=2.5),
                hoverinfo="skip"))
    add_own_points(fig, df, own, target)
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dash"))
    fig.update_layout(title=title, xaxis_title=X_LABEL, yaxis_title=Y_LABELS[target], height=440,
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2))
    return fig


def r2_text(fit: dict) -> str:
    """A fit's R² as shown: the number, or — with the reason it means nothing (too few points for two
    parameters, below 0: worse than a flat line at the mean gain, undefined: every gain equal)."""
    if "skipped" in fit or "r2" not in fit:
        return f"{NONE} (no fit)"
    r2, points = fit.get("r2"), int(fit.get("points") or 0)
    if points <= FIT_PARAMETERS + 1:
        return f"{NONE} ({points} points: too few)"
    if r2 is None or not np.isfinite(r2):
        return f"{NONE} (every gain equal)"
    if r2 < 0:
        return f"{NONE} (below 0: worse than a flat line)"
    return f"{r2:.2f}"


def fit_is_meaningful(fit: dict) -> bool:
    """Whether a fit's curve can be read (its peak, its shape): enough points and an R² of 0 or more."""
    return "alpha" in fit and not r2_text(fit).startswith(NONE)


def _number(x, fmt: str = "{:+.3f}") -> str:
    """A number as a cell: — for none or NaN, and never −0.000 (a value that rounds to zero reads 0)."""
    if x is None or not np.isfinite(x):
        return NONE
    return wording.number(x, fmt)


def _peak_text(fit: dict) -> str:
    d_star = fit.get("d_star")
    if d_star is None:
        return "no peak (keeps rising)"
    if not np.isfinite(d_star):
        return "no peak in sight (astronomically far)"
    return f"√KL {d_star:.2f}{'' if fit['peak_in_range'] else ' (beyond the measured range)'}"


def fits_table(fits: dict) -> pd.DataFrame:
    """One row per method and target: alpha, beta, the peak (√KL and gain), R², or why the fit was skipped.
    Every cell is text: a number, or — (with the reason in the fit or R² cell)."""
    rows = []
    for method in [m for m in METHODS if m in fits]:
        for target in ("gold", "proxy"):
            fit = fits[method].get(target) or {}
            row = {"method": METHOD_NAMES[method], "target": target}
            if "alpha" not in fit:
                rows.append({**row, "fit": f"skipped: {fit.get('skipped', 'not fitted')}", "α": NONE, "β": NONE,
                             "peak at": NONE, "gain at peak": NONE, "R²": NONE, "points": NONE})
                continue
            peak_gain = fit.get("peak") if fit.get("d_star") is not None and np.isfinite(fit["d_star"]) else None
            rows.append({**row, "fit": "d(α − β·d)" if fit.get("form") == "bon" else "d(α − β·log d)",
                         "α": _number(fit["alpha"], "{:.3f}"), "β": _number(fit["beta"], "{:.3f}"),
                         "peak at": _peak_text(fit), "gain at peak": _number(peak_gain), "R²": r2_text(fit),
                         "points": str(fit.get("points", NONE))})
    return pd.DataFrame(rows, columns=["method", "target", "fit", "α", "β", "peak at", "gain at peak", "R²", "points"])


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
            row[METHOD_NAMES[method]] = (f"{_number(d.loc[i, 'gold'])} (KL {_number(d.loc[i, 'kl'], '{:.2f}')})"
                                         if near else NONE)
        rows.append(row)
    base = df[df["method"] == "base"]
    if len(base):
        rows.insert(0, {"KL ≈": 0.0, "base model": _number(float(base["gold"].mean()))})
    # a cell with no policy near its KL (the base model's beyond 0, a method's at 0) says so: —, never None
    return pd.DataFrame(rows).fillna(NONE) if rows else pd.DataFrame()


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
        out.append({"method": "base model", "setting": NONE, "KL": 0.0, "prompt": r["prompt"],
                    "response": r["response"], "gold": r["gold"], "proxy": r["proxy"]})
    for method in [m for m in METHODS if m in set(s["method"])]:
        d = s[s["method"] == method]
        nearest = d.loc[(d["point_kl"] - k).abs().idxmin()]
        pick = d[(d["setting"] == nearest["setting"]) & (d["seed"] == nearest["seed"])
                 & (d["iteration"] == nearest["iteration"])]
        for _, r in pick.head(per_method).iterrows():
            out.append({"method": METHOD_NAMES[method], "setting": f"{KNOB_SYMBOLS[method]}={r['setting']:g}",
                        # + 0.0: a KL that rounds to −0.0 reads 0
                        "KL": round(float(r["point_kl"]), 2) + 0.0, "prompt": r["prompt"], "response": r["response"],
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


def _kl(x: float) -> str:
    """A KL in nats for a sentence: 2 significant digits, 0 for what rounds to it (never −0.00)."""
    return "0" if abs(x) < 0.005 else f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}"


def _policy(row) -> str:
    """Which policy a point is: "n = 16" for best-of-n, "λ = 0.05, iteration 20" for a trained one."""
    knob = f"{KNOB_SYMBOLS[row['method']]} = {row['setting']:g}"
    return knob if row["method"] == "bon" else f"{knob}, iteration {int(row['iteration'])}"


def points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated policy (method, setting, iteration; mean over seeds): kl, gold, gain over the base."""
    base = df[df["method"] == "base"]
    gold0 = float(base["gold"].mean()) if len(base) else 0.0
    pts = df[df["method"] != "base"].groupby(["method", "setting", "iteration"], sort=False).agg(
        kl=("kl", "mean"), gold=("gold", "mean")).reset_index()
    pts["gain"] = pts["gold"] - gold0
    return pts


def _best(pts: pd.DataFrame):
    """The point with the most gold (of equal gains, the one nearer the base model)."""
    return pts.sort_values(["gain", "kl"], ascending=[False, True]).iloc[0]


def _at(row) -> str:
    return f"{_number(row['gain'])} at KL {_kl(row['kl'])} ({_policy(row)})"


def headline(df: pd.DataFrame) -> list[str]:
    """The page's question — which method buys the most gold for a KL budget — answered for the data shown, or
    why it cannot be yet. Gold is compared as the gain over the base model: a method below it is never a winner.
    First each method's best point (the most gold any method reached, and at what KL); then the methods side by
    side within the KL that every one of them reached (where the least-reaching method stops; best-of-n
    often, whose KL grows only like log n): each method's best policy at or below that KL."""
    base = df[df["method"] == "base"]
    pts = points(df)
    methods = [m for m in METHODS if m in set(pts["method"])]
    if base.empty or not methods:
        return ["Only the base model has been scored so far: no method to compare yet." if len(base)
                else "No policy has been scored yet: nothing to compare."]
    gold0 = float(base["gold"].mean())
    best = {m: _best(pts[pts["method"] == m]) for m in methods}
    if len(methods) == 1:
        m = methods[0]
        beats = (f"its best point beats the base model by {_at(best[m])}" if best[m]["gain"] > 0 else
                 f"no policy of it beats the base model (its best: {_at(best[m])})")
        count = f"{len(pts)} polic{'y' if len(pts) == 1 else 'ies'}"
        return [f"Only {METHOD_NAMES[m]} has been scored so far ({count}): which method buys the most gold for a "
                f"KL budget needs a second method to compare with; {beats}."]
    leader = max(methods, key=lambda m: (best[m]["gain"], -best[m]["kl"]))
    if best[leader]["gain"] <= 0:
        return [f"No method beats the base model here: no policy scored has more gold than the base model's "
                f"({_number(gold0)}); the closest is {METHOD_NAMES[leader]}, {_at(best[leader])}. So this sweep "
                "cannot say yet which method buys gold most cheaply (the proxy plot shows whether they bought "
                "proxy reward instead)."]
    behind = [m for m in methods if m != leader and best[m]["gain"] > 0]
    below = [m for m in methods if best[m]["gain"] <= 0]
    line = f"The most gold over the base model is bought by **{METHOD_NAMES[leader]}**: {_at(best[leader])}"
    if behind:
        line += "; the best of " + ", ".join(f"{METHOD_NAMES[m]}: {_at(best[m])}" for m in behind)
    line += "."
    if below:
        line += (" " + " and ".join(METHOD_NAMES[m] for m in below)
                 + (" does" if len(below) == 1 else " do") + " not beat the base model at any KL measured (best: "
                 + "; ".join(f"{METHOD_NAMES[m]} {_at(best[m])}" for m in below) + ").")
    lines = [line]
    matched = _matched_budget(pts, methods, best)
    if matched:
        lines.append(matched)
    return lines


def _matched_budget(pts: pd.DataFrame, methods: list[str], best: dict) -> str | None:
    """The methods side by side within one KL budget: the KL up to which every method was measured. None when
    there is no such budget, or when within it every method's best is its best overall (said already)."""
    reach = {m: float(pts[pts["method"] == m]["kl"].max()) for m in methods}
    shortest = min(methods, key=reach.get)
    budget = reach[shortest]
    if budget < 0.01:
        return None  # a method measured only at the base model itself (best-of-1): no budget to compare within
    within = pts[pts["kl"] <= budget * 1.05 + 0.01]   # a little slack: the policy that sets the budget is in
    inside = {m: _best(within[within["method"] == m]) for m in methods if m in set(within["method"])}
    outside = [m for m in methods if m not in inside]
    head = f"Within a KL budget of {_kl(budget)} nats (as far as {METHOD_NAMES[shortest]} reached)"
    far = "; ".join(f"{METHOD_NAMES[m]} has no policy this close to the base model (its lowest KL is "
                    f"{_kl(float(pts[pts['method'] == m]['kl'].min()))})" for m in outside)
    if len(inside) < 2:
        return (f"{head} only {METHOD_NAMES[shortest]} was measured: {far}, so the methods cannot be compared at "
                "matched KL yet (a larger KL penalty or fewer iterations gives policies nearer the base model; a "
                "larger n takes best-of-n further).")
    same = lambda a, b: (a["setting"], a["iteration"]) == (b["setting"], b["iteration"])  # noqa: E731
    if not outside and all(same(inside[m], best[m]) for m in methods):
        return None
    first = max(inside, key=lambda m: (inside[m]["gain"], -inside[m]["kl"]))
    rest = ", ".join(f"{METHOD_NAMES[m]} {_at(inside[m])}" for m in inside if m != first)
    if inside[first]["gain"] <= 0:
        line = (f"{head} no method beats the base model: the closest is {METHOD_NAMES[first]}, "
                f"{_at(inside[first])}; {rest}.")
    else:
        line = f"{head} the most gold is bought by **{METHOD_NAMES[first]}**: {_at(inside[first])}; {rest}."
    return line + (f" {far[0].upper()}{far[1:]}." if far else "")


def fit_lines(fits: dict) -> list[str]:
    """Where each method's gold fit peaks, read only from a fit that means something (enough points, R² >= 0)."""
    lines = []
    for method in [m for m in METHODS if m in fits]:
        fit = fits[method].get("gold") or {}
        name = METHOD_NAMES[method]
        if "alpha" not in fit:
            lines.append(f"{name}: gold fit skipped ({fit.get('skipped', 'not fitted')}).")
        elif not fit_is_meaningful(fit):
            lines.append(f"{name}: no peak is read from its gold fit (R² {r2_text(fit)}).")
        elif fit.get("d_star") is None or not np.isfinite(fit["d_star"]):
            lines.append(f"{name}: the gold fit does not peak in this sweep (R² {r2_text(fit)}).")
        else:
            where = "inside" if fit["peak_in_range"] else "beyond"
            lines.append(f"{name}: gold peaks at √KL ≈ {fit['d_star']:.2f} (KL ≈ {_kl(fit['d_star'] ** 2)} nats, "
                         f"{where} the measured range), gain {_number(fit['peak'])}; R² {r2_text(fit)}.")
    return lines


def reading(df: pd.DataFrame, fits: dict) -> list[str]:
    """Plain sentences a student can check against the plots: the headline, then where each gold fit peaks."""
    return headline(df) + fit_lines(fits)


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


# ----------------------------------------------------------------------------- the student's own runs

def own_points(items: list[dict]) -> pd.DataFrame:
    """The scored points of the student's runs (lab.frontier_runs.own_runs items): frontier.csv's columns plus
    run (its id), label (its name) and setting_text (its knob in words)."""
    rows = [{**{k: v for k, v in row.items() if k != "samples"}, "run": item["run_id"], "label": item["name"]}
            for item in items for row in item.get("rows") or []]
    return pd.DataFrame(rows)


def own_gains(df: pd.DataFrame, own: pd.DataFrame) -> pd.DataFrame:
    """The own points' gold and proxy as gains over the sweep's base model (the plots' y)."""
    base = df[df["method"] == "base"]
    out = own.copy()
    out["gold_gain"] = out["gold"] - (float(base["gold"].mean()) if len(base) else 0.0)
    out["proxy_gain"] = out["proxy"] - (float(base["proxy"].mean()) if len(base) else 0.0)
    return out


def add_own_points(fig: go.Figure, df: pd.DataFrame, own: pd.DataFrame | None, target: str) -> None:
    """The student's runs as stars in their method's colour, each a legend entry "yours: <name>"."""
    if own is None or own.empty:
        return
    g = own_gains(df, own)
    for _, d in g.groupby("run", sort=False):
        method = d["method"].iloc[0]
        label = f"yours: {d['label'].iloc[0]}"
        fig.add_trace(go.Scatter(
            x=d["sqrt_kl"], y=d[f"{target}_gain"], mode="markers", name=label, legendgroup="yours",
            marker=dict(symbol=OWN_SYMBOL, size=15, color=METHOD_COLORS[method], line=dict(color="#111", width=1.5)),
            customdata=np.stack([d["setting_text"], d["iteration"]], 1),
            hovertemplate=f"{label} ({METHOD_NAMES[method]} %{{customdata[0]}})<br>iteration %{{customdata[1]}}"
                          f"<br>√KL %{{x:.2f}}: %{{y:+.3f}}<extra></extra>"))


def own_table(df: pd.DataFrame, items: list[dict]) -> pd.DataFrame:
    """One row per scored point of the student's runs (gains over the sweep's base model) and one per run that
    is not on the plot, with the reason. Every cell is text."""
    rows = []
    gains_of = own_gains(df, own_points(items)) if any(i.get("rows") for i in items) else pd.DataFrame()
    for item in items:
        head = {"your run": item["name"], "method": METHOD_NAMES.get(item["method"], item["method"])}
        mine = gains_of[gains_of["run"] == item["run_id"]] if len(gains_of) else gains_of
        if mine.empty:
            rows.append({**head, "setting": NONE, "KL": NONE, "gold gain": NONE, "proxy gain": NONE,
                         "on the plot": f"no: {item['status']}" + (f" ({item['reason']})" if item["reason"] else "")})
            continue
        for _, r in mine.iterrows():
            rows.append({**head, "setting": str(r["setting_text"]), "KL": _number(r["kl"], "{:.2f}"),
                         "gold gain": _number(r["gold_gain"]), "proxy gain": _number(r["proxy_gain"]),
                         "on the plot": "yes (★)"})
    return pd.DataFrame(rows, columns=["your run", "method", "setting", "KL", "gold gain", "proxy gain",
                                       "on the plot"])


def own_lines(df: pd.DataFrame, items: list[dict]) -> list[str]:
    """For each scored run of the student: its best point, and the sweep's best policy within the same KL."""
    own = own_points(items)
    if own.empty:
        return []
    pts = points(df)
    lines = []
    for _, d in own_gains(df, own).groupby("run", sort=False):
        r = d.sort_values(["gold_gain", "kl"], ascending=[False, True]).iloc[0]
        name = f"Your run **{r['label']}** ({METHOD_NAMES[r['method']]}, {r['setting_text']})"
        here = f"{_number(r['gold_gain'])} gold over the base model at KL {_kl(r['kl'])}"
        if r["gold_gain"] <= 0:
            here += ", so it does not beat the base model"
        within = pts[pts["kl"] <= r["kl"] * 1.05 + 0.01]
        if within.empty:
            lines.append(f"{name}: {here}; the sweep has no policy this close to the base model to compare with.")
            continue
        top = _best(within)
        sweep = f"{METHOD_NAMES[top['method']]} {_at(top)}"
        tail = (f"more than any policy of the sweep within that KL (its best: {sweep})" if r["gold_gain"] > top["gain"]
                else f"the sweep's best within that KL: {sweep}")
        lines.append(f"{name}: {here}; {tail}.")
    return lines


def own_samples(items: list[dict]) -> pd.DataFrame:
    """The generations the evaluation kept for each scored run (on the sweep's prompts), for the full-text view:
    method (the run and its setting), scores (the sample's KL, gold, proxy in words), prompt, response."""
    rows = [{"method": f"yours: {item['name']} ({row.get('setting_text', NONE)})",
             "scores": f"KL {_number(s['kl'], '{:.2f}')}, gold {_number(s['gold'])}, proxy {_number(s['proxy'])}",
             "prompt": s["prompt"], "response": s["response"]}
            for item in items for row in item.get("rows") or [] for s in row.get("samples") or []]
    return pd.DataFrame(rows, columns=["method", "scores", "prompt", "response"])
