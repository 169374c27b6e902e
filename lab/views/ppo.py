"""What the PPO and weak-to-strong pages need besides charts and the live panel (lab/live_panel.py):
reading a run's samples and inspect.json, the models to start from, and the one-click "quick start"
that the Home page calls.

No Streamlit here: the pages call these functions and render what they return, and the tests call
them directly.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

from core import settings
from core.config import ConfigError, PPOConfig
from core.runs import Run, RunError, list_runs, read_json

# The "quick start" run: visible learning in well under a minute on a laptop CPU (small policy,
# shipped reward model, small batches, short responses), long enough to play with the controls.
# One torch thread: at this size a second thread gains little, and on a busy machine (two students,
# other jobs) oversubscribed threads made an iteration 20-30x slower (1 s -> 30 s, measured).
QUICK_START = dict(iterations=200, batch_size=16, response_length=16, kl_coef=0.05, sample_every=2,
                   checkpoint_every=50, device="auto", threads=1)
CPU_THREADS = 1  # threads of a run started from the PPO page on the CPU (same reason)
PAGE_ITERATIONS = 100  # the PPO page's default: long enough to see over-optimisation (the CLI's is PPOConfig's 30)
BATCH_CHOICES = (8, 16, 32, 64)


def link_settings():
    """What a link to the PPO page carries besides the live knobs (lab/live_panel.link_schema): length and batch."""
    from lab.url_settings import Setting

    return [Setting("iterations", "int", PAGE_ITERATIONS, 1, 2000),
            Setting("batch", "choice", 16, choices=BATCH_CHOICES)]


# ----------------------------------------------------------------------------- is PPO here?

def _named(entry: dict) -> str:
    """A run as choices list it: the student's name for it (if any) and its id."""
    from lab.views.runs import display_name, read_meta

    return display_name(entry["run_id"], read_meta(entry["path"]))


def config_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def make_ppo_config(**values):
    """A validated PPOConfig: the preset ("small" unless `preset` is given) plus `values`. A key that
    is not a PPOConfig field is a ConfigError naming it (a typo must not be dropped silently)."""
    import core.config

    cls = PPOConfig
    unknown = sorted(set(values) - config_fields(cls))
    if unknown:
        raise ConfigError(f"PPOConfig has no field(s) {unknown}")
    values = {k: v for k, v in values.items() if v is not None}
    cfg = core.config.ppo_preset(values.pop("preset", "small"), **values)
    cfg.validate()
    return cfg


def make_w2s_config(preset: str = "default", **values):
    import core.config

    unknown = sorted(set(values) - config_fields(core.config.W2SConfig))
    if unknown:
        raise ConfigError(f"W2SConfig has no field(s) {unknown}")
    cfg = core.config.w2s_preset(preset, **values)
    cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- what the run wrote

# What "One PPO step, slowly" shows, as the trainer records it (core/ppo_train.py, inspect_rows): the
# rollout quantities of the iteration, and the ratio and clipping of the *last* epoch's first minibatch,
# when the policy has moved (in the first epoch's first minibatch every ratio would be exactly 1).
STEP_TEXT = ("One real iteration of this run, on a couple of its rollout samples, frozen so you can read it. "
             "Each row of the table is one token of the response, in order; read a row left to right: the token "
             "sampled, how likely the policy and the frozen base model found it, their difference (the per-token "
             "KL), the shaped reward (−λ·KL on every token, plus the reward model's score at the last one), the "
             "critic's value V, the GAE advantage Â_raw, and the return R = Â_raw + V (the critic's target: add "
             "the two columns and you get it). The policy loss uses Â after whitening over the whole batch (mean 0, "
             "std 1), shown in its own column, and the ratio π_θ/π_old in the iteration's last epoch of updates "
             "(its first minibatch), by when the policy has moved — clipped (×) when it left [1−ε, 1+ε] in the "
             "direction the advantage pushes. The chart below draws the same rows with the tokens along its axis.")

