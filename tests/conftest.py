"""Shared fixtures. Everything runs on the CPU, offline, with few threads (the CI machine has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the app's job limit in tests that are not about the queue (2 cores would give 1: a second run would wait)
os.environ.setdefault("RLHF_LAB_MAX_JOBS", "4")
# where the CPU's flags cannot tell, precision=auto measures bf16 once and caches it: in a fresh file per session
os.environ.setdefault("RLHF_LAB_PRECISION_CACHE", os.path.join(__import__("tempfile").mkdtemp(), "precision.json"))

# pytest-xdist runs the suite in several worker processes (pyproject: -n auto); each gets its share of the cores,
# and so do the trainers, CLI commands and app workers it starts (OMP_NUM_THREADS): two processes with two threads
# each on two cores run many times slower than one with two.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 2) // WORKERS))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(THREADS, torch.get_num_threads())))


def pytest_xdist_auto_num_workers(config):
    """-n auto: one worker per core, at most 4 (each loads torch and its own session fixtures: a few hundred MB)."""
    return max(1, min(4, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _as_on_a_bf16_cpu(request, monkeypatch):
    """Tests marked `precision` compare numbers that only one precision meets. They run as on a CPU with fast
    bf16 (auto resolves to bf16, in this process and in every subprocess and torchrun rank it starts), whatever
    this machine is: one that forgot to pin its precision fails here, not only on a student's newer CPU.
    `RLHF_LAB_CPU_BF16=1 pytest` runs the whole suite that way (slowly where bf16 is emulated)."""
    if request.node.get_closest_marker("precision"):
        monkeypatch.setenv("RLHF_LAB_CPU_BF16", "1")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base LM pretrained once per test session (seconds): a run folder whose checkpoint/
    holds model + tokenizer. Stages that need "a base model" in tests start from it."""
    from core.config import pretrain_preset, to_dict
    from core.pretrain import pretrain
    from core.runs import Run
    from core.session import drive

    cfg = pretrain_preset("tiny", steps=120, device="cpu")
    run = Run.create("pretrain", to_dict(cfg), out=tmp_path_factory.mktemp("tiny_base") / "run")
    drive(run, pretrain(cfg, run))
    return run.path


@pytest.fixture(scope="session")
def tiny_rm(tiny_base, tmp_path_factory):
    """A proxy reward model on the tiny base: the base backbone and a fixed random score head, scaled so that
    base samples score with std ~1 (like the lab's normalised RMs). PPO can raise it; what it likes is arbitrary."""
    from core.model import left_pad, load_lm, save_checkpoint, scorer_from_lm
    from core.rollout import Models, freeze, rollout

    torch.manual_seed(0)
    lm, tok = load_lm(tiny_base)
    rm = scorer_from_lm(lm).eval()
    ids, mask = left_pad(tok, ["the acting was", "the battery", "i bought this", "the plot"] * 8)
    models = Models(lm.eval(), freeze(lm), freeze(rm), None, torch.nn.Linear(lm.config.n_embd, 1), tok)
    ro = rollout(models, ids, mask, 12, 1.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        rm.score.weight /= ro.raw_scores.std().clamp(min=1e-3)
    path = tmp_path_factory.mktemp("tiny_rm") / "rm"
    save_checkpoint(rm, tok, path)
    return path


@pytest.fixture(scope="session")
def pair_file(tmp_path_factory):
    """32 pairs on 32 prompts: the chosen response praises, the rejected one pans (words the tiny tokenizer knows)."""
    import json

    from core.corpus import NEGATIVE, POSITIVE, synthetic_reviews

    rows = []
    for i, review in enumerate(synthetic_reviews(32, seed=5)):
        prompt = " ".join(review.split()[:2])
        rows.append({"prompt": prompt, "chosen": f"was {POSITIVE[i % len(POSITIVE)]} and i liked it.",
                     "rejected": f"was {NEGATIVE[i % len(NEGATIVE)]}, a waste."})
    path = tmp_path_factory.mktemp("dpo_pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- browser tests (tests/browser/)

@pytest.fixture(scope="session")
def browser():
    """One headless system Chromium for every browser test: each test opens its own pages, or contexts for
    two students, and closes them. (A launch per module cost seconds on the 2-core CI machine.)"""
    from tests.browser.support import chromium

    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`rlhf-lab app --no-browser --port N --runs ROOT`, as a student would start it; shared by the browser
    tests that need no server flags (each finds its own runs by stage, and stops them). Starting the app
    imports torch and Streamlit: one start instead of one per module."""
    from tests.browser.support import app_server

    runs = tmp_path_factory.mktemp("browser") / "runs"
    with app_server(runs) as (url, launched):
        yield {"url": url, "runs": runs, "launched": launched}
