from core.corpus import synthetic_reviews
from core.tokenizer import load_tokenizer, same_tokenizer, show_tokens, train_tokenizer


def test_round_trip_and_special_tokens(tmp_path):
    docs = synthetic_reviews(2000, seed=0)
    tok = train_tokenizer(docs, vocab_size=512)
    specials = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    assert len(specials) == 4
    text = "the acting was not bad, but the plot dragged."
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    # every word keeps its leading space, the first one too: a continuation decoded on its own
    # appends to its prompt as is; a whole text decodes with one leading space
    assert tok.decode(ids, skip_special_tokens=True) == " " + text
    prompt = tok("the acting was")["input_ids"]
    assert "the acting was" + tok.decode(ids[len(prompt):]) == text
    # readable: common words are single tokens
    assert "▁acting" in show_tokens(tok, text)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again(text)["input_ids"] == ids and same_tokenizer(tok, again)
    other = train_tokenizer(docs[:500], vocab_size=300)
    assert not same_tokenizer(tok, other)


def test_a_checkpoint_saved_with_the_old_decoder_loads_with_the_continuation_decoder(tmp_path):
    """Runs written before the fix decode like new ones in the lab (the decoder dropped the first space)."""
    import json

    tok = train_tokenizer(synthetic_reviews(500, seed=0), vocab_size=256)
    tok.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["decoder"]["prepend_scheme"] = "always"  # what checkpoints held before
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    loaded = load_tokenizer(tmp_path)
    ids, prompt = loaded("the acting was not bad")["input_ids"], loaded("the acting was")["input_ids"]
    assert ids[:len(prompt)] == prompt
    assert "the acting was" + loaded.decode(ids[len(prompt):]) == "the acting was not bad"
