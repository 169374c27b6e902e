"""A student's own PPO, GRPO/RLOO, DPO and best-of-n runs on a sweep's frontier, scored by the sweep's evaluation.

core.frontier scores every policy of a sweep one way: a trained policy's checkpoint by `score_checkpoint` against
`sweep_judges(cfg)` (the sweep's base model, reward model, gold profile and evaluation prompts), best-of-n by
`bon_points`. A run is scored by exactly those functions, so its point lies on the sweep's axes; its own logged
objective/* numbers (other prompts, other sample counts) would not. Only a run that started from the sweep's base
model (and, where it optimised one, the sweep's reward model) is comparable: its KL is to the same model.

The scores are cached in the run folder (frontier_eval.json), keyed by everything the evaluation depends on
(the sweep's settings, the device, the checkpoint's file stamp, best-of-n's n and seed), so the page reads them on
every redraw and evaluates a run only once; a run resumed later (a new checkpoint) is scored again.
"""

from __future__ import annotations

import json
from pathlib import Path

from core import frontier as F
from core import settings
from core.model import SHIPPED, CheckpointError, read_lab_json, resolve_checkpoint
from core.runs import Run, RunError, atomic_write_json, read_json

OWN_STAGES = ("ppo", "grpo", "dpo", "bon")
CACHE_FILE = "frontier_eval.json"
CACHE_KEEP = 8              # evaluations kept per run (a run shown beside several sweeps keeps each)
FINISHED = ("done", "stopped", "failed")   # a run in these states no longer changes its checkpoint
KNOBS = {"ppo": "kl_coef", "grpo": "beta", "rloo": "beta", "dpo": "beta"}

SCORED, PENDING, WAITING, APART = "scored", "not scored yet", "still training", "not comparable"


def method_of(stage: str, config: dict) -> str:
    """The frontier's method name of a run: a GRPO run with the leave-one-out baseline is RLOO."""
    if stage == "grpo":
        return "rloo" if config.get("advantage") == "rloo" else "grpo"
    return stage


def _resolved(spec) -> Path | None:
    try:
        return resolve_checkpoint(spec).resolve()
    except (CheckpointError, TypeError):
        return None


def _shown(spec) -> str:
    """A spec as a student reads it: a shipped name as is, a folder by its name (not a temporary full path)."""
    return str(spec) if str(spec) in SHIPPED else Path(str(spec)).name


def incomparable(stage: str, config: dict, sweep) -> str | None:
    """Why a run cannot lie on this sweep's frontier, or None when it can. Its KL must be to the sweep's base
    model; a method that optimises a reward model (PPO, GRPO/RLOO, best-of-n) must have optimised the sweep's, or
    its gold says how well another RM's preferences agree with the gold. DPO optimises no reward model (its
    proxy column is the sweep's RM reading its text, as for the sweep's DPO)."""
    base, sweep_base = _resolved(config.get("policy")), _resolved(sweep.policy)
    if base is None:
        return f"its base model {config.get('policy')!r} no longer exists"
    if base != sweep_base:
        return (f"it started from {_shown(config.get('policy'))}, the sweep from {_shown(sweep.policy)}: its KL "
                "is measured from another model")
    if stage != "dpo" and _resolved(config.get("reward")) != _resolved(sweep.reward):
        return (f"it optimised the reward model {_shown(config.get('reward'))}, the sweep's methods optimise "
                f"{_shown(sweep.reward)}")
    if stage == "bon" and float(config.get("temperature", 1.0)) != 1.0:
        return (f"it sampled at temperature {config.get('temperature')}; the sweep's best-of-n samples the base "
                "model at 1, where its KL formula holds")
    return None


