"""Stage 2a: comparison data. Sample K responses per prompt from a base model, pair them, label.

The prompts are the opening words of held-out reviews (fresh draws of the corpus generator, so the
base model never saw those reviews). Every two of a prompt's K responses form a pair, as in
InstructGPT (Ouyang et al. 2022), which gets K*(K-1)/2 comparisons out of K samples.

A labelled pair is one line of `preferences.jsonl`, in the sense of TRL's preference datasets:

    {"id", "prompt", "chosen", "rejected", "source": "simulated"|"human"|"imported",
     "gold_chosen", "gold_rejected", "p_chosen", "profile", "tau"}

In a run's `preferences.jsonl`, `chosen`/`rejected` are the responses only; the reward model reads
`join_text(prompt, response)` (a space between them unless the response starts with punctuation).
An exported file is TRL's standard preference format exactly: the separator starts `chosen`/`rejected`,
so `prompt + chosen`, the plain concatenation TRL's trainers make, is the very text our reward model
reads. The importer strips both sides and joins again, so it reads old exports (no separator) and new
ones to the same pairs.
gold_* are the hidden annotator's utilities of those full texts (for plots, never for training).

Human labelling (the app): with `annotator="human"` the run writes candidate pairs to `pairs.jsonl`
and stops. `next_unlabeled(run)` hands out the next pair; `record_choice(run, id, "a"|"b"|"tie"|"skip")`
appends ONE line at once (a/b to preferences.jsonl, tie/skip to skipped.jsonl), so a refresh, a
second tab or a crash never loses a label.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from pathlib import Path

import torch

from core import cpu
from core.annotators import PROFILES, BradleyTerryAnnotator, gold_utility
from core.config import PreferenceConfig, from_preset, resolve_device, seed_everything
from core.corpus import synthetic_reviews
from core.model import decode_responses, join_text, left_pad, load_lm, no_dropout, sample
from core.runs import Run, append_jsonl, read_json, read_jsonl
from core.session import Session

PREFERENCES_FILE = "preferences.jsonl"
PAIRS_FILE = "pairs.jsonl"
SKIPPED_FILE = "skipped.jsonl"
REQUIRED_FIELDS = ("prompt", "chosen", "rejected")
FIELD_ORDER = ("id", "prompt", "chosen", "rejected", "source", "gold_chosen", "gold_rejected", "p_chosen",
               "profile", "tau")
NUMBER_FIELDS = ("gold_chosen", "gold_rejected", "p_chosen", "tau")
CHOICES = ("a", "b", "tie", "skip")

# Seeds of the held-out review streams: the shipped base models were pretrained on seed 0. Each use
# gets its own stream so that the RM's gold-agreement pairs never overlap its training prompts.
PROMPT_SEED = {"preferences": 1_000_000, "gold": 2_000_000, "norm": 3_000_000}

PRESET_PREFERENCES = {
    "tiny": dict(pairs=120, responses_per_prompt=4, max_new_tokens=24, batch_size=32),
    "weak": dict(),
    "small": dict(),
    "gpu": dict(pairs=10000, batch_size=256),
}


class PreferenceError(ValueError):
    """Bad preference data (empty, one-sided, identical pair, missing field) or a bad label."""


class AlreadyLabelled(PreferenceError):
    """The pair already has a decision (e.g. clicked in a second tab); nothing was written."""


def preference_preset(preset: str = "small", **overrides) -> PreferenceConfig:
    """A PreferenceConfig for a size preset with optional overrides (None values are ignored)."""
    return from_preset(PreferenceConfig, PRESET_PREFERENCES, preset, overrides)


# ----------------------------------------------------------------------------- prompts and samples

def held_out_prompts(n: int, stream: str = "preferences", seed: int = 0, min_words: int = 2,
                     max_words: int = 4) -> list[str]:
    """`n` prompts: the first 2-4 words of fresh synthetic reviews (trailing punctuation dropped, so
    the model continues the sentence rather than starting a new one)."""
    reviews = synthetic_reviews(n, seed=PROMPT_SEED[stream] + seed)
    rng = random.Random(PROMPT_SEED[stream] + seed)
    prompts = []
    for review in reviews:
        k = rng.randint(min_words, max_words)
        prompts.append(" ".join(review.split()[:k]).rstrip(".,!?;:"))
    return prompts


@torch.no_grad()
def sample_responses(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 1.0,
                     top_k: int = 0, batch_size: int = 64, generator: torch.Generator | None = None) -> list[str]:
    """One sampled response (text, without the prompt) per prompt, in batches with the KV cache.
    Each response is cut so that <bos> prompt response <eos> fits the model's context."""
    device = next(model.parameters()).device
    n_ctx = model.config.n_positions
    responses = []
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i: i + batch_size]
        ids, mask = left_pad(tokenizer, batch, device)                     # (B, P)
        max_new = min(max_new_tokens, n_ctx - ids.shape[1] - 1)
        if max_new < 1:
            raise PreferenceError(f"a prompt of {ids.shape[1]} tokens leaves no room to answer in a "
                                  f"{n_ctx}-token context; use shorter prompts")
        resp, rmask = sample(model, ids, mask, max_new, tokenizer.eos_token_id, tokenizer.pad_token_id,
                             temperature=temperature, top_k=top_k, generator=generator)
        responses.extend(decode_responses(tokenizer, resp, rmask))
    return responses


