"""The trainer session (core/session.py): the protocol every live stage runs under, tested once per stage.

Each test is parametrised over STAGES, so a new method is covered by adding it there. These are the drift bugs of
issue 22: the copies of PPO's protocol in GRPO and DPO disagreed with it (a restart before the first checkpoint
logged every step twice, a checkpoint was saved before its row, a NaN named no knob), and `set` had two parsers
with opposite rules. Tiny presets, a few iterations each."""

from __future__ import annotations

import json

import pytest

from core.config import ConfigError, bon_preset, dpo_preset, grpo_preset, ppo_preset, to_dict
from core.runs import Run, read_metrics
from core.session import drive
from core.session import NonFiniteLoss, initial_control

STAGES = ("ppo", "grpo", "dpo")


def stage_config(stage, tiny_base, tiny_rm, pair_file, **kw):
    """(config, trainer) of a tiny run of `stage` with at least 4 iterations/steps."""
    if stage == "ppo":
        from core.ppo_train import train_ppo

        return ppo_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), device="cpu", **{"iterations": 4, **kw}),\
            train_ppo
    if stage == "grpo":
        from core.grpo import train_grpo

        return grpo_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), device="cpu",
                           **{"iterations": 4, **kw}), train_grpo
    from core.dpo import train_dpo

    return dpo_preset("tiny", preferences=str(pair_file), policy=str(tiny_base), reward=str(tiny_rm), device="cpu",
                      epochs=2, **kw), train_dpo  # 28 training pairs, 16 a step: 2 steps an epoch


def new_run(stage, cfg, path) -> Run:
    return Run.create(stage, to_dict(cfg), out=path, control=initial_control(cfg))


def checkpoint_position(run: Run):
    path = run.checkpoint_dir / "lab.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return info.get("iteration", info.get("step"))


@pytest.mark.parametrize("stage", STAGES)
def test_a_restart_before_the_first_checkpoint_logs_no_step_twice(stage, tiny_base, tiny_rm, pair_file, tmp_path):
    """GRPO rewound only when a checkpoint existed: killed before its first one, a restart logged [1, 2, 1, 2]."""
    cfg, train = stage_config(stage, tiny_base, tiny_rm, pair_file, checkpoint_every=100)
    run = new_run(stage, cfg, tmp_path / "run")
    steps = train(cfg, run)
    for item in steps:  # the first attempt: two rows logged, then the process dies (no checkpoint yet)
        if "_status" not in item:
            run.log_metrics(item)
            if item["step"] == 2:
                break
    steps.close()
    assert not run.checkpoint_dir.exists()
    drive(run, train(cfg, run))
    logged = read_metrics(run.path)["step"].tolist()
    assert logged == sorted(set(logged)) and logged[-1] == 4, logged
    assert (run.path / "metrics.rewound.jsonl").exists()  # the first attempt's rows are kept aside, not lost


@pytest.mark.parametrize("stage", STAGES)
def test_a_checkpoint_is_saved_only_after_its_row(stage, tiny_base, tiny_rm, pair_file, tmp_path):
    """GRPO and DPO saved before yielding the row: a kill between the two left a checkpoint with no row."""
    cfg, train = stage_config(stage, tiny_base, tiny_rm, pair_file, checkpoint_every=1)
    run = new_run(stage, cfg, tmp_path / "run")
    seen = []
    for item in train(cfg, run):
        if "_status" in item or item["step"] == 0:
            continue
        at_yield = checkpoint_position(run)  # what a kill right now would leave behind
        assert at_yield is None or at_yield < item["step"], (item["step"], at_yield)
        seen.append(item["step"])
    assert seen == [1, 2, 3, 4] and checkpoint_position(run) == 4


