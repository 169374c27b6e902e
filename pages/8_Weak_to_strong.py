"""Weak-to-strong: can a strong model trained on a weak model's labels beat its supervisor?"""

from pathlib import Path

import streamlit as st

from core import precision
from core.config import W2S_TASKS, ConfigError, W2SConfig
from lab.views import charts_ppo as C
from lab import jobs, stages, ui
from lab.views import ppo as V
from lab.views import w2s as W

st.title(stages.title_of("w2s"))
st.markdown("Burns et al. (2023) ask how humans will supervise models smarter than themselves, and study it with "
            "a stand-in: a **weak** model labels data, a **strong** model learns from those labels only. If the "
            "student merely copied its supervisor it would land at the weak model's accuracy; the **ceiling** is the "
            "strong model trained on gold labels. The share of that gap the student recovers is the PGR:")
st.latex(r"\mathrm{PGR} = \frac{\mathrm{acc}(\text{student}) - \mathrm{acc}(\text{weak})}"
         r"{\mathrm{acc}(\text{ceiling}) - \mathrm{acc}(\text{weak})}")
st.markdown("The *confidence* student adds the paper's auxiliary loss: it is also trained towards its own "
            "hardened predictions, so it may overrule the supervisor where it is confident the supervisor is wrong.")
st.markdown("**The default task**: which of two texts does the gold annotator prefer, a review or a copy with a run "
            "of its words scrambled? The weak supervisor (2 layers, 16 wide) barely sees word order, so its labels "
            "are noisy; the strong model (4 layers, 128 wide) learned what English word order looks like in "
            "pretraining. That knowledge is what a student can use to clean up its supervisor's noise.")


with st.expander("Configure and start an experiment", expanded=not ui.runs_of("w2s")):
    c1, c2, c3 = st.columns(3)
    weak_options = ui.model_options(V.policy_choices(ui.runs_root(), shipped="weak"), "base")  # with val loss
    strong_options = ui.model_options(V.policy_choices(ui.runs_root(), shipped="small"), "base")
    with c1:
        tasks = list(W2S_TASKS)
        task = st.radio("task", tasks, index=tasks.index(W2SConfig().task), horizontal=True, key="w2s/task",
                        help="preference: which of two close texts (one edit apart) the gold annotator prefers — "
                             "the reward-modelling task; classify: is this review positive? (On classify the weak "
                             "model is as good as the strong one or better, so there is no gap to recover.)")
        edit_names = {"scramble": "scrambled words", "repeat": "repeated sentence", "flip": "flipped sentiment word"}
        edits = st.multiselect("edits (preference pairs)", list(edit_names), default=W2SConfig().edit_kinds(),
                               format_func=edit_names.get, key="w2s/edits", disabled=task != "preference",
                               help="how the second text of a pair is made. Scrambled word order is what the strong "
                                    "model's pretraining knows and the weak one barely sees; on flipped words and "
                                    "repeated sentences the small model is no better than the weak one, so adding "
                                    "them shrinks the gap - try it and watch the per-edit table.")
        preset = st.radio("size", ["tiny", "default"], index=1, horizontal=True, key="w2s/preset",
                          format_func=lambda p: {"tiny": "tiny (seconds, noisy)", "default": "default (minutes)"}[p])
    with c2:
        weak_label = st.selectbox("weak supervisor", list(weak_options), key="w2s/weak") if weak_options else None
        strong_label = st.selectbox("strong student", list(strong_options), key="w2s/strong") if strong_options else None
    with c3:
        seeds = st.number_input("seeds", 1, 10, 2 if preset == "tiny" else 3, key="w2s/seeds",
                                help="the experiment is repeated with this many seeds; bars show mean ± std")
        alpha = st.slider("confidence weight α (final)", 0.0, 1.0, 0.75, step=0.05, key="w2s/alpha",
                          help="0 = the confidence student is plain cross-entropy; the paper uses 0.75")
    if not weak_options or not strong_options:
        st.error("The shipped weak and small models are missing and you have no pretraining runs: "
                 "train a base model on the Pretrain page first.")
    elif st.button("Start weak-to-strong", type="primary", icon=":material/play_arrow:", key="w2s/start"):
        try:
            cfg = V.make_w2s_config(preset, task=task, edits=",".join(edits), weak_model=weak_options[weak_label],
                                    strong_model=strong_options[strong_label], seeds=int(seeds),
                                    alpha_max=float(alpha), device="auto", threads=V.CPU_THREADS)
        except ConfigError as e:
            st.error(f"Not started: {ui.plain(e)}")
        else:
            if ui.start_job("w2s", cfg, parents={"weak": cfg.weak_model, "strong": cfg.strong_model}) is not None:
                st.rerun()

