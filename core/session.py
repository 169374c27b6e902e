"""The trainer session: the live-control protocol that every stage runs under, written once.

PPO, GRPO/RLOO and DPO use all of it (live knobs, resume); pretrain, reward and preferences call `gate()` before
each step and weak-to-strong, best-of-n and the frontier sweep pass their rows through `flow()`, so pause, step and
stop (from the app or `rlhf-lab set`) mean the same for every stage.

A stage's loop is its algorithm: `for iteration in ...:` sample, score, update, `yield metrics`. What is the same
for every live stage lives here, never in a loop:

  resume        the run's checkpoint repaired (a save killed half-way) and checked (a broken one is refused by
                name, never a silent fresh start over the run's history); its position and the live knobs in
                force restored; the rows after it moved aside (all of them when no checkpoint was saved, so a
                restart never logs a step twice); the stop that ended the last session cleared.
  control.json  read before every iteration; each live value checked by the stage config's own validate()
                (the live knobs are the fields core/config/ marks live; live limits = flag limits); the flow
                controls (paused, step, stop) checked; refusals logged to control_log.jsonl and shown once;
                a new lr applied to the optimizer. Under torchrun rank 0 reads and broadcasts the decision.
  pause/step/stop  waiting while paused (one iteration per `step` increment), the status rows of each.
  row, then checkpoint  a checkpoint is saved only after drive() has logged its metrics row: a kill between the
                two leaves a checkpoint older than the last row (the resume trains that iteration again),
                never a row missing behind a checkpoint.
  non-finite loss  the message names the iteration, the checkpoint kept and the live knobs changed since it;
                control.json is set back to the checkpoint's values, so a plain --resume does not die again.

drive(run, steps) runs any stage's generator inside its run folder, as its owner: it logs the rows, keeps the status,
marks the run failed (with the error) or stopped (Ctrl-C, SIGTERM) and holds the run's lock for the trainer's life.

The loop keeps what is its own: its models, optimizer, generators and metrics, and what a knob change means for
its algorithm (PPO's KL controller).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from core import distributed
from core.config import ConfigError, live_knobs
from core.runs import FINAL_STATES, Run, append_jsonl

FLOW_CONTROLS = ("paused", "step", "stop")
# the stages whose runs continue from their checkpoint (Session.resume), and what their position counts (lab.json,
# status rows); every other stage counts steps
RESUMABLE = {"ppo": "iteration", "grpo": "iteration", "dpo": "step"}


class NonFiniteLoss(FloatingPointError):
    """A NaN or inf in a loss or the weights: the run stops as failed and keeps its last good checkpoint."""


# ----------------------------------------------------------------------------- one checker of live values

def check_live_value(cfg, key: str, value):
    """A live knob's new value, cleaned (numbers as float), or ConfigError saying why it is refused.

    The check is the config's own validate() on a copy with the new value, so a live value obeys exactly the
    limits of its flag (lr in (0, 1], clip_eps in (0, 1), ...). The live knobs are the fields marked live."""
    knobs = live_knobs(cfg)
    if key not in knobs:
        raise ConfigError(f"unknown live control {key!r}; {type(cfg).__name__[:-6]}'s live controls are "
                          f"{list(knobs)}")
    if isinstance(getattr(cfg, key), bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        value = float(value)
    dataclasses.replace(cfg, **{key: value}).validate()
    return value


def initial_control(cfg) -> dict:
    """control.json for a new run of any live stage: the config's live knobs, so widgets and trainer agree from
    the first iteration, and the flow controls at rest."""
    return {**{k: getattr(cfg, k) for k in live_knobs(cfg)}, "paused": False, "stop": False, "step": 0}


def read_flow(control: dict, last: dict) -> tuple[dict, list[str]]:
    """The flow controls of control.json (paused, stop: true/false; step: an integer >= 0), checked as strictly
    as `rlhf-lab set` checks them. A bad value (a hand-edited "false" string, "abc") is refused with a message
    and the last good value stays in force. `last` ({paused, stop, step}) is updated in place and returned."""
    messages = []
    for key in FLOW_CONTROLS:
        if key not in control:
            continue
        value = control[key]
        if key == "step":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            need = "an integer >= 0"
        else:
            ok = isinstance(value, bool)
            need = "true or false (JSON, not a string)"
        if ok:
            last[key] = value
        elif last.get(f"refused/{key}") != value:  # say it once per bad value, not every 0.2 s while paused
            messages.append(f"refused {key}={value!r}: {key} must be {need}; keeping {key}={last[key]!r}")
        last[f"refused/{key}"] = None if ok else value
    return last, messages


def log_control(run, iteration: int, key: str, value, **fields) -> None:
    """One row of control_log.jsonl (core/settings.py reads it): a live value for `iteration` on, accepted or not."""
    append_jsonl(run.path / "control_log.jsonl", {"iteration": iteration, "time": time.time(), "key": key,
                                                  "value": value, **fields})


def apply_controls(cfg, control: dict, seen: dict, position: int, run) -> tuple[object, list[str]]:
    """Apply the live knobs of control.json that changed since `seen` (all of them on the first read).

    A bad value is refused: recorded in control_log.jsonl, and the run keeps its current value.
    Returns (new cfg, refusal messages)."""
    messages = []
    for key in live_knobs(cfg):
        if key not in control or (key in seen and seen[key] == control[key]):
            continue
        value = seen[key] = control[key]
        try:
            value = check_live_value(cfg, key, value)
        except ConfigError as e:
            message = f"refused {key}={value!r}: {e}"
            messages.append(message)
            if run is not None:
                log_control(run, position, key, value, accepted=False, **{"control/rejected": message})
            continue
        if getattr(cfg, key) != value and run is not None:
            log_control(run, position, key, value, accepted=True, previous=getattr(cfg, key))
        cfg = dataclasses.replace(cfg, **{key: value})
    return cfg, messages


def flow_action(flow: dict, step_seen: int) -> tuple[str, int]:
    """What the checked flow controls ask of the next iteration: "stop", "wait" (paused) or "run", and the new
    count of `step` increments consumed. A paused run takes exactly one iteration per increment of "step";
    increments made while running do not count."""
    if flow["stop"]:
        return "stop", step_seen
    if flow["paused"]:
        return ("run", step_seen + 1) if flow["step"] > step_seen else ("wait", step_seen)
    return "run", flow["step"]


# ----------------------------------------------------------------------------- checkpoints a resume may trust

def check_checkpoint(ckpt, stage: str, counter: str = "iteration") -> dict:
    """lab.json of a `stage` checkpoint folder whose position is lab.json[counter] (PPO and GRPO count
    iterations, DPO steps), after checking that everything a resume loads is there and is what the lab writes
    (safetensors; never a pickle). CheckpointError names the first bad file."""
    import json

    from core.model import CheckpointError

    ckpt = Path(ckpt)
    hint = "; it cannot be resumed (move the folder away to start the run again from iteration 0)"
    pickles = sorted(p.relative_to(ckpt.parent) for p in ckpt.rglob("*.bin"))
    if pickles:
        raise CheckpointError(f"{pickles[0]} holds pickled PyTorch weights; the lab loads model.safetensors only "
                              f"and never unpickles a file{hint}")
    for name in ("config.json", "model.safetensors", "lab.json"):
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{ckpt / name} is missing{hint}")
    try:
        info = json.loads((ckpt / "lab.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{ckpt / 'lab.json'} is corrupt ({type(e).__name__}){hint}") from None
    if not isinstance(info, dict) or info.get("stage") != stage:
        raise CheckpointError(f"{ckpt / 'lab.json'} is not a {stage.upper()} checkpoint's (stage "
                              f"{info.get('stage') if isinstance(info, dict) else info!r}){hint}")
    it = info.get(counter)
    if not isinstance(it, int) or isinstance(it, bool) or it < 0:
        raise CheckpointError(f"{ckpt / 'lab.json'}: {counter} must be an integer >= 0, got {it!r}{hint}")
    if not isinstance(info.get("live", {}), dict):
        raise CheckpointError(f"{ckpt / 'lab.json'}: 'live' is not an object{hint}")
    if (ckpt / "value").exists() and not (ckpt / "value" / "model.safetensors").is_file():
        raise CheckpointError(f"{ckpt / 'value' / 'model.safetensors'} is missing{hint}")
    return info


def resume_point(run, stage: str, counter: str | None = None):
    """(checkpoint folder, position, lab.json) of a `stage` run that already has a checkpoint, else None.

    Never a silent fresh start over a broken checkpoint: a save killed half-way is first repaired (the
    previous checkpoint comes back from .checkpoint.old, stale temp folders go); then a checkpoint that is
    there but cannot be trusted raises CheckpointError naming the file. Only a run with no checkpoint at all
    starts from 0."""
    if run is None:
        return None
    counter = counter or RESUMABLE.get(stage, "step")
    run.recover_checkpoint()
    if not run.checkpoint_dir.exists():
        return None
    info = check_checkpoint(run.checkpoint_dir, stage, counter)
    return run.checkpoint_dir, info[counter], info


# ----------------------------------------------------------------------------- the session

class Session:
    """One live stage's run of its loop: resume, control.json, pause/step/stop, row-then-checkpoint, NaN advice.

        session = Session(run, "grpo", cfg)                 # run None: no control, no rows (tests, benchmarks)
        cfg, checkpoint, start = session.resume(cfg)      # the live knobs in force, where to load from
        ... build models and optimizer (from `checkpoint` when not None) ...
        yield from session.begin()                        # rows after the checkpoint moved aside, stale stop
        session.save = lambda position: save_x(run, models, optimizer, cfg, position, session.last)
        while iteration < cfg.iterations:
            cfg, action = yield from session.gate(cfg, iteration, optimizer)  # waits while paused; a stop saves
            if action == "stop": return
            ... the algorithm: one iteration, `metrics` ...
            yield from session.row(metrics, cfg, due, final)   # the row, then (when due) the checkpoint

    `session.save(position)` saves the stage's checkpoint of its current position (the loop's own closure over its
    models; `session.last` is the last metrics row); None for a stage without checkpoints: a stop just ends it.
    Under torchrun every
    rank holds a session; only rank 0's has the run, and it decides (resume, knobs, pause/stop) for all.
    """

    def __init__(self, run, stage: str, cfg, dd: distributed.Dist | None = None):
        self.run, self.stage, self.counter = run, stage, RESUMABLE.get(stage, "step")
        self.dd = dd or distributed.Dist()
        self.knobs = live_knobs(cfg)
        self.resumed = False
        self.start = 0
        self.checkpoint_info: dict = {}
        self.saved = {"position": None, "live": self._live(cfg)}
        self.messages: list[str] = []  # the refusals of the last controls(), for the next metrics row
        self.last: dict | None = None  # the last metrics row: what a checkpoint saved on stop records
        self.save = None  # the loop's save(position) of its checkpoint, once its models exist
        self._seen: dict = {}
        self._flow = {"paused": False, "stop": False, "step": 0}
        self._step_seen = 0

    def _live(self, cfg) -> dict:
        return {k: getattr(cfg, k) for k in self.knobs}

    def _save(self, position: int, cfg) -> None:
        """The stage's checkpoint, and the knobs it holds (what non_finite() compares against)."""
        self.save(position)
        self.saved = {"position": position, "live": self._live(cfg)}

    # ---- resume

    def resume(self, cfg):
        """(cfg with the live knobs in force at the checkpoint, checkpoint folder or None, start position)."""
        point = distributed.broadcast_object(resume_point(self.run, self.stage, self.counter), self.dd)
        if point is None:
            return cfg, None, 0
        checkpoint, self.start, self.checkpoint_info = point
        live = {k: v for k, v in (self.checkpoint_info.get("live") or {}).items() if k in self.knobs}
        cfg = dataclasses.replace(cfg, **live).validate()
        self.resumed = True
        self.saved = {"position": self.start, "live": self._live(cfg)}
        return cfg, checkpoint, self.start

    def begin(self):
        """Status rows before the first iteration; moves aside the rows a restart trains again.

        With a checkpoint at position p: every row after p. Without one: every row (a run killed before its first
        checkpoint trains from 0 again, and its old rows would otherwise be drawn twice; they are kept in
        metrics.rewound.jsonl)."""
        run = self.run
        if run is None:
            return
        moved = run.rewind(self.start if self.resumed else -1)
        first, _ = read_flow(run.read_control(), dict(self._flow))  # a copy: controls() reports refusals itself
        self._step_seen = first["step"]
        if self.resumed:
            # what a run really used (core/settings.py): from here on the knobs are the checkpoint's, whatever an
            # attempt thrown away by this resume had changed (a NaN's reset writes no change row of its own)
            for key, value in self.saved["live"].items():
                log_control(run, self.start + 1, key, value, accepted=True, resume=True)
            if first["stop"]:
                run.write_control(stop=False)  # the stop that ended the last session must not end this one
            yield {"_status": "running", "step": self.start,
                   "message": f"resumed from the checkpoint of {self.counter} {self.start}"}
        elif moved:
            yield {"_status": "running", "step": 0,
                   "message": f"no checkpoint was saved before the run ended: starting again from {self.counter} 0"}

    # ---- before every iteration

    def controls(self, cfg, position: int, optimizer=None):
        """Read control.json before the next iteration: yields the status rows, returns (cfg, action), action
        "run" | "wait" (paused: it has slept a moment; read again) | "stop" (saved: return)."""
        run, action, paused, messages = self.run, "run", False, []
        old_lr = getattr(cfg, "lr", None)
        if run is not None:
            control = run.read_control()
            cfg, messages = apply_controls(cfg, control, self._seen, position + 1, run)
            self._flow, flow_messages = read_flow(control, self._flow)
            messages += flow_messages
            paused = self._flow["paused"]
            action, self._step_seen = flow_action(self._flow, self._step_seen)
        if self.dd.enabled:
            live, action = distributed.broadcast_object((self._live(cfg), action), self.dd)
            cfg = dataclasses.replace(cfg, **live)
        if optimizer is not None and "lr" in self.knobs and cfg.lr != old_lr:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr
        self.messages = messages  # the loop puts them in its next metrics row (control/rejected)
        if run is not None:
            unit = self.counter
            if messages:
                yield {"_status": "running", "step": position, "message": "; ".join(messages)}
            if action == "stop":
                if self.save is not None:
                    self._save(position, cfg)
                yield {"_status": "stopped", "step": position, "message": f"stopped after {unit} {position}"}
            elif action == "wait":
                if run.status().get("state") != "paused":
                    yield {"_status": "paused", "step": position, "message": "paused"}
            elif not paused and run.status().get("state") == "paused":
                yield {"_status": "running", "step": position, "message": "resumed"}
        if action == "wait":
            time.sleep(0.2)
        return cfg, action

    def gate(self, cfg, position: int, optimizer=None):
        """controls() until the run may go on: returns (cfg, "run") or (cfg, "stop") (saved with `self.save` when
        the stage has one: a stage without checkpoints just ends). While paused it waits here, so a loop stays a
        plain `for step in range(...)`."""
        while True:
            cfg, action = yield from self.controls(cfg, position, optimizer)
            if action != "wait":
                return cfg, action

    def flow(self, rows, cfg):
        """The rows of a stage whose work is nested (weak-to-strong's phases, a sweep's trainers, best-of-n's
        passes), passed through with pause/step/stop honoured after each one: stop ends the stage (it has no
        checkpoint to save) as `stopped`."""
        for metrics in rows:
            yield metrics
            if "_status" in metrics and metrics["_status"] != "running":
                continue
            _, action = yield from self.gate(cfg, int(metrics.get("step", 0) or 0))
            if action == "stop":
                rows.close()
                return

    # ---- after every iteration

    def row(self, metrics: dict, cfg, due: bool = False, final: bool = False):
        """Yield the iteration's metrics row (with the refusals of its controls; "final": True on the last one), then
        save the checkpoint when it is `due` or the last (and the run is kept): after the row, never before (see the
        module doc)."""
        if final:
            metrics["final"] = True
        if self.messages:
            metrics["control/rejected"] = "; ".join(self.messages)
        self.last = metrics
        yield metrics
        if (due or final) and self.run is not None and self.save is not None:
            self._save(metrics["step"], cfg)

    # ---- a non-finite loss

    def non_finite(self, error, position: int, cfg, advice: str) -> NonFiniteLoss:
        """The error of a run that failed on a NaN/inf: where, with which knobs, what to change (`advice`, used
        when no live knob changed since the checkpoint). Live knobs changed since the last checkpoint are the
        likely cause: control.json is set back to the checkpoint's values, so `--resume` continues from the
        checkpoint instead of dying on the same value again (a resume flag such as --lr chooses a new one)."""
        saved = self.saved
        changed = {k: (getattr(cfg, k), saved["live"][k]) for k in self.knobs if getattr(cfg, k) != saved["live"][k]}
        kept = (f"the last good checkpoint ({self.counter} {saved['position']}) is kept"
                if saved["position"] is not None else "no checkpoint was saved yet")
        if changed:
            what = ", ".join(f"{k}={new!r} (was {old!r})" for k, (new, old) in changed.items())
            if self.run is not None:
                self.run.write_control(**{k: old for k, (_, old) in changed.items()})
            advice = (f"it ran with live changes {what}; control.json is set back to the checkpoint's values, so "
                      f"`rlhf-lab {self.stage} --resume` continues safely (pass e.g. --lr to try another value)")
        return NonFiniteLoss(f"{self.counter} {position}: {error}; {kept}; {advice}")


