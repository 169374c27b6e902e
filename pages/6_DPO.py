"""DPO: learn from the preference pairs directly, without a reward model or RL, and judge it like PPO."""

from pathlib import Path

import streamlit as st

from core import precision
from core.config import ConfigError
from core.runs import Run, RunError
from lab import dpo_view as V
from lab import jobs, stages, ui
from lab import pref_view as P

STAGE = "dpo"
LR_CHOICES = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3]
st.title(stages.title_of(STAGE))
st.markdown("No reward model, no sampling while training: the policy itself is trained on the preference pairs "
            "with the reward model's own loss, written with the *implicit reward* β·log(π/π_ref) "
            "(Rafailov et al. 2023). Every few steps the policy samples on the evaluation prompts, and the hidden "
            "gold annotator, the proxy reward model and the KL to the reference judge it, as for PPO.")
st.latex(r"\mathcal{L}_{DPO} = -\log\sigma\Big(\beta\Big[\log\frac{\pi(y_c\mid x)}{\pi_{ref}(y_c\mid x)}"
         r" - \log\frac{\pi(y_r\mid x)}{\pi_{ref}(y_r\mid x)}\Big]\Big)")
if ui.stage_missing(STAGE):
    st.stop()
root = ui.runs_root()

# ----------------------------------------------------------------------------- start
st.subheader("Start a run")
prefs = P.preference_choices(root)
source = st.radio("Preference pairs from", ["a preference run", "a file (.jsonl / .csv)"], horizontal=True,
                  key="dpo/source")
pref_spec = None
if source == "a preference run":
    if prefs:
        pref_spec = prefs[st.selectbox("Preference run", list(prefs), key="dpo/prefs")]
    else:
        st.info("No preference run with labelled pairs yet: make one on the Preferences page (the simulated "
                "annotator labels 2000 pairs in a minute), or upload a file.")
else:
    upload = st.file_uploader("Pairs as .jsonl or .csv with prompt, chosen, rejected", type=["jsonl", "json", "csv"],
                              max_upload_size=ui.upload_limit_mb(), key="dpo/upload")
    data = ui.read_upload(upload, "preference file")
    if data is not None:
        try:
            n = P.check_preference_file(data, upload.name)
        except ValueError as e:
            st.error(f"This file cannot be used: {e}")
        else:
            pref_spec = str(ui.save_upload(data, Path(upload.name).suffix.lower()))
            st.success(f"{n} valid pairs in {upload.name}")
bases, rewards = P.base_choices(root), P.reward_choices(root)
c1, c2, c3, c4, c5 = st.columns(5)
base_label = c1.selectbox("Policy (and reference)", list(bases), key="dpo/policy") if bases else None
reward_label = c2.selectbox("Reward model (judge only)", list(rewards), key="dpo/reward") if rewards else None
beta = c3.number_input("β", min_value=0.001, max_value=5.0, value=0.1, step=0.05, format="%.3f", key="dpo/beta0")
loss_type = c4.radio("Loss", ["sigmoid", "ipo"], horizontal=True, key="dpo/loss",
                     help="sigmoid: DPO; ipo: IPO's squared loss (Azar et al. 2023), which stops at a margin of 1/(2β)")
epochs = c5.number_input("Epochs", min_value=1, max_value=20, value=1, key="dpo/epochs")
if st.button("Start DPO", type="primary", icon=":material/play_arrow:", key="dpo/start"):
    if pref_spec is None or base_label is None or reward_label is None:
        st.error("Choose preference pairs, a policy and a reward model first.")
    else:
        try:
            cfg = V.dpo_config(pref_spec, bases[base_label], rewards[reward_label], float(beta), loss_type, int(epochs))
        except ValueError as e:  # ConfigError or PreferenceError, naming the field
            st.error(f"Not started: {e}")
        else:
            ui.start_job(STAGE, cfg, parents={"preferences": pref_spec, "policy": cfg.policy, "reward": cfg.reward},
                         control=V.initial_control(cfg))

# ----------------------------------------------------------------------------- the run, live
st.subheader("Run")
run_dir = ui.run_picker(STAGE)
if run_dir is None:
    st.info("No DPO run yet: start one above.")
    st.stop()
run = Run(run_dir)
live = ui.is_active(jobs.status(run_dir))
if live:
    knobs = V.current_knobs(run)
    k1, k2, k3 = st.columns([2, 2, 3])
    new_beta = k1.number_input("β (live)", min_value=0.001, max_value=5.0, value=float(knobs["beta"]), step=0.05,
                               format="%.3f", key=f"dpo/beta/{run_dir.name}")
    lr = float(knobs["lr"])
    new_lr = k2.select_slider("learning rate (live)", sorted(set(LR_CHOICES) | {lr}), value=lr,
                              format_func=lambda v: f"{v:g}", key=f"dpo/lr/{run_dir.name}")
    allowed = ui.may_control(run_dir)[0]  # another student's run: read-only (lab/jobs.may_control)
    with k3:
        b1, b2, b3 = st.columns(3)
        if b1.button("Apply", key="dpo/apply", disabled=not allowed):
            try:
                V.set_knobs(run, actor=ui.owner(), teacher=ui.is_teacher(), beta=float(new_beta), lr=float(new_lr))
                st.toast("Sent: applies before the next step")
            except (ConfigError, RunError, OSError, jobs.JobError) as e:
                st.error(f"Not applied: {e}")
        paused = bool(run.read_control().get("paused"))
        if b2.button("Resume" if paused else "Pause", key="dpo/pause", disabled=not allowed):
            (V.resume if paused else V.pause)(run, actor=ui.owner(), teacher=ui.is_teacher())
            st.rerun()
        if b3.button("One step", key="dpo/step", disabled=not paused or not allowed):
            V.step_once(run, actor=ui.owner(), teacher=ui.is_teacher())


@st.fragment(run_every=ui.live_every() if live else None)
def show_run(run_dir):
    status = ui.status_badge(run_dir)
    ui.stop_button(run_dir, status, key="stop/dpo")
    st.caption(precision.caption(run_dir))
    ui.live_note(live)
    df = ui.metrics_frame(run_dir)
    done = V.progress(df, run_dir)
    if done:
        st.progress(min(1.0, done[0] / max(1, done[1])), text=f"step {done[0]} of {done[1]}")
    m = st.columns(4)
    for col, (name, label) in zip(m, [("rewards/accuracies", "train accuracy"), ("rewards/margins", "margin"),
                                      ("objective/gold", "gold (last evaluation)"),
                                      ("objective/kl", "KL (last evaluation)")]):
        ui.metric(col, label, ui.last_value(df, name))
    left, right = st.columns(2)
    with left:
        ui.chart(V.logps_chart(df), V.CAPTIONS["logps"], key="dpo_logps")
    with right:
        ui.chart(V.margin_chart(df), V.CAPTIONS["margin"], key="dpo_margin")
    ui.chart(V.eval_chart(df), V.CAPTIONS["eval"], key="dpo_eval")
    st.dataframe(V.eval_table(df), hide_index=True, width="stretch")
    if live and not ui.is_active(status):
        st.rerun()


show_run(run_dir)
st.markdown("**The base model and the policy on the same evaluation prompts**")
st.dataframe(V.samples_table(V.run_samples(run_dir)), hide_index=True, width="stretch")
ui.next_step(STAGE, run_dir, jobs.status(run_dir))
