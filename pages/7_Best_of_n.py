"""Best-of-n: no training at all. Sample n responses, keep the reward model's favourite; see gold, proxy and KL."""

import streamlit as st

from core import precision
from core.config import ConfigError
from lab.views import bon as V
from lab import jobs, stages, ui
from lab.views import preferences as P

STAGE = "bon"
st.title(stages.title_of(STAGE))
st.markdown("The simplest way to use a reward model: sample n responses from the base model and keep the one it "
            "scores highest. No weights change, yet the kept responses form a new policy, whose distance from the "
            "base model has a closed-form upper bound (Beirami et al. 2024):")
st.latex(r"\mathrm{KL}(\pi_{\text{best-of-}n}\,\|\,\pi_{\text{base}}) \le \log n - \frac{n-1}{n}")
st.caption("The bound is tight when the base model rarely draws the same response twice, and loose when it often "
           "does (short or repetitive responses). Each run also estimates the KL itself from its kept responses: "
           "their probability under the base model and their score's rank among the prompt's samples.")
root = ui.runs_root()

# ----------------------------------------------------------------------------- start
st.subheader("Start a run")
bases, rewards = ui.model_options(P.base_choices(root), "base"), ui.model_options(P.reward_choices(root), "reward")
c1, c2, c3, c4 = st.columns(4)
base_label = c1.selectbox("Base model", list(bases), key="bon/policy",
                          index=ui.preselect(bases, "base")) if bases else None
reward_label = c2.selectbox("Reward model", list(rewards), key="bon/reward",
                            index=ui.preselect(rewards, "reward")) if rewards else None
ui.about_reward_model(rewards.get(reward_label))
n_text = c3.text_input("n (increasing, comma-separated)", "1,2,4,8,16,32", key="bon/n")
prompts = c4.number_input("Evaluation prompts", min_value=1, max_value=1024, value=64, key="bon/prompts")
if st.button("Start best-of-n", type="primary", icon=":material/play_arrow:", key="bon/start"):
    if base_label is None or reward_label is None:
        st.error("Choose a base model and a reward model first.")
    else:
        try:
            cfg = V.bon_config(bases[base_label], rewards[reward_label], n_text, int(prompts))
        except ConfigError as e:
            st.error(f"Not started: {ui.plain(e)}")
        else:
            ui.start_job(STAGE, cfg, parents={"policy": cfg.policy, "reward": cfg.reward})

# ----------------------------------------------------------------------------- the run
st.subheader("Run")
run_dir = ui.run_picker(STAGE)
if run_dir is None:
    st.info("No best-of-n run yet: start one above.")
    st.stop()
live = ui.is_active(jobs.status(run_dir))


@st.fragment(run_every=ui.live_every() if live else None)
def show_run(run_dir):
    status = ui.status_badge(run_dir)
    ui.stop_button(run_dir, status, key="stop/bon")
    st.caption(precision.caption(run_dir))
    df = ui.metrics_frame(run_dir)
    ui.chart(V.bon_chart(df), V.CAPTIONS["bon"], key="bon_chart")
    st.dataframe(V.bon_table(df), hide_index=True, width="stretch")
    if live and not ui.is_active(status):
        st.rerun()


show_run(run_dir)
samples = V.run_samples(run_dir)
if samples:
    st.markdown("**One prompt, all its samples**: the reward model's favourite among the first n is the kept one.")
    i = st.selectbox("Prompt", range(len(samples)), format_func=lambda k: samples[k]["prompt"], key="bon/sample")
    st.dataframe(V.samples_table(samples[i]), hide_index=True, width="stretch",
                 column_config={"response": st.column_config.TextColumn(width="large")})
ui.next_step(STAGE, run_dir, jobs.status(run_dir))
