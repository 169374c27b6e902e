"""The Preferences page's labelling section: one pair at a time, each click on disk before the next pair shows.
Streamlit code (like lab/ui.py); what it reads and writes is core/preferences.py's."""

from __future__ import annotations

import streamlit as st

from core import preferences
from core.runs import Run
from lab import ui
from lab.views import charts
from lab.views import preferences as view


def record(run_dir, pair_id, choice):
    """Button callback: the label is on disk before the fragment redraws with the next pair."""
    try:
        preferences.record_choice(run_dir, pair_id, choice)
    except preferences.AlreadyLabelled as e:
        st.session_state["label_message"] = f"{e} (labelled in another tab?)"


@st.fragment
def labelling(run_dir, show_dataset) -> None:
    """One pair at a time; each click is written to disk before the next pair shows. The next step is drawn
    here too: whether the set is worth a reward model changes with every label."""
    config = Run.open(run_dir).config
    st.markdown(view.labelling_instructions(config.get("profile", "positive"), config.get("max_new_tokens")))
    progress = preferences.labelling_progress(run_dir)
    done = progress["labelled"] + progress["ties"] + progress["skipped"]
    st.progress(done / max(1, progress["total"]),
                text=f"{done} of {progress['total']} decided · {progress['labelled']} labelled · "
                     f"{progress['ties']} ties · {progress['skipped']} skipped")
    share, judged, _ = charts.gold_agreement(view.dataset(run_dir))
    ui.metric(st, "labels agreeing with the hidden gold", share, "{:.0%}")
    if share is not None:
        st.caption(f"You agreed with the hidden gold annotator on {share:.0%} of your {judged} labels that have a "
                   "right answer (the chart below counts the same pairs).")
    pair = preferences.next_unlabeled(run_dir)
    if pair is None:
        st.success("Every pair has a decision." + (" Train a reward model on them on the Reward model page."
                                                   if progress["labelled"] >= view.MIN_SET_PAIRS else ""))
    else:
        show_pair(run_dir, pair, progress)
    show_dataset(run_dir)
    ui.next_step("preferences", run_dir, {"state": "done"})


def show_pair(run_dir, pair, progress):
    st.markdown(f"**Prompt:** {pair['prompt']}")
    a_col, b_col = st.columns(2)
    a_col.markdown("**A**")
    a_col.info(pair["prompt"] + " " + view.shown_response(pair["a"]))  # … after a response cut by the limit
    b_col.markdown("**B**")
    b_col.info(pair["prompt"] + " " + view.shown_response(pair["b"]))
    buttons = st.columns(4)
    for col, (choice, label) in zip(buttons, [("a", "A is better"), ("b", "B is better"), ("tie", "Tie"),
                                              ("skip", "Skip")]):
        col.button(label, key=f"label/{choice}", width="stretch", type="primary" if choice in "ab" else "secondary",
                   on_click=record, args=(run_dir, pair["id"], choice))
    if st.session_state.get("label_message"):
        st.warning(st.session_state.pop("label_message"))
