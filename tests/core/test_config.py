import pytest

from core.config import ConfigError, ModelConfig, PRESETS, pretrain_preset, resolve_device, from_dict, to_dict, PretrainConfig


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_validate(preset):
    cfg = pretrain_preset(preset)
    cfg.validate()
    assert from_dict(PretrainConfig, to_dict(cfg)) == cfg


def test_weak_is_smaller_than_small():
    assert pretrain_preset("weak").model.n_params() < pretrain_preset("small").model.n_params() / 4


@pytest.mark.parametrize("change, field", [
    (dict(steps=0), "steps"),
    (dict(lr=-1.0), "lr"),
    (dict(batch_size=0), "batch_size"),
    (dict(val_fraction=0.9), "val_fraction"),
    (dict(device="tpu"), "device"),
    (dict(corpus_file="/no/such/file.txt"), "corpus_file"),
])
def test_bad_values_name_the_field(change, field):
    cfg = pretrain_preset("tiny", **change)
    with pytest.raises(ConfigError, match=field):
        cfg.validate()


def test_model_shape_errors():
    with pytest.raises(ConfigError, match="n_head must divide n_embd"):
        ModelConfig(n_embd=100, n_head=3).validate()
    with pytest.raises(ConfigError, match="n_layer"):
        ModelConfig(n_layer=0).validate()
    with pytest.raises(ConfigError, match="preset"):
        pretrain_preset("huge")


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("quantum")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
