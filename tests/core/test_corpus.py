import pytest

from core.corpus import (NEGATIVE, POSITIVE, CorpusError, NEGATIONS, load_hf_dataset, load_text_file, parse_text, synthetic_reviews,
                         vocabulary)


def test_synthetic_reviews_are_deterministic():
    assert synthetic_reviews(200, seed=3) == synthetic_reviews(200, seed=3)
    assert synthetic_reviews(200, seed=3) != synthetic_reviews(200, seed=4)


def test_synthetic_reviews_are_rich():
    docs = synthetic_reviews(20000, seed=0)
    assert len(vocabulary(docs)) >= 600
    lengths = [len(d.split()) for d in docs]
    assert min(lengths) >= 6 and max(lengths) <= 40
    assert max(lengths) >= 35 and sum(lengths) / len(lengths) > 12
    text = " ".join(docs)
    assert "not bad" in text and "never boring" in text
    assert sum(" but " in d for d in docs) > 500
    assert any(f" {n} " in text for n in NEGATIONS)
    for aspect in ("acting", "plot", "music", "battery"):
        assert f"the {aspect}" in text
    # "the acting was" can go either way: both signs follow it in the corpus
    follow = {d.split("the acting was ", 1)[1].split()[0].strip(".,") for d in docs if "the acting was " in d}
    assert len(follow & set(POSITIVE)) >= 5 and len(follow & set(NEGATIVE)) >= 5


def test_text_file_loader(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("\n".join(f"review number {i} was fine" for i in range(20)) + "\n\n", encoding="utf-8")
    docs = load_text_file(good)
    assert len(docs) == 20 and docs[0] == "review number 0 was fine"


@pytest.mark.parametrize("content, message", [
    (b"", "at least"),
    (b"\n\n  \n", "at least"),
    (b"\x00\x01\x02binary" * 10, "binary"),
    (b"\xff\xfe\xfa not utf8\n" * 20, "UTF-8"),
])
def test_text_file_loader_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        load_text_file(path)


def test_text_file_limits(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 100 + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="limit"):
        load_text_file(path, max_bytes=100)
    with pytest.raises(CorpusError, match="line 1"):
        parse_text(("x" * 50 + "\n").encode() * 20, max_line_chars=10)
    with pytest.raises(CorpusError, match="does not exist"):
        load_text_file(tmp_path / "missing.txt")


def test_hf_dataset_loader_on_a_local_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [f"a  local   review {i}" for i in range(15)], "label": list(range(15))})
    docs = load_hf_dataset(ds)
    assert docs[0] == "a local review 0" and len(docs) == 15
    assert len(load_hf_dataset(ds, limit=12)) == 12
    with pytest.raises(CorpusError, match="no column"):
        load_hf_dataset(ds, text_field="body")
