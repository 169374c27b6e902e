"""PPO: fine-tune the policy against the reward model with a KL leash, and steer it while it runs.

The run trains in its own process (lab/jobs.py). This page only writes control.json (knobs, pause,
step, stop) and redraws from the run folder in fragments that refresh about once a second.
"""

from pathlib import Path

import streamlit as st

from core.runs import Run
from lab import live_panel, ppo_page, stages, ui
from lab.views import charts
from lab.views import charts_ppo as C
from lab.views import ppo as V

st.title(stages.title_of("ppo"))
st.markdown("The policy (a copy of the base model) samples responses, the reward model scores them, and PPO "
            "pushes up what scored well — minus λ times the KL from the base model, so the policy cannot "
            "drift into text the reward model never saw. The gold line is the hidden annotator: what a person "
            "would have said about the same responses.")

root = ui.runs_root()
run_dir = ui.run_picker("ppo", label="PPO run shown on this page")
panel = live_panel.open_panel("ppo", run_dir, defaults=V.make_ppo_config())
live, run, status = panel.live, panel.run, panel.status
EXTRA = dict(zip(V.link_settings(), ("ppo/iterations", "ppo/batch")))  # the link carries them besides the knobs
st.session_state.setdefault("ppo/iterations", V.PAGE_ITERATIONS)
st.session_state.setdefault("ppo/batch", 16)
live_panel.take_link(panel, EXTRA)

knob_col, start_col = st.columns([3, 2])
with knob_col:
    knobs = live_panel.knobs(panel)
with start_col:
    ppo_page.start_section(root, knobs)
    live_panel.share_link(panel, EXTRA)

if run is None:
    st.info("No PPO run yet. Start one above, or use the quick start on the Home page.")
    st.stop()
live_panel.buttons(panel)


# ----------------------------------------------------------------------------- live charts

@st.fragment(run_every=ui.live_every() if live else None)
def live_charts(run_dir: Path, drawn: tuple) -> None:
    status, df = live_panel.follow("ppo", run_dir, drawn)  # state, progress; a redraw when the run changes
    if status is None or ui.nothing_recorded(status, df, "iteration"):
        return
    m = st.columns(6)
    for col, (label, key, fmt) in zip(m, [("iteration", "step", "{:.0f}"), ("proxy score", "objective/scores", "{:.3f}"),
                                          ("gold utility", "objective/gold", "{:.3f}"),
                                          ("KL (nats)", "objective/kl", "{:.2f}"), ("λ", "params/kl_coef", "{:.3g}"),
                                          ("ε", "params/clip_eps", "{:.2g}")]):
        value = ui.last_value(df, key)
        col.metric(label, "–" if value is None else fmt.format(value))
    target = ui.last_value(df, "params/target_kl") if ui.last_value(df, "params/adaptive_kl") else None
    r1a, r1b = st.columns(2)
    with r1a:
        ui.chart(C.reward_chart(df), C.CAPTIONS["reward"], key="ppo/chart/reward", run_id=run_dir.name)
    with r1b:
        ui.chart(C.kl_chart(df, target_kl=target), C.CAPTIONS["kl"], key="ppo/chart/kl", run_id=run_dir.name)
    r2a, r2b, r2c = st.columns(3)
    with r2a:
        ui.chart(C.ratio_histogram_from_metrics(df), C.CAPTIONS["ratio"], key="ppo/chart/ratio", run_id=run_dir.name)
    with r2b:
        ui.chart(C.value_loss_chart(df), C.CAPTIONS["value_loss"], key="ppo/chart/value", run_id=run_dir.name)
    with r2c:
        ui.chart(C.entropy_chart(df), C.CAPTIONS["entropy"], key="ppo/chart/entropy", run_id=run_dir.name)


live_charts(run_dir, panel.view())


# ----------------------------------------------------------------------------- generations, one step, across runs

gen_tab, own_tab, step_tab, runs_tab = st.tabs(["Generations: base vs policy", "Your own prompt",
                                                "One PPO step, slowly", "Over-optimisation across runs"])


@st.fragment(run_every=ui.live_every() if live else None)
def generations(run_dir: Path) -> None:
    if not run_dir.is_dir():
        return
    iteration, pairs = V.side_by_side(Run(run_dir).samples())
    if not pairs:
        st.caption("The base model's responses to the evaluation prompts appear once the run has started.")
        return
    st.markdown(f"Same prompts, base model vs the policy at iteration **{iteration if iteration is not None else '–'}**"
                " (the newest sample). Scores: proxy = reward model, gold = the hidden annotator.")
    samples = Run(run_dir).samples()
    table = charts.side_by_side({"policy": [r for r in samples if r.get("kind") == "base"
                                            or r.get("iteration") == iteration]}, text_key="response")
    st.dataframe(table, hide_index=True, width="stretch", column_config=ui.GENERATION_COLUMNS)
    with_tokens = [p for p in pairs if p["policy"] and p["policy"].get("tokens")]
    if with_tokens:
        i = st.selectbox("Per-token KL of the policy's response to", range(len(with_tokens)),
                         format_func=lambda j: with_tokens[j]["prompt"], key="ppo/heatmap_prompt")
        row = with_tokens[i]["policy"]
        ui.chart(C.kl_heatmap(row["tokens"], row["kl"], title=f"Per-token KL, iteration {iteration}"),
                 C.CAPTIONS["kl_heatmap"], key="ppo/chart/heatmap", run_id=run_dir.name)


with gen_tab:
    generations(run_dir)

with own_tab:
    ppo_page.own_prompt_section(run_dir)
with step_tab:
    ppo_page.step_section(run_dir, live, status)
with runs_tab:
    ppo_page.runs_section(root)

ui.run_tools(run_dir, "ppo")
ui.next_step("ppo", run_dir, status)