def full_texts(prompts: list[str], responses: list[str]) -> list[str]:
    """What the reward model and the gold annotator read: prompt + response."""
    return [join_text(p, r) for p, r in zip(prompts, responses)]


def candidate_pairs(prompts: list[str], responses: list[list[str]]):
    """All K*(K-1)/2 pairs (prompt, a, b) of each prompt's K responses. Identical texts are skipped,
    and so are empty responses (<eos> at once): a pair file refuses an empty side as one-sided."""
    for prompt, group in zip(prompts, responses):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                if group[i] != group[j] and group[i].strip() and group[j].strip():
                    yield prompt, group[i], group[j]


# ----------------------------------------------------------------------------- validation, import, export

def validate_pairs(rows: list, where: str = "preference data") -> list[dict]:
    """Check rows of (prompt, chosen, rejected); return clean dicts. Errors name the line and the fix."""
    if not rows:
        raise PreferenceError(f"{where} holds no preference pairs; each line needs prompt, chosen and rejected")
    keys = set().union(*(r.keys() for r in rows if isinstance(r, dict)))
    if "chosen" in keys and "rejected" not in keys:
        raise PreferenceError(f"{where} is one-sided: it has 'chosen' texts but no 'rejected' ones (demonstration "
                              "data?). A reward model learns from pairs: each line needs prompt, chosen and rejected")
    if "rejected" in keys and "chosen" not in keys:
        raise PreferenceError(f"{where} is one-sided: it has 'rejected' texts but no 'chosen' ones; each line "
                              "needs prompt, chosen and rejected")
    clean = []
    for line, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise PreferenceError(f"{where}, pair {line}: expected an object with prompt, chosen, rejected, "
                                  f"got {type(row).__name__}")
        for name in REQUIRED_FIELDS:
            if name not in row or row[name] is None:
                raise PreferenceError(f"{where}, pair {line}: missing field {name!r} (each pair needs "
                                      "prompt, chosen and rejected)")
            if not isinstance(row[name], str):
                raise PreferenceError(f"{where}, pair {line}: field {name!r} must be text, "
                                      f"got {type(row[name]).__name__}")
        chosen, rejected = row["chosen"].strip(), row["rejected"].strip()
        for name, text in (("chosen", chosen), ("rejected", rejected)):
            if not text:
                raise PreferenceError(f"{where}, pair {line}: {name!r} is empty, so the pair is one-sided; "
                                      "both responses must have text")
        if chosen == rejected:
            raise PreferenceError(f"{where}, pair {line}: chosen and rejected are the same text ({chosen[:60]!r}); "
                                  "a pair must compare two different responses")
        out = dict(row)
        out.update(prompt=row["prompt"].strip(), chosen=chosen, rejected=rejected)
        for name in NUMBER_FIELDS:
            value = out.get(name)
            if value is None or value == "":
                out[name] = None
                continue
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                raise PreferenceError(f"{where}, pair {line}: {name!r} must be a number, got {value!r}") from None
            if not math.isfinite(out[name]):
                raise PreferenceError(f"{where}, pair {line}: {name!r} must be a finite number, got {value!r}")
        out.setdefault("id", str(line))
        out["id"] = str(out["id"])
        out.setdefault("source", "imported")
        clean.append(out)
    return clean


def _read_jsonl_strict(path: Path) -> list:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PreferenceError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise PreferenceError(f"{path}, line {number}: JSON nested too deeply; a pair is a flat object "
                                      "with prompt, chosen, rejected") from None
    return rows


