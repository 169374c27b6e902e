"""PPO: fine-tune the policy against the reward model with a KL leash, and steer it while it runs.

The run trains in its own process (lab/jobs.py). This page only writes control.json (knobs, pause,
step, stop) and redraws from the run folder in fragments that refresh about once a second.
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import ConfigError
from core.runs import Run, RunError
from lab.views import charts
from lab.views import charts_ppo as C
from lab import jobs, live_panel, stages, ui
from lab.views import preferences as pref_view, ppo as V

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
    st.subheader("Start a run")
    policies = dict(V.policy_choices(root))
    rewards = dict(V.reward_choices(root))
    if not policies:
        st.error("No base model to start from: the shipped one (assets/small) is missing and you have no "
                 "finished pretraining run. Train one on the Pretrain page.")
    # arriving from a reward model's "next step": the policy is the base model that reward model was trained from
    came_from = jobs.run_path(root, st.query_params.get("from"))
    policy_index = next((i for i, spec in enumerate(policies.values())
                         if spec == pref_view.base_of_preferences(str(came_from))), 0) if came_from else 0
    policy_label = st.selectbox("policy (and frozen reference)", list(policies), key="ppo/policy",
                                index=policy_index) if policies else None
    if not rewards:
        st.error("No reward model: the shipped one (assets/reward) is missing and you have not trained one. "
                 "Train one on the Reward model page first.")
        reward_label = None
    else:
        if not any(spec != "reward" for spec in rewards.values()):
            st.info("You have not trained a reward model of your own yet, so the shipped one is used.")
        reward_label = st.selectbox("reward model (proxy)", list(rewards), key="ppo/reward",
                                    index=ui.preselect(rewards))
    mismatch = V.tokenizer_mismatch(policies[policy_label], rewards[reward_label]) \
        if policy_label and reward_label else None
    if mismatch:
        st.error(f"These two cannot be used together: {mismatch}")
    elif reward_label:
        for warning in pref_view.rm_warnings(rewards[reward_label]):
            st.warning(f"About this reward model: {warning}", icon=":material/warning:")
    i1, i2, i3 = st.columns(3)
    iterations = i1.number_input("iterations", 1, 2000, key="ppo/iterations")
    batch = i2.selectbox("batch (prompts)", list(V.BATCH_CHOICES), key="ppo/batch")
    resp_len = i3.number_input("response tokens", 4, 64, 16, key="ppo/response_length")
    if st.button("Start PPO", type="primary", icon=":material/play_arrow:", key="ppo/start",
                 disabled=not (policies and rewards) or bool(mismatch)):
        try:
            cfg, parents, control = V.ppo_job(
                policy=policies[policy_label], reward=rewards[reward_label], iterations=int(iterations),
                batch_size=int(batch), response_length=int(resp_len), sample_every=2, device="auto",
                threads=V.CPU_THREADS, **knobs)
        except ConfigError as e:
            st.error(f"Not started: {e}")
        else:
            if ui.start_job("ppo", cfg, parents=parents, control=control) is not None:
                st.rerun()
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
        ui.chart(C.reward_chart(df), C.CAPTIONS["reward"], key="ppo/chart/reward")
    with r1b:
        ui.chart(C.kl_chart(df, target_kl=target), C.CAPTIONS["kl"], key="ppo/chart/kl")
    r2a, r2b, r2c = st.columns(3)
    with r2a:
        ui.chart(C.ratio_histogram_from_metrics(df), C.CAPTIONS["ratio"], key="ppo/chart/ratio")
    with r2b:
        ui.chart(C.value_loss_chart(df), C.CAPTIONS["value_loss"], key="ppo/chart/value")
    with r2c:
        ui.chart(C.entropy_chart(df), C.CAPTIONS["entropy"], key="ppo/chart/entropy")


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
                 C.CAPTIONS["kl_heatmap"], key="ppo/chart/heatmap")


with gen_tab:
    generations(run_dir)

with own_tab:
    st.markdown("Type the start of a review: the base model and this run's policy each continue it (same "
                "seed, the run's temperature), and the run's reward model (proxy) and the hidden annotator "
                "(gold) score both.")
    with st.form("ppo/own_prompt", border=False):
        own = st.text_input("Your prompt", "the screen was", max_chars=300)
        asked = st.form_submit_button("Generate and score", icon=":material/edit:")
    if asked:
        try:
            st.session_state["ppo/own_rows"] = (run_dir.name, V.try_prompt(Run(run_dir), own))
        except (ValueError, RunError, OSError) as e:
            st.error(f"Not generated: {e}")
    shown_rows = st.session_state.get("ppo/own_rows")
    if shown_rows and shown_rows[0] == run_dir.name:
        st.dataframe(pd.DataFrame(shown_rows[1]), hide_index=True, width="stretch",
                     column_config=ui.GENERATION_COLUMNS)

with step_tab:
    st.markdown(V.STEP_TEXT)
    # A live run's newest iteration is held still until the student asks for a newer one (it would
    # change under their eyes every iteration); a finished run's, and a first read, load by themselves.
    if not live or st.session_state.get("ppo/inspect_run") != run_dir.name \
            or st.session_state.get("ppo/inspect") is None:
        st.session_state["ppo/inspect"] = V.read_inspect(Run(run_dir))
        st.session_state["ppo/inspect_run"] = run_dir.name
    if live and st.button("Load the newest iteration", icon=":material/refresh:", key="ppo/inspect_load"):
        st.session_state["ppo/inspect"] = V.read_inspect(Run(run_dir))
    data = st.session_state.get("ppo/inspect")
    rows = V.inspect_rows(data)
    if not rows:
        st.caption("No iteration recorded yet: wait for the first iteration, then press the button." if live else
                   f"This run {ui.FINAL_WORDS.get(status.get('state'), 'ended')} without recording an iteration "
                   "to show here.")
    else:
        j = st.radio("sample", range(len(rows)), horizontal=True, key="ppo/inspect_row",
                     format_func=lambda k: f"sample {k + 1}")
        j = min(j, len(rows) - 1)
        row = rows[j]
        head = f"Iteration {data.get('iteration', '?')}" + ("" if live else " (the last one this run recorded)")
        if row.get("prompt") is not None:
            head += f" · prompt: *{row['prompt']}*"
        st.markdown(head)
        if row.get("response") is not None:
            st.markdown(f"Response: **{row['response']}**")
        st.latex(r"r_t = -\lambda\,(\log\pi(a_t|s_t) - \log\pi_{ref}(a_t|s_t)) + [t = T]\, r_\theta(x, y)"
                 r"\qquad \hat A_t = \sum_l (\gamma\lambda_{GAE})^l \delta_{t+l},\ \ \delta_t = r_t + \gamma V_{t+1} - V_t")
        try:
            table = C.ppo_step_table(row)
            st.dataframe(table, hide_index=True, width="stretch")
            notes = ["▁ marks a token that starts a word."]
            if (table["ratio π_θ/π_old"] - 1.0).abs().max() < 1e-6:
                notes.append("Every ratio is 1 here: the policy had not moved on these tokens yet when they were "
                             "recorded; the histogram above counts every minibatch of the iteration.")
            st.caption(" ".join(notes))
            ui.chart(C.ppo_step_figure(row), C.CAPTIONS["step_tokens"], key="ppo/chart/step")
        except ValueError as e:
            st.error(f"This inspect.json cannot be shown: {e}")

with runs_tab:
    everything = ui.runs_of("ppo")
    if not everything:
        st.caption("No PPO runs yet.")
    else:
        ids = [r["run_id"] for r in everything]
        chosen = st.multiselect("Runs", ids, default=ids[:6], key="ppo/overopt_runs")
        frames = {}
        for run_id in chosen:
            cfg = Run(root / run_id).config
            label = f"{run_id} (λ={cfg.get('kl_coef')}{', adaptive' if cfg.get('adaptive_kl') else ''})"
            frames[label] = ui.metrics_frame(root / run_id)
        ui.chart(C.overoptimization_chart(frames), C.CAPTIONS["overoptimization"], key="ppo/chart/overopt")

ui.run_tools(run_dir, "ppo")
ui.next_step("ppo", run_dir, status)
