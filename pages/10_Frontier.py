"""The reward-KL frontier: which method buys the most gold per nat of KL, and where each over-optimises."""

import streamlit as st

from core.config import FRONTIER_METHODS, ConfigError, frontier_preset
from lab.views import frontier as V
from lab import frontier_runs, stages, tables, ui

st.title(stages.title_of("frontier"))
st.markdown("Any method can push the **proxy** reward up by exploiting the reward model. The question that "
            "decides between them is how much **gold** (the hidden annotator's utility) each buys for a given "
            "distance from the base model, measured as √KL (Gao et al. 2022). Every policy below — each method, "
            "each setting of its KL knob, each checkpoint along the way — is scored by the *same* evaluation: "
            "the same prompts, one sample each, KL summed over tokens against the same base model.")

with st.expander("Start a sweep", expanded=not ui.runs_of("frontier")):
    available = list(FRONTIER_METHODS)
    c1, c2, c3 = st.columns(3)
    preset = c1.radio("size", ["tiny", "default"], index=0, horizontal=True, key="frontier/preset",
                      format_func={"tiny": "tiny (seconds, a toy)", "default": "default (≤ 20 min on 2 cores)"}.get)
    methods = c2.multiselect("methods", available, default=available, key="frontier/methods",
                             format_func=V.METHOD_NAMES.get,
                             help="each method sweeps its KL knob")
    seeds = c3.number_input("seeds", 1, 5, frontier_preset(preset).seeds, key="frontier/seeds")
    missing = [V.METHOD_NAMES[m] for m in FRONTIER_METHODS if m not in available]
    if missing:
        st.caption(f"Not available yet in this version: {', '.join(missing)}.")
    if st.button("Start sweep", type="primary", icon=":material/play_arrow:", key="frontier/start"):
        try:
            cfg = frontier_preset(preset, methods=methods, seeds=int(seeds)).validate()
        except ConfigError as e:
            st.error(f"Not started: {ui.plain(e)}")
        else:
            if ui.start_job("frontier", cfg, parents={"policy": cfg.policy, "reward": cfg.reward}) is not None:
                st.rerun()

run_dir = ui.run_picker("frontier", label="Sweep shown on this page")
if run_dir is None:
    st.info("No sweep yet: start one above (tiny takes seconds) or run `rlhf-lab frontier --out runs/frontier`.")
    st.stop()
status = ui.status_badge(run_dir)
ui.stop_button(run_dir, status, key="frontier/stop")
live = ui.is_active(status)


@st.fragment(run_every=ui.live_every() if live else None)
def results(run_dir):
    df, fits, samples = V.load(run_dir)
    if df.empty:
        st.caption("No policy evaluated yet.")
        return
    # the student's own runs, scored by this sweep's evaluation (cached in each run's folder)
    items, problem = frontier_runs.beside(run_dir, [r for r in ui.runs_of() if ui.mine(r)])
    own = V.own_points(items)
    for line in V.reading(df, fits):
        st.markdown(f"- {line}")
    ui.chart(V.frontier_figure(df, fits, "gold", own), V.CAPTIONS["gold"], key="frontier/gold")
    ui.chart(V.frontier_figure(df, fits, "proxy", own), V.CAPTIONS["proxy"], key="frontier/proxy")
    your_runs(run_dir, df, items, problem)
    st.subheader("Gao et al.'s fits")
    st.dataframe(V.fits_table(fits), hide_index=True, width="stretch")
    st.caption("Fitted to the gain over the base model. RL methods (and DPO): d(α − β·log d); best-of-n, with its "
               "analytic KL log n − (n−1)/n: d(α − β·d). A form that fits badly (low R²) is a finding too. R² reads "
               "— where it means nothing: too few points for two parameters, or below 0 (worse than a flat line).")
    bon_kl = V.bon_kl_table(df)
    if not bon_kl.empty:
        with st.expander("Best-of-n: the analytic KL against a sampled estimate"):
            st.dataframe(bon_kl, hide_index=True, width="stretch")
            st.caption("The analytic value is an upper bound on the KL (Beirami et al. 2024), tight when responses "
                       "rarely repeat, and is what the plots use; the estimate ranks each kept response's score among "
                       "a pool of base samples for its prompt, so it falls short once n nears the pool's size.")
    st.subheader("At KL ≈ k, each method's gold")
    st.dataframe(V.at_kl_table(df, V.default_ks(df)), hide_index=True, width="stretch")
    penalty = V.penalty_table(df)
    if not penalty.empty:
        st.subheader("Does the KL penalty move the frontier, or only where you stop on it?")
        st.dataframe(penalty, hide_index=True, width="stretch")
        st.caption("Each setting's gold gain along its own path at one √KL all of them reached (read off a straight "
                   "line between its evaluated checkpoints, which sits a little below a curved path). Similar gains: "
                   "the settings share one frontier and the penalty only decides how far along it training goes "
                   "(Gao et al.'s finding). A gain higher by more than the seeds' spread: the penalty moved it.")
    st.subheader("Generations at matched KL")
    ks = V.default_ks(df) or [0.0]
    if st.session_state.get("frontier/k", 0) >= len(ks):  # a live sweep's KL values change while it runs
        st.session_state["frontier/k"] = 0
    i = st.radio("KL", range(len(ks)), format_func=lambda i: f"≈ {ks[i]:g} nats", horizontal=True, key="frontier/k")
    tables.table(V.matched_samples(df, samples, ks[i]), "frontier/samples", text="response",
                 labels=("method", "setting", "prompt"))
    st.caption("For each method the policy whose KL is nearest the chosen value, on the same evaluation prompts "
               "as the base model's generations.")


def your_runs(run_dir, df, items, problem):
    st.subheader("Your runs on this frontier")
    if problem or not items:
        st.caption(problem or "No PPO, GRPO/RLOO, DPO or best-of-n run of yours yet. Once one has finished it can "
                   "be scored here by this sweep's evaluation and drawn as a ★ beside the sweep's policies.")
        return
    for line in V.own_lines(df, items):
        st.markdown(f"- {line}")
    tables.table(V.own_table(df, items), "frontier/own")
    pending = [i for i in items if i["status"] == frontier_runs.PENDING]
    if pending and st.button(f"Score {len(pending)} run(s) with this sweep's evaluation", key="frontier/score",
                             icon=":material/target:", help="each: one sample per evaluation prompt, seconds"):
        with st.spinner("Scoring on the sweep's prompts against its base and reward model…"):
            frontier_runs.score_pending(items, run_dir)
        st.rerun()
    st.caption("Each run's final checkpoint (best-of-n: its n values) scored exactly as the sweep scores its own "
               "policies: the same prompts, samples, KL to the same base model, gold and proxy. A run from another "
               "base or reward model is listed, not drawn: its KL or gold would mean something else.")
    tables.full_text(V.own_samples(items), "response", ("method", "scores", "prompt"), "Your runs' responses")


results(run_dir)
ui.live_note(live)