def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise PreferenceError(f"{path} is empty; expected a header row with prompt,chosen,rejected")
        missing = [c for c in REQUIRED_FIELDS if c not in reader.fieldnames]
        if missing and not ("chosen" in missing) ^ ("rejected" in missing):
            raise PreferenceError(f"{path}: the header has no column(s) {missing}; expected prompt,chosen,rejected "
                                  f"(found {reader.fieldnames})")
        try:
            return [{k: unescape_cell(v) for k, v in row.items() if k is not None} for row in reader]
        except csv.Error as e:  # e.g. a cell over the csv module's field size limit
            raise PreferenceError(f"{path}, line {reader.line_num}: not a readable CSV row ({e})") from None


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value):
    """A text cell that a spreadsheet would run as a formula (=HYPERLINK(...), +, -, @) gets a leading
    apostrophe, as spreadsheet tools expect (OWASP: CSV injection); import strips it again."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def unescape_cell(value):
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def import_preferences(path: str | os.PathLike) -> list[dict]:
    """Validated pairs from a .jsonl or .csv file (TRL-style prompt/chosen/rejected columns)."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceError(f"preference file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            rows = _read_jsonl_strict(path)
        elif suffix == ".csv":
            rows = _read_csv(path)
        else:
            raise PreferenceError(f"{path}: unknown file type {suffix!r}; use .jsonl or .csv")
    except UnicodeDecodeError as e:
        raise PreferenceError(f"{path} is not UTF-8 text ({e.reason})") from None
    return validate_pairs(rows, where=str(path))


def trl_format(row: dict) -> dict:
    """A validated pair as TRL's standard preference format reads it: `prompt + chosen` (plain string
    concatenation, no separator added by the reader) == join_text(prompt, chosen), the text the lab scores.
    So the separator (a space, none before punctuation) goes at the start of chosen/rejected."""
    out = dict(row)
    for key in ("chosen", "rejected"):
        out[key] = join_text(row["prompt"], row[key])[len(row["prompt"]):]
    return out


def trl_jsonl(rows: list[dict]) -> str:
    """Pairs as JSON lines in TRL's standard preference format (the app's download button)."""
    return "".join(json.dumps(trl_format(r)) + "\n" for r in validate_pairs(rows, where="the pairs to export"))


def export_preferences(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write pairs to .jsonl or .csv (by the suffix) in TRL's standard preference format (`trl_format`).
    The file is replaced atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise PreferenceError(f"{path}: unknown file type {suffix!r}; use .jsonl or .csv")
    rows = [trl_format(r) for r in validate_pairs(rows, where="the pairs to export")]
    extra = sorted({k for r in rows for k in r} - set(FIELD_ORDER))
    columns = list(FIELD_ORDER) + extra
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if suffix == ".jsonl":
            for r in rows:
                f.write(json.dumps({k: r.get(k) for k in columns if k in r}) + "\n")
        else:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: "" if r.get(k) is None else escape_cell(r.get(k)) for k in columns})
    os.replace(tmp, path)
    return path


def load_preferences(spec: str | os.PathLike) -> tuple[list[dict], dict]:
    """(validated pairs, info) from a preferences run folder or a .jsonl/.csv file. `info` holds the
    run's config (profile, base, tau) when there is one, else {}."""
    path = Path(os.fspath(spec))
    if path.is_dir():
        run = Run.open(path)
        if run.stage != "preferences":
            raise PreferenceError(f"{path} is a {run.stage!r} run, not a preferences run")
        rows = read_jsonl(path / PREFERENCES_FILE)
        if not rows:
            waiting = len(read_jsonl(path / PAIRS_FILE))
            hint = f" ({waiting} pairs are waiting for a human label)" if waiting else ""
            raise PreferenceError(f"{path} holds no labelled preference pairs yet{hint}")
        return validate_pairs(rows, where=str(path / PREFERENCES_FILE)), dict(run.config)
    if path.is_file():
        return import_preferences(path), {}
    raise PreferenceError(f"preferences {spec!r}: no such run folder or file")


# ----------------------------------------------------------------------------- the stage

