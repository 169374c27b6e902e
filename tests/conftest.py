"""Shared fixtures. Everything runs on the CPU, offline, with few threads (the CI machine has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the app's job limit in tests that are not about the queue (2 cores would give 1: a second run would wait)
os.environ.setdefault("RLHF_LAB_MAX_JOBS", "4")
# precision=auto measures this CPU's bf16 speed once and caches it: in a fresh file per session, not in ~/.cache
os.environ.setdefault("RLHF_LAB_PRECISION_CACHE", os.path.join(__import__("tempfile").mkdtemp(), "precision.json"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base LM pretrained once per test session (seconds): a run folder whose checkpoint/
    holds model + tokenizer. Stages that need "a base model" in tests start from it."""
    from core.config import pretrain_preset, to_dict
    from core.pretrain import pretrain
    from core.runs import Run, drive

    cfg = pretrain_preset("tiny", steps=120, device="cpu")
    run = Run.create("pretrain", to_dict(cfg), out=tmp_path_factory.mktemp("tiny_base") / "run")
    drive(run, pretrain(cfg, run))
    return run.path


# ----------------------------------------------------------------------------- browser tests (tests/test_browser*.py)

@pytest.fixture(scope="session")
def browser():
    """One headless system Chromium for every browser test: each test opens its own pages, or contexts for
    two students, and closes them. (A launch per module cost seconds on the 2-core CI machine.)"""
    from tests.browser_support import chromium

    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`rlhf-lab app --no-browser --port N --runs ROOT`, as a student would start it; shared by the browser
    tests that need no server flags (each finds its own runs by stage, and stops them). Starting the app
    imports torch and Streamlit: one start instead of one per module."""
    from tests.browser_support import app_server

    runs = tmp_path_factory.mktemp("browser") / "runs"
    with app_server(runs) as (url, launched):
        yield {"url": url, "runs": runs, "launched": launched}
