"""What the Preferences and Reward-model pages need besides charts: parent choices, configs, checked
uploads, the dataset as a table, and a cached scorer. No Streamlit here (tested directly)."""

from __future__ import annotations

import math
import tempfile
from functools import lru_cache
from pathlib import Path

import pandas as pd

from core.config import RewardConfig
from core.model import SHIPPED
from core.runs import Run, RunError, list_runs, read_json, read_jsonl

MODES = ("simulated annotator", "label pairs myself", "import a file")
MIN_TRAIN_PAIRS = 50  # below this a reward model's accuracies say little (a handful of held-out pairs)
# the labelled pairs that give a reward model MIN_TRAIN_PAIRS to train on after it holds out its validation share
MIN_SET_PAIRS = math.ceil(MIN_TRAIN_PAIRS / (1 - RewardConfig().val_fraction))


def _named(entry: dict) -> str:
    """A run as choices list it: the student's name for it (if any) and its id."""
    from lab.views.runs import display_name, read_meta

    return display_name(entry["run_id"], read_meta(entry["path"]))


def lazy_core():
    """core.preferences / core.reward, imported on use (the page says so when they are missing)."""
    from core import preferences, reward

    return preferences, reward


# ----------------------------------------------------------------------------- parents

def _usable(entry: dict, stage: str) -> bool:
    """A finished run of `stage`, or a stopped one that saved its model (the PPO page offers both, and a
    "next step" from a stopped run says it is chosen on the next page: it must be offered there)."""
    if entry["stage"] != stage:
        return False
    return entry["state"] == "done" or (entry["state"] == "stopped"
                                        and (Path(entry["path"]) / "checkpoint" / "config.json").exists())


def base_choices(runs_root) -> dict[str, str]:
    """label -> spec of the base models a student can use: the shipped one, then finished pretraining runs.
    (lab/views/models.py adds the figure that decides the choice to each label.)"""
    out = {}
    if (SHIPPED["small"] / "model.safetensors").exists():
        out["shipped: small"] = "small"
    for r in list_runs(runs_root):
        if _usable(r, "pretrain"):
            out[f"run: {_named(r)}"] = r["path"]
    return out


def preference_choices(runs_root) -> dict[str, str]:
    """label -> run folder of preference runs that hold labelled pairs (human ones count as they grow)."""
    out = {}
    for r in list_runs(runs_root):
        if r["stage"] != "preferences" or r["state"] not in ("done", "stopped"):
            continue
        n = len(read_jsonl(Path(r["path"]) / "preferences.jsonl"))
        if n:  # the count decides the choice; a set too small to trust says so in its label
            out[f"run: {_named(r)} ({n} pairs{', too few to trust' if n < MIN_SET_PAIRS else ''})"] = r["path"]
    return out


def reward_choices(runs_root) -> dict[str, str]:
    out = {}
    if (SHIPPED["reward"] / "model.safetensors").exists():
        out["shipped: reward"] = "reward"
    for r in list_runs(runs_root):
        if _usable(r, "reward"):
            out[f"run: {_named(r)}"] = r["path"]
    return out


# ----------------------------------------------------------------------------- configs

def preference_config(preset: str, base: str, mode: str, profile: str = "positive", tau: float = 0.1,
                      pairs: int | None = None, import_file: str | None = None, seed: int = 0):
    preferences, _ = lazy_core()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    annotator = "human" if mode == "label pairs myself" else "simulated"
    cfg = preferences.preference_preset(preset, base=base, annotator=annotator, profile=profile, tau=float(tau),
                                        pairs=None if pairs is None else int(pairs), seed=int(seed),
                                        import_file=import_file if mode == "import a file" else None)
    return cfg.validate()


def reward_config(preset: str, preferences_spec: str, base: str, epochs: int | None = None,
                  lr: float | None = None, seed: int = 0):
    _, reward = lazy_core()
    cfg = reward.reward_preset(preset, preferences=preferences_spec, base=base,
                               epochs=None if epochs is None else int(epochs), lr=None if lr is None else float(lr),
                               seed=int(seed))
    return cfg.validate()


def base_of_preferences(spec: str) -> str | None:
    """The base model a preference run sampled from (the reward model should start from the same one)."""
    try:
        return Run.open(spec).config.get("base")
    except (RunError, OSError):
        return None


# ----------------------------------------------------------------------------- uploads