# ----------------------------------------------------------------------------- driving a run

def drive(run: Run, steps, on_metrics=None) -> dict | None:
    """Run a stage generator to the end inside its run folder, as its owner.

    Every yielded metrics dict is appended to metrics.jsonl and the status is kept current. An
    exception marks the run `failed` with the error (the last good checkpoint stays) and is
    re-raised; Ctrl+C, SIGTERM or SIGHUP (see `Terminated`) mark it `stopped`. Returns the last metrics
    dict. A generator may yield {"_status": state, ...} to set a state itself (PPO's pause/stop) without
    logging a metrics row. The run's lock is taken first (RunBusy when another process trains it) and
    released at the end: the trainer's lifetime is the lock's.
    """
    last = None
    run.acquire()
    try:
        run.set_status("running", message="started")  # the iteration it had: a resume continues, never restarts at 0
        last_write = time.monotonic()
        try:
            for metrics in steps:
                if "_status" in metrics:
                    state = metrics["_status"]
                    run.set_status(state, iteration=metrics.get("step"), message=metrics.get("message", ""))
                    if state in FINAL_STATES:
                        return last
                    continue
                run.log_metrics(metrics)
                last = metrics
                if time.monotonic() - last_write > 0.5:  # status is for humans: twice a second is plenty
                    run.set_status("running", iteration=metrics.get("step", 0), message="")
                    last_write = time.monotonic()
                if on_metrics is not None:
                    on_metrics(metrics)
        except KeyboardInterrupt as e:
            run.set_status("stopped", message=str(e) or "interrupted")
            raise
        except Exception as e:
            run.set_status("failed", message="training failed", error=f"{type(e).__name__}: {e}")
            raise
        # a resume with nothing left to train ends where the run was, not at iteration 0
        run.set_status("done", iteration=last["step"] if last else None, message="finished")
        return last
    finally:
        run.release()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as an exception (see `stop_on_signals`) so the run ends `stopped`
    with its last checkpoint, instead of saying `running` over a dead process."""


def stop_on_signals() -> None:
    """In the main thread of a CLI process: turn SIGTERM / SIGHUP into `Terminated`."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
