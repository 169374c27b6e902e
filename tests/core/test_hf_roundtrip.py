"""The shipped checkpoints read by transformers' own pipelines, offline, exactly as the lab reads them."""

import json

import pytest
from transformers import pipeline

from core.corpus import default_corpus, vocabulary
from core.model import SHIPPED
from core.reward import RewardScorer
from core.tokenizer import ENVIRONMENT_KEYS

PROMPTS = ["the acting was", "i watched this film", "the plot", "honestly, the soundtrack felt"]


@pytest.fixture(scope="module")
def generator():
    return pipeline("text-generation", model=str(SHIPPED["small"]), device="cpu")


def test_text_generation_pipeline_keeps_word_boundaries(generator):
    words = vocabulary(default_corpus(20000, 0))
    out = generator(PROMPTS, max_new_tokens=16, do_sample=False)
    texts = [o[0]["generated_text"] for o in out]
    for prompt, text in zip(PROMPTS, texts):
        assert text.startswith(prompt + " ") or text[len(prompt)] in ".,!?;:", text
        generated = text.replace(",", " ").split()[:-1]  # the last word may be cut by max_new_tokens
        unknown = [w for w in generated if w.strip(".,!?;:") not in words]
        assert not unknown, f"{text!r}: not words of the corpus: {unknown}"


def test_batched_generate_equals_one_at_a_time():
    """Prompts of different lengths in one `generate` call, padded as the checkpoint says (left)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHIPPED["small"])
    model = AutoModelForCausalLM.from_pretrained(SHIPPED["small"])

    def continue_(prompts):
        batch = tok(prompts, return_tensors="pt", padding=True)
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
        return tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    assert continue_(PROMPTS) == [continue_([p])[0] for p in PROMPTS]


def test_text_classification_pipeline_gives_the_labs_reward():
    texts = ["the acting was great.", "i watched this film twice and the plot dragged, but the music shines.",
             "dull", "the soundtrack felt not at all bad, honestly."]
    lab = RewardScorer("reward").score(texts)
    rm = pipeline("text-classification", model=str(SHIPPED["reward"]), device="cpu")
    one = [r["score"] for r in rm(texts, function_to_apply="none", batch_size=1)]
    batched = [r["score"] for r in rm(texts, function_to_apply="none", batch_size=len(texts))]
    assert one == pytest.approx(lab, abs=1e-4) and batched == pytest.approx(lab, abs=1e-4)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_tokenizer_config_carries_no_environment_flags(name):
    config = json.loads((SHIPPED[name] / "tokenizer_config.json").read_text())
    assert not set(config) & set(ENVIRONMENT_KEYS)
    assert config["padding_side"] == ("right" if name == "reward" else "left")


def test_saved_checkpoints_are_written_for_the_ecosystem(tiny_base, tmp_path):
    """What save_checkpoint writes now (the shipped files were rewritten by the same code)."""
    from core.model import load_lm, save_checkpoint, scorer_from_lm
    from transformers import AutoTokenizer

    lm, tok = load_lm(tiny_base)
    save_checkpoint(lm, tok, tmp_path / "lm")
    save_checkpoint(scorer_from_lm(lm), tok, tmp_path / "rm")
    lm_tok, rm_tok = AutoTokenizer.from_pretrained(tmp_path / "lm"), AutoTokenizer.from_pretrained(tmp_path / "rm")
    assert lm_tok.padding_side == "left" and rm_tok.padding_side == "right"
    ids = lm_tok("the acting was not bad")["input_ids"]
    assert lm_tok.decode(ids[4:]).startswith(" ")                  # a continuation keeps its space
    assert rm_tok("the acting")["input_ids"] == lm_tok("the acting")["input_ids"] + [rm_tok.eos_token_id]
    for folder in ("lm", "rm"):
        assert not set(json.loads((tmp_path / folder / "tokenizer_config.json").read_text())) & set(ENVIRONMENT_KEYS)
