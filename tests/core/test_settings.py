"""core/settings.py: what a run really used (its config plus the accepted rows of its control log), and the
Compare page's legend and "settings that differ" built on it. Run folders written by hand; no training."""

import pytest

from core import settings
from core.runs import Run, append_jsonl
from lab.views import compare as compare_view

T0 = 1000.0  # iteration i's metrics row is written at T0 + i; a change for iteration k between rows k-1 and k


def make_run(path, config, iterations, changes=(), refused=()):
    """A PPO run folder with one metrics row per iteration and control-log rows as the trainer writes them:
    (iteration, key, value, previous) accepted, (iteration, key, value) refused."""
    run = Run.create("ppo", config, out=path)
    run.release()
    log = run.path / "control_log.jsonl"
    for it, key, value, previous in changes:
        append_jsonl(log, {"iteration": it, "time": T0 + it - 0.5, "key": key, "value": value, "accepted": True,
                           "previous": previous})
    for it, key, value in refused:
        append_jsonl(log, {"iteration": it, "time": T0 + it - 0.5, "key": key, "value": value, "accepted": False,
                           "control/rejected": f"refused {key}={value!r}: out of range"})
    for it in range(1, iterations + 1):
        run.log_metrics({"step": it, "time": T0 + it, "objective/scores": 0.1 * it})
    return run.path


PPO = {"kl_coef": 0.05, "clip_eps": 0.2, "lr": 5e-5, "seed": 0, "iterations": 12}
# the issue's run: λ 0.05 -> 0.3 at iteration 7, ε 0.2 -> 0.1 at 4 -> 0.3 at 9; and a refused ε = 5 at 6
TURNED = [(7, "kl_coef", 0.3, 0.05), (4, "clip_eps", 0.1, 0.2), (9, "clip_eps", 0.3, 0.1)]


@pytest.fixture
def turned(tmp_path):
    return make_run(tmp_path / "turned", PPO, 12, changes=TURNED, refused=[(6, "clip_eps", 5.0)])


def test_settings_in_force_at_each_iteration(turned):
    frame = settings.settings_in_force(turned)
    assert list(frame.index) == list(range(1, 13))  # one row per iteration logged
    assert list(frame["kl_coef"]) == [0.05] * 6 + [0.3] * 6
    assert list(frame["clip_eps"]) == [0.2] * 3 + [0.1] * 5 + [0.3] * 4
    assert set(frame["lr"]) == {5e-5} and set(frame["iterations"]) == {12}  # untouched settings hold all run
    assert settings.changed_mid_run(turned) == {"kl_coef": [(1, 0.05), (7, 0.3)],
                                                "clip_eps": [(1, 0.2), (4, 0.1), (9, 0.3)]}
    summary = settings.settings_summary(turned)
    assert summary["kl_coef"] == "0.05 → 0.3 (from iteration 7)"
    assert summary["clip_eps"] == "0.2 → 0.1 (from iteration 4) → 0.3 (from iteration 9)"
    assert summary["lr"] == "5e-05"


def test_a_refused_change_never_took_effect(tmp_path):
    path = make_run(tmp_path / "refused", PPO, 5, refused=[(3, "kl_coef", -1.0), (4, "lr", 2.0)])
    frame = settings.settings_in_force(path)
    assert set(frame["kl_coef"]) == {0.05} and set(frame["lr"]) == {5e-5}
    assert settings.changed_mid_run(path) == {}
    assert settings.settings_summary(path)["kl_coef"] == "0.05"


def test_the_refused_row_of_the_issues_run_is_skipped(turned):
    assert settings.settings_in_force(turned).loc[6, "clip_eps"] == 0.1  # the refused ε = 5 for 6: it kept 0.1
    assert all(c["value"] != 5.0 for c in settings.changes(turned))


def test_a_change_a_resume_threw_away_does_not_count(tmp_path):
    """λ set to 0.3 for iteration 7; the run dies and resumes from its checkpoint of iteration 4, with control.json
    set back (a NaN): iterations 5.. are trained again with λ 0.05, after the change was written."""
    path = make_run(tmp_path / "resumed", PPO, 4, changes=[(7, "kl_coef", 0.3, 0.05)])
    run = Run(path)
    for it in range(5, 10):
        run.log_metrics({"step": it, "time": T0 + 100 + it, "objective/scores": 0.0})
    assert set(settings.settings_in_force(path)["kl_coef"]) == {0.05}
    # ...while a change the resumed attempt logged again counts
    append_jsonl(path / "control_log.jsonl", {"iteration": 10, "time": T0 + 109.5, "key": "kl_coef", "value": 0.2,
                                              "accepted": True, "previous": 0.05})
    run.log_metrics({"step": 10, "time": T0 + 110})
    assert settings.changed_mid_run(path) == {"kl_coef": [(1, 0.05), (10, 0.2)]}


def test_a_change_for_the_next_iteration_is_in_force_but_not_used_yet(tmp_path):
    path = make_run(tmp_path / "paused", PPO, 6, changes=[(7, "clip_eps", 0.1, 0.2)])  # set while paused after 6
    assert settings.settings_at(path)["clip_eps"] == 0.1      # what the knob widget shows: the next iteration's
    assert settings.settings_at(path, 6)["clip_eps"] == 0.2
    assert settings.changed_mid_run(path) == {}               # no iteration has used it yet
    assert list(settings.settings_in_force(path, through=7)["clip_eps"])[-2:] == [0.2, 0.1]


def test_compare_labels_and_differ_table_say_what_changed_mid_run(tmp_path, turned):
    """The issue's case: the turned run is not labelled "λ = 0.05", and ε, the same in both configs, is listed
    as changed mid-run."""
    plain = make_run(tmp_path / "plain", {**PPO, "kl_coef": 0.0}, 12)
    labels = compare_view.legend_labels([turned, plain])
    assert labels["turned"] == "λ 0.05→0.3, ε 0.2→0.1→0.3"
    assert labels["plain"] == "λ = 0.0, ε = 0.2"
    diff = compare_view.config_diff([turned, plain]).set_index("setting")
    assert diff.loc["clip_eps", "turned"] == "0.2 → 0.1 (from iteration 4) → 0.3 (from iteration 9)"
    assert diff.loc["clip_eps", "plain"] == "0.2"
    assert diff.loc["clip_eps", compare_view.CHANGED] == "changed mid-run"
    assert diff.loc["kl_coef", "turned"] == "0.05 → 0.3 (from iteration 7)"
    assert "lr" not in diff.index  # the same all run in both: left out, as before
    # one run alone: its own changes are still worth the table
    assert set(compare_view.config_diff([turned])["setting"]) == {"kl_coef", "clip_eps"}