def read_inspect(run: Run) -> dict | None:
    """inspect.json ("one PPO step, slowly"), or None before the first iteration wrote it."""
    try:
        data = read_json(run.path / "inspect.json", None)
    except RunError:
        return None  # being replaced right now is impossible (atomic), but a corrupt file must not crash a page
    return data if isinstance(data, dict) else None


def inspect_rows(data: dict | None) -> list[dict]:
    """The per-sample rows of inspect.json, each carrying the iteration's kl_coef/clip_eps."""
    if not data:
        return []
    rows = data.get("rows", data.get("samples"))
    if rows is None and "tokens" in data:
        rows = [data]
    out = []
    for row in rows or []:
        merged = {k: v for k, v in data.items() if not isinstance(v, list) and k not in ("rows", "samples")}
        merged.update(row)
        out.append(merged)
    return out


def side_by_side(samples: list[dict]) -> tuple[int | None, list[dict]]:
    """Pair the base model's response to each evaluation prompt with the newest policy response to
    the same prompt. Returns (policy iteration, [{"prompt", "base": row|None, "policy": row|None}])."""
    base = {}
    policy_iter = None
    for row in samples:
        if row.get("kind") == "base":
            base.setdefault(row.get("prompt"), row)
        elif row.get("kind") == "policy":
            it = row.get("iteration", 0)
            policy_iter = it if policy_iter is None else max(policy_iter, it)
    newest = {}
    for row in samples:
        if row.get("kind") == "policy" and row.get("iteration", 0) == policy_iter:
            newest[row.get("prompt")] = row
    prompts = list(base) + [p for p in newest if p not in base]
    return policy_iter, [{"prompt": p, "base": base.get(p), "policy": newest.get(p)} for p in prompts]


def runs_of(runs_root, stage: str, states=("done", "stopped", "running", "paused")) -> list[dict]:
    return [r for r in list_runs(runs_root) if r["stage"] == stage and r["state"] in states]


def reward_choices(runs_root) -> list[tuple[str, str]]:
    """(label, spec) of the reward models a student can use: the shipped one and their finished RM runs."""
    from core.model import SHIPPED

    out = []
    if (Path(SHIPPED["reward"]) / "config.json").exists():
        out.append(("shipped reward model (assets/reward)", "reward"))
    for r in runs_of(runs_root, "reward", states=("done", "stopped")):
        if (Path(r["path"]) / "checkpoint" / "config.json").exists():
            out.append((f"your run {_named(r)}", r["path"]))
    return out


def policy_choices(runs_root, shipped: str = "small") -> list[tuple[str, str]]:
    """(label, spec) of base models: the shipped one named `shipped` and the student's finished
    pretraining runs."""
    from core.model import SHIPPED

    out = []
    if (Path(SHIPPED[shipped]) / "config.json").exists():
        out.append((f"shipped {shipped} base model (assets/{shipped})", shipped))
    for r in runs_of(runs_root, "pretrain", states=("done", "stopped")):
        if (Path(r["path"]) / "checkpoint" / "config.json").exists():
            out.append((f"your run {_named(r)}", r["path"]))
    return out


# ----------------------------------------------------------------------------- your own prompt

@lru_cache(maxsize=4)
def _lm(spec: str, stamp: float):
    """A language model kept while its checkpoint file is unchanged (`stamp` = its mtime)."""
    from core.model import load_lm

    model, tok = load_lm(spec, "cpu")
    model.eval()
    return model, tok


def _stamp(spec: str) -> float:
    from core.model import resolve_checkpoint

    weights = resolve_checkpoint(spec) / "model.safetensors"
    return weights.stat().st_mtime if weights.exists() else 0.0