def check_preference_file(data: bytes, name: str) -> int:
    """Validate an uploaded .jsonl/.csv preference file the way the stage will read it. Returns the
    number of pairs; raises PreferenceError (empty, binary, malformed) with a message for the page."""
    preferences, _ = lazy_core()
    suffix = Path(name).suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise preferences.PreferenceError(f"{name}: unknown file type {suffix or '(none)'!r}; use .jsonl or .csv "
                                          "with prompt, chosen and rejected")
    if not data.strip():
        raise preferences.PreferenceError(f"{name} is empty")
    if b"\x00" in data[:65536]:
        raise preferences.PreferenceError(f"{name} looks binary (it contains NUL bytes); expected UTF-8 text")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            rows = preferences.import_preferences(path)
        except preferences.PreferenceError as e:  # the student's file name, not the temporary copy's path
            raise preferences.PreferenceError(str(e).replace(str(path), name)) from None
    return len(rows)


# ----------------------------------------------------------------------------- the dataset

def dataset(run_dir) -> pd.DataFrame:
    """The labelled pairs of a preference run (plus ties and skips of a human run) as one table."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "preferences.jsonl")
    for r in rows:
        r.setdefault("choice", None)
    columns = ["prompt", "chosen", "rejected", "source", "choice", "gold_chosen", "gold_rejected", "p_chosen"]
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = None
    return df[columns]


def download_jsonl(run_dir) -> str:
    """The run's labelled pairs in TRL's standard preference format (prompt + chosen is what the RM reads)."""
    preferences, _ = lazy_core()
    return preferences.trl_jsonl(read_jsonl(Path(run_dir) / "preferences.jsonl"))


def label_table(run_dir) -> pd.DataFrame:
    """One row per decision, with "choice" a/b/tie/skip for a human run (for the label-count chart)."""
    run_dir = Path(run_dir)
    decided = dataset(run_dir)
    skipped = pd.DataFrame(read_jsonl(run_dir / "skipped.jsonl"))
    if skipped.empty:
        return decided
    return pd.concat([decided, skipped[["choice"]]], ignore_index=True)


def is_human_run(run_dir) -> bool:
    try:
        return Run.open(run_dir).config.get("annotator") == "human"
    except RunError:
        return False


# ----------------------------------------------------------------------------- labelling by hand

# What "better" means to the hidden annotator of each taste (core/annotators.py: u = sentiment - fluency penalty,
# the penalty being the share of word pairs never seen in the corpus plus the share of repeated pairs)
BETTER = {
    "positive": "the more **positive** review, as long as it reads as **fluent English**: praise wins, but words "
                "that never follow each other in real reviews (word salad) or repeats (\"great great great\") "
                "cost as much as the praise earns",
    "negative": "the more **negative** review, as long as it reads as **fluent English**: complaints win, but "
                "word salad or repeats (\"bad bad bad\") cost as much as the complaint earns",
    "concise": "the **shorter** review that **finishes its sentence** (ends with . ! or ?) and reads as fluent "
               "English, whatever its sentiment",
}
CUT = "…"


def labelling_instructions(profile: str, max_new_tokens: int | None = None) -> str:
    """What to pick when labelling by hand: the taste of the hidden annotator your labels are compared with."""
    better = BETTER.get(profile, f"what its taste {profile!r} describes")
    limit = f" of {max_new_tokens} tokens" if max_new_tokens else ""
    return (f"**Which is better?** Label as the hidden annotator (taste *{profile}*) would: it prefers {better}. "
            "A reward model learns whatever your labels say, so labels against this taste teach it the opposite; "
            "the agreement below counts how often you and the annotator pick the same response. "
            f"{CUT} marks a response that reached the length limit{limit} mid-sentence: the model had not finished "
            "it, and you see all of what it wrote.")


def shown_response(text: str) -> str:
    """A response as a labelling card shows it: in full, with … after one the length limit cut mid-sentence
    (core/annotators.py's `complete`: a finished text ends with . ! or ?)."""
    text = (text or "").rstrip()
    return text if text.endswith((".", "!", "?")) else f"{text} {CUT}"


# ----------------------------------------------------------------------------- the reward model

@lru_cache(maxsize=4)
def scorer(spec: str):
    """A RewardScorer kept per spec (loading takes a second; scoring a text a few milliseconds)."""
    _, reward = lazy_core()
    return reward.RewardScorer(spec, device="cpu")


def score_text(spec: str, text: str, profile: str = "positive") -> dict:
    """The reward model's score of one text, next to the hidden gold utility of the same text."""
    from core.annotators import gold_utility

    if not text.strip():
        raise ValueError("type a text to score")
    return {"score": scorer(spec).score([text])[0], "gold": gold_utility([text], profile)[0]}


def scores(run_dir) -> dict | None:
    """scores.json of a finished reward run (validation chosen/rejected scores and more)."""
    try:
        return read_json(Path(run_dir) / "scores.json", None)
    except RunError:
        return None


def disagreements(scores: dict | None) -> pd.DataFrame:
    """Fresh pairs the reward model orders against the hidden gold: the two texts, who prefers which."""
    rows = []
    for p in (scores or {}).get("gold_disagreements") or []:
        rows.append({"A": p.get("a"), "B": p.get("b"),
                     "RM prefers": "A" if p.get("score_a", 0) > p.get("score_b", 0) else "B",
                     "gold prefers": "A" if p.get("gold_a", 0) > p.get("gold_b", 0) else "B",
                     "RM score gap": round(float(p.get("score_a", 0)) - float(p.get("score_b", 0)), 3)})
    return pd.DataFrame(rows, columns=["A", "B", "RM prefers", "gold prefers", "RM score gap"])


def agreement_words(agreement: float, pairs: int | None = None) -> str:
    """What a gold agreement at or below 50% means. Near 50% the model ranks fresh pairs no better than a coin;
    clearly below (more than two standard errors of a coin on `pairs` pairs, else 10 points) it ranks them the
    wrong way round: it prefers the response the annotator rejects, so it learned the opposite of its taste."""
    margin = 2 * math.sqrt(0.25 / pairs) if isinstance(pairs, int) and pairs > 0 else 0.1
    if agreement < 0.5 - margin:
        return (f"{agreement:.1%} of fresh pairs — worse than a coin flip (50%): on most pairs it prefers the "
                "response the annotator rejects, so it has learned the opposite of the annotator's taste (labels "
                "given the wrong way round, or pairs labelled for another taste).")
    return (f"{agreement:.1%} of fresh pairs — no better than a coin flip (50%): it learned something other than "
            "what the annotator prefers (label noise, too few pairs, or careless labels).")


def rm_warnings(spec) -> list[str]:
    """Why not to trust a reward model, in words a student can act on (empty when nothing is wrong):
    too few training pairs, or an agreement with the hidden gold no better than a coin flip. Read from
    the checkpoint's lab.json (pairs, val_pairs, gold_agreement), so it holds for the shipped model,
    a finished run and a file alike."""
    from core.model import CheckpointError, read_lab_json

    try:
        info = read_lab_json(spec)
    except (CheckpointError, OSError, ValueError):
        return []
    out = []
    train, val = info.get("train_pairs"), info.get("val_pairs")
    if isinstance(train, int) and train < MIN_TRAIN_PAIRS:
        out.append(f"Trained on only {train} pair(s) and validated on {val}: with so few, an accuracy of 1.0 can be "
                   f"luck and says little about new responses. Train on at least {MIN_TRAIN_PAIRS} pairs (label or "
                   f"simulate {MIN_SET_PAIRS} or more: a tenth is held out to validate) before trusting it.")
    agreement = info.get("gold_agreement")
    if isinstance(agreement, (int, float)) and agreement <= 0.5:
        out.append(f"It agrees with the hidden gold on {agreement_words(agreement, info.get('gold_pairs'))} "
                   "PPO against it would optimise the wrong thing.")
    return out


def rm_warnings_live(df: pd.DataFrame, run_dir=None) -> list[str]:
    """While a reward run trains (no checkpoint yet): a gold agreement at or below chance, from its metrics
    (judged on the run's own number of gold pairs, as its checkpoint will be)."""
    if df is None or df.empty or "rm/gold_agreement" not in df.columns:
        return []
    s = df["rm/gold_agreement"].dropna()
    if s.empty or float(s.iloc[-1]) > 0.5:
        return []
    try:
        gold_pairs = Run.open(run_dir).config.get("gold_pairs") if run_dir is not None else None
    except RunError:
        gold_pairs = None
    return [f"So far it agrees with the hidden gold on {agreement_words(float(s.iloc[-1]), gold_pairs)}"]


def agreement_summary(runs_root) -> pd.DataFrame:
    """One row per finished reward run: training pairs, the annotator noise tau, final gold agreement."""
    rows = []
    for r in list_runs(runs_root):
        if r["stage"] != "reward" or r["state"] != "done":
            continue
        run = Run(Path(r["path"]))
        df = run.metrics()
        if df.empty or "rm/gold_agreement" not in df.columns:
            continue
        agreement = df["rm/gold_agreement"].dropna()
        spec = run.config.get("preferences")
        pairs, tau = None, None
        try:
            pref = Run.open(spec)
            pairs = len(read_jsonl(pref.path / "preferences.jsonl"))
            tau = pref.config.get("tau") if pref.config.get("annotator") == "simulated" else None
        except (RunError, TypeError, OSError):
            if spec and Path(spec).is_file():
                pairs = sum(1 for line in open(spec, encoding="utf-8", errors="replace") if line.strip())
        rows.append({"run": r["run_id"], "pairs": pairs, "tau": tau,
                     "gold_agreement": float(agreement.iloc[-1]) if len(agreement) else None})
    return pd.DataFrame(rows, columns=["run", "pairs", "tau", "gold_agreement"])
