"""What the PPO and weak-to-strong pages need besides charts: reading a run's samples and
inspect.json, writing live controls with the same checks as PPOConfig.validate(), and the
one-click "quick start" that the Home page calls.

No Streamlit here: the pages call these functions and render what they return, and the tests call
them directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from functools import lru_cache
from pathlib import Path

from core.config import ConfigError, PPOConfig, live_knobs
from core.runs import Run, RunError, list_runs, read_json, read_jsonl

# Live knobs (CONTEXT.md, "PPO live controls") that are also PPOConfig fields: a new value is
# checked by PPOConfig.validate() on a copy of the run's config, so the page refuses exactly what
# the trainer would refuse.
KNOBS = live_knobs(PPOConfig)  # the fields core/config/ marks live

# The "quick start" run: visible learning in well under a minute on a laptop CPU (small policy,
# shipped reward model, small batches, short responses), long enough to play with the controls.
# One torch thread: at this size a second thread gains little, and on a busy machine (two students,
# other jobs) oversubscribed threads made an iteration 20-30x slower (1 s -> 30 s, measured).
QUICK_START = dict(iterations=200, batch_size=16, response_length=16, kl_coef=0.05, sample_every=2,
                   checkpoint_every=50, device="auto", threads=1)
CPU_THREADS = 1  # threads of a run started from the PPO page on the CPU (same reason)
PAGE_ITERATIONS = 100  # the PPO page's default: long enough to see over-optimisation (the CLI's is PPOConfig's 30)
LR_CHOICES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)  # the page's learning-rate slider
BATCH_CHOICES = (8, 16, 32, 64)


def url_schema():
    """The PPO page's settings that a link carries (lab/url_settings.py), with the page's ranges."""
    from lab.url_settings import Setting

    d = make_ppo_config().__dict__
    return [Setting("kl_coef", "float", d["kl_coef"], 0.0, 1.0),
            Setting("mode", "choice", "adaptive" if d["adaptive_kl"] else "fixed", choices=("fixed", "adaptive")),
            Setting("clip_eps", "float", d["clip_eps"], 0.05, 0.5),
            Setting("lr", "float", min(LR_CHOICES, key=lambda c: abs(c - d["lr"])), LR_CHOICES[0], LR_CHOICES[-1],
                    choices=LR_CHOICES, snap=True),
            Setting("temperature", "float", d["temperature"], 0.3, 1.5),
            Setting("iterations", "int", PAGE_ITERATIONS, 1, 2000),
            Setting("batch", "choice", 16, choices=BATCH_CHOICES)]


# ----------------------------------------------------------------------------- is PPO here?

def _named(entry: dict) -> str:
    """A run as choices list it: the student's name for it (if any) and its id."""
    from lab.runs_view import display_name, read_meta

    return display_name(entry["run_id"], read_meta(entry["path"]))


def ppo_available() -> bool:
    """The PPO core (core/ppo_train.py and PPOConfig) exists in this checkout."""
    import core.config

    return importlib.util.find_spec("core.ppo_train") is not None and hasattr(core.config, "PPOConfig")


def w2s_available() -> bool:
    import core.config

    return importlib.util.find_spec("core.w2s") is not None and hasattr(core.config, "W2SConfig")


def ppo_config_class():
    import core.config

    if not hasattr(core.config, "PPOConfig"):
        raise ConfigError("the PPO stage is not part of this version yet (core.config has no PPOConfig)")
    return core.config.PPOConfig


def config_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def make_ppo_config(**values):
    """A validated PPOConfig: the preset ("small" unless `preset` is given) plus `values`. A key that
    is not a PPOConfig field is a ConfigError naming it (a typo must not be dropped silently)."""
    import core.config

    cls = ppo_config_class()
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


# ----------------------------------------------------------------------------- live controls

def current_knobs(run: Run) -> dict:
    """The knob values in force: the run's config, overridden by control.json."""
    config = run.config
    knobs = {k: config.get(k) for k in KNOBS if k in config}
    control = run.read_control()
    knobs.update({k: control[k] for k in KNOBS if k in control})
    return knobs


