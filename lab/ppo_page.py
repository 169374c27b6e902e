"""The PPO page's sections that are more than a call: starting a run, your own prompt, one PPO step slowly, and
over-optimisation across runs. Streamlit code (like lab/ui.py and lab/live_panel.py); the logic they show is in
lab/views/ppo.py and lab/views/charts_ppo.py, tested without a browser. The page (pages/4_PPO.py) lays them out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import ConfigError
from core.runs import Run, RunError
from lab import jobs, ui
from lab.views import charts_ppo as C
from lab.views import compare
from lab.views import models as models_view
from lab.views import ppo as V
from lab.views import preferences as pref_view


def start_section(root: Path, knobs: dict) -> None:
    """Choose a policy and a reward model (each with the figure that decides the choice) and start a run with the
    panel's knobs."""
    st.subheader("Start a run")
    policies = ui.model_options(V.policy_choices(root), "base")
    rewards = ui.model_options(V.reward_choices(root), "reward")
    if not policies:
        st.error("No base model to start from: the shipped one (assets/small) is missing and you have no "
                 "finished pretraining run. Train one on the Pretrain page.")
    # arriving from a reward model's "next step": the policy is the base model that reward model was trained from,
    # unless that reward model is one its page warns against: then neither is chosen (lab/views/models.py)
    reward_index, passed_over = models_view.preferred(rewards, "reward", st.query_params.get("from"))
    came_from = jobs.run_path(root, st.query_params.get("from")) if rewards and not passed_over else None
    policy_index = next((i for i, spec in enumerate(policies.values())
                         if spec == pref_view.base_of_preferences(str(came_from))), 0) if came_from \
        else ui.preselect(policies, "base")  # never a tiny-preset model by default
    policy_label = st.selectbox("policy (and frozen reference)", list(policies), key="ppo/policy",
                                index=policy_index) if policies else None
    if not rewards:
        st.error("No reward model: the shipped one (assets/reward) is missing and you have not trained one. "
                 "Train one on the Reward model page first.")
        reward_label = None
    else:
        if not any(spec != "reward" for spec in rewards.values()):
            st.info("You have not trained a reward model of your own yet, so the shipped one is used.")
        reward_label = st.selectbox("reward model (proxy)", list(rewards), key="ppo/reward", index=reward_index)
        if passed_over:
            st.caption(passed_over)
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
            st.error(f"Not started: {ui.plain(e)}")
        else:
            if ui.start_job("ppo", cfg, parents=parents, control=control) is not None:
                st.rerun()


def own_prompt_section(run_dir: Path) -> None:
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
            st.error(f"Not generated: {ui.plain(e)}")
    shown_rows = st.session_state.get("ppo/own_rows")
    if shown_rows and shown_rows[0] == run_dir.name:
        st.dataframe(pd.DataFrame(shown_rows[1]), hide_index=True, width="stretch",
                     column_config=ui.GENERATION_COLUMNS)


def step_section(run_dir: Path, live: bool, status: dict) -> None:
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
                 r"\qquad \hat A^{raw}_t = \sum_l (\gamma\lambda_{GAE})^l \delta_{t+l},\ \ "
                 r"\delta_t = r_t + \gamma V_{t+1} - V_t")
        st.latex(r"R_t = \hat A^{raw}_t + V_t \qquad \hat A_t = \frac{\hat A^{raw}_t - \mathrm{mean}}{\mathrm{std}}"
                 r"\ \text{(over the batch's tokens)}")
        if data.get("gamma") is not None and data.get("lam") is not None:
            st.caption(f"This iteration: γ = {data['gamma']:g}, λ_GAE = {data['lam']:g}; V after the last token "
                       "is 0, so the last token's δ is its reward minus its value.")
        try:
            table = C.ppo_step_table(row)
            st.dataframe(table, hide_index=True, width="stretch")
            notes = ["▁ marks a token that starts a word."]
            if (table["ratio π_θ/π_old"] - 1.0).abs().max() < 1e-6:
                notes.append("Every ratio is 1 here: the policy had not moved on these tokens yet when they were "
                             "recorded; the histogram above counts every minibatch of the iteration.")
            st.caption(" ".join(notes))
            ui.chart(C.ppo_step_figure(row), C.CAPTIONS["step_tokens"], key="ppo/chart/step", run_id=run_dir.name)
        except ValueError as e:
            st.error(f"This inspect.json cannot be shown: {ui.plain(e)}")


def runs_section(root: Path) -> None:
    everything = ui.runs_of("ppo")
    if not everything:
        st.caption("No PPO runs yet.")
    else:
        ids = [r["run_id"] for r in everything]
        chosen = st.multiselect("Runs", ids, default=ids[:6], key="ppo/overopt_runs")
        # labelled by what each run really used (core/settings.py): "λ 0.05→0.3" when λ was turned mid-run
        labels = compare.legend_labels([root / run_id for run_id in chosen])
        shown = {run_id: run_id if labels[run_id] == run_id else f"{run_id} ({labels[run_id]})" for run_id in chosen}
        frames = {shown[run_id]: ui.metrics_frame(root / run_id) for run_id in chosen}
        ui.chart(C.overoptimization_chart(frames), C.CAPTIONS["overoptimization"], key="ppo/chart/overopt")
