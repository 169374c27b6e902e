"""Best-of-n: the analytic KL against the exact and the sampled KL of a toy categorical, the prefix selection,
learning on the shipped models (gold at n=16 beats n=1), the run and the `bon` command, bad input."""

import math

import pytest
import torch

from core.bon import best_indices, best_of_n, bon_kl
from core.config import ConfigError, bon_preset, to_dict
from core.runs import Run, read_jsonl, read_metrics


def exact_bon_kl(probs: torch.Tensor, n: int) -> float:
    """KL(best-of-n || p) of a categorical whose outcomes are sorted by increasing reward, no ties:
    P(best = i) = F(i)^n - F(i-1)^n with F the CDF."""
    cdf = probs.double().cumsum(0)
    p_bon = cdf ** n - torch.cat([torch.zeros(1, dtype=torch.double), cdf[:-1]]) ** n
    keep = p_bon > 0
    return float((p_bon[keep] * (p_bon[keep] / probs.double()[keep]).log()).sum())


def test_analytic_kl_formula():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert bon_kl(32) == pytest.approx(math.log(32) - 31 / 32)
    assert all(bon_kl(a) < bon_kl(b) for a, b in zip([1, 2, 4, 8], [2, 4, 8, 16]))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            bon_kl(bad)


def test_analytic_kl_matches_a_fine_categorical_and_bounds_a_coarse_one():
    fine = torch.full((4000,), 1 / 4000)
    for n in (2, 4, 16):
        assert exact_bon_kl(fine, n) == pytest.approx(bon_kl(n), rel=0.01)
    coarse = torch.tensor([0.5, 0.5])      # few outcomes = many ties: the formula is an upper bound
    assert exact_bon_kl(coarse, 4) < bon_kl(4)


@pytest.mark.parametrize("n", [2, 4])
def test_sampled_best_of_n_kl_agrees_with_the_formula(n):
    """Draw n samples from a categorical, keep the best with best_indices, and estimate KL(best-of-n || p) as the
    mean of log p_bon(x) / p(x) over the kept draws: the Monte-Carlo figure matches log n - (n-1)/n."""
    K, M = 1000, 40000
    g = torch.Generator().manual_seed(n)
    probs = torch.distributions.Dirichlet(torch.full((K,), 50.0)).sample()      # near-uniform, no ties in reward
    reward = torch.arange(K, dtype=torch.float)                                # outcome i has reward i
    draws = torch.multinomial(probs, M * n, replacement=True, generator=g).view(M, n)
    kept = draws[torch.arange(M), best_indices(reward[draws], [n])[n]]           # (M,)
    cdf = probs.double().cumsum(0)
    p_bon = cdf ** n - torch.cat([torch.zeros(1, dtype=torch.double), cdf[:-1]]) ** n
    estimate = (p_bon[kept] / probs.double()[kept]).log().mean().item()
    assert estimate == pytest.approx(bon_kl(n), abs=0.03)


def test_best_indices_take_the_best_of_each_prefix():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 8, generator=g)
    got = best_indices(scores, [1, 3, 8])
    for n in (1, 3, 8):
        for i in range(5):
            row = scores[i, :n].tolist()
            assert int(got[n][i]) == row.index(max(row))
    assert (got[1] == 0).all()


def test_best_of_16_beats_best_of_1_on_gold_with_the_shipped_models():
    """Seeded, the shipped base model and RM: picking by the proxy raises the hidden gold utility."""
    cfg = bon_preset("tiny", n=[1, 16], prompts=16, response_length=16, device="cpu", seed=0)
    rows = [m for m in best_of_n(cfg) if "_status" not in m]
    by_n = {m["bon/n"]: m for m in rows}
    assert by_n[16]["objective/scores"] > by_n[1]["objective/scores"]
    assert by_n[16]["objective/gold"] > by_n[1]["objective/gold"] + by_n[1]["objective/gold_se"], by_n
    assert by_n[16]["objective/kl"] == pytest.approx(bon_kl(16)) and by_n[1]["objective/kl"] == 0.0


def test_bon_run_and_cli(tiny_base, tiny_rm, tmp_path, capsys):
    from lab.cli import main

    out = tmp_path / "run"
    assert main(["bon", "--preset", "tiny", "--policy", str(tiny_base), "--reward", str(tiny_rm), "--n", "1,2,4",
                 "--prompts", "5", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best-of-4" in printed and "analytic" in printed
    df = read_metrics(out)
    assert list(df["bon/n"]) == [1, 2, 4] and list(df["step"]) == [1, 2, 3]
    assert df["objective/kl"].tolist() == pytest.approx([bon_kl(1), bon_kl(2), bon_kl(4)])
    assert (df["objective/scores"].diff().dropna() >= 0).all()     # the best of a longer prefix never scores less
    assert Run.open(out).status()["state"] == "done"
    sample = read_jsonl(out / "samples.jsonl")[0]
    assert len(sample["responses"]) == len(sample["scores"]) == len(sample["gold"]) == 4
    assert sample["scores"][sample["kept"]["4"]] == max(sample["scores"])
    for bad, message in ((["--n", "4,2"], "strictly increasing"), (["--n", "0,1"], "integers >= 1"),
                         (["--n", "1,x"], "comma-separated"), (["--prompts", "0"], "BoNConfig.prompts")):
        assert main(["bon", "--preset", "tiny", "--out", str(tmp_path / "bad")] + bad) == 2, bad
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_reward_model_with_another_tokenizer_is_refused_before_sampling(tiny_base, tmp_path, capsys):
    from lab.cli import main

    with pytest.raises(ConfigError, match="BoNConfig.reward.*different tokenizers"):
        next(best_of_n(bon_preset("tiny", policy=str(tiny_base), reward="reward", device="cpu")))
    assert main(["bon", "--preset", "tiny", "--policy", str(tiny_base), "--out", str(tmp_path / "r")]) == 2
    assert "BoNConfig.reward" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert to_dict(bon_preset("tiny"))["n"] == [1, 4, 16]