def _weights(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint" / "model.safetensors"


def evaluation_key(sweep, device: str, stage: str, config: dict, run_dir) -> str:
    """Everything the sweep's evaluation of this run depends on, as one string (the cache's key)."""
    key = {"policy": str(_resolved(sweep.policy)), "reward": str(_resolved(sweep.reward)), "profile": sweep.profile,
           "prompts": sweep.eval_prompts, "response_length": sweep.response_length, "device": device,
           "samples": F.SAMPLES_PER_EVAL}
    if stage == "bon":
        key.update(n=list(config.get("n") or []), seed=int(config.get("seed", 0)))
    else:
        stat = _weights(run_dir).stat()
        key["checkpoint"] = [stat.st_mtime_ns, stat.st_size]   # a resumed run saved a new one: score it again
    return json.dumps(key, sort_keys=True)


def _cache(run_dir) -> dict:
    data = read_json(Path(run_dir) / CACHE_FILE, {})
    return data if isinstance(data, dict) else {}


def own_runs(entries: list[dict], sweep, device: str) -> list[dict]:
    """For each run of `entries` (core.runs.list_runs rows, the student's) of a stage the frontier shows:
    {run_id, path, name, stage, method, status, reason, key, rows}. status: scored (rows: frontier.csv rows
    plus setting_text, with their samples), not scored yet, still training, or not comparable (reason says
    why). Reads only: nothing is evaluated here."""
    from lab.views.runs import read_meta

    out = []
    for entry in entries:
        if entry.get("stage") not in OWN_STAGES or entry.get("state") == "corrupt":
            continue
        path = Path(entry["path"])
        try:
            config = Run.open(path).config
        except RunError:
            continue
        stage = entry["stage"]
        item = {"run_id": entry["run_id"], "path": str(path), "name": read_meta(path)["name"] or entry["run_id"],
                "stage": stage, "method": method_of(stage, config), "status": PENDING, "reason": "", "key": None,
                "rows": []}
        out.append(item)
        reason = incomparable(stage, config, sweep)
        if reason:
            item.update(status=APART, reason=reason)
        elif entry.get("state") not in FINISHED:
            item.update(status=WAITING, reason="it is scored once it has finished or been stopped")
        elif stage != "bon" and not _weights(path).exists():
            item.update(status=APART, reason="it saved no checkpoint (stopped before its first one)")
        else:
            item["key"] = evaluation_key(sweep, device, stage, config, path)
            cached = _cache(path).get(item["key"])
            if cached:
                item.update(status=SCORED, rows=cached["rows"])
    return out


def _setting(run_dir: Path, method: str, config: dict) -> tuple[float, str]:
    """The run's knob (λ or β) as a number (the value in force at its end) and as words (with its changes)."""
    from lab.views.frontier import KNOB_SYMBOLS

    knob = KNOBS[method]
    final = settings.settings_at(run_dir, settings.last_iteration(run_dir)).get(knob, config.get(knob))
    text = settings.settings_summary(run_dir).get(knob, settings.show(config.get(knob)))
    return float(final), f"{KNOB_SYMBOLS[method]} = {text}"


def score(item: dict, judges) -> list[dict]:
    """Score one run of own_runs (status not scored yet) by the sweep's evaluation with the sweep's `judges`
    (core.frontier.sweep_judges), cache the result in its folder and return its rows: one for a trained run's
    checkpoint, one per n for a best-of-n run."""
    path = Path(item["path"])
    config = Run.open(path).config
    method = item["method"]
    if method == "bon":
        seed = int(config.get("seed", 0))
        scored = [(F.row_of("bon", n, seed, 0, result, kl_measured=measured), n, result["samples"])
                  for n, result, measured in F.bon_points(judges, list(config["n"]), seed)]
        rows = [{**row, "setting_text": f"n = {n}", "samples": samples} for row, n, samples in scored]
    else:
        info = read_lab_json(path)
        iteration = int(info.get("iteration", info.get("step", 0)))
        result = F.score_checkpoint(path / "checkpoint", judges)
        setting, text = _setting(path, method, config)
        rows = [{**F.row_of(method, setting, int(config.get("seed", 0)), iteration, result), "setting_text": text,
                 "samples": result["samples"]}]
    cache = _cache(path)
    cache.pop(item["key"], None)
    cache[item["key"]] = {"rows": rows}
    atomic_write_json(path / CACHE_FILE, dict(list(cache.items())[-CACHE_KEEP:]))   # newest last, the oldest go
    item.update(status=SCORED, rows=rows)
    return rows


def sweep_config(sweep_dir):
    """The FrontierConfig a sweep ran with (its config.json)."""
    from core.config import FrontierConfig, from_dict

    return from_dict(FrontierConfig, Run.open(sweep_dir).config)


def device_of(sweep) -> str:
    """The device the sweep evaluated on: sampling draws other numbers on another device, so the same one."""
    from core.config import resolve_device

    return str(resolve_device(sweep.device))


def beside(sweep_dir, entries: list[dict]) -> tuple[list[dict], str | None]:
    """own_runs of `entries` for the sweep in `sweep_dir`, and why none can be shown (None when they can)."""
    from core.config import ConfigError

    try:
        sweep = sweep_config(sweep_dir)
    except (ConfigError, RunError, TypeError) as e:
        return [], f"this sweep's settings cannot be read ({e})"
    return own_runs(entries, sweep, device_of(sweep)), None


def score_pending(items: list[dict], sweep_dir) -> int:
    """Score every run of `items` not scored yet by the sweep's evaluation (its judges loaded once). Returns how
    many were scored."""
    pending = [item for item in items if item["status"] == PENDING]
    if not pending:
        return 0
    sweep = sweep_config(sweep_dir)
    judges = F.sweep_judges(sweep, device_of(sweep))
    for item in pending:
        score(item, judges)
    return len(pending)
