"""The weak-to-strong page's tables and texts, as pure functions of a run's results.json (tested without a browser)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.runs import RunError, read_json

MODELS = ("weak", "xent", "confidence", "ceiling")


def read_results(run_dir) -> tuple[dict | None, str | None]:
    """(results.json, None), (None, None) while the experiment runs, or (None, the reason it cannot be read)."""
    try:
        data = read_json(Path(run_dir) / "results.json", None)
    except RunError as e:
        return None, f"results.json of this run is unreadable: {e}"
    return (data if isinstance(data, dict) else None), None


def summary_caption(results: dict) -> str:
    n = results.get("n", {})
    return (f"Task: {results.get('task')} · {len(results.get('seeds', []))} seed(s) · {n.get('half1')} examples for "
            f"the supervisor, {n.get('half2')} for the students, {n.get('test')} test · "
            f"{results.get('seconds', 0):.0f} s")


def edit_table(results: dict) -> pd.DataFrame | None:
    """Test accuracy by edit kind (preference task): where the gap is."""
    by_edit = results.get("by_edit")
    if not by_edit:
        return None
    return pd.DataFrame([{"edit": kind, "test pairs": v.get("n"), **{name: v.get(name) for name in MODELS}}
                         for kind, v in by_edit.items()])


def copy_table(results: dict) -> pd.DataFrame | None:
    """Per student: the supervisor's errors it copied, corrected, and the right answers it broke (all seeds)."""
    rows = []
    for name in ("xent", "confidence"):
        s = results.get("students", {}).get(name)
        if s:
            rows.append({"student": name, "supervisor's test errors (all seeds)": s.get("weak_errors"),
                         "copied (all seeds)": s.get("copied_errors"),
                         "corrected (all seeds)": s.get("corrected_errors"),
                         "new errors, broke a right answer (all seeds)": s.get("new_errors"),
                         "agreement with the supervisor (mean)": s.get("agreement_with_weak")})
    return pd.DataFrame(rows) if rows else None


def _p(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def example_text(ex: dict, task: str | None) -> str:
    """One test example as markdown: the text(s), the gold label and both models' probabilities."""
    if task == "preference":
        gold = "A" if ex.get("gold_label") == 1 else "B"
        return (f"A: *{ex.get('text_a')}*  \nB: *{ex.get('text_b')}*  \ngold prefers **{gold}** · weak P(A) "
                f"{_p(ex.get('weak_prob'))} · student P(A) {_p(ex.get('student_prob'))}")
    gold = "positive" if ex.get("gold_label") == 1 else "negative"
    return (f"*{ex.get('text')}*  \ngold: **{gold}** · weak P(positive) {_p(ex.get('weak_prob'))} · "
            f"student P(positive) {_p(ex.get('student_prob'))}")


def first_seed_caption(results: dict) -> str | None:
    first = (results.get("per_seed") or [{}])[0].get("confidence") or {}
    if first.get("weak_errors") is None:
        return None
    return (f"In the first seed (seed {results['seeds'][0]}) alone, the supervisor made {first['weak_errors']} test "
            f"errors; the confidence student corrected {first.get('corrected_errors')} and copied "
            f"{first.get('copied_errors')} of them. Up to a few of each are shown.")