def try_prompt(run: Run, prompt: str, max_new_tokens: int | None = None, seed: int = 0) -> list[dict]:
    """The base model's and the run's policy's response to a prompt the student typed, each with its
    proxy (this run's reward model) and gold score. Sampled at the run's temperature with one seed for
    both, so the difference is the training, not the dice. Needs the run's policy checkpoint."""
    import torch

    from core.annotators import gold_utility
    from core.model import join_text, read_lab_json
    from core.preferences import sample_responses
    from lab.views import preferences as pref_view

    prompt = " ".join((prompt or "").split())
    if not prompt:
        raise ValueError("type a prompt first (a few words a review might start with)")
    if len(prompt) > 300:
        raise ValueError(f"the prompt is {len(prompt)} characters; keep it under 300 (the models see 128 tokens)")
    if not (run.checkpoint_dir / "model.safetensors").exists():
        raise ValueError("this run has no policy checkpoint yet: it writes one every few iterations and at the end")
    config = run.config
    # the temperature in force (a live knob): what the run samples with now, not what it started with
    temperature = float(settings.settings_at(run.path).get("temperature", config.get("temperature", 1.0)))
    n_new = int(max_new_tokens or config.get("response_length", 16))
    out = []
    for label, spec in (("base model", str(config.get("policy", "small"))), ("policy", str(run.checkpoint_dir))):
        model, tok = _lm(spec, _stamp(spec))
        gen = torch.Generator().manual_seed(seed)
        response = sample_responses(model, tok, [prompt], n_new, temperature,
                                    batch_size=1, generator=gen)[0]
        if label == "policy":
            label += f" (checkpoint of iteration {read_lab_json(spec).get('iteration', '?')})"
        text = join_text(prompt, response)
        out.append({"model": label, "response": response,
                    "proxy": float(pref_view.scorer(str(config.get("reward", "reward"))).score([text])[0]),
                    "gold": float(gold_utility([text], config.get("profile", "positive"))[0])})
    return out


# ----------------------------------------------------------------------------- starting

@lru_cache(maxsize=8)
def _tokenizer_of(spec: str):
    from core.model import resolve_checkpoint
    from core.tokenizer import load_tokenizer

    return load_tokenizer(resolve_checkpoint(spec))


def tokenizer_mismatch(policy: str, reward: str) -> str | None:
    """Why this policy cannot be trained against this reward model (they tokenize differently), in
    the trainer's words, or None when they match. Checked where the models are chosen, before Start,
    so the student never makes a run that can only fail."""
    from core.tokenizer import same_tokenizer

    try:
        tok, rm_tok = _tokenizer_of(policy), _tokenizer_of(reward)
    except Exception as e:  # a broken checkpoint: the trainer will say what is wrong, with its traceback
        return f"cannot read a tokenizer ({type(e).__name__}: {e})"
    if same_tokenizer(tok, rm_tok):
        return None
    return (f"the policy and the reward model use different tokenizers (vocabulary {len(tok)} vs {len(rm_tok)}): "
            "the reward model could not read the policy's tokens. Pick a reward model trained from this base "
            "model, or the base model the reward model was trained from.")


def ppo_job(**values):
    """(cfg, parents, control) for a new PPO job: a validated PPOConfig, its parent artifacts, and a
    control.json that starts with the config's knob values so the page's widgets and the trainer
    agree from iteration 1."""

    cfg = make_ppo_config(**values)
    from core.session import initial_control

    control = initial_control(cfg)
    parents = {k: getattr(cfg, k) for k in ("policy", "reward") if hasattr(cfg, k)}
    return cfg, parents, control


def start_ppo(runs_root, owner: str | None = None, **values) -> Run:
    """Start a PPO job (spawned process). jobs.start refuses a second active PPO run of one owner,
    so two clicks on Start give one run."""
    from lab import jobs

    cfg, parents, control = ppo_job(**values)
    return jobs.start("ppo", cfg, runs_root, parents=parents, owner=owner, control=control)


def quick_start_ppo(runs_root, owner: str | None = None, **overrides) -> Run:
    """The Home page's one click: a PPO run on the shipped base model and shipped reward model with
    small, CPU-friendly settings (QUICK_START) whose reward curve moves within a minute."""
    fields = config_fields(PPOConfig)
    values = {k: v for k, v in QUICK_START.items() if k in fields}
    values.update(overrides)
    return start_ppo(runs_root, owner=owner, **values)