@pytest.mark.parametrize("stage", STAGES)
def test_a_nan_after_a_live_change_names_the_knob_and_does_not_poison_the_resume(
        stage, tiny_base, tiny_rm, pair_file, tmp_path, monkeypatch):
    """DPO raised a bare FloatingPointError and GRPO named no knob; PPO named the changed knob and reset it."""
    import core.dpo
    import core.grpo
    import core.ppo_train

    cfg, train = stage_config(stage, tiny_base, tiny_rm, pair_file, checkpoint_every=1)
    run = new_run(stage, cfg, tmp_path / "run")
    poisoned = lambda: run.read_control().get("lr") == 0.9  # noqa: E731 - what lr=0.9 would do to a real model
    if stage == "ppo":
        real = core.ppo_train.policy_loss
        monkeypatch.setattr(core.ppo_train, "policy_loss", lambda *a, **k: (
            lambda loss, stats: (loss * float("nan") if poisoned() else loss, stats))(*real(*a, **k)))
    elif stage == "grpo":
        real = core.grpo.grpo_update

        def update(*a, **k):
            if poisoned():
                raise NonFiniteLoss("the GRPO loss became NaN or inf in 2 minibatch(es) of this update")
            return real(*a, **k)
        monkeypatch.setattr(core.grpo, "grpo_update", update)
    else:
        real = core.dpo.dpo_step
        monkeypatch.setattr(core.dpo, "dpo_step", lambda *a, **k: (
            lambda loss, stats, norm: (float("nan") if poisoned() else loss, stats, norm))(*real(*a, **k)))

    def set_lr_after_first(m):
        if m["step"] == 1:
            run.write_control(lr=0.9)

    with pytest.raises(FloatingPointError):
        drive(run, train(cfg, run), on_metrics=set_lr_after_first)
    st = run.live_status()
    assert st["state"] == "failed" and "lr=0.9" in st["error"] and f"was {cfg.lr!r}" in st["error"], st
    assert f"rlhf-lab {stage} --resume" in st["error"] and "checkpoint" in st["error"]
    assert run.read_control()["lr"] == cfg.lr  # set back to the checkpoint's value
    drive(run, train(cfg, run))  # the resume is not poisoned
    logged = read_metrics(run.path)["step"].tolist()
    assert logged == sorted(set(logged)) and logged[-1] == 4
    # what the run really used: lr=0.9 was thrown away with the failed attempt (the resume logs the knobs it
    # restored; before, core/settings.py could not tell and said iteration 2 on used lr 0.9)
    from core.settings import changed_mid_run, settings_at

    assert settings_at(run.path, 2)["lr"] == settings_at(run.path, 4)["lr"] == cfg.lr
    assert "lr" not in changed_mid_run(run.path)


@pytest.mark.parametrize("stage", STAGES)
def test_one_set_for_every_stage_with_one_rule_for_a_stopped_run(stage, tiny_base, tiny_rm, pair_file, tmp_path,
                                                                 capsys):
    """Two parsers disagreed: a stopped GRPO run took beta= for its resume, a stopped DPO run refused it; DPO's
    read `int(control["step"])` unchecked. Now: knobs on any run (a stopped one takes them at --resume), stop and
    step on a live run only, every value under the limits of its flag."""
    from lab.cli import main

    cfg, _ = stage_config(stage, tiny_base, tiny_rm, pair_file)
    run = new_run(stage, cfg, tmp_path / "run")
    run.set_status("stopped", iteration=2, message="stopped after iteration 2")
    knob = "kl_coef" if stage == "ppo" else "beta"
    assert main(["set", str(run.path), f"{knob}=0.2"]) == 0
    assert run.read_control()[knob] == 0.2 and "--resume" in capsys.readouterr().out
    assert main(["set", str(run.path), "step=+1"]) == 2
    assert "steers a live run" in capsys.readouterr().err
    assert main(["set", str(run.path), "lr=2"]) == 2  # accepted by GRPO and DPO before: the next step went NaN
    err = capsys.readouterr().err
    assert "lr must be in (0, 1]" in err and len(err.strip().splitlines()) == 1
    assert run.read_control()["lr"] == cfg.lr


@pytest.mark.parametrize("make", [lambda: grpo_preset("tiny", lr=1e30), lambda: dpo_preset("tiny", preferences="x",
                                  batch_size=2_000_000), lambda: bon_preset("tiny", seed=2**70)])
def test_the_shared_limits_hold_for_grpo_dpo_and_best_of_n(make):
    with pytest.raises(ConfigError, match="must be in"):
        make().validate()


@pytest.mark.parametrize("stage", ["dpo", "bon", "frontier"])
def test_ctrl_c_names_how_to_continue_every_command(stage, tiny_base, tiny_rm, pair_file, tmp_path, capsys,
                                                    monkeypatch):
    """dpo, bon and frontier printed "rlhf-lab dpo: " and nothing else: they drove their run without naming it."""
    import core.bon
    import core.dpo
    import core.frontier
    from lab.cli import main

    def interrupted(cfg, run=None):
        raise KeyboardInterrupt
        yield

    out = tmp_path / "run"
    models = ["--policy", str(tiny_base), "--reward", str(tiny_rm), "--device", "cpu", "--out", str(out)]
    if stage == "dpo":
        monkeypatch.setattr(core.dpo, "train_dpo", interrupted)
        argv = ["dpo", "--preset", "tiny", "--preferences", str(pair_file), *models]
        hint = f"resume it with rlhf-lab dpo --resume {out}"
    elif stage == "bon":
        monkeypatch.setattr(core.bon, "best_of_n", interrupted)
        argv = ["bon", "--preset", "tiny", *models]
        hint = f"kept in {out}"
    else:
        monkeypatch.setattr(core.frontier, "run_frontier", interrupted)
        argv = ["frontier", "--preset", "tiny", "--methods", "bon", *models]
        hint = f"resume it with rlhf-lab frontier --resume --out {out}"
    assert main(argv) == 130
    assert hint in capsys.readouterr().err


