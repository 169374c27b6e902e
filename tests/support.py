"""Plain helpers that tests in several folders share (fixtures live in conftest.py)."""

from __future__ import annotations

import concurrent.futures
import random
from pathlib import Path

from core.annotators import gold_utility
from core.config import ppo_preset
from core.corpus import FILM_ASPECTS, NEGATIVE, POSITIVE

APP = Path(__file__).resolve().parents[1] / "lab" / "app.py"  # the entry script AppTest drives
TIMEOUT = 60  # seconds per AppTest script run: the first one imports torch and transformers


def by_label(elements, label):
    """The AppTest widget of `elements` (e.g. at.slider) labelled `label`."""
    for e in elements:
        if e.label == label:
            return e
    raise AssertionError(f"no widget {label!r} in {[e.label for e in elements]}")


def texts(at) -> str:
    """Everything an AppTest page says in words (markdown, info, warning, error, success, caption)."""
    parts = [e.value for kind in ("markdown", "info", "warning", "error", "success", "caption")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def tiny_cfg(tiny_base, tiny_rm, **kw):
    return ppo_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), device="cpu", **kw)


def statused(run, steps):
    """Mirror drive(): apply {"_status": ...} items to status.json (the trainer reads its own state)."""
    for item in steps:
        if "_status" in item:
            run.set_status(item["_status"], iteration=item.get("step"), message=item.get("message", ""))
        yield item


def next_within(gen, seconds=120):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(next, gen).result(timeout=seconds)


def clean_pairs(n, seed=0):
    """Short pairs "the <aspect> was <adjective>." of clearly different gold utility, noise-free.
    Validation holds out whole prompts (aspects): the RM must learn the words, not the pairs."""
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n:
        prompt = f"the {rng.choice(FILM_ASPECTS)} was"
        a, b = f"{rng.choice(POSITIVE)}.", f"{rng.choice(NEGATIVE)}."
        u_a, u_b = gold_utility([f"{prompt} {a}", f"{prompt} {b}"])
        if abs(u_a - u_b) < 0.3:
            continue
        chosen, rejected = (a, b) if u_a > u_b else (b, a)
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs
