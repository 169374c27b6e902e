"""Preference data: sampling pairs, the file format, import/export, and human labelling."""

import json

import pytest

from core.annotators import gold_utility
from core.config import ConfigError, to_dict
from core.model import join_text
from core.preferences import (AlreadyLabelled, PreferenceError, collect_preferences, export_preferences,
                              held_out_prompts, import_preferences, labelling_progress, load_preferences,
                              next_unlabeled, preference_preset, record_choice, validate_pairs)
from core.runs import Run, read_jsonl
from core.session import drive

PAIRS = [
    {"prompt": "the acting was", "chosen": "brilliant.", "rejected": "dull.", "source": "human",
     "gold_chosen": 0.6, "gold_rejected": -0.4},
    {"prompt": "the plot", "chosen": "was clever, but slow.", "rejected": "drags, yet the music shines.",
     "source": "simulated", "gold_chosen": 0.1, "gold_rejected": 0.05, "p_chosen": 0.62, "tau": 0.1},
    {"prompt": "", "chosen": "a review with a comma, and \"quotes\"", "rejected": "a line\nbreak"},
]


def make_run(base, tmp_path, name="pref", **overrides):
    cfg = preference_preset("tiny", base=str(base), device="cpu", **overrides)
    run = Run.create("preferences", to_dict(cfg), out=tmp_path / name)
    last = drive(run, collect_preferences(cfg, run))
    return run, last


def test_prompts_are_seeded_openings():
    a = held_out_prompts(20, seed=3, min_words=2, max_words=4)
    assert a == held_out_prompts(20, seed=3, min_words=2, max_words=4)
    assert a != held_out_prompts(20, seed=4, min_words=2, max_words=4)
    assert all(2 <= len(p.split()) <= 4 and not p.endswith((".", ",")) for p in a)
    assert held_out_prompts(20, "gold") != held_out_prompts(20, "preferences")


def test_simulated_run_writes_trl_style_pairs(tiny_base, tmp_path):
    run, last = make_run(tiny_base, tmp_path, pairs=50, seed=1)
    rows = read_jsonl(run.path / "preferences.jsonl")
    assert len(rows) == 50 and last["pref/pairs"] == 50 and last["final"]
    for r in rows:
        assert {"prompt", "chosen", "rejected", "source", "gold_chosen", "gold_rejected", "p_chosen"} <= set(r)
        assert r["source"] == "simulated" and r["chosen"] != r["rejected"]
        assert 0.0 <= r["p_chosen"] <= 1.0
    # the gold fields are the annotator's utilities of prompt + response
    r = rows[0]
    assert gold_utility([join_text(r["prompt"], r["chosen"])])[0] == pytest.approx(r["gold_chosen"])
    # K=4 responses per prompt give 6 pairs per prompt (minus identical ones)
    prompts = [r["prompt"] for r in rows]
    assert max(prompts.count(p) for p in set(prompts)) <= 6
    # seeded: the same config makes the same file
    again, _ = make_run(tiny_base, tmp_path, name="again", pairs=50, seed=1)
    assert read_jsonl(again.path / "preferences.jsonl") == rows


def test_tau_controls_label_noise(tiny_base, tmp_path):
    careful, _ = make_run(tiny_base, tmp_path, name="careful", pairs=120, tau=1e-4)
    rows = read_jsonl(careful.path / "preferences.jsonl")
    assert all(r["gold_chosen"] >= r["gold_rejected"] for r in rows)
    noisy, last = make_run(tiny_base, tmp_path, name="noisy", pairs=120, tau=100.0)
    assert 0.3 < last["pref/label_gold_agreement"] < 0.7  # a coin flip


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_round_trip(tmp_path, suffix):
    path = export_preferences(PAIRS, tmp_path / f"pairs{suffix}")
    back = import_preferences(path)
    assert len(back) == len(PAIRS)
    for original, loaded in zip(PAIRS, back):
        for key, value in original.items():
            assert loaded[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    # and the exported file imports into a run, which then loads as training data
    again = export_preferences(back, tmp_path / f"again{suffix}")
    assert import_preferences(again) == back


def test_import_into_run_fills_gold(tiny_base, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({k: p[k] for k in ("prompt", "chosen", "rejected")}) for p in PAIRS) + "\n")
    run, last = make_run(tiny_base, tmp_path, import_file=str(path))
    rows, info = load_preferences(run.path)
    assert len(rows) == 3 and last["pref/pairs"] == 3
    assert rows[0]["gold_chosen"] > rows[0]["gold_rejected"]  # "brilliant" beats "dull"
    assert info["import_file"] == str(path)


@pytest.mark.parametrize("content, message", [
    ("", "no preference pairs"),
    ('{"prompt": "a", "chosen": "good."}\n', "one-sided"),
    ('{"prompt": "a", "chosen": "good.", "rejected": "good."}\n', "same text"),
    ('{"prompt": "a", "chosen": "good.", "rejected": ""}\n', "one-sided"),
    ('{"chosen": "good.", "rejected": "bad."}\n', "missing field 'prompt'"),
    ('{"prompt": "a", "chosen": "good.", "rejected": "bad."}\n{"prompt": \n', "line 2: not valid JSON"),
    ('{"prompt": "a", "chosen": "good.", "rejected": "bad.", "gold_chosen": "high"}\n', "must be a number"),
    ('{"prompt": "a", "chosen": 3, "rejected": "bad."}\n', "must be text"),
])
def test_bad_jsonl_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PreferenceError, match=message):
        import_preferences(path)


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("prompt,chosen\na,good\n", "one-sided"),
    ("question,answer\na,b\n", "no column"),
    ("prompt,chosen,rejected\na,good,good\n", "same text"),
])
def test_bad_csv_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(PreferenceError, match=message):
        import_preferences(path)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(PreferenceError, match="unknown file type"):
        export_preferences(PAIRS, tmp_path / "pairs.txt")
    (tmp_path / "pairs.txt").write_text("x")
    with pytest.raises(PreferenceError, match="unknown file type"):
        import_preferences(tmp_path / "pairs.txt")
    with pytest.raises(PreferenceError, match="does not exist"):
        import_preferences(tmp_path / "nope.jsonl")
    with pytest.raises(PreferenceError, match="no such run folder or file"):
        load_preferences(tmp_path / "nope")
    with pytest.raises(PreferenceError, match="pair 2"):
        validate_pairs([PAIRS[0], "not a pair"])
    with pytest.raises(ConfigError, match="tau"):
        preference_preset("tiny", tau=0).validate()
    with pytest.raises(ConfigError, match="responses_per_prompt"):
        preference_preset("tiny", responses_per_prompt=1).validate()
    with pytest.raises(ConfigError, match="import_file"):
        preference_preset("tiny", import_file=str(tmp_path / "missing.csv")).validate()


def test_human_labelling_is_persisted_at_once(tiny_base, tmp_path):
    run, last = make_run(tiny_base, tmp_path, annotator="human", pairs=5)
    assert last["pref/pairs"] == 5
    assert not (run.path / "preferences.jsonl").exists()
    with pytest.raises(PreferenceError, match="5 pairs are waiting"):
        load_preferences(run.path)

    decisions = {}
    for choice in ("a", "b", "tie", "skip"):
        pair = next_unlabeled(run.path)
        assert pair["total"] == 5 and pair["id"] not in decisions
        record_choice(run.path, pair["id"], choice)
        decisions[pair["id"]] = (choice, pair)
        # a "refresh": a fresh read of the files sees the label immediately
        assert next_unlabeled(run.path)["id"] != pair["id"]

    rows, info = load_preferences(run.path)
    assert len(rows) == 2 and all(r["source"] == "human" for r in rows)
    by_id = {r["pair_id"]: r for r in rows}
    for pair_id, (choice, pair) in decisions.items():
        if choice in ("a", "b"):
            assert by_id[pair_id]["chosen"] == pair[choice]
            assert by_id[pair_id]["rejected"] == pair["b" if choice == "a" else "a"]
    progress = labelling_progress(run.path)
    assert progress == {**progress, "total": 5, "labelled": 2, "ties": 1, "skipped": 1, "remaining": 1}
    assert progress["gold_agreement"] in (None, 0.0, 0.5, 1.0)  # None: both labelled pairs tie in gold

    first = next(iter(decisions))
    with pytest.raises(AlreadyLabelled):
        record_choice(run.path, first, "b")
    with pytest.raises(PreferenceError, match="choice must be one of"):
        record_choice(run.path, next_unlabeled(run.path)["id"], "maybe")
    with pytest.raises(PreferenceError, match="no pair"):
        record_choice(run.path, "p999", "a")
    record_choice(run.path, next_unlabeled(run.path)["id"], "a")
    assert next_unlabeled(run.path) is None


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_export_is_trls_standard_format_and_old_files_still_import(tmp_path, suffix):
    """TRL joins `prompt + chosen` as is; that must be exactly the text our reward model reads."""
    from datasets import load_dataset

    from core.preferences import full_texts, trl_jsonl

    pairs = PAIRS + [{"prompt": "i watched", "chosen": "this film twice", "rejected": ", sadly, the end"}]
    path = export_preferences(pairs, tmp_path / f"pairs{suffix}")
    kind, options = ("json", {}) if suffix == ".jsonl" else ("csv", {"keep_default_na": False})  # "" stays ""
    data = load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"), **options)
    for row, pair in zip(data, pairs):
        for key in ("chosen", "rejected"):
            assert row["prompt"] + row[key] == full_texts([pair["prompt"]], [pair[key]])[0]
    assert data[3]["prompt"] + data[3]["chosen"] == "i watched this film twice"
    assert data[3]["prompt"] + data[3]["rejected"] == "i watched, sadly, the end"
    # the importer reads the new files and the old ones (responses without the separator) to the same pairs
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    def triples(rows):
        return [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    assert triples(import_preferences(path)) == triples(import_preferences(old)) == triples(pairs)
    line = json.loads(trl_jsonl(pairs).splitlines()[3])
    assert (line["chosen"], line["rejected"]) == (" this film twice", ", sadly, the end")
    # and the lab's own join reads a TRL-format response as TRL does
    assert join_text(line["prompt"], line["chosen"]) == line["prompt"] + line["chosen"]
