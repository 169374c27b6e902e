"""Home: the pipeline at a glance, the formulas, what the student has, and a one-click quick start."""

import streamlit as st

from lab import ui
from lab.views import home as home_view

st.title("RLHF Lab")
st.markdown("Take a small GPT through every stage of RLHF, with real training on this machine, and watch "
            "each stage happen. Every run is a folder under the runs root; nothing here is simulated.")

st.subheader("The pipeline")
st.graphviz_chart(home_view.pipeline_dot(), width="stretch")
st.subheader("The two formulas to keep in mind")
reward_col, ratio_col = st.columns(2)
with reward_col:
    st.markdown("PPO maximises the reward model's score minus a KL penalty that keeps the policy near the "
                "base model (λ = `kl_coef`, the KL penalty is positive):")
    st.latex(r"r(x, y) \;=\; r_\theta(x, y) \;-\; \lambda\, r_{KL}")
    st.latex(r"r_{KL} = \sum_t \log \frac{\pi(y_t \mid x, y_{<t})}{\pi_{ref}(y_t \mid x, y_{<t})}")
with ratio_col:
    st.markdown("and it moves the policy only a little per update, by clipping the policy ratio:")
    st.latex(r"\rho_t = \frac{\pi_\theta(y_t \mid s_t)}{\pi_{\theta_{old}}(y_t \mid s_t)}")
    st.latex(r"L^{CLIP} = \mathbb{E}_t\big[\min(\rho_t A_t,\; \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\, A_t)\big]")

st.subheader("Quick start")
quick = home_view.quick_start_state()
if quick["available"]:
    st.markdown("One click starts PPO on the shipped base model and reward model, then opens the PPO page "
                "with its live reward curve.")
    if st.button("Quick start: PPO on the shipped models", type="primary", icon=":material/rocket_launch:"):
        run = ui.start_job_with(home_view.quick_start, stage="ppo")
        if run is not None:
            st.switch_page(str(ui.page_path("PPO")), query_params={"run": run.run_id})
else:
    st.info(quick["reason"])

st.subheader("What you have")
st.markdown("**Shipped checkpoints** (ready to use, no download)")
st.dataframe(home_view.shipped_table(), hide_index=True, width="stretch",
             column_config={"what": st.column_config.TextColumn(width="large")})
st.markdown(f"**Your runs** in `{ui.runs_root()}` (name, note or delete one on its stage page)")
runs = home_view.runs_table(ui.runs_root())
if runs.empty:
    st.caption("No runs yet: start one from a stage page, or with the quick start above.")
else:
    st.dataframe(runs, hide_index=True, width="stretch",
                 column_config={"note": st.column_config.TextColumn(width="medium")})

st.subheader("Stages")
for row in home_view.stage_rows():
    cols = st.columns([1, 4])
    with cols[0]:
        if row["page"] is not None:
            st.page_link(str(row["page"]), label=row["title"], icon=row["icon"])
        else:
            st.markdown(f"**{row['title']}**")
    cols[1].markdown(row["text"])