def test_best_of_n_refuses_an_empty_entry_in_n(capsys):
    from lab.cli import main

    assert main(["bon", "--preset", "tiny", "--n", "1,,2"]) == 2
    assert "--n must be comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["ppo", "grpo"])
def test_a_resume_never_shortens_a_run_below_its_checkpoint(stage, tiny_base, tiny_rm, pair_file, tmp_path, capsys):
    """`ppo --resume RUN --iterations 12` on a checkpoint at 81 said "done: no iteration ran" and rewrote config.json
    to 12 iterations: a resume rewrote the run's history into something it was not."""
    from lab.cli import main

    cfg, train = stage_config(stage, tiny_base, tiny_rm, pair_file, iterations=3, checkpoint_every=1)
    run = new_run(stage, cfg, tmp_path / "run")
    drive(run, train(cfg, run))
    before = (run.path / "config.json").read_bytes()
    assert main([stage, "--resume", str(run.path), "--iterations", "2"]) == 2
    err = capsys.readouterr().err
    assert "fewer than the 3 iterations" in err and "--iterations 4 or more" in err and len(err.splitlines()) == 1
    assert (run.path / "config.json").read_bytes() == before


@pytest.mark.parametrize("argv,field", [
    (["grpo", "--reward", "{lm}"], "GRPOConfig.reward"), (["dpo", "--reward", "{lm}"], "DPOConfig.reward"),
    (["bon", "--reward", "{lm}"], "BoNConfig.reward"), (["ppo", "--policy", "{rm}"], "PPOConfig.policy"),
    (["eval", "{rm}"], "the policy")])
