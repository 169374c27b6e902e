"""Compare runs: overlay curves, read generations side by side, and see over-optimisation across runs."""

import streamlit as st

from lab import jobs, stages, tables, ui
from lab.views import charts, charts_ppo, runs as runs_view
from lab.views import compare as view
from lab.views.tables import file_name

st.title(stages.BY_TITLE["Compare runs"].page_title)
st.markdown("Pick runs (e.g. PPO with λ = 0 and λ = 0.1) and put them on the same axes. The table of "
            "settings that differ says what caused the difference: a knob turned while a run trained is shown "
            "with each value and the iteration it took effect, marked *changed mid-run*.")

options = view.choices(ui.runs_root())
if not options:
    st.info("No runs yet: start some on the stage pages, then come back to compare them.")
    st.stop()
picked = st.multiselect("Runs", list(options), format_func=options.get, key="compare_runs",
                        default=view.default_selection(ui.runs_root(), first=st.query_params.get("from")))
if not picked:
    st.info("Pick at least one run.")
    st.stop()
run_dirs = [ui.runs_root() / run_id for run_id in picked]
run_ids = [d.name for d in run_dirs]  # in the download's file name: which runs the table compares
live = any(ui.is_active(jobs.status(d)) for d in run_dirs if d.is_dir())
names = {d.name: runs_view.read_meta(d)["name"] for d in run_dirs}
stages_shown = view.stages(run_dirs)


@st.fragment(run_every=ui.live_every() if live else None)
def curves(run_dirs):
    # redrawn with the curves: a knob turned in a live run shows in the table and the legend at once
    diff = view.config_diff(run_dirs)
    st.markdown("**Settings that differ**")
    if diff.empty:
        st.caption("The chosen runs have the same settings, and none changed one while it trained.")
    else:
        tables.table(diff, "compare/diff", csv=file_name("settings", *run_ids))
    labels = view.legend_labels(run_dirs, names=names)  # what differs (λ = 0 vs λ 0.05→0.3), not run ids
    frames = {labels[name]: df for name, df in view.metrics(run_dirs).items()}
    metrics = charts.common_metrics(frames)
    if not metrics:
        st.caption("The chosen runs have not logged any metric yet.")
        return
    default = next((m for m in ("objective/scores", "rm/val_accuracy", "lm/val_loss", "lm/loss") if m in metrics),
                   metrics[0])
    metric = st.selectbox("Metric", metrics, index=metrics.index(default), key="compare_metric")
    ui.chart(charts.compare_chart(frames, metric, x_title=view.x_title(stages_shown)), charts.CAPTIONS["compare"],
             key="compare_chart")
    tables.download(view.curves_table(frames, metric), "compare/curves", file_name(metric, *run_ids),
                    label="Download these curves (CSV)")
    if "ppo" in stages_shown:
        ui.chart(charts_ppo.overoptimization_chart(frames), charts_ppo.CAPTIONS["overoptimization"],
                 key="compare_overopt")


curves(run_dirs)

st.subheader("Generations side by side")
labels = view.legend_labels(run_dirs, names=names)
samples = {labels[name]: rows for name, rows in view.samples(run_dirs).items()}
table = charts.side_by_side(samples, text_key="response" if "ppo" in stages_shown else "text")
if table.empty:
    st.caption("No generations in the chosen runs yet (pretraining and PPO runs write them).")
else:
    st.caption("For each prompt: the base model's response, then each run's newest, with the reward model's "
               "(proxy) and the hidden annotator's (gold) score where the run recorded them.")
    tables.table(view.shown_generations(table), "compare/generations", csv=file_name("generations", *run_ids),
                 text="response", labels=("model", "prompt"), column_config=ui.GENERATION_COLUMNS)
