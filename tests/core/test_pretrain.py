import json

from core.config import pretrain_preset
from core.model import generate_texts, load_lm, resolve_checkpoint, CheckpointError
from core.pretrain import pretrain
from core.runs import Run, read_metrics

import pytest


def test_tiny_pretraining_loss_falls(tiny_base):
    df = read_metrics(tiny_base)
    first, last = df["lm/loss"].iloc[:5].mean(), df["lm/loss"].iloc[-5:].mean()
    assert last < first - 1.0, (first, last)
    val = df["lm/val_loss"].dropna()
    assert len(val) >= 2 and val.iloc[-1] < val.iloc[0]
    run = Run.open(tiny_base)
    assert run.status()["state"] == "done"
    assert {s["step"] for s in run.samples()}  # samples were written
    model, tok = load_lm(tiny_base)
    lab = json.loads((run.checkpoint_dir / "lab.json").read_text())
    assert lab["val_loss"] == pytest.approx(val.iloc[-1])
    texts = generate_texts(model, tok, ["the acting was"], max_new_tokens=10, seed=0)
    assert texts[0].startswith("the acting was")


def test_pretraining_is_seeded():
    cfg = pretrain_preset("tiny", steps=5, device="cpu", corpus_size=300)
    a = [m["lm/loss"] for m in pretrain(cfg)]
    b = [m["lm/loss"] for m in pretrain(cfg)]
    assert a == b


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        resolve_checkpoint(tmp_path / "empty")
    run = Run.create("pretrain", {}, out=tmp_path / "unfinished")
    with pytest.raises(CheckpointError, match="no model weights"):
        resolve_checkpoint(run.path)


def test_corrupt_checkpoint_gives_clear_error(tiny_base, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(Run(tiny_base).checkpoint_dir, broken)
    (broken / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(CheckpointError, match="could not load the model"):
        load_lm(broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_lm(broken)


def test_a_base_lm_loads_as_a_one_output_scorer():
    from core.model import load_scorer

    model, _ = load_scorer("small")
    assert model.config.num_labels == 1 and model.score.out_features == 1
