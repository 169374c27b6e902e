"""Live alerts of the PPO, GRPO/RLOO and DPO pages: what a student should notice in a run, said while it runs.

`alerts(stage, df)` is a pure function of the run's metrics (core.runs.read_metrics: one row per iteration or step,
the metric names of DESIGN.md), so each rule is tested on a DataFrame built in the test. Each alert says what
happened, with the numbers, and what to try. The rules:

- collapse: the responses became empty or very short, or the policy's entropy per token fell to a fraction of where
  it started (it repeats one answer).
- hacking: gold peaked and has fallen well below its peak while the proxy kept rising (over-optimisation, Gao et
  al. 2022: the policy found what the reward model likes and the annotator does not).
- kl: the KL to the base model ran away: far above its target (adaptive λ), or so large per token that the policy
  no longer writes the base model's language.
- value: PPO's value loss spiked: the critic is suddenly far worse than it was (and worse than when it knew nothing).

Thresholds are chosen against real runs on the CPU defaults (the `small` preset, shipped models): a default PPO run
(λ 0.05, 100 iterations), a default GRPO run (100 iterations) and a default DPO run (2000 simulated pairs, one
epoch) raise none at any point; PPO at λ = 0 raises `kl` at iteration 30 and `hacking` at 32 (gold 0.55 → 0.44
while the proxy rose 1.3 → 1.6); lr 1e-3, ε 0.5, temperature 1.5 raises `kl` at once and `collapse` at iteration 22
(responses from 22 tokens to 5); DPO at lr 1e-3, β 0.02 for three epochs raises `kl` (38 nats) and `hacking`.
Per-iteration numbers are noisy (a batch of 16 prompts: gold's mean moves by ±0.1 from one iteration to the next),
so every rule reads trailing means over WINDOW rows, never one row.

PPO and GRPO log objective/* every iteration; DPO only at its evaluations (step 0 is the base model itself), so
its rules read the evaluation rows, with a window to match their number.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

WINDOW = 5  # rows of a trailing mean: with a batch of 16 it brings gold's noise from ±0.1 to about ±0.045

# collapse
SHORT_FRACTION = 0.25   # responses at a quarter of their first length or less: "very short" (empty included)
SHORT_TOKENS = 2.0      # ... or two tokens or fewer, whatever they started at
ENTROPY_FRACTION = 0.2  # entropy per token at a fifth of where it started: the policy samples one answer
# (a healthy default run keeps it within ±25% of its start: 1.3 to 1.8 nats per token from 1.7)

# hacking: gold's trailing mean this far below its peak, and the proxy's above where it was at gold's peak
GOLD_DROP = 0.1         # gold units; 2 × the noise of a trailing mean (a default run's plateau wobbles by 0.05)
GOLD_DROP_SHARE = 0.25  # ... and a quarter of what gold had gained from its start to its peak
PROXY_RISE = 0.05       # proxy (reward-model) units: "still rising" is more than a wobble

# kl (nats per response, the unit objective/kl is logged in)
KL_OVER_TARGET = 2.0    # adaptive λ holds KL near its target; twice the target over WINDOW rows is "far above"
KL_PER_TOKEN = 1.5      # nats per response token: the policy's tokens are e^1.5 ≈ 4.5× likelier under it than under
# the base model on average, on every token (a default run stays below 0.6; λ = 0 passes 1.5 as gold falls)

# value (PPO): a row's value loss this many times the median of the rows before it, and above the loss the critic
# had at the start (an untrained critic's): noise in a critic that has learned (0.01 → 0.1) is no spike
VALUE_SPIKE = 5.0
VALUE_HISTORY = 10      # rows of that median
VALUE_WARMUP = 3        # the first rows: the critic is still learning, its loss falls fast


@dataclass(frozen=True)
class Alert:
    kind: str   # collapse | hacking | kl | value
    level: str  # "error" (the run is broken: stop it) or "warning" (notice it, decide)
    text: str   # what happened, with the numbers, and what to try (markdown)


def _series(df: pd.DataFrame | None, col: str) -> pd.Series:
    """`col` by step, where it was logged (numbers only), in step order."""
    if df is None or df.empty or col not in df.columns or "step" not in df.columns:
        return pd.Series(dtype=float)
    s = pd.to_numeric(df[col], errors="coerce")
    s.index = pd.to_numeric(df["step"], errors="coerce")
    s = s[s.index.notna()].dropna()
    return s[~s.index.duplicated(keep="last")].sort_index()


def _window(stage: str, n: int) -> int:
    """WINDOW rows; for DPO, whose objective/* rows are its few evaluations (each on 64 prompts, four times the
    samples of a PPO batch, so less noisy), at most a third of them."""
    return max(1, min(WINDOW, n // 3)) if stage == "dpo" else WINDOW


def _trailing(s: pd.Series, w: int) -> pd.Series:
    return s.rolling(w, min_periods=w).mean().dropna()


def _last_param(df: pd.DataFrame | None, col: str):
    if df is None or df.empty or col not in df.columns:
        return None
    s = df[col].dropna()
    return None if s.empty else s.iloc[-1]


def _unit(stage: str) -> str:
    return "step" if stage == "dpo" else "iteration"


def _rows(stage: str, w: int) -> str:
    """What a window of `w` rows is, in words: DPO's rows here are its evaluations."""
    what = "evaluation" if stage == "dpo" else _unit(stage)
    return f"one {what}" if w == 1 else f"{w} {what}s"


def _short(tokens: float) -> str:
    return "empty" if tokens < 0.5 else "nearly empty" if tokens <= SHORT_TOKENS else "very short"


def _last(stage: str, w: int) -> str:
    return "the last " + _rows(stage, w).removeprefix("one ")


# ----------------------------------------------------------------------------- the rules

def collapse(stage: str, df: pd.DataFrame | None) -> Alert | None:
    length = _series(df, "objective/response_length")
    w = _window(stage, len(length))
    if len(length) < 2 * w or len(length) < 2:
        return None
    start, now = length.iloc[:w].mean(), length.iloc[-w:].mean()
    gold = _series(df, "objective/gold")
    gold_now = f"; gold is {gold.iloc[-w:].mean():.3f}" if len(gold) else ""
    try_ = ("Stop it: a collapsed policy rarely recovers. Start a new run with a lower learning rate"
            + (" or a larger β." if stage == "dpo" else ", a smaller ε or a temperature near 1."))
    if now <= max(SHORT_TOKENS, SHORT_FRACTION * start):
        return Alert("collapse", "error",
                     f"**The policy collapsed: its responses are {_short(now)}** "
                     f"({now:.1f} tokens on average over {_last(stage, w)}, from {start:.1f} at the "
                     f"start{gold_now}). Ending a response at once is the policy's easiest answer. {try_}")
    entropy = _series(df, "objective/entropy")  # nats per response (summed over its tokens): per token here
    per_token = (entropy / length.reindex(entropy.index)).replace([float("inf")], float("nan")).dropna()
    if len(per_token) >= 2 * w:
        e_start, e_now = per_token.iloc[:w].mean(), per_token.iloc[-w:].mean()
        if e_start > 0 and e_now <= ENTROPY_FRACTION * e_start:
            return Alert("collapse", "error",
                         f"**The policy collapsed: its entropy fell to {e_now:.2f} nats per token** (from "
                         f"{e_start:.2f} at the start, over {_last(stage, w)}{gold_now}): it samples "
                         f"nearly the same answer every time (mode collapse). {try_}")
    return None


def hacking(stage: str, df: pd.DataFrame | None) -> Alert | None:
    gold, proxy = _series(df, "objective/gold"), _series(df, "objective/scores")
    both = pd.concat([gold.rename("gold"), proxy.rename("proxy")], axis=1).dropna()
    w = _window(stage, len(both))
    if len(both) < 3 * w or len(both) < 3:
        return None
    g, p = _trailing(both["gold"], w), _trailing(both["proxy"], w)
    peak_at = g.idxmax()
    if peak_at >= g.index[-1]:
        return None  # gold is at its best now
    peak, g_now, start = g.loc[peak_at], g.iloc[-1], both["gold"].iloc[:w].mean()
    p_peak, p_now = p.loc[peak_at], p.iloc[-1]
    drop = peak - g_now
    if drop < max(GOLD_DROP, GOLD_DROP_SHARE * (peak - start)) or p_now - p_peak < PROXY_RISE:
        return None
    knob = "β" if stage in ("grpo", "dpo") else "λ (or switch λ to adaptive with a target KL)"
    unit = _unit(stage)
    return Alert("hacking", "warning",
                 f"**Reward hacking: gold peaked at {peak:.3f} around {unit} {int(peak_at)} and has fallen to "
                 f"{g_now:.3f}, while the proxy rose from {p_peak:.3f} to {p_now:.3f}** (each a mean of "
                 f"{_rows(stage, w)}). The policy is learning what the reward model likes and the hidden annotator "
                 f"does not. Try: stop here (the gold peak is where to stop), or a larger {knob} to keep the policy "
                 "nearer the base model; compare the generations below with the base model's.")


def kl_runaway(stage: str, df: pd.DataFrame | None) -> Alert | None:
    kl = _series(df, "objective/kl")
    w = _window(stage, len(kl))
    if len(kl) < w or len(kl) < 2:
        return None
    now = kl.iloc[-w:].mean()
    adaptive = _last_param(df, "params/adaptive_kl")  # a numpy bool from the DataFrame
    target = _last_param(df, "params/target_kl") if adaptive is not None and bool(adaptive) else None
    if target and now > KL_OVER_TARGET * target:
        return Alert("kl", "warning",
                     f"**The KL ran away: {now:.1f} nats over {_last(stage, w)}, {now / target:.1f}× its target "
                     f"of {target:g}.** Adaptive λ raises λ only a little each iteration, and the policy is moving "
                     "faster than that. Try: a lower learning rate, a smaller ε, or start λ higher.")
    length = _series(df, "objective/response_length").reindex(kl.index[-w:]).dropna()
    if length.empty or length.mean() <= 0:
        return None
    per_token = now / length.mean()
    if per_token <= KL_PER_TOKEN:
        return None
    knob = {"grpo": "a larger β", "dpo": "a larger β or a lower learning rate"}.get(
        stage, "a larger λ (or adaptive λ with a target KL)")
    return Alert("kl", "warning",
                 f"**The KL ran away: {now:.1f} nats per response, {per_token:.2f} per token** (over "
                 f"{_last(stage, w)}; below {KL_PER_TOKEN:g} per token is usual): the policy has left the base "
                 f"model's language, and the reward model's scores there mean little. Try: {knob}.")


def value_spike(stage: str, df: pd.DataFrame | None) -> Alert | None:
    if stage != "ppo":
        return None
    loss = _series(df, "loss/value_avg")
    if len(loss) <= VALUE_WARMUP + 2:
        return None
    first = loss.iloc[:VALUE_WARMUP].median()  # the untrained critic's loss
    before = loss.shift(1).rolling(VALUE_HISTORY, min_periods=2).median()  # of the rows before each row
    spiked = (loss > VALUE_SPIKE * before) & (loss > first) & (before > 0)
    spiked.iloc[:VALUE_WARMUP + 2] = False
    if not spiked.any():
        return None
    at = spiked[spiked].index[-1]  # the newest: a student reads the run as it is now
    value, before = loss.loc[at], before.loc[at]
    now = loss.iloc[-1]
    after = ("it is still high" if now > VALUE_SPIKE * before / 2 else f"it is back at {now:.3g}")
    knob = _knob_change(df, at)
    return Alert("value", "warning",
                 f"**The value loss spiked to {value:.3g} at iteration {int(at)}**, {value / before:.0f}× its median "
                 f"of {before:.3g} over the iterations before ({after}){knob}. The critic's predictions suddenly "
                 "missed the returns: that follows a sudden change in the rewards. If it does not fall back within "
                 "a few iterations, lower the learning rate or change λ in smaller steps.")


def _knob_change(df: pd.DataFrame, at) -> str:
    """", right after λ went from 0.05 to 1" when a live knob changed at the spike's iteration (or the one before)."""
    names = {"params/kl_coef": "λ", "params/clip_eps": "ε", "params/lr": "the learning rate",
             "params/temperature": "the temperature"}
    for col, name in names.items():
        s = _series(df, col)
        if at not in s.index:
            continue
        i = s.index.get_loc(at)
        for j in (i, i - 1):
            if j >= 1 and s.iloc[j] != s.iloc[j - 1]:
                return f", right after {name} went from {s.iloc[j - 1]:g} to {s.iloc[j]:g}"
    return ""


RULES = (collapse, hacking, kl_runaway, value_spike)


def alerts(stage: str, df: pd.DataFrame | None) -> list[Alert]:
    """Every alert the run raises now, errors first. None for a healthy run, or one too young to judge."""
    found = [a for a in (rule(stage, df) for rule in RULES) if a is not None]
    return sorted(found, key=lambda a: a.level != "error")
