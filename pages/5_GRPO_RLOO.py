"""GRPO and RLOO: PPO without a critic. Each prompt is answered G times; a response's advantage is its score
against the others in its group. The run trains in its own process (lab/jobs.py); this page writes control.json
and redraws from the run folder. Figures and logic: lab/views/grpo.py (and PPO's charts, lab/views/charts_ppo.py).
"""

from pathlib import Path

import streamlit as st

from core.config import ConfigError
from core.runs import Run
from lab.views import charts_ppo as C
from lab.views import grpo as G
from lab import live_panel, stages, ui
from lab.views import ppo as PV

st.title(stages.title_of("grpo"))
st.markdown("PPO needs a value model to say how good a response was *expected* to be. GRPO (DeepSeek) and RLOO "
            "drop it: each prompt is answered **G** times and a response is judged against its own group. "
            "**GRPO**: (score − group mean) / group std. **RLOO**: score − mean of the *other* responses. "
            "The update is PPO's clipped one with that advantage on every token; β keeps the policy near the "
            "base model, as a term in the loss (GRPO) or subtracted from the reward (PPO's way).")

root = ui.runs_root()
run_dir = ui.run_picker("grpo", label="GRPO/RLOO run shown on this page")
panel = live_panel.open_panel("grpo", run_dir, defaults=G.grpo_job()[0])
live_panel.take_link(panel)

knob_col, start_col = st.columns([3, 2])
with knob_col:
    knobs = live_panel.knobs(panel, columns=2)
    if run_dir is not None:
        st.caption(f"{run_dir.name}: {G.describe({**panel.run.config, **panel.knobs})}")  # β in force
with start_col:
    st.subheader("Start a run")
    policies = ui.model_options(PV.policy_choices(root), "base")  # each label with its val loss / gold agreement
    rewards = ui.model_options(PV.reward_choices(root), "reward")
    if not (policies and rewards):
        st.error("A base model and a reward model are needed: train them on the Pretrain and Reward model pages.")
    advantage = st.radio("method", ["grpo", "rloo"], horizontal=True, key="grpo/advantage",
                         format_func=str.upper)
    kl_in = st.radio("β acts", ["loss", "reward"], horizontal=True, key="grpo/kl_in",
                     format_func=lambda v: {"loss": "in the loss (GRPO)", "reward": "in the reward (PPO)"}[v])
    policy_label = st.selectbox("policy (and frozen reference)", list(policies), key="grpo/policy",
                                index=ui.preselect(policies, "base"))
    reward_label = st.selectbox("reward model (proxy)", list(rewards), key="grpo/reward",
                                index=ui.preselect(rewards, "reward"))
    ui.about_reward_model(rewards.get(reward_label))
    i1, i2, i3 = st.columns(3)
    group = i1.selectbox("group size G", [2, 4, 8, 16], index=2, key="grpo/group")
    prompts = i2.selectbox("prompts / iteration", [2, 4, 8, 16], index=1, key="grpo/prompts")
    iterations = i3.number_input("iterations", 1, 2000, 100, key="grpo/iterations")
    if st.button(f"Start {advantage.upper()}", type="primary", icon=":material/play_arrow:", key="grpo/start",
                 disabled=not (policies and rewards)):
        try:
            cfg, parents, control = G.grpo_job(
                advantage=advantage, kl_in=kl_in, policy=policies[policy_label], reward=rewards[reward_label],
                group_size=int(group), batch_size=int(group) * int(prompts), iterations=int(iterations),
                response_length=16, sample_every=2, device="auto", threads=G.CPU_THREADS, **knobs)
        except ConfigError as e:
            st.error(f"Not started: {ui.plain(e)}")
        else:
            if ui.start_job("grpo", cfg, parents=parents, control=control) is not None:
                st.rerun()
    live_panel.share_link(panel)

if run_dir is None:
    st.info("No GRPO or RLOO run yet. Start one above.")
    st.stop()
live_panel.buttons(panel)


@st.fragment(run_every=ui.live_every() if panel.live else None)
def live_charts(run_dir: Path, drawn: tuple) -> None:
    status, df = live_panel.follow("grpo", run_dir, drawn)  # state, progress; a redraw when the run changes
    if status is None or ui.nothing_recorded(status, df, "iteration"):
        return
    m = st.columns(6)
    for col, (label, key, fmt) in zip(m, [("iteration", "step", "{:.0f}"), ("proxy score", "objective/scores", "{:.3f}"),
                                          ("gold utility", "objective/gold", "{:.3f}"),
                                          ("KL (nats)", "objective/kl", "{:.2f}"), ("β", "params/beta", "{:.3g}"),
                                          ("groups all equal", "group/all_equal_frac", "{:.0%}")]):
        ui.metric(col, label, ui.last_value(df, key), fmt)
    r1a, r1b = st.columns(2)
    with r1a:
        ui.chart(G.reward_chart(df), C.CAPTIONS["reward"], key="grpo/chart/reward", run_id=run_dir.name)
    with r1b:
        ui.chart(G.kl_chart(df), G.CAPTIONS["kl"], key="grpo/chart/kl", run_id=run_dir.name)
    r2a, r2b, r2c = st.columns(3)
    with r2a:
        ui.chart(G.ratio_histogram(df), C.CAPTIONS["ratio"], key="grpo/chart/ratio", run_id=run_dir.name)
    with r2b:
        ui.chart(G.group_stats_chart(df), G.CAPTIONS["group_stats"], key="grpo/chart/groups", run_id=run_dir.name)
    with r2c:
        ui.chart(G.entropy_chart(df), C.CAPTIONS["entropy"], key="grpo/chart/entropy", run_id=run_dir.name)
    group = G.newest_group(Run(run_dir).samples())
    ui.chart(G.group_figure(group), G.CAPTIONS["group"], key="grpo/chart/group", run_id=run_dir.name)
    if group:
        st.dataframe(G.group_table(group), hide_index=True, width="stretch")


live_charts(run_dir, panel.view())

st.subheader("Generations: base vs policy")
iteration, pairs = PV.side_by_side(Run(run_dir).samples())
if pairs:
    st.dataframe(G.generations_table(iteration, pairs), hide_index=True, width="stretch")  # no "None" cells
else:
    st.caption("The base model's responses to the evaluation prompts appear once the run has started.")
