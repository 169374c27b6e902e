"""What model pickers show and start on, what a next step recommends, and the words and numbers a student
reads (lab/views/models.py, lab/views/wording.py, lab/views/preferences.py, lab/views/dpo.py): issue 23."""

import json

import pandas as pd
import pytest

from core.model import SHIPPED
from core.runs import Run, append_jsonl
from lab.views import dpo as dpo_view
from lab.views import models as M
from lab.views import preferences as P
from lab.views import wording as W

needs_shipped = pytest.mark.skipif(not all((SHIPPED[n] / "model.safetensors").exists() for n in ("small", "reward")),
                                   reason="the shipped small and reward models are not in assets/")


def finished(root, stage, name, lab=None, state="done"):
    """A finished run folder of `stage`; with `lab`, a checkpoint whose lab.json holds it (no weights needed)."""
    run = Run.create(stage, {}, out=root / name)
    if lab is not None:
        run.checkpoint_dir.mkdir()
        (run.checkpoint_dir / "config.json").write_text("{}")
        (run.checkpoint_dir / "model.safetensors").write_bytes(b"")
        (run.checkpoint_dir / "lab.json").write_text(json.dumps(lab))
    run.set_status(state, iteration=1)
    return run.path


UNTRUSTED = {"train_pairs": 1000, "val_pairs": 100, "gold_agreement": 0.45, "gold_pairs": 200}
TRUSTED = {"train_pairs": 1000, "val_pairs": 100, "gold_agreement": 0.8, "gold_pairs": 200}


@needs_shipped
def test_every_picker_label_shows_the_figure_that_decides_the_choice(tmp_path):
    bad = finished(tmp_path, "reward", "r-bad", UNTRUSTED)
    tiny = finished(tmp_path, "pretrain", "p-tiny", {"preset": "tiny", "val_loss": 3.561})
    rewards = M.with_figures({"shipped: reward": "reward", "run: r-bad": str(bad)}, "reward")
    assert list(rewards) == ["shipped: reward · gold agreement 85.5%",
                             "run: r-bad · gold agreement 45.0% · do not trust"]
    bases = M.with_figures([("shipped: small", "small"), ("run: p-tiny", str(tiny))], "base")
    assert list(bases) == ["shipped: small · val loss 1.67 nats/token",
                           "run: p-tiny · val loss 3.56 nats/token · tiny preset: quick look, gibberish"]
    no_lab = finished(tmp_path, "reward", "r-none")
    assert M.reward_figure(str(no_lab)) == "gold agreement not measured"


def test_a_picker_starts_on_a_model_the_lab_does_not_warn_against(tmp_path):
    bad = str(finished(tmp_path, "reward", "r-bad", UNTRUSTED))
    good = str(finished(tmp_path, "reward", "r-good", TRUSTED))
    options = {"newest": bad, "older": good}  # no shipped model here: the newest run is the untrusted one
    assert M.preferred(options, "reward") == (1, None)
    index, note = M.preferred(options, "reward", wanted="r-bad")  # a link to it is passed over, and said so
    assert index == 1 and "r-bad (from the link) is not chosen" in note
    assert M.preferred(options, "reward", wanted="r-good") == (1, None)
    assert M.preferred({"only": bad}, "reward") == (0, None)  # nothing better: the one there is
    worse = str(finished(tmp_path, "reward", "r-worse", {**UNTRUSTED, "gold_agreement": 0.3}))
    assert M.preferred({"a": worse, "b": bad}, "reward", wanted="r-bad") == (1, None)  # every one warned: as asked
    tiny = str(finished(tmp_path, "pretrain", "p-tiny", {"preset": "tiny", "val_loss": 3.5}))
    small = str(finished(tmp_path, "pretrain", "p-small", {"preset": "small", "val_loss": 1.7}))
    assert M.preferred({"a": tiny, "b": small}, "base", wanted="p-tiny")[0] == 1


def test_the_next_step_never_recommends_what_its_own_page_warns_against(tmp_path):
    bad = finished(tmp_path, "reward", "r-bad", UNTRUSTED)
    advice = M.next_step_advice("reward", bad, "done", "4 · PPO")
    assert advice["from"] is None and advice["held"]
    assert "is not recommended for 4 · PPO" in advice["text"] and "chosen there already" not in advice["text"]
    good = finished(tmp_path, "reward", "r-good", TRUSTED)
    assert M.next_step_advice("reward", good, "done", "4 · PPO") == {
        "text": "Use **r-good** on 4 · PPO: it is chosen there already.", "from": "r-good", "held": False}
    stopped = finished(tmp_path, "reward", "r-stopped", state="stopped")  # stopped before it saved a model
    assert "before it saved a model" in M.next_step_advice("reward", stopped, "stopped", "4 · PPO")["text"]

    tiny = finished(tmp_path, "pretrain", "p-tiny", {"preset": "tiny", "val_loss": 3.5})
    advice = M.next_step_advice("pretrain", tiny, "done", "2 · Preferences")
    assert advice["from"] is None and "quick look" in advice["text"] and "gibberish" in advice["text"]
    small = finished(tmp_path, "pretrain", "p-small", {"preset": "small", "val_loss": 1.7})
    assert M.next_step_advice("pretrain", small, "done", "2 · Preferences")["from"] == "p-small"

    prefs = finished(tmp_path, "preferences", "s-prefs")
    advice = M.next_step_advice("preferences", prefs, "done", "3 · Reward model")  # 0 of 30 labelled
    assert advice["from"] is None and "0 labelled pair(s)" in advice["text"]
    for i in range(P.MIN_SET_PAIRS - 1):
        append_jsonl(prefs / "preferences.jsonl", {"prompt": f"p{i}", "chosen": "a.", "rejected": "b."})
    assert M.next_step_advice("preferences", prefs, "done", "3 · Reward model")["from"] is None
    append_jsonl(prefs / "preferences.jsonl", {"prompt": "last", "chosen": "a.", "rejected": "b."})
    assert M.next_step_advice("preferences", prefs, "done", "3 · Reward model")["from"] == "s-prefs"


