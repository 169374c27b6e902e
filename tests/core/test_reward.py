"""The reward model: the pairwise loss, scoring with padding, normalisation, learning, the shipped RM."""

import json
import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from core.config import ConfigError, preset_model, to_dict
from core.corpus import synthetic_reviews
from core.model import build_lm, encode, load_lm, save_checkpoint, scorer_from_lm
from core.preferences import PreferenceError, export_preferences
from core.reward import (RewardError, RewardScorer, _check_preference_base, bake_normalisation, fresh_gold_pairs,
                         gold_agreement, pairwise_loss, reward_preset, score_texts, split_by_prompt, train_reward)
from core.runs import Run
from core.session import drive
from core.tokenizer import train_tokenizer
from tests.support import clean_pairs


def naive_pairwise_loss(chosen, rejected, margin=None):
    total = 0.0
    for i in range(len(chosen)):
        m = 0.0 if margin is None else (margin if isinstance(margin, float) else float(margin[i]))
        total += -math.log(1.0 / (1.0 + math.exp(-(float(chosen[i]) - float(rejected[i]) - m))))
    return total / len(chosen)


def test_pairwise_loss_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(7, generator=g), torch.randn(7, generator=g)
    assert pairwise_loss(chosen, rejected).item() == pytest.approx(naive_pairwise_loss(chosen, rejected), rel=1e-5)
    assert pairwise_loss(chosen, rejected, 0.5).item() == pytest.approx(
        naive_pairwise_loss(chosen, rejected, 0.5), rel=1e-5)
    margins = torch.rand(7, generator=g)
    assert pairwise_loss(chosen, rejected, margins).item() == pytest.approx(
        naive_pairwise_loss(chosen, rejected, margins), rel=1e-5)
    # a margin asks for more: the same scores cost more
    assert pairwise_loss(chosen, rejected, 1.0) > pairwise_loss(chosen, rejected)
    # stable far in the tails, where log(sigmoid(x)) would underflow to -inf
    assert torch.isfinite(pairwise_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_padded_batch_scores_equal_one_at_a_time(tiny_base):
    lm, tok = load_lm(tiny_base)
    model = scorer_from_lm(lm).eval()
    texts = ["the plot was good.", "a", "the acting was terrible, but the music was lovely and the ending works."]
    batch = score_texts(model, tok, texts)
    single = torch.cat([score_texts(model, tok, [t]) for t in texts])
    assert torch.allclose(batch, single, atol=1e-5)
    # pad is not eos: the score is read at <eos>, and padding after it changes nothing
    ids, mask = encode(tok, texts, add_eos=True)
    assert tok.pad_token_id != tok.eos_token_id
    assert (ids[mask.bool()] == tok.pad_token_id).sum() == 0


def test_bake_normalisation_is_exact(tiny_base):
    lm, tok = load_lm(tiny_base)
    model = scorer_from_lm(lm).eval()
    texts = ["the plot was good.", "the plot was bad.", "i would recommend it."]
    before = score_texts(model, tok, texts)
    bake_normalisation(model, 2.5, -0.7)
    after = score_texts(model, tok, texts)
    assert torch.allclose(after, 2.5 * before - 0.7, atol=1e-4)


def test_tiny_reward_model_learns(tiny_base, tmp_path):
    data = export_preferences(clean_pairs(300), tmp_path / "pairs.jsonl")
    cfg = reward_preset("tiny", preferences=str(data), base=str(tiny_base), epochs=3, device="cpu")
    run = Run.create("reward", to_dict(cfg), out=tmp_path / "rm")
    last = drive(run, train_reward(cfg, run))
    metrics = run.metrics()
    evals = metrics.dropna(subset=["rm/val_accuracy"])
    assert last["final"] and last["rm/val_accuracy"] >= 0.75, evals[["step", "rm/val_accuracy"]]
    assert evals["rm/val_loss"].iloc[-1] < evals["rm/val_loss"].iloc[0]
    assert {"rm/loss", "rm/accuracy", "rm/margin", "rm/gold_agreement"} <= set(metrics.columns)

    # normalised on base samples: mean 0, std 1, recorded in lab.json and baked into the weights
    lab = json.loads((run.checkpoint_dir / "lab.json").read_text())
    norm = lab["normalisation"]
    assert norm["mean_after"] == pytest.approx(0.0, abs=1e-3) and norm["std_after"] == pytest.approx(1.0, abs=1e-3)
    assert norm["gain"] == pytest.approx(1.0 / norm["raw_std"])
    scores = json.loads((run.path / "scores.json").read_text())
    base_scores = torch.tensor(scores["base_samples"]["score"])
    assert base_scores.mean().abs() < 1e-3 and (base_scores.std() - 1).abs() < 1e-3
    assert len(scores["val"]["chosen"]) == len(scores["val"]["rejected"]) == lab["val_pairs"]

    # a plain transformers load gives the same (normalised) scores as the lab's scorer
    scorer = RewardScorer(run.path)
    texts = scores["base_samples"]["text"][:5]
    hf = AutoModelForSequenceClassification.from_pretrained(run.checkpoint_dir).eval()
    ids, mask = encode(scorer.tokenizer, texts, add_eos=True)
    with torch.no_grad():
        hf_scores = hf(input_ids=ids, attention_mask=mask).logits[:, 0]
    assert torch.allclose(hf_scores, torch.tensor(scorer.score(texts)), atol=1e-4)
    assert torch.allclose(torch.tensor(scorer.score(texts)), base_scores[:5], atol=1e-4)


def test_gold_pairs_are_fresh_and_distinct(tiny_base):
    lm, tok = load_lm(tiny_base)
    pairs = fresh_gold_pairs(lm, tok, 10, gap=0.05, seed=0, max_new_tokens=16)
    assert pairs and all(abs(p["gold_a"] - p["gold_b"]) > 0.05 for p in pairs)
    model = scorer_from_lm(lm).eval()
    assert 0.0 <= gold_agreement(model, tok, pairs) <= 1.0
    # an RM that is the gold utility itself agrees on every pair; its negative on none
    flipped = [{**p, "gold_a": p["gold_b"], "gold_b": p["gold_a"]} for p in pairs]
    agree = gold_agreement(model, tok, pairs)
    assert agree + gold_agreement(model, tok, flipped) == pytest.approx(1.0)


def test_split_holds_out_whole_prompts():
    rows = [{"prompt": f"p{i % 10}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(50)]
    train, val = split_by_prompt(rows, 0.2, seed=0)
    assert len(train) + len(val) == 50 and val
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    with pytest.raises(PreferenceError, match="at least 2"):
        split_by_prompt(rows[:1], 0.2, seed=0)


def test_bad_inputs_are_clear_errors(tiny_base, tmp_path):
    with pytest.raises(ConfigError, match="preferences"):
        reward_preset("tiny").validate()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = reward_preset("tiny", preferences=str(empty), base=str(tiny_base), device="cpu")
    with pytest.raises(PreferenceError, match="no preference pairs"):
        next(train_reward(cfg))
    one = export_preferences([{"prompt": "a", "chosen": "good.", "rejected": "bad."}], tmp_path / "one.jsonl")
    with pytest.raises(PreferenceError, match="at least 2"):
        next(train_reward(reward_preset("tiny", preferences=str(one), base=str(tiny_base), device="cpu")))

    # a base model whose tokenizer differs from the one that wrote the pairs
    other_tok = train_tokenizer(synthetic_reviews(300, seed=5), vocab_size=200)
    other = tmp_path / "other_base"
    save_checkpoint(build_lm(preset_model("tiny"), other_tok), other_tok, other)
    _, tok = load_lm(tiny_base)
    with pytest.raises(RewardError, match="different tokenizers"):
        _check_preference_base({"base": str(other)}, tok, str(tiny_base))
    _check_preference_base({"base": str(tiny_base)}, tok, str(tiny_base))  # same: fine
    other_rm = tmp_path / "other_rm"
    save_checkpoint(scorer_from_lm(build_lm(preset_model("tiny"), other_tok)), other_tok, other_rm)
    scorer = RewardScorer(other_rm)
    with pytest.raises(RewardError, match="different tokenizers"):
        scorer.check_tokenizer(tok)
    with pytest.raises(RewardError, match="single string"):
        scorer.score("the plot was good.")


def test_shipped_reward_model_agrees_with_gold():
    """The shipped RM (assets/reward), loaded as any HF tool would, ranks fresh base-model pairs of
    distinct gold utility the way the gold annotator does (the issue's goal: >= 80%)."""
    scorer = RewardScorer("reward")
    assert scorer.info["profile"] == "positive"
    hf = AutoModelForSequenceClassification.from_pretrained(scorer.path)
    assert hf.config.num_labels == 1
    lm, tok = load_lm("small")
    scorer.check_tokenizer(tok, "the shipped small model")
    pairs = fresh_gold_pairs(lm, tok, 150, seed=12345)  # a seed no training or normalisation used
    assert len(pairs) >= 100
    assert gold_agreement(scorer.model, scorer.tokenizer, pairs) >= 0.8


# ----------------------------------------------------------------------------- the command line

def test_cli_preferences_then_reward(tiny_base, tmp_path, capsys):
    from lab.cli import main

    assert main(["preferences", "--preset", "tiny", "--base", str(tiny_base), "--pairs", "60", "--device", "cpu",
                 "--out", str(tmp_path / "pref")]) == 0
    assert "60 pairs" in capsys.readouterr().out
    assert main(["reward", "--preset", "tiny", "--preferences", str(tmp_path / "pref"), "--base", str(tiny_base),
                 "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "rm")]) == 0
    out = capsys.readouterr().out
    assert "gold agreement" in out and (tmp_path / "rm" / "checkpoint" / "model.safetensors").exists()
    assert RewardScorer(tmp_path / "rm").info["profile"] == "positive"


def test_cli_bad_input_is_one_line(tiny_base, tmp_path, capsys):
    from lab.cli import main

    assert main(["preferences", "--preset", "tiny", "--base", str(tiny_base), "--tau", "0",
                 "--out", str(tmp_path / "a")]) == 2
    assert "tau must be > 0" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("prompt,chosen,rejected\n")
    assert main(["reward", "--preferences", str(empty), "--base", str(tiny_base), "--out", str(tmp_path / "b")]) == 2
    assert "no preference pairs" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before a run folder was made
    assert main(["preferences", "--preset", "tiny", "--base", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_pipeline_runs_stages_in_order_and_resumes(tmp_path, capsys):
    from lab.cli import main
    from lab.cli.pipeline import STAGES

    assert [name for name, _ in STAGES][:3] == ["pretrain", "preferences", "reward"]
    out = tmp_path / "pipe"
    assert main(["pipeline", "--preset", "tiny", "--out", str(out), "--until", "preferences", "--device", "cpu"]) == 0
    assert Run.open(out / "pretrain").status()["state"] == "done"
    assert Run.open(out / "preferences").status()["state"] == "done"
    assert not (out / "reward").exists()
    assert Run.open(out / "preferences").config["base"] == str(out / "pretrain")
    capsys.readouterr()
    # a second call reuses the finished stages and goes on
    assert main(["pipeline", "--preset", "tiny", "--out", str(out), "--until", "reward", "--device", "cpu"]) == 0
    assert "pretrain: already done" in capsys.readouterr().out
    assert RewardScorer(out / "reward").info["base"] == str(out / "pretrain")
