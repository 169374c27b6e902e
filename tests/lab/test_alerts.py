"""lab/views/alerts.py: each live alert on a synthetic run that shows it, with its numbers and what to try, and none
on a healthy run (shaped like a real default PPO run: gold and proxy rise and level off with per-iteration noise,
KL levels off near 0.4 nats per token, a learnt critic's loss wobbling five-fold far below its start)."""

import numpy as np
import pandas as pd
import pytest

from lab.views import alerts as A

N = 100


def healthy(stage: str = "ppo", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    rise = 1 - np.exp(-t / 25)
    df = pd.DataFrame({
        "step": t,
        "objective/scores": -0.2 + 1.9 * rise + rng.normal(0, 0.15, N),
        "objective/gold": 0.15 + 0.65 * rise + rng.normal(0, 0.07, N),
        "objective/kl": 9.0 * rise + rng.normal(0, 1.5, N),
        "objective/response_length": 23.5 + rng.normal(0, 0.5, N),
        "objective/entropy": 37.0 + rng.normal(0, 3.0, N),
        "params/kl_coef": 0.05, "params/adaptive_kl": False, "params/target_kl": 3.0,
    })
    value = 0.3 * np.exp(-t / 20) + 0.02
    value[[31, 66, 90]] *= 5  # a learnt critic's loss jumps five-fold now and then, far below its untrained start
    df["loss/value_avg"] = value
    if stage == "grpo":
        df = df.drop(columns=["loss/value_avg", "params/kl_coef", "params/adaptive_kl", "params/target_kl"])
    return df


def kinds(stage, df) -> list[str]:
    return [a.kind for a in A.alerts(stage, df)]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("stage", ["ppo", "grpo"])
def test_a_healthy_run_raises_no_alert_at_any_point(stage, seed):
    df = healthy(stage, seed)
    for n in [*range(2, N, 4), N]:  # live: the page asks as the run grows (every 4th length keeps the test quick)
        assert A.alerts(stage, df.iloc[:n]) == [], (n, [a.text for a in A.alerts(stage, df.iloc[:n])])


def test_a_young_or_empty_run_raises_nothing():
    assert A.alerts("ppo", None) == [] and A.alerts("dpo", pd.DataFrame()) == []
    assert A.alerts("ppo", healthy().iloc[:1]) == []


def test_collapse_to_empty_responses_is_an_error_with_its_numbers():
    df = healthy()
    df.loc[df.step > 60, "objective/response_length"] = 0.4  # it learnt to end every response at once
    df.loc[df.step > 60, "objective/entropy"] = 1.1
    df.loc[df.step > 60, "objective/gold"] = 0.0
    found = A.alerts("ppo", df)
    assert found[0].kind == "collapse" and found[0].level == "error"  # errors first
    text = found[0].text
    assert "empty" in text and "0.4 tokens" in text and "23." in text and "gold is 0.000" in text
    assert "lower learning rate" in text and "ε" in text


def test_mode_collapse_long_responses_with_no_entropy_left():
    df = healthy()
    df.loc[df.step > 70, "objective/entropy"] = 4.0  # 24 tokens, 0.17 nats per token: one answer, every time
    alert = next(a for a in A.alerts("ppo", df) if a.kind == "collapse")
    assert "entropy fell to 0.17 nats per token" in alert.text and "from 1.5" in alert.text


def test_reward_hacking_gold_falls_from_its_peak_while_the_proxy_rises():
    df = healthy()
    late = df.step > 40
    df.loc[late, "objective/gold"] = 0.75 - 0.015 * (df.step[late] - 40)  # to -0.15 at 100, like λ = 0
    df.loc[late, "objective/scores"] += 0.01 * (df.step[late] - 40)
    alert = next(a for a in A.alerts("ppo", df) if a.kind == "hacking")
    assert alert.level == "warning"
    assert "gold peaked at" in alert.text and "has fallen to -0.1" in alert.text and "proxy rose" in alert.text
    assert "larger λ" in alert.text
    assert "larger β" in next(a for a in A.alerts("grpo", df) if a.kind == "hacking").text
    df.loc[late, "objective/scores"] = 0.0  # the proxy fell too: not hacking (the run just got worse)
    assert "hacking" not in kinds("ppo", df)


def test_dpo_reads_its_few_evaluation_rows():
    steps = [0, 20, 40, 60, 80, 100]
    rows = [{"step": s, "loss/dpo": 0.6} for s in range(0, 101)]
    df = pd.DataFrame(rows)
    evals = pd.DataFrame({"step": steps, "objective/gold": [0.10, 0.35, 0.45, 0.30, 0.15, 0.05],
                          "objective/scores": [0.0, 0.5, 0.8, 1.1, 1.3, 1.5], "objective/kl": [0, 2, 4, 6, 8, 10],
                          "objective/response_length": 24.0})
    df = df.merge(evals, on="step", how="left")  # NaN between evaluations, as DPO logs them
    alert = next(a for a in A.alerts("dpo", df) if a.kind == "hacking")
    assert "around step" in alert.text and "larger β" in alert.text
    assert A.alerts("dpo", df[df.step <= 40]) == []  # gold still rising


def test_kl_far_above_its_adaptive_target():
    df = healthy()
    df["params/adaptive_kl"], df["params/target_kl"] = True, 3.0
    assert "kl" not in kinds("ppo", df.assign(**{"objective/kl": 3.4}))  # near the target: what adaptive λ does
    alert = next(a for a in A.alerts("ppo", df.assign(**{"objective/kl": 7.5})) if a.kind == "kl")
    assert "7.5 nats" in alert.text and "2.5× its target of 3" in alert.text and "learning rate" in alert.text


def test_kl_runaway_per_token_with_a_fixed_leash():
    df = healthy()
    df.loc[df.step > 80, ["objective/kl", "objective/response_length"]] = (60.0, 24.0)  # 2.5 nats on every token
    alert = next(a for a in A.alerts("ppo", df) if a.kind == "kl")
    assert "60.0 nats per response, 2.50 per token" in alert.text and "larger λ" in alert.text
    assert "kl" not in kinds("ppo", df[df.step <= 80])


def test_a_value_loss_spike_names_its_iteration_and_the_knob_that_moved():
    df = healthy()
    df.loc[df.step >= 70, "params/kl_coef"] = 1.0  # a student turns λ from 0.05 to 1 at iteration 70
    df.loc[df.step == 70, "loss/value_avg"] = 4.0
    alert = next(a for a in A.alerts("ppo", df) if a.kind == "value")
    assert "spiked to 4 at iteration 70" in alert.text and "right after λ went from 0.05 to 1" in alert.text
    assert "it is back at" in alert.text
    assert "value" not in kinds("grpo", df)  # no critic: no value loss to watch