def test_a_gold_agreement_below_chance_is_called_worse_than_a_coin_flip(tmp_path):
    worse = finished(tmp_path, "reward", "r-worse", {**UNTRUSTED, "gold_agreement": 0.275, "gold_pairs": 40})
    (said,) = P.rm_warnings(str(worse))
    assert "27.5%" in said and "worse than a coin flip" in said and "prefers the response the annotator rejects" in said
    assert "no better than" not in said
    near = finished(tmp_path, "reward", "r-near", {**UNTRUSTED, "gold_agreement": 0.475, "gold_pairs": 40})
    assert "no better than a coin flip" in P.rm_warnings(str(near))[0]
    live = P.rm_warnings_live(pd.DataFrame({"rm/gold_agreement": [0.6, 0.2]}))
    assert "worse than a coin flip" in live[0]


def test_numbers_and_errors_read_without_internals():
    assert W.number(-0.0004, "{:.2f}") == "0.00" and W.number(-0.01, "{:.2f}") == "-0.01"
    assert W.number(-0.001, "{:.0%}") == "0%" and W.number(2.5, "{:.3f}") == "2.500"
    assert W.plain_error("BoNConfig.n must be strictly increasing (e.g. 1,2,4), got [4, 2]") == \
        "n must be strictly increasing (e.g. 1,2,4), got [4, 2]"
    assert W.plain_error("corpus file '/home/me/runs/.uploads/0123456789abcdef/my reviews.txt' does not exist") == \
        "corpus file 'my reviews.txt' does not exist"
    assert W.upload_file_name("C:\\Users\\me\\My Pairs.JSONL", ".jsonl") == "My Pairs.jsonl"
    assert W.upload_file_name("../../etc/passwd", ".txt") == "passwd.txt"
    assert W.upload_file_name(None, ".csv") == "upload.csv"


def test_an_upload_error_names_the_students_file_not_a_temporary_copy():
    with pytest.raises(P.lazy_core()[0].PreferenceError) as e:
        P.check_preference_file(b'{"prompt": "a", "chosen": "b"}\n', "my_pairs.jsonl")
    assert str(e.value).startswith("my_pairs.jsonl is one-sided") and "upload" not in str(e.value)


def test_labelling_says_what_better_means_and_marks_a_cut_response():
    said = P.labelling_instructions("positive", 16)
    assert "**positive**" in said and "**fluent English**" in said and "16 tokens" in said
    assert "**shorter**" in P.labelling_instructions("concise")
    assert P.shown_response("the trailer promised m") == "the trailer promised m …"
    assert P.shown_response("it was lovely! ") == "it was lovely!"


def test_tables_show_no_none():
    df = pd.DataFrame([{"step": 0, "objective/gold": 0.1, "objective/scores": 0.2, "objective/kl": 0.0},
                       {"step": 2, "objective/gold": 0.3, "objective/scores": 0.4, "objective/kl": 0.5,
                        "eval/rewards/accuracies": 0.75}])
    table = dpo_view.eval_table(df)
    assert table["validation accuracy"].tolist() == ["– (policy = reference: every pair a tie)", "0.750"]
    base_only = dpo_view.samples_table([{"kind": "base", "iteration": 0, "prompt": "the plot", "response": "was.",
                                         "gold": 0.5}])
    assert list(base_only.columns) == ["prompt", "base", "base gold"]  # no "policy (step None)" of Nones
    shown = W.shown_table(pd.DataFrame({"run": ["a", "b"], "tau": [0.1, None], "choice": [None, None]}))
    assert list(shown.columns) == ["run", "tau"] and shown["tau"].tolist() == ["0.1", "–"]
    from lab.views import grpo as grpo_view

    base_only = grpo_view.generations_table(None, [{"prompt": "the plot", "base": {"response": "was.", "gold": 0.5},
                                                    "policy": None}])
    assert list(base_only.columns) == ["prompt", "base", "base gold"]  # no "policy (iteration None)"
    both = grpo_view.generations_table(3, [{"prompt": "a", "base": {"response": "x.", "gold": 0.5}, "policy": None},
                                           {"prompt": "b", "base": {"response": "y.", "gold": 0.1},
                                            "policy": {"response": "z.", "gold": 0.2}}])
    assert both["policy (iteration 3)"].tolist() == ["–", "z."] and both["policy gold"].tolist() == ["–", "0.2"]
