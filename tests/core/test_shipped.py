"""The shipped checkpoints in assets/ load and still reach the validation loss recorded when made."""

import json

import pytest

from core.config import pretrain_preset
from core.corpus import default_corpus
from core.model import SHIPPED, load_lm
from core.pretrain import evaluate_loss, split_docs


@pytest.mark.parametrize("name", ["small", "weak"])
def test_shipped_base_model_meets_recorded_loss(name):
    lab = json.loads((SHIPPED[name] / "lab.json").read_text())
    model, tok = load_lm(name)
    cfg = pretrain_preset(lab["preset"])
    _, val_docs = split_docs(list(default_corpus(20000, 0)), cfg.val_fraction, lab["seed"])
    eos = tok.eos_token_id
    enc = [(tok(t)["input_ids"] + [eos])[: model.config.n_positions] for t in val_docs]
    loss = evaluate_loss(model, enc, tok.pad_token_id, "cpu")
    assert loss == pytest.approx(lab["val_loss"], abs=1e-3)
    # and the loss means something: far below a uniform guess over the vocabulary (ln 1024 = 6.9)
    assert loss < (2.0 if name == "small" else 4.0)


def test_shipped_checkpoints_are_small():
    total = sum(p.stat().st_size for name in ("small", "weak") for p in SHIPPED[name].rglob("*") if p.is_file())
    assert total < 20e6
