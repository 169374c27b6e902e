"""GRPO and RLOO: PPO without a critic. Each prompt is answered G times; a response's advantage is its score
against the others in its group. The run trains in its own process (lab/jobs.py); this page writes control.json
and redraws from the run folder. Figures and logic: lab/grpo_view.py (and PPO's charts, lab/charts_ppo.py).
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import precision
from core.config import ConfigError
from core.runs import Run, RunError
from lab import charts_ppo as C
from lab import grpo_view as G
from lab import jobs, ppo_view as PV, stages, ui

st.title(stages.title_of("grpo"))
st.markdown("PPO needs a value model to say how good a response was *expected* to be. GRPO (DeepSeek) and RLOO "
            "drop it: each prompt is answered **G** times and a response is judged against its own group. "
            "**GRPO**: (score − group mean) / group std. **RLOO**: score − mean of the *other* responses. "
            "The update is PPO's clipped one with that advantage on every token; β keeps the policy near the "
            "base model, as a term in the loss (GRPO) or subtracted from the reward (PPO's way).")

if ui.stage_missing("grpo"):
    st.stop()

root = ui.runs_root()
LR_CHOICES = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3]
DEFAULTS = G.grpo_job()[0]
WIDGET_OF = {k: f"grpo/{k}" for k in G.KNOBS}

run_dir = ui.run_picker("grpo", label="GRPO/RLOO run shown on this page")
status = jobs.status(run_dir) if run_dir is not None else {}
live = run_dir is not None and ui.is_active(status)
run = Run(run_dir) if run_dir is not None else None


def widget_knobs() -> dict:
    return {k: float(st.session_state[key]) for k, key in WIDGET_OF.items() if key in st.session_state}


def send_changed_knobs(run_dir: Path) -> tuple[str, str] | None:
    """Write every knob whose widget differs from what this session last sent (see the PPO page for why this
    runs in the page and in the live fragment)."""
    sent = st.session_state.get("grpo/sent", {})
    changed = {k: v for k, v in widget_knobs().items() if sent.get(k) != v}
    if not changed or not ui.is_active(jobs.status(run_dir)) or not ui.may_control(run_dir)[0]:
        return None  # another student's run: read-only (lab/jobs.may_control)
    st.session_state["grpo/sent"] = {**sent, **changed}
    try:
        G.set_knobs(Run(run_dir), actor=ui.owner(), teacher=ui.is_teacher(), **changed)
    except (ConfigError, RunError, OSError, jobs.JobError) as e:
        return "error", f"Not applied: {e}"
    return "success", ", ".join(f"{k} = {v:g}" for k, v in changed.items()) + " sent: applies at the next iteration."


shown = run_dir.name if run_dir is not None else ""
if st.session_state.get("grpo/synced") != shown or any(k not in st.session_state for k in WIDGET_OF.values()):
    knobs = G.current_knobs(run) if run is not None else {}
    for k, key in WIDGET_OF.items():
        st.session_state[key] = float(knobs.get(k, getattr(DEFAULTS, k)))
    st.session_state["grpo/lr"] = min(LR_CHOICES, key=lambda c: abs(c - st.session_state["grpo/lr"]))
    st.session_state["grpo/synced"] = shown
    st.session_state["grpo/sent"] = widget_knobs()

knob_col, start_col = st.columns([3, 2])
with knob_col:
    st.subheader("Knobs" + (" — live" if live else ""))
    if run is not None:
        st.caption(f"{run_dir.name}: {G.describe(run.config)}" + (" — a change applies at its next iteration."
                                                                   if live else ""))
    a, b = st.columns(2)
    a.slider("β (KL to the base model)", 0.0, 0.5, step=0.01, key="grpo/beta",
             help="0: nothing pulls the policy back toward the base model")
    a.slider("clip ε", 0.05, 0.5, step=0.05, key="grpo/clip_eps",
             help="the policy ratio is clipped to [1−ε, 1+ε], as in PPO")
    b.select_slider("learning rate", LR_CHOICES, key="grpo/lr", format_func=lambda v: f"{v:g}")
    b.slider("temperature", 0.3, 1.5, step=0.1, key="grpo/temperature")
    if live and (sent := send_changed_knobs(run_dir)):
        getattr(st, sent[0])(sent[1])

with start_col:
    st.subheader("Start a run")
    policies, rewards = dict(PV.policy_choices(root)), dict(PV.reward_choices(root))
    if not (policies and rewards):
        st.error("A base model and a reward model are needed: train them on the Pretrain and Reward model pages.")
    advantage = st.radio("method", ["grpo", "rloo"], horizontal=True, key="grpo/advantage",
                         format_func=str.upper)
    kl_in = st.radio("β acts", ["loss", "reward"], horizontal=True, key="grpo/kl_in",
                     format_func=lambda v: {"loss": "in the loss (GRPO)", "reward": "in the reward (PPO)"}[v])
    policy_label = st.selectbox("policy (and frozen reference)", list(policies), key="grpo/policy")
    reward_label = st.selectbox("reward model (proxy)", list(rewards), key="grpo/reward")
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
                response_length=16, sample_every=2, device="auto", threads=G.CPU_THREADS, **widget_knobs())
        except ConfigError as e:
            st.error(f"Not started: {e}")
        else:
            new = ui.start_job("grpo", cfg, parents=parents, control=control)
            if new is not None:
                st.session_state["grpo/synced"] = new.run_id
                st.rerun()

if run is None:
    st.info("No GRPO or RLOO run yet. Start one above.")
    st.stop()

b1, b2, b3, b4, _ = st.columns([1, 1, 1.4, 1, 3])
for col, label, icon, action in ((b1, "Pause", "pause", PV.pause), (b2, "Resume", "play_arrow", PV.resume),
                                 (b3, "Step one iteration", "skip_next", PV.step_once), (b4, "Stop", "stop", PV.stop)):
    if col.button(label, icon=f":material/{icon}:", disabled=not live or not ui.may_control(run_dir)[0],
                  key=f"grpo/{label}"):
        action(run, actor=ui.owner(), teacher=ui.is_teacher())
        st.toast(f"{label} requested: applies before the next iteration")


@st.fragment(run_every=ui.live_every())
def live_charts(run_dir: Path) -> None:
    if not run_dir.is_dir():
        st.warning(f"The folder of run {run_dir.name} was deleted; pick another run or start a new one.")
        return
    if sent := send_changed_knobs(run_dir):
        st.toast(sent[1])
    ui.status_badge(run_dir)
    st.caption(precision.caption(run_dir))
    df = ui.metrics_frame(run_dir)
    m = st.columns(6)
    for col, (label, key, fmt) in zip(m, [("iteration", "step", "{:.0f}"), ("proxy score", "objective/scores", "{:.3f}"),
                                          ("gold utility", "objective/gold", "{:.3f}"),
                                          ("KL (nats)", "objective/kl", "{:.2f}"), ("β", "params/beta", "{:.3g}"),
                                          ("groups all equal", "group/all_equal_frac", "{:.0%}")]):
        ui.metric(col, label, ui.last_value(df, key), fmt)
    r1a, r1b = st.columns(2)
    with r1a:
        ui.chart(G.reward_chart(df), C.CAPTIONS["reward"], key="grpo/chart/reward")
    with r1b:
        ui.chart(G.kl_chart(df), G.CAPTIONS["kl"], key="grpo/chart/kl")
    r2a, r2b, r2c = st.columns(3)
    with r2a:
        ui.chart(G.ratio_histogram(df), C.CAPTIONS["ratio"], key="grpo/chart/ratio")
    with r2b:
        ui.chart(G.group_stats_chart(df), G.CAPTIONS["group_stats"], key="grpo/chart/groups")
    with r2c:
        ui.chart(G.entropy_chart(df), C.CAPTIONS["entropy"], key="grpo/chart/entropy")
    group = G.newest_group(Run(run_dir).samples())
    ui.chart(G.group_figure(group), G.CAPTIONS["group"], key="grpo/chart/group")
    if group:
        st.dataframe(G.group_table(group), hide_index=True, width="stretch")
    refused = [r for r in PV.control_log(Run(run_dir)) if r.get("control/rejected")]
    if refused:
        st.warning(f"The run refused a live change: {refused[-1]['control/rejected']}")


live_charts(run_dir)

st.subheader("Generations: base vs policy")
iteration, pairs = PV.side_by_side(Run(run_dir).samples())
if pairs:
    st.dataframe(pd.DataFrame([{"prompt": p["prompt"], "base": (p["base"] or {}).get("response"),
                                f"policy (iteration {iteration})": (p["policy"] or {}).get("response"),
                                "base gold": (p["base"] or {}).get("gold"),
                                "policy gold": (p["policy"] or {}).get("gold")} for p in pairs]),
                 hide_index=True, width="stretch")
else:
    st.caption("The base model's responses to the evaluation prompts appear once the run has started.")
