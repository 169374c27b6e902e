"""The Frontier page's words and tables (issue 23): the headline answers "which method buys the most gold for a KL
budget" for the data shown (best-of-n leading at low KL, no method above the base model, too few points), fit
statistics that mean nothing read "—" with the reason, and no table cell reads None or −0.00."""

import numpy as np
import pandas as pd

from core import frontier as F
from core.bon import bon_kl
from core.frontier import CSV_COLUMNS
from lab.views import frontier as V


def frontier(base_gold: float, points: list[tuple]) -> pd.DataFrame:
    """frontier.csv from (method, setting, iteration, kl, gold gain over the base) tuples, one seed."""
    rows = [dict(method="base", setting=0, seed=0, iteration=0, kl=0.0, gold=base_gold, proxy=0.0, length=20)]
    rows += [dict(method=m, setting=s, seed=0, iteration=it, kl=kl, gold=base_gold + gain, proxy=kl, length=20)
             for m, s, it, kl, gain in points]
    df = pd.DataFrame(rows)
    df["sqrt_kl"] = np.sqrt(df["kl"])
    df["kl_measured"] = df["kl"]
    return df[CSV_COLUMNS]


def bon(gains: dict[int, float]) -> list[tuple]:
    return [("bon", n, 0, bon_kl(n), g) for n, g in gains.items()]


def cells(table: pd.DataFrame) -> list[str]:
    return [str(v) for v in table.to_numpy().ravel()]


def no_bad_cells(*tables):
    for table in tables:
        assert not table.isna().any().any(), table
        assert not any(c in ("None", "nan", "NaN") or "−0.00" in c or "-0.00" in c for c in cells(table)), table


def test_best_of_n_leads_and_methods_below_the_base_are_never_winners():
    """The walkthrough's sweep: best-of-n +0.512 at low KL; RLOO and DPO only lost gold, out to KL 2.9."""
    df = frontier(0.3, bon({1: 0.0, 2: 0.3, 4: 0.512, 8: 0.45, 16: 0.40, 32: 0.35})
                  + [("rloo", 0.05, 10, 1.5, -0.05), ("rloo", 0.05, 20, 2.9, -0.095),
                     ("dpo", 0.1, 10, 1.2, -0.2), ("dpo", 0.1, 20, 2.9, -0.339)])
    lines = V.headline(df)
    assert lines[0].startswith("The most gold over the base model is bought by **best-of-n**: +0.512 at KL 0.64")
    assert "RLOO and DPO do not beat the base model" in lines[0]
    text = " ".join(lines)
    assert "**RLOO**" not in text and "**DPO**" not in text


def test_a_high_kl_leader_and_the_low_kl_leader_are_both_named():
    """PPO reaches the most gold, far from the base model; within the KL best-of-n reaches, best-of-n leads."""
    df = frontier(0.1, bon({1: 0.0, 4: 0.30, 16: 0.45})
                  + [("ppo", 0.0, 5, 1.0, 0.10), ("ppo", 0.0, 10, 4.0, 0.50), ("ppo", 0.0, 15, 9.0, 0.62)])
    first, matched = V.headline(df)
    assert "bought by **PPO**: +0.620 at KL 9" in first and "best-of-n: +0.450" in first
    assert matched.startswith("Within a KL budget of 1.8 nats (as far as best-of-n reached)")
    assert "the most gold is bought by **best-of-n**: +0.450" in matched and "PPO +0.100 at KL 1" in matched


def test_no_method_beats_the_base_model():
    df = frontier(0.4, bon({1: 0.0, 4: -0.02, 16: -0.08})
                  + [("ppo", 0.0, 5, 1.0, -0.1), ("ppo", 0.0, 10, 3.0, -0.3), ("grpo", 0.05, 10, 2.0, -0.2)])
    [line] = V.headline(df)
    assert line.startswith("No method beats the base model here") and "+0.400" in line
    assert "cannot say yet which method buys gold most cheaply" in line and "bought by" not in line
    assert "closest is best-of-n" in line  # best-of-1 is the base model itself: the closest, not a winner


