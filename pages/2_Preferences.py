"""Preferences: label pairs yourself, or let the simulated annotator label them; the dataset as a table."""

from pathlib import Path

import streamlit as st

from lab import jobs, preferences_page, stages, ui
from lab.views import charts, wording
from lab.views import preferences as view

STAGE = "preferences"
st.title(stages.title_of(STAGE))
st.markdown("The base model writes K responses to the same prompt; every two of them form a pair and "
            "someone says which is better. That someone is you, or a simulated annotator with a hidden "
            "taste (its *gold* utility) and a noise level τ: P(A preferred) = σ((u(A) − u(B)) / τ).")
preferences, _ = view.lazy_core()

# ----------------------------------------------------------------------------- start
st.subheader("Make a preference dataset")
bases = view.base_choices(ui.runs_root())
if not bases:
    st.warning("No base model: the shipped one is missing and no pretraining run has finished. "
               "Train one on the Pretrain page first.")
    st.stop()
# a radio, not a segmented control: clicking the chosen option again must not leave no mode at all
mode = st.radio("Who labels", view.MODES, horizontal=True, key="pref_mode")
c1, c2, c3 = st.columns(3)
bases = ui.model_options(bases, "base")
base_label = c1.selectbox("Base model (writes the responses)", list(bases), index=ui.preselect(bases, "base"))
preset = c2.selectbox("Size preset", ["tiny", "small"], index=0,
                      help="tiny: 120 pairs, short responses (seconds); small: 2000 pairs (minutes)")
profile = c3.selectbox("Hidden taste of the gold annotator", list(preferences.PROFILES),
                       help="\n".join(f"{k}: {v}" for k, v in preferences.PROFILES.items()))
tau, pairs, import_file = 0.1, None, None
if mode == "simulated annotator":
    c4, c5 = st.columns(2)
    tau = c4.select_slider("Annotator noise τ", options=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0], value=0.1,
                           help="small = a careful annotator; large = close to coin flips")
    pairs = c5.number_input("Pairs", min_value=10, max_value=20000, key=f"pairs/{preset}",
                            value=preferences.preference_preset(preset).pairs)
elif mode == "label pairs myself":
    pairs = st.number_input("Pairs to prepare for you", min_value=4, max_value=2000, value=60,
                            help=f"a reward model needs {view.MIN_SET_PAIRS} labelled pairs before its numbers mean "
                                 "anything (ties and skips do not count); fewer show the mechanics only")
elif mode == "import a file":
    upload = st.file_uploader("Pairs as .jsonl or .csv with prompt, chosen, rejected", type=["jsonl", "json", "csv"],
                              max_upload_size=jobs.upload_limit_mb())
    data = ui.read_upload(upload, "preference file")
    if data is not None:
        try:
            n = view.check_preference_file(data, upload.name)
        except preferences.PreferenceError as e:
            st.error(f"This file cannot be used: {ui.plain(e)}")
        else:
            import_file = str(ui.save_upload(data, Path(upload.name).suffix.lower(), upload.name))
            st.success(f"{n} valid pairs in {upload.name}")
if st.button("Start", type="primary", icon=":material/play_arrow:", key="start_pref"):
    if mode == "import a file" and import_file is None:
        st.error("Upload a valid preference file first.")
    else:
        try:
            cfg = view.preference_config(preset, bases[base_label], mode, profile, tau, pairs, import_file)
        except (ValueError, preferences.PreferenceError) as e:
            st.error(f"Not started: {ui.plain(e)}")
        else:
            ui.start_job(STAGE, cfg, parents={"base": bases[base_label]})

# ----------------------------------------------------------------------------- the run
st.subheader("Run")
run_dir = ui.run_picker(STAGE)
if run_dir is None:
    st.info("No preference run yet: start one above.")
    st.stop()
status_now = jobs.status(run_dir)
live = ui.is_active(status_now)


def show_dataset(run_dir):
    st.subheader("The dataset")
    table = view.dataset(run_dir)
    if human:  # only a person's labels have an A/B position and ties/skips to count
        left, right = st.columns(2)
        with left:
            ui.chart(charts.label_counts_chart(view.label_table(run_dir)), charts.CAPTIONS["labels"], key="pref_labels")
    else:
        right = st.container()
    with right:
        ui.chart(charts.gold_gap_chart(table), charts.CAPTIONS["gold_gap"], key="pref_gap")
    st.dataframe(wording.shown_table(table), hide_index=True, width="stretch", height=300)  # no "None" cells
    if not table.empty:
        st.download_button("Download as JSONL (TRL's preference format)", view.download_jsonl(run_dir),
                           file_name=f"{run_dir.name}.jsonl", mime="application/json")


human = view.is_human_run(run_dir)


@st.fragment(run_every=ui.live_every() if live else None)
def show_progress(run_dir):
    status, df = ui.run_header(run_dir, live, key="stop/pref", precision=False)
    if df is None:
        return
    m1, m2 = st.columns(2)
    m1.metric("pairs made" if not human else "pairs prepared for you", int(ui.last_value(df, "pref/pairs") or 0))
    if human:  # the labelling fragment below redraws with every click; a number here would go stale
        m2.caption("Your agreement with the hidden gold is counted under the pair you are labelling.")
    else:
        share, judged, _ = charts.gold_agreement(view.dataset(run_dir))  # the chart's rule and numbers
        ui.metric(m2, "labels agreeing with the hidden gold", share, "{:.0%}")
        if judged:
            m2.caption(f"of {judged} labelled pairs with a right answer (pairs the gold rates equal are left out)")
    if not human:  # a human run's dataset redraws with each label, in the labelling fragment
        show_dataset(run_dir)
    if live and not ui.is_active(status):
        st.rerun()


show_progress(run_dir)


labelling = human and jobs.status(run_dir)["state"] == "done"
if human:
    st.subheader("Label pairs")
    if labelling:  # its fragment draws the next step, which changes with every label
        preferences_page.labelling(run_dir, show_dataset)
    else:
        st.caption("The pairs appear here when the base model has written them.")

ui.run_tools(run_dir, STAGE)
if not labelling:
    ui.next_step(STAGE, run_dir, status_now)