def validate_knobs(run: Run, **knobs) -> dict:
    """Check new knob values against PPOConfig.validate() on a copy of the run's config.

    Returns the cleaned values (numbers as float, adaptive_kl as bool); raises ConfigError naming the
    knob and its allowed range for a bad value or an unknown key."""
    from core.config import from_dict

    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise ConfigError(f"unknown live control(s) {unknown}; live controls are {list(KNOBS)}")
    clean = {}
    for key, value in knobs.items():
        if key == "adaptive_kl":
            if not isinstance(value, bool):
                raise ConfigError(f"adaptive_kl must be true or false, got {value!r}")
            clean[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        clean[key] = float(value)
    cls = ppo_config_class()
    cfg = from_dict(cls, run.config)
    settable = {k: v for k, v in clean.items() if k in config_fields(cls)}
    dataclasses.replace(cfg, **settable).validate()
    return clean


def _write(run: Run, actor: str | None, teacher: bool, **updates) -> dict:
    """control.json for the run's owner or the teacher only (jobs.check_control raises JobError otherwise).
    actor=None is the local, trusted caller (a notebook, a test); the app always passes the student."""
    from lab import jobs

    jobs.check_control(run.path, actor, teacher)
    return run.write_control(**updates)


def set_knobs(run: Run, actor: str | None = None, teacher: bool = False, **knobs) -> dict:
    """Validate and write live knobs into control.json; the trainer applies them at its next
    iteration. Returns the new control dict."""
    clean = validate_knobs(run, **knobs)
    return _write(run, actor, teacher, **clean)


def pause(run: Run, actor: str | None = None, teacher: bool = False) -> dict:
    return _write(run, actor, teacher, paused=True)


def resume(run: Run, actor: str | None = None, teacher: bool = False) -> dict:
    return _write(run, actor, teacher, paused=False)


def step_once(run: Run, actor: str | None = None, teacher: bool = False) -> dict:
    """While paused, run exactly one more iteration (the trainer counts increments of "step")."""
    control = run.read_control()
    return _write(run, actor, teacher, paused=True, step=int(control.get("step", 0) or 0) + 1)


def stop(run: Run, actor: str | None = None, teacher: bool = False) -> dict:
    """Stop the run (a run still waiting in the queue leaves it at once: jobs.stop)."""
    from lab import jobs

    jobs.stop(run.path, actor, teacher)
    return run.read_control()


def button_states(state: str | None, control: dict | None = None) -> dict[str, bool]:
    """Which of Pause / Resume / Step / Stop mean something for a run in `state` (True = enabled).

    A queued run can only be stopped; a running one paused (unless a pause is already asked for),
    stepped or stopped; a paused one resumed, stepped or stopped; a finished one nothing."""
    paused = bool((control or {}).get("paused"))
    if state == "queued":
        return {"pause": False, "resume": False, "step": False, "stop": True}
    if state == "running":
        return {"pause": not paused, "resume": paused, "step": True, "stop": True}
    if state == "paused":
        return {"pause": False, "resume": True, "step": True, "stop": True}
    return {"pause": False, "resume": False, "step": False, "stop": False}


def control_log(run: Run) -> list[dict]:
    """Applied and refused live changes, as the trainer recorded them."""
    return read_jsonl(run.path / "control_log.jsonl")


# ----------------------------------------------------------------------------- what the run wrote

# What "One PPO step, slowly" shows, as the trainer records it (core/ppo_train.py, inspect_rows): the
# rollout quantities of the iteration, and the ratio and clipping of the *last* epoch's first minibatch,
# when the policy has moved (in the first epoch's first minibatch every ratio would be exactly 1).
STEP_TEXT = ("One real iteration of this run, on a couple of its rollout samples, frozen so you can read it. "
             "Read a column top to bottom: the token sampled, how likely the policy and the frozen base model "
             "found it, their difference (the per-token KL), the shaped reward (−λ·KL on every token, plus "
             "the reward model's score at the last one), the critic's value, the GAE advantage and return, "
             "and the ratio π_θ/π_old in the iteration's last epoch of updates (its first minibatch), by when "
             "the policy has moved — clipped (×) when it left [1−ε, 1+ε] in the direction the advantage pushes.")

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
    from lab import pref_view

    prompt = " ".join((prompt or "").split())
    if not prompt:
        raise ValueError("type a prompt first (a few words a review might start with)")
    if len(prompt) > 300:
        raise ValueError(f"the prompt is {len(prompt)} characters; keep it under 300 (the models see 128 tokens)")
    if not (run.checkpoint_dir / "model.safetensors").exists():
        raise ValueError("this run has no policy checkpoint yet: it writes one every few iterations and at the end")
    config = run.config
    n_new = int(max_new_tokens or config.get("response_length", 16))
    out = []
    for label, spec in (("base model", str(config.get("policy", "small"))), ("policy", str(run.checkpoint_dir))):
        model, tok = _lm(spec, _stamp(spec))
        gen = torch.Generator().manual_seed(seed)
        response = sample_responses(model, tok, [prompt], n_new, float(config.get("temperature", 1.0)),
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
    fields = config_fields(ppo_config_class())
    values = {k: v for k, v in QUICK_START.items() if k in fields}
    values.update(overrides)
    return start_ppo(runs_root, owner=owner, **values)