def test_too_few_points_say_that_the_data_cannot_answer_yet():
    only_base = frontier(0.2, [])
    assert V.headline(only_base) == ["Only the base model has been scored so far: no method to compare yet."]
    one = frontier(0.2, [("ppo", 0.0, 2, 0.8, 0.05)])
    [line] = V.headline(one)
    assert line.startswith("Only PPO has been scored so far (1 policy)") and "needs a second method" in line
    # two methods that never overlap in KL: compared at their best points, not at matched KL
    apart = frontier(0.2, bon({1: 0.0, 2: 0.1}) + [("dpo", 0.1, 10, 3.0, 0.2), ("dpo", 0.1, 20, 5.0, 0.25)])
    first, matched = V.headline(apart)
    assert "bought by **DPO**: +0.250 at KL 5" in first
    assert "only best-of-n was measured" in matched and "cannot be compared at matched KL yet" in matched
    assert "DPO has no policy this close to the base model (its lowest KL is 3)" in matched
    # the fits of those few points: R² reads — with the reason, the peak is not read from them
    fits = F.fit_frontier(apart)
    table = V.fits_table(fits)
    assert set(table["R²"]) == {"—"} and set(table["α"]) == {"—"}          # 2 points each: skipped, and why
    assert set(table["fit"]) == {"skipped: 2 point(s); a fit needs at least 3"}
    no_bad_cells(table, V.at_kl_table(apart, V.default_ks(apart)))
    assert not any("R² -" in s or "R² −" in s for s in V.reading(apart, fits))


def test_meaningless_r2_is_a_dash_with_its_reason_never_minus_zero():
    three = {"form": "rl", "alpha": 0.1, "beta": 0.0, "d_star": None, "peak": None, "peak_in_range": False,
             "r2": 0.99, "points": 3, "d_max": 1.0}
    assert V.r2_text(three) == "— (3 points: too few)"
    negative = {**three, "r2": -0.004, "points": 8}
    assert V.r2_text(negative) == "— (below 0: worse than a flat line)" and not V.fit_is_meaningful(negative)
    assert V.r2_text({**three, "r2": float("nan"), "points": 8}) == "— (every gain equal)"
    assert V.r2_text({**three, "points": 8}) == "0.99"
    # a gain that is flat at every KL (a jump the through-the-origin form cannot make): the fit is worse than a
    # flat line, and no peak is claimed from it
    rng = np.random.default_rng(0)
    noisy = frontier(0.2, [("ppo", 0.0, it, kl, g) for it, (kl, g) in
                           enumerate(zip(np.linspace(0.5, 6, 8), 0.15 + rng.normal(0.0, 0.01, 8)), 1)])
    fits = F.fit_frontier(noisy)
    assert fits["ppo"]["gold"]["r2"] < 0
    lines = V.reading(noisy, fits)
    assert "PPO: no peak is read from its gold fit (R² — (below 0: worse than a flat line))." in lines
    fig = V.frontier_figure(noisy, fits, "gold")
    assert any(t.name == "PPO fit (R² — (below 0: worse than a flat line))" for t in fig.data)
    no_bad_cells(V.fits_table(fits), V.at_kl_table(noisy, V.default_ks(noisy)))


def test_tables_have_no_none_cells():
    """A skipped fit, a base-model row and methods at other KLs: every gap reads —."""
    df = frontier(0.1, bon({1: 0.0, 4: 0.3}) + [("ppo", 0.0, 5, 1.0, 0.1), ("ppo", 0.0, 10, 4.0, 0.2)])
    fits = F.fit_frontier(df)
    table = V.at_kl_table(df, [0.6, 4.0])
    assert table.iloc[0]["base model"] == "+0.100" and table.iloc[0]["PPO"] == "—"
    assert table.iloc[1]["base model"] == "—"
    no_bad_cells(table, V.fits_table(fits))
    samples = [{"method": "base", "setting": 0, "seed": 0, "iteration": 0, "point_kl": 0.0, "prompt": "the plot",
                "response": "was fine", "gold": 0.1, "proxy": 0.0},
               {"method": "ppo", "setting": 0.0, "seed": 0, "iteration": 5, "point_kl": -0.001, "prompt": "the plot",
                "response": "was great", "gold": 0.2, "proxy": 0.3}]
    matched = V.matched_samples(df, samples, 1.0)
    no_bad_cells(matched)
    assert str(matched.iloc[1]["KL"]) == "0.0"   # a KL that rounds to zero is 0, not −0.0