def collect_preferences(cfg: PreferenceConfig, run: Run):
    """Sample, pair and label (or import) comparisons into run/preferences.jsonl.

    Yields one metrics dict per batch of prompts: {"step", "pref/pairs", "pref/gold_gap",
    "pref/label_gold_agreement", "time/responses_per_s"}; the last one has "final": True.
    With annotator="human" the pairs go to pairs.jsonl unlabelled and "pref/pairs" counts them.
    """
    cfg.validate()
    if cfg.import_file:
        yield from _import_into_run(cfg, run)
        return
    seed_everything(cfg.seed)
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    device = resolve_device(cfg.device)
    model, tokenizer = load_lm(cfg.base, device)
    no_dropout(model)
    annotator = BradleyTerryAnnotator(cfg.profile, cfg.tau, seed=cfg.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)

    K = cfg.responses_per_prompt
    pairs_per_prompt = K * (K - 1) // 2
    # enough prompts for the pairs asked for, plus a margin for identical responses (redrawn below)
    n_prompts = math.ceil(cfg.pairs / pairs_per_prompt * 1.2) + 1
    prompts = held_out_prompts(n_prompts, "preferences", cfg.seed, cfg.prompt_words_min, cfg.prompt_words_max)
    target = run.path / (PAIRS_FILE if cfg.annotator == "human" else PREFERENCES_FILE)
    made, step, agree, distinct, gap_sum, cursor, attempts = 0, 0, 0, 0, 0.0, 0, 0
    prompts_per_batch = max(1, cfg.batch_size // K)
    session = Session(run, "preferences", cfg)  # pause/step/stop: the pairs made so far stay
    while made < cfg.pairs:
        _, action = yield from session.gate(cfg, step)
        if action == "stop":
            return
        if cursor >= len(prompts):  # many identical responses (a very peaked model): draw more prompts
            attempts += 1
            if attempts > 5:
                raise PreferenceError(f"the base model keeps writing identical responses; only {made} distinct "
                                      f"pairs from {cursor} prompts. Raise the temperature")
            prompts += held_out_prompts(len(prompts) + n_prompts, "preferences", cfg.seed,
                                        cfg.prompt_words_min, cfg.prompt_words_max)[len(prompts):]
        t0 = time.perf_counter()
        batch_prompts = prompts[cursor: cursor + prompts_per_batch]
        cursor += len(batch_prompts)
        repeated = [p for p in batch_prompts for _ in range(K)]                 # K samples per prompt
        responses = sample_responses(model, tokenizer, repeated, cfg.max_new_tokens, cfg.temperature,
                                     cfg.top_k, batch_size=len(repeated), generator=generator)
        grouped = [responses[i * K:(i + 1) * K] for i in range(len(batch_prompts))]
        pairs = list(candidate_pairs(batch_prompts, grouped))[: cfg.pairs - made]
        if pairs:
            p_list, a_list, b_list = zip(*pairs)
            if cfg.annotator == "human":
                u_a = gold_utility(full_texts(p_list, a_list), cfg.profile)
                u_b = gold_utility(full_texts(p_list, b_list), cfg.profile)
                for n, (prompt, a, b) in enumerate(pairs):
                    append_jsonl(target, {"id": f"p{made + n}", "prompt": prompt, "a": a, "b": b,
                                          "gold_a": u_a[n], "gold_b": u_b[n]})
                    gap_sum += abs(u_a[n] - u_b[n])
            else:
                prefer_a, p_a, u_a, u_b = annotator.label(full_texts(p_list, a_list), full_texts(p_list, b_list))
                for n, (prompt, a, b) in enumerate(pairs):
                    first = prefer_a[n]
                    row = {"id": f"p{made + n}", "prompt": prompt,
                           "chosen": a if first else b, "rejected": b if first else a, "source": "simulated",
                           "gold_chosen": u_a[n] if first else u_b[n], "gold_rejected": u_b[n] if first else u_a[n],
                           "p_chosen": p_a[n] if first else 1.0 - p_a[n], "profile": cfg.profile, "tau": cfg.tau}
                    append_jsonl(target, row)
                    distinct += u_a[n] != u_b[n]  # a tie in gold has no right answer
                    agree += row["gold_chosen"] > row["gold_rejected"]
                    gap_sum += abs(u_a[n] - u_b[n])
            made += len(pairs)
        step += 1
        metrics = {"step": step, "pref/pairs": made, "pref/prompts": cursor,
                   "pref/gold_gap": gap_sum / max(1, made),
                   "time/responses_per_s": len(repeated) / (time.perf_counter() - t0)}
        if cfg.annotator == "simulated":
            # how often the noisy annotator picked the text with the higher gold utility (ties excluded)
            metrics["pref/label_gold_agreement"] = agree / max(1, distinct)
        if made >= cfg.pairs:
            metrics["final"] = True
        yield metrics


def _import_into_run(cfg: PreferenceConfig, run: Run):
    rows = import_preferences(cfg.import_file)
    missing = [r for r in rows if r.get("gold_chosen") is None or r.get("gold_rejected") is None]
    if missing:  # the hidden annotator can judge any text: fill in its utilities for the plots
        g_c = gold_utility(full_texts([r["prompt"] for r in missing], [r["chosen"] for r in missing]), cfg.profile)
        g_r = gold_utility(full_texts([r["prompt"] for r in missing], [r["rejected"] for r in missing]), cfg.profile)
        for r, c, j in zip(missing, g_c, g_r):
            r.update(gold_chosen=c, gold_rejected=j, profile=cfg.profile)
    target = run.path / PREFERENCES_FILE
    agree = distinct = 0
    for row in rows:
        append_jsonl(target, row)
        distinct += row["gold_chosen"] != row["gold_rejected"]
        agree += row["gold_chosen"] > row["gold_rejected"]
    yield {"step": 1, "pref/pairs": len(rows), "pref/label_gold_agreement": agree / max(1, distinct), "final": True}


# ----------------------------------------------------------------------------- human labelling

def _run_dir(run) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def _decided_ids(path: Path) -> dict[str, str]:
    decided = {}
    for row in read_jsonl(path / PREFERENCES_FILE):
        if "pair_id" in row:
            decided[row["pair_id"]] = row.get("choice", "a")
    for row in read_jsonl(path / SKIPPED_FILE):
        decided[row["pair_id"]] = row["choice"]
    return decided


def next_unlabeled(run) -> dict | None:
    """The next pair waiting for a human label, {"id", "prompt", "a", "b", "index", "total"}, or None
    when every pair has a decision. Reads the files each time, so every tab sees the same state."""
    path = _run_dir(run)
    pairs = read_jsonl(path / PAIRS_FILE)
    decided = _decided_ids(path)
    for index, pair in enumerate(pairs):
        if pair["id"] not in decided:
            return {"id": pair["id"], "prompt": pair["prompt"], "a": pair["a"], "b": pair["b"],
                    "index": index, "total": len(pairs)}
    return None


def record_choice(run, pair_id: str, choice: str) -> dict:
    """Record the student's decision on a pair, written to disk before this returns.

    a / b: one line appended to preferences.jsonl (chosen = the picked response, source "human").
    tie / skip: one line appended to skipped.jsonl (a tie carries no preference to learn from).
    """
    if choice not in CHOICES:
        raise PreferenceError(f"choice must be one of {list(CHOICES)}, got {choice!r}")
    path = _run_dir(run)
    pairs = {p["id"]: p for p in read_jsonl(path / PAIRS_FILE)}
    if pair_id not in pairs:
        raise PreferenceError(f"no pair {pair_id!r} in {path / PAIRS_FILE}")
    decided = _decided_ids(path)
    if pair_id in decided:
        raise AlreadyLabelled(f"pair {pair_id!r} was already labelled ({decided[pair_id]!r}); nothing changed")
    pair = pairs[pair_id]
    config = (read_json(path / "config.json", {}) or {}).get("config", {})
    if choice in ("a", "b"):
        other = "b" if choice == "a" else "a"
        row = {"id": pair_id, "pair_id": pair_id, "prompt": pair["prompt"], "chosen": pair[choice],
               "rejected": pair[other], "source": "human", "gold_chosen": pair.get(f"gold_{choice}"),
               "gold_rejected": pair.get(f"gold_{other}"), "profile": config.get("profile"),
               "choice": choice, "time": time.time()}
        append_jsonl(path / PREFERENCES_FILE, row)
    else:
        row = {"pair_id": pair_id, "choice": choice, "time": time.time()}
        append_jsonl(path / SKIPPED_FILE, row)
    return row


def labelling_progress(run) -> dict:
    """Counts for the labelling page, and how often the student agreed with the hidden annotator."""
    path = _run_dir(run)
    total = len(read_jsonl(path / PAIRS_FILE))
    labelled = [r for r in read_jsonl(path / PREFERENCES_FILE) if r.get("source") == "human"]
    skipped = read_jsonl(path / SKIPPED_FILE)
    judged = [r for r in labelled if r.get("gold_chosen") is not None and r.get("gold_rejected") is not None
              and r["gold_chosen"] != r["gold_rejected"]]
    agree = sum(r["gold_chosen"] > r["gold_rejected"] for r in judged)
    return {"total": total, "labelled": len(labelled),
            "ties": sum(r["choice"] == "tie" for r in skipped), "skipped": sum(r["choice"] == "skip" for r in skipped),
            "remaining": total - len(labelled) - len(skipped),
            "gold_agreement": agree / len(judged) if judged else None}


__all__ = ["PROFILES", "PreferenceError", "AlreadyLabelled", "preference_preset", "held_out_prompts",
           "sample_responses", "full_texts", "candidate_pairs", "validate_pairs", "import_preferences", "trl_format", "trl_jsonl",
           "export_preferences", "load_preferences", "collect_preferences", "next_unlabeled", "record_choice",
           "labelling_progress"]
