"""DPO: learn from the preference pairs directly, without a reward model or RL, and judge it like PPO."""

from pathlib import Path

import streamlit as st

from core.config import dpo_preset
from lab.views import dpo as V
from lab import jobs, live_panel, stages, ui
from lab.views import preferences as P

STAGE = "dpo"
st.title(stages.title_of(STAGE))
st.markdown("No reward model, no sampling while training: the policy itself is trained on the preference pairs "
            "with the reward model's own loss, written with the *implicit reward* β·log(π/π_ref) "
            "(Rafailov et al. 2023). Every few steps the policy samples on the evaluation prompts, and the hidden "
            "gold annotator, the proxy reward model and the KL to the reference judge it, as for PPO.")
st.latex(r"\mathcal{L}_{DPO} = -\log\sigma\Big(\beta\Big[\log\frac{\pi(y_c\mid x)}{\pi_{ref}(y_c\mid x)}"
         r" - \log\frac{\pi(y_r\mid x)}{\pi_{ref}(y_r\mid x)}\Big]\Big)")
root = ui.runs_root()
run_dir = ui.run_picker(STAGE, label="DPO run shown on this page")
panel = live_panel.open_panel(STAGE, run_dir, defaults=dpo_preset("small"))
live_panel.take_link(panel)

knob_col, start_col = st.columns([2, 3])
with knob_col:
    knobs = live_panel.knobs(panel, columns=2)
with start_col:
    st.subheader("Start a run")
    prefs = P.preference_choices(root)
    source = st.radio("Preference pairs from", ["a preference run", "a file (.jsonl / .csv)"], horizontal=True,
                      key="dpo/source")
    pref_spec = None
    if source == "a preference run":
        if prefs:
            pref_spec = prefs[st.selectbox("Preference run", list(prefs), key="dpo/prefs",
                                           index=ui.preselect(prefs, "pairs"))]
        else:
            st.info("No preference run with labelled pairs yet: make one on the Preferences page (the simulated "
                    "annotator labels 2000 pairs in a minute), or upload a file.")
    else:
        upload = st.file_uploader("Pairs as .jsonl or .csv with prompt, chosen, rejected",
                                  type=["jsonl", "json", "csv"], max_upload_size=jobs.upload_limit_mb(), key="dpo/upload")
        data = ui.read_upload(upload, "preference file")
        if data is not None:
            try:
                n = P.check_preference_file(data, upload.name)
            except ValueError as e:
                st.error(f"This file cannot be used: {ui.plain(e)}")
            else:
                pref_spec = str(ui.save_upload(data, Path(upload.name).suffix.lower(), upload.name))
                st.success(f"{n} valid pairs in {upload.name}")
    bases, rewards = ui.model_options(P.base_choices(root), "base"), ui.model_options(P.reward_choices(root), "reward")
    c1, c2 = st.columns(2)
    base_label = c1.selectbox("Policy (and reference)", list(bases), key="dpo/policy",
                              index=ui.preselect(bases, "base")) if bases else None
    reward_label = c2.selectbox("Reward model (judge only)", list(rewards), key="dpo/reward",
                                index=ui.preselect(rewards, "reward")) if rewards else None
    loss_type = c1.radio("Loss", ["sigmoid", "ipo"], horizontal=True, key="dpo/loss",
                         help="sigmoid: DPO; ipo: IPO's squared loss (Azar et al. 2023), which stops at a margin of "
                              "1/(2β)")
    epochs = c2.number_input("Epochs", min_value=1, max_value=20, value=1, key="dpo/epochs")
    if st.button("Start DPO", type="primary", icon=":material/play_arrow:", key="dpo/start"):
        if pref_spec is None or base_label is None or reward_label is None:
            st.error("Choose preference pairs, a policy and a reward model first.")
        else:
            try:
                cfg = V.dpo_config(pref_spec, bases[base_label], rewards[reward_label], loss_type=loss_type,
                                   epochs=int(epochs), **knobs)
            except ValueError as e:  # ConfigError or PreferenceError, naming the field
                st.error(f"Not started: {ui.plain(e)}")
            else:
                if ui.start_job(STAGE, cfg, parents={"preferences": pref_spec, "policy": cfg.policy,
                                                     "reward": cfg.reward}, control=V.initial_control(cfg)):
                    st.rerun()
    live_panel.share_link(panel)

if run_dir is None:
    st.info("No DPO run yet: start one above.")
    st.stop()
live_panel.buttons(panel)


@st.fragment(run_every=ui.live_every() if panel.live else None)
def show_run(run_dir: Path, drawn: tuple) -> None:
    status, df = live_panel.follow(STAGE, run_dir, drawn)  # state, progress; a redraw when the run changes
    if status is None or ui.nothing_recorded(status, df, "step"):
        return
    m = st.columns(4)
    for col, (name, label) in zip(m, [("rewards/accuracies", "train accuracy"), ("rewards/margins", "margin"),
                                      ("objective/gold", "gold (last evaluation)"),
                                      ("objective/kl", "KL (last evaluation)")]):
        ui.metric(col, label, ui.last_value(df, name))
    left, right = st.columns(2)
    with left:
        ui.chart(V.logps_chart(df), V.CAPTIONS["logps"], key="dpo_logps", run_id=run_dir.name)
    with right:
        ui.chart(V.margin_chart(df), V.CAPTIONS["margin"], key="dpo_margin", run_id=run_dir.name)
    ui.chart(V.eval_chart(df), V.CAPTIONS["eval"], key="dpo_eval", run_id=run_dir.name)
    st.dataframe(V.eval_table(df), hide_index=True, width="stretch")


show_run(run_dir, panel.view())
st.markdown("**The base model and the policy on the same evaluation prompts**")
st.dataframe(V.samples_table(V.run_samples(run_dir)), hide_index=True, width="stretch")
ui.next_step(STAGE, run_dir, panel.status)
