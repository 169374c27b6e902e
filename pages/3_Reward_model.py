"""Reward model: train r_theta on preference pairs live, look at its scores, score your own text."""

from pathlib import Path

import streamlit as st

from lab import jobs, stages, ui
from lab.views import charts, wording
from lab.views import preferences as view

STAGE = "reward"
st.title(stages.title_of(STAGE))
st.markdown("A copy of the base model with a one-number head, trained so that the chosen response of "
            "each pair scores higher: loss = −log σ(r(chosen) − r(rejected)). It never sees the hidden "
            "gold utility; `rm/gold_agreement` checks how well it learned it anyway.")
preferences, reward = view.lazy_core()

# ----------------------------------------------------------------------------- start
st.subheader("Train a reward model")
prefs = view.preference_choices(ui.runs_root())
bases = ui.model_options(view.base_choices(ui.runs_root()), "base")
source = st.radio("Preference pairs from", ["a preference run", "a file (.jsonl / .csv)"], horizontal=True)
pref_spec = None
if source == "a preference run":
    if prefs:
        pref_spec = prefs[st.selectbox("Preference run", list(prefs), index=ui.preselect(prefs, "pairs"))]
    else:
        st.info("No finished preference run with labelled pairs yet: make one on the Preferences page, or "
                "upload a file.")
else:
    upload = st.file_uploader("Pairs as .jsonl or .csv with prompt, chosen, rejected", type=["jsonl", "json", "csv"],
                              max_upload_size=jobs.upload_limit_mb(), key="rm_upload")
    data = ui.read_upload(upload, "preference file")
    if data is not None:
        try:
            n = view.check_preference_file(data, upload.name)
        except preferences.PreferenceError as e:
            st.error(f"This file cannot be used: {ui.plain(e)}")
        else:
            pref_spec = str(ui.save_upload(data, Path(upload.name).suffix.lower(), upload.name))
            st.success(f"{n} valid pairs in {upload.name}")
c1, c2, c3, c4 = st.columns(4)
base_options = list(bases)
default_base = view.base_of_preferences(pref_spec) if pref_spec else None
index = next((i for i, k in enumerate(base_options) if bases[k] == default_base), 0)
base_label = c1.selectbox("Start from base model", base_options, index=index,
                          help="the base model the pairs were sampled from: its tokenizer must match") if bases else None
preset = c2.selectbox("Size preset", ["tiny", "small"], key="rm_preset")
defaults = reward.reward_preset(preset)
epochs = c3.number_input("Epochs", min_value=1, max_value=50, value=defaults.epochs, key=f"rm_epochs/{preset}")
lr = c4.number_input("Learning rate", min_value=1e-6, max_value=0.1, value=defaults.lr, format="%.5f",
                     key=f"rm_lr/{preset}")
if st.button("Start training", type="primary", icon=":material/play_arrow:", key="start_rm"):
    if pref_spec is None or base_label is None:
        st.error("Choose preference pairs and a base model first.")
    else:
        try:
            cfg = view.reward_config(preset, pref_spec, bases[base_label], epochs, lr)
        except ValueError as e:
            st.error(f"Not started: {ui.plain(e)}")
        else:
            ui.start_job(STAGE, cfg, parents={"preferences": pref_spec, "base": bases[base_label]})

# ----------------------------------------------------------------------------- the run, live
st.subheader("Run")
run_dir = ui.run_picker(STAGE)
if run_dir is None:
    st.info("No reward-model run yet: start one above.")
else:
    status_now = jobs.status(run_dir)
    live = ui.is_active(status_now)

    @st.fragment(run_every=ui.live_every() if live else None)
    def show_run(run_dir):
        status, df = ui.run_header(run_dir, live, key="stop/rm")
        if df is None:
            return
        m = st.columns(4)
        for col, (name, label) in zip(m, [("rm/loss", "loss (nats/pair)"), ("rm/accuracy", "train accuracy"),
                                          ("rm/val_accuracy", "validation accuracy"),
                                          ("rm/gold_agreement", "gold agreement")]):
            ui.metric(col, label, ui.last_value(df, name))
        checkpoint = run_dir / "checkpoint"
        for warning in (view.rm_warnings(str(checkpoint)) if (checkpoint / "lab.json").exists()
                        else view.rm_warnings_live(df, run_dir)):
            st.warning(f"Do not trust this reward model yet. {warning}", icon=":material/warning:")
        left, right = st.columns(2)
        with left:
            ui.chart(charts.rm_loss_chart(df), charts.CAPTIONS["rm_loss"], key="rm_loss")
        with right:
            ui.chart(charts.rm_accuracy_chart(df), charts.CAPTIONS["rm_accuracy"], key="rm_acc")
        if live and not ui.is_active(status):
            st.rerun()

    show_run(run_dir)
    scores = view.scores(run_dir)
    if scores:
        left, right = st.columns(2)
        with left:
            ui.chart(charts.score_histogram(scores["val"]["chosen"], scores["val"]["rejected"]),
                     charts.CAPTIONS["score_hist"], key="rm_hist")
        with right:
            wrong = view.disagreements(scores)
            st.markdown(f"**Where it disagrees with the gold** ({len(wrong)} fresh pairs ordered wrongly)")
            if not wrong.empty:
                st.dataframe(wrong, hide_index=True, height=300, width="stretch",
                             column_config={"A": st.column_config.TextColumn(width="medium"),
                                            "B": st.column_config.TextColumn(width="medium")})
            corr = (scores.get("base_samples") or {}).get("correlation")
            if corr is not None:
                st.caption(f"Correlation of RM score with gold utility on base-model samples: {corr:.2f}")
    ui.run_tools(run_dir, STAGE)

# ----------------------------------------------------------------------------- score your own text
st.subheader("Score your own text")
rms = ui.model_options(view.reward_choices(ui.runs_root()), "reward")
if not rms:
    st.info("No reward model yet (the shipped one is missing and no run has finished).")
else:
    c1, c2 = st.columns([2, 1])
    rm_label = c1.selectbox("Reward model", list(rms), key="score_rm")
    profile = c2.selectbox("Gold taste to compare with", list(preferences.PROFILES), key="score_profile")
    text = st.text_area("A review (prompt and response together)", "the acting was wonderful and the plot was "
                        "gripping, but the ending felt rushed.", key="score_text")
    if st.button("Score it", key="score_btn"):
        try:
            result = view.score_text(rms[rm_label], text, profile)
        except Exception as e:  # a broken checkpoint or empty text is a message, not a crash
            st.error(f"Could not score: {ui.plain(e)}")
        else:
            a, b = st.columns(2)
            a.metric("reward-model score (normalised)", f"{result['score']:+.3f}")
            b.metric("hidden gold utility", f"{result['gold']:+.3f}")

# ----------------------------------------------------------------------------- agreement across runs
with st.expander("How gold agreement depends on the number of pairs and on label noise"):
    summary = view.agreement_summary(ui.runs_root())
    ui.chart(charts.agreement_chart(summary), charts.CAPTIONS["agreement"], key="rm_agreement")
    if not summary.empty:
        st.dataframe(wording.shown_table(summary), hide_index=True, width="stretch")

if run_dir is not None:
    ui.next_step(STAGE, run_dir, status_now)