def test_every_stage_refuses_a_checkpoint_of_the_wrong_kind_by_name(argv, field, tiny_base, tiny_rm, pair_file,
                                                                    tmp_path, capsys):
    """grpo trained on a language model's random score head (transformers' MISSING table), eval scored a reward
    model as a policy (KL 78); PPO alone refused. Now each names the field, and no run folder is left behind."""
    from lab.cli import main

    argv = [a.format(lm=tiny_base, rm=tiny_rm) for a in argv]
    stage = argv[0]
    models = {"--policy": str(tiny_base), "--reward": str(tiny_rm)}
    for flag in ("--policy", "--reward"):
        if flag not in argv and stage != "eval":
            argv += [flag, models[flag]]
    if stage == "dpo":
        argv += ["--preferences", str(pair_file)]
    if stage != "eval":
        argv += ["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert field in err and ("not a reward model" in err or "not a language model" in err), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_dpo_refuses_a_file_of_copies_of_one_pair(tiny_base, tiny_rm, tmp_path, capsys):
    """64 copies of one pair trained silently to "train accuracy 1.00"."""
    from lab.cli import main

    pairs = tmp_path / "copies.jsonl"
    pairs.write_text((json.dumps({"prompt": "the plot", "chosen": "was good.", "rejected": "was bad."}) + "\n") * 64)
    assert main(["dpo", "--preset", "tiny", "--preferences", str(pairs), "--policy", str(tiny_base), "--reward",
                 str(tiny_rm), "--device", "cpu", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "holds 64 pairs but only 1 distinct" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("stage", STAGES)
def test_a_resume_of_a_finished_run_keeps_its_iteration(stage, tiny_base, tiny_rm, pair_file, tmp_path):
    """`dpo --resume` of a finished run set the status to "done, iteration 0": a resume rewrote the run's history."""
    cfg, train = stage_config(stage, tiny_base, tiny_rm, pair_file, checkpoint_every=100)
    run = new_run(stage, cfg, tmp_path / "run")
    drive(run, train(cfg, run))
    assert run.status()["iteration"] == 4
    drive(run, train(cfg, run))  # nothing left to train
    assert run.status()["state"] == "done" and run.status()["iteration"] == 4
    assert read_metrics(run.path)["step"].tolist()[-1] == 4


# ----------------------------------------------------------------------------- stages without live knobs

def flow_stage(stage, tiny_base, tiny_rm, pair_file, tmp_path):
    """(config, trainer) of a tiny run of a stage that has no live knobs (its protocol is pause/step/stop)."""
    from core.config import PreferenceConfig, RewardConfig, pretrain_preset

    if stage == "pretrain":
        from core.pretrain import pretrain

        return pretrain_preset("tiny", steps=50, corpus_size=300, checkpoint_every=50, device="cpu"), pretrain
    if stage == "preferences":
        from core.preferences import collect_preferences

        return PreferenceConfig(base=str(tiny_base), pairs=40, batch_size=8, max_new_tokens=8,
                                device="cpu"), collect_preferences
    if stage == "reward":
        from core.reward import train_reward

        return RewardConfig(base=str(tiny_base), preferences=str(pair_file), epochs=3, batch_size=4, gold_pairs=8,
                            device="cpu"), train_reward
    from core.bon import best_of_n

    return bon_preset("tiny", policy=str(tiny_base), reward=str(tiny_rm), prompts=8, batch_size=16,
                      device="cpu"), best_of_n


@pytest.mark.parametrize("stage", ["pretrain", "preferences", "reward", "bon"])
def test_rlhf_lab_set_stops_every_stage_between_two_steps(stage, tiny_base, tiny_rm, pair_file, tmp_path):
    """The app's stop was a wrapper in lab/jobs.py that only its workers had: `rlhf-lab set RUN stop=true` refused
    every stage but PPO, GRPO and DPO, and a pretrain stopped from the app kept no checkpoint of its last steps. Now
    every stage reads control.json itself (core/session.py): it stops after the step it is in, and a pretrain keeps
    a checkpoint of the steps it made."""
    from lab.cli import main

    cfg, trainer = flow_stage(stage, tiny_base, tiny_rm, pair_file, tmp_path)
    run = Run.create(stage, to_dict(cfg), out=tmp_path / "run")
    asked = []

    def stop_once(row):  # the way a student stops it from a second terminal, while it trains
        if not asked:
            asked.append(main(["set", str(run.path), "stop=true"]))

    def tap(rows):  # best-of-n's first row is a status row while it samples: the stop lands between two batches
        for row in rows:
            yield row
            stop_once(row)

    drive(run, tap(trainer(cfg, run)))
    assert asked == [0] and run.status()["state"] == "stopped", run.status()
    rows = read_metrics(run.path)
    assert len(rows) == (0 if stage == "bon" else 1)
    if stage == "pretrain":
        assert checkpoint_position(run) == 1
    if stage == "preferences":
        assert 0 < len((run.path / "preferences.jsonl").read_text().splitlines()) < cfg.pairs


def test_a_nested_stage_pauses_steps_and_stops_between_its_rows(tmp_path):
    """Weak-to-strong, best-of-n and the frontier pass their rows through Session.flow(): paused, it waits; each
    `step` increment lets one more row through; stop ends it as stopped and closes the work."""
    import threading
    import time

    from core.config import w2s_preset
    from core.session import Session

    cfg = w2s_preset("tiny")
    run = Run.create("w2s", to_dict(cfg), out=tmp_path / "run", control={"paused": True, "step": 0})
    closed = []

    def work():
        try:
            for i in range(1, 100):
                yield {"step": i, "w2s/weak_loss": 1.0 / i}
        finally:
            closed.append(True)

    def steer():
        def rows():
            return len(read_metrics(run.path)) if (run.path / "metrics.jsonl").exists() else 0

        deadline = time.monotonic() + 20
        while rows() < 1 or run.status().get("state") != "paused":  # the first row, then it waits
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert rows() == 1
        run.write_control(step=2)  # two more rows
        while rows() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert rows() == 3
        run.write_control(stop=True)

    errors = []
    thread = threading.Thread(target=lambda: errors.append(None) if steer() is None else None)
    thread.start()
    drive(run, Session(run, "w2s", cfg).flow(work(), cfg))
    thread.join(30)
    assert errors == [None] and closed == [True]
    assert run.status()["state"] == "stopped" and read_metrics(run.path)["step"].tolist() == [1, 2, 3]


def test_every_stage_the_app_starts_runs_under_the_session():
    """No stage may fall back to a stop of its own (the wrapper lab/jobs.py had): each stage's generator module
    builds a Session, so a new stage is checked by being added to the job contract."""
    import inspect

    from lab.jobs import CONTRACT

    for stage in CONTRACT.values():
        source = inspect.getsource(inspect.getmodule(stage.generator()))
        assert f'Session(run, "{stage.name}"' in source, stage.name