run_dir = ui.run_picker("w2s", label="Experiment shown on this page")
if run_dir is None:
    st.info("No weak-to-strong experiment yet: configure one above.")
    st.stop()
status = jobs.status(run_dir)
drawn = ui.view_state(status)


@st.fragment(run_every=ui.live_every() if ui.is_active(status) else None)
def progress(run_dir: Path, drawn: tuple) -> None:
    """While the experiment runs: its status, the losses and the newest seed's accuracies."""
    if not run_dir.is_dir():
        st.warning(f"The folder of run {run_dir.name} was deleted; pick another run or start a new one.")
        return
    if W.read_results(run_dir)[0] is not None:
        st.rerun()  # the final results arrived: draw the whole page once (bars, examples); no fragment then
    status = ui.status_badge(run_dir)
    ui.follow_state(drawn, status)
    ui.stop_button(run_dir, status, key="w2s/stop")
    df = ui.metrics_frame(run_dir)
    ui.progress_line(run_dir, status, df)
    if ui.nothing_recorded(status, df):
        return
    accs = {k: ui.last_value(df, f"w2s/{k}_acc") for k in ("weak", "xent", "confidence", "ceiling")}
    if any(v is not None for v in accs.values()):
        ui.chart(C.w2s_chart({k: v for k, v in accs.items() if v is not None}),
                 C.CAPTIONS["w2s"] + " (Newest seed so far; the final bars average the seeds.)",
                 key="w2s/chart/bars_live")
    ui.chart(C.w2s_loss_chart(df), C.CAPTIONS["w2s_loss"], key="w2s/chart/loss")


results, unreadable = W.read_results(run_dir)
if unreadable:
    st.error(unreadable)
if results is None:
    progress(run_dir, drawn)
else:
    ui.status_badge(run_dir)
    students = results.get("students", {})
    m = st.columns(4)
    m[0].metric("weak supervisor", f"{100 * results['weak_acc']:.1f}%")
    for col, name in zip(m[1:3], ("xent", "confidence")):
        s = students.get(name, {})
        if s.get("acc") is not None:
            col.metric(f"student ({name})", f"{100 * s['acc']:.1f}%",
                       None if s.get("pgr") is None else f"PGR {s['pgr']:.2f} ± {s.get('pgr_std') or 0:.2f}",
                       delta_color="off", delta_arrow="off",
                       help="mean over seeds of the per-seed PGR, ± its standard deviation")
    m[3].metric("strong ceiling", f"{100 * results['ceiling_acc']:.1f}%")
    ui.chart(C.w2s_chart_from_results(results), C.CAPTIONS["w2s"], key="w2s/chart/bars")
    st.caption(W.summary_caption(results))
    st.caption(precision.caption(run_dir))
    if results.get("gap") is not None and results["gap"] < 0.02:
        st.warning("The ceiling is barely above the weak model here, so PGR divides by a tiny gap and is noisy.")
    if (table := W.edit_table(results)) is not None:
        st.subheader("Where is the gap? Test accuracy by edit")
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={n: st.column_config.NumberColumn(format="percent") for n in W.MODELS})
        st.caption("A student can only recover a gap where the ceiling beats the supervisor *and* the supervisor's "
                   "labels carry some signal (better than a coin flip) for the student to clean up.")
    if (copies := W.copy_table(results)) is not None:
        st.subheader("Did the student copy its supervisor's mistakes?")
        st.caption(f"Counts are summed over all {len(results.get('seeds', [])) or 1} seed(s) (each seed tests on its "
                   f"own {results.get('n', {}).get('test')} examples); agreement is the mean over seeds.")
        st.dataframe(copies, hide_index=True, width="stretch",
                     column_config={"agreement with the supervisor (mean)": st.column_config.NumberColumn(format="%.3f")})
    st.subheader("Examples from the test set (first seed, confidence student)")
    if caption := W.first_seed_caption(results):
        st.caption(caption)
    for column, kind, title in zip(st.columns(2), ("corrected", "copied"), (
            "**Corrected**: the supervisor was wrong, the student got it right",
            "**Copied**: the supervisor was wrong and the student made the same mistake")):
        with column:
            st.markdown(title)
            if not results.get("examples", {}).get(kind):
                st.caption("none in this run")
            for ex in results.get("examples", {}).get(kind, []):
                with st.container(border=True):
                    st.markdown(W.example_text(ex, results.get("task")))

ui.run_tools(run_dir, "w2s")
ui.next_step("w2s", run_dir, status)
