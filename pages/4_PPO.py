"""PPO: fine-tune the policy against the reward model with a KL leash, and steer it while it runs.

The run trains in its own process (lab/jobs.py). This page only writes control.json (knobs, pause,
step, stop) and redraws from the run folder in fragments that refresh about once a second.
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import precision
from core.config import ConfigError
from core.runs import Run, RunError
from lab import charts
from lab import charts_ppo as C
from lab import classroom, jobs, pref_view, ppo_view as V, stages, ui
from lab import url_settings as U

st.title(stages.title_of("ppo"))
st.markdown("The policy (a copy of the base model) samples responses, the reward model scores them, and PPO "
            "pushes up what scored well — minus λ times the KL from the base model, so the policy cannot "
            "drift into text the reward model never saw. The gold line is the hidden annotator: what a person "
            "would have said about the same responses.")

if ui.stage_missing("ppo"):
    st.stop()

root = ui.runs_root()
LR_CHOICES = list(V.LR_CHOICES)
DEFAULTS = V.make_ppo_config().__dict__


# ----------------------------------------------------------------------------- which run

run_dir = ui.run_picker("ppo", label="PPO run shown on this page")
status = jobs.status(run_dir) if run_dir is not None else {}
live = run_dir is not None and ui.is_active(status)
run = Run(run_dir) if run_dir is not None else None
# whose run: only its owner (or the teacher) steers it; anyone else sees it read-only
allowed, why_not = ui.may_control(run_dir) if run_dir is not None else (True, "")
control_now = run.read_control() if run is not None else {}
drawn = ui.view_state(status, control_now)  # the live fragment redraws the page when this changes

# The knob widgets show the shown run's knobs: (re)read them when another run is shown, and when
# Streamlit has dropped the widgets' state (it does so for widgets of a page the student left).
WIDGET_OF = {"kl_coef": "ppo/kl_coef", "adaptive_kl": "ppo/kl_mode", "target_kl": "ppo/target_kl",
             "clip_eps": "ppo/clip_eps", "lr": "ppo/lr", "temperature": "ppo/temperature"}


def widget_knobs() -> dict:
    """The knob values the widgets show, in control.json's types."""
    out = {}
    for knob, key in WIDGET_OF.items():
        if key in st.session_state:
            value = st.session_state[key]
            out[knob] = value == "adaptive" if knob == "adaptive_kl" else float(value)
    return out


def send_changed_knobs(run_dir: Path) -> tuple[str, str] | None:
    """Write to control.json every knob whose widget differs from what this session last sent; the
    trainer applies it at its next iteration. Called by every run of the page *and* of the live
    fragment: a slider moved while the fragment redraws may reach the server in a fragment run, where
    an on_change callback can be skipped, and a lost last value is a knob that lies."""
    sent = st.session_state.get("ppo/sent", {})
    changed = {k: v for k, v in widget_knobs().items() if sent.get(k) != v}
    if not changed or not ui.is_active(jobs.status(run_dir)) or not ui.may_control(run_dir)[0]:
        return None
    sent.update(changed)  # a refused value too, so that it is not re-sent every second
    st.session_state["ppo/sent"] = sent
    try:
        V.set_knobs(Run(run_dir), actor=ui.owner(), teacher=ui.is_teacher(), **changed)
    except (ConfigError, RunError, OSError, jobs.JobError) as e:
        return "error", f"Not applied: {e}"
    said = ", ".join(f"{k} = {v:g}" if not isinstance(v, bool) else f"{k} = {v}" for k, v in changed.items())
    return "success", f"{said} sent to {run_dir.name}: it applies at the next iteration."


shown = run_dir.name if run_dir is not None else ""
if st.session_state.get("ppo/synced") != shown or any(k not in st.session_state for k in WIDGET_OF.values()):
    knobs = V.current_knobs(run) if run is not None else {k: DEFAULTS[k] for k in V.KNOBS}
    st.session_state["ppo/kl_coef"] = float(knobs.get("kl_coef", DEFAULTS["kl_coef"]))
    st.session_state["ppo/kl_mode"] = "adaptive" if knobs.get("adaptive_kl") else "fixed"
    st.session_state["ppo/target_kl"] = float(knobs.get("target_kl", DEFAULTS["target_kl"]))
    st.session_state["ppo/clip_eps"] = float(knobs.get("clip_eps", DEFAULTS["clip_eps"]))
    lr = float(knobs.get("lr", DEFAULTS["lr"]))
    st.session_state["ppo/lr"] = min(LR_CHOICES, key=lambda c: abs(c - lr))
    st.session_state["ppo/temperature"] = float(knobs.get("temperature", DEFAULTS["temperature"]))
    st.session_state["ppo/synced"] = shown
    st.session_state["ppo/sent"] = widget_knobs()

# Settings from the URL (a shared link) or the teacher's preset: applied to the widgets once per new link,
# never to a live run of this student's (that would steer it without a touch: the knobs show its values).
SCHEMA = V.url_schema()
URL_WIDGET = {"kl_coef": "ppo/kl_coef", "mode": "ppo/kl_mode", "clip_eps": "ppo/clip_eps", "lr": "ppo/lr",
              "temperature": "ppo/temperature", "iterations": "ppo/iterations", "batch": "ppo/batch"}
st.session_state.setdefault("ppo/iterations", V.PAGE_ITERATIONS)
st.session_state.setdefault("ppo/batch", 16)
query = st.query_params.to_dict()
url_key = tuple(sorted((k, v) for k, v in query.items() if k not in U.OTHER_KEYS))
incoming = st.session_state.pop("ppo/pending_settings", None)
if incoming is None and st.session_state.get("ppo/url_seen") != url_key and url_key:
    incoming = query
if incoming is not None:
    values, problems = U.parse(incoming, SCHEMA)
    st.session_state["ppo/url_notes"] = [f"From the link: {p}" for p in problems]
    if values and live and allowed:
        st.session_state["ppo/url_notes"].append(
            f"The link's settings were not applied: your run {run_dir.name} is live, and the knobs show its values.")
    else:
        for key, value in values.items():
            st.session_state[URL_WIDGET[key]] = value
        st.session_state["ppo/sent"] = widget_knobs()
for note in st.session_state.get("ppo/url_notes", []):
    st.warning(note, icon=":material/link:")


# ----------------------------------------------------------------------------- knobs and buttons

knob_col, start_col = st.columns([3, 2])
with knob_col:
    st.subheader("Knobs" + (" — live" if live else ""))
    if live and not allowed:
        st.caption(f"The run shown, {run_dir.name}, is read-only here ({why_not}): these knobs only set the next "
                   "run you start.")
    elif live:
        st.caption(f"The run {run_dir.name} is {status.get('state')}: a change applies at its next iteration and "
                   "is marked on the charts.")
    elif run is not None:
        st.caption(f"The run shown, {run_dir.name}, {ui.FINAL_WORDS.get(status.get('state'), 'is not running')}: "
                   "these are the settings of the next run you start (they were read from the run shown).")
    else:
        st.caption("Settings of the next run (they become live once it runs).")
    a, b, c = st.columns(3)
    with a:
        st.radio("λ mode", ["fixed", "adaptive"], key="ppo/kl_mode", horizontal=True,
                 help="adaptive: λ follows the KL towards the target (Ziegler et al. 2019)")
        st.slider("λ (kl_coef)", 0.0, 1.0, step=0.01, key="ppo/kl_coef",
                  help="reward = score − λ·KL. 0 lets the policy chase the reward model anywhere.")
        st.slider("target KL (nats per response)", 0.5, 20.0, step=0.5, key="ppo/target_kl",
                  disabled=st.session_state["ppo/kl_mode"] != "adaptive")
    with b:
        st.slider("clip ε", 0.05, 0.5, step=0.05, key="ppo/clip_eps",
                  help="the policy ratio is clipped to [1−ε, 1+ε] in the surrogate loss")
        st.select_slider("learning rate", LR_CHOICES, key="ppo/lr", format_func=lambda v: f"{v:g}")
    with c:
        st.slider("temperature", 0.3, 1.5, step=0.1, key="ppo/temperature",
                  help="sampling temperature of the rollouts")
    if live:
        sent_now = send_changed_knobs(run_dir)
        if sent_now:
            st.session_state["ppo/notice"] = sent_now

with start_col:
    st.subheader("Start a run")
    policies = dict(V.policy_choices(root))
    rewards = dict(V.reward_choices(root))
    if not policies:
        st.error("No base model to start from: the shipped one (assets/small) is missing and you have no "
                 "finished pretraining run. Train one on the Pretrain page.")
    # arriving from a reward model's "next step": the policy is the base model that reward model was trained from
    policy_index = next((i for i, spec in enumerate(policies.values())
                         if spec == pref_view.base_of_preferences(str(jobs.run_path(root, st.query_params.get("from"))))), 0) \
        if jobs.run_path(root, st.query_params.get("from")) is not None else 0
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
    clicked = st.button("Start PPO", type="primary", icon=":material/play_arrow:", key="ppo/start",
                        disabled=not (policies and rewards) or bool(mismatch))
    if clicked:
        try:
            cfg, parents, control = V.ppo_job(
                policy=policies[policy_label], reward=rewards[reward_label], iterations=int(iterations),
                batch_size=int(batch), response_length=int(resp_len), sample_every=2, device="auto",
                threads=V.CPU_THREADS,
                kl_coef=float(st.session_state["ppo/kl_coef"]),
                adaptive_kl=st.session_state["ppo/kl_mode"] == "adaptive",
                target_kl=float(st.session_state["ppo/target_kl"]), clip_eps=float(st.session_state["ppo/clip_eps"]),
                lr=float(st.session_state["ppo/lr"]), temperature=float(st.session_state["ppo/temperature"]))
        except ConfigError as e:
            st.error(f"Not started: {e}")
        else:
            new = ui.start_job("ppo", cfg, parents=parents, control=control)
            if new is not None:
                st.session_state["ppo/synced"] = new.run_id
                st.session_state["ppo/sent"] = widget_knobs()  # the run starts with them
                st.rerun()

# The URL follows the settings, so the address bar is always a link to them.
settings_now = {"kl_coef": st.session_state["ppo/kl_coef"], "mode": st.session_state["ppo/kl_mode"],
                "clip_eps": st.session_state["ppo/clip_eps"], "lr": st.session_state["ppo/lr"],
                "temperature": st.session_state["ppo/temperature"], "iterations": st.session_state["ppo/iterations"],
                "batch": st.session_state["ppo/batch"]}
encoded = U.encode(settings_now, SCHEMA)
for key in [k for k in st.query_params if k not in encoded and k not in U.OTHER_KEYS]:
    del st.query_params[key]
for key, value in encoded.items():
    if st.query_params.get(key) != value:
        st.query_params[key] = value
written = tuple(sorted(encoded.items()))
if st.session_state.get("ppo/url_seen") not in (None, written, url_key):
    st.session_state.pop("ppo/url_notes", None)  # the student changed something since: old link notes are moot
st.session_state["ppo/url_seen"] = written
with start_col:
    with st.expander("Copy a link to these settings", icon=":material/link:"):
        st.code(U.link(st.context.url or "", settings_now, SCHEMA), language=None)
        st.caption("Opens this page with these knobs, iterations and batch (not your name, not your run).")
    preset = classroom.preset_for(root, "ppo") if classroom.classroom() else None
    if preset:
        said = ", ".join(f"{k} = {v}" for k, v in preset["settings"].items())
        st.info(f"The teacher's settings — **{preset['name']}**: {said}", icon=":material/school:")
        if st.button("Use the teacher's settings", key="ppo/use_preset"):
            st.session_state["ppo/pending_settings"] = preset["settings"]
            st.rerun()
    if classroom.classroom() and ui.is_teacher():
        with st.popover("Publish these settings to the class", icon=":material/campaign:"):
            preset_name = st.text_input("Name for the class", key="ppo/preset_name",
                                        placeholder="e.g. λ = 0: watch the reward hacking")
            if st.button("Publish", key="ppo/publish"):
                try:
                    classroom.publish_preset(root, "ppo", preset_name, encoded, teacher=ui.is_teacher())
                except (ValueError, PermissionError, OSError) as e:
                    st.error(f"Not published: {e}")
                else:
                    st.toast("Published: every student's PPO page shows these settings")

notice = st.session_state.pop("ppo/notice", None)
if notice:
    getattr(st, notice[0])(notice[1])

if run is None:
    st.info("No PPO run yet. Start one above, or use the quick start on the Home page.")
    st.stop()

enabled = V.button_states(status.get("state"), control_now)
if not allowed:
    enabled = dict.fromkeys(enabled, False)
    who = jobs.run_owner(run_dir)
    st.info(f"You are viewing {who}'s run {run_dir.name}: read-only, its controls are theirs.",
            icon=":material/visibility:")
def act(fn, said: str, rerun: bool = False) -> None:
    """One control of the run, as this student: refused (a message, nothing written) unless it is theirs."""
    try:
        fn(run, actor=ui.owner(), teacher=ui.is_teacher())
    except (jobs.JobError, RunError, OSError) as e:
        st.error(f"Not done: {e}")
        return
    st.toast(said)
    if rerun:
        st.rerun()


b1, b2, b3, b4, _ = st.columns([1, 1, 1.4, 1, 3])
if b1.button("Pause", icon=":material/pause:", disabled=not enabled["pause"], key="ppo/pause"):
    act(V.pause, "Pause requested: the run pauses before its next iteration", rerun=True)
if b2.button("Resume", icon=":material/play_arrow:", disabled=not enabled["resume"], key="ppo/resume"):
    act(V.resume, "Resumed", rerun=True)
if b3.button("Step one iteration", icon=":material/skip_next:", disabled=not enabled["step"], key="ppo/step",
             help="pauses the run (if it is not) and runs exactly one more iteration"):
    act(V.step_once, "One more iteration requested")
if b4.button("Stop", icon=":material/stop:", disabled=not enabled["stop"], key="ppo/stop",
             help="ends the run after this iteration (with a checkpoint), or takes it out of the queue"):
    act(V.stop, "Stop requested: the run ends with a checkpoint")


# ----------------------------------------------------------------------------- live charts

@st.fragment(run_every=ui.live_every() if live else None)
def live_charts(run_dir: Path, drawn: tuple) -> None:
    if not run_dir.is_dir():
        st.warning(f"The folder of run {run_dir.name} was deleted; pick another run or start a new one.")
        return
    sent_now = send_changed_knobs(run_dir)
    if sent_now:
        st.toast(sent_now[1], icon=":material/tune:" if sent_now[0] == "success" else ":material/error:")
    control = Run(run_dir).read_control()
    status = ui.status_badge(run_dir)
    ui.follow_state(drawn, status, control)  # ended, paused or resumed: redraw buttons and knobs too
    df = ui.metrics_frame(run_dir)
    state = status.get("state")
    # always one caption here, so the charts below keep their places in the page between redraws
    if state in ui.FINAL_WORDS:
        st.caption(f"This run {ui.FINAL_WORDS[state]}: the charts show what it recorded.")
    elif control.get("paused") and state in ("running", "paused"):
        st.caption("Paused: nothing trains until you resume or step one iteration.")
    else:
        st.caption(f"Redrawn about every {ui.LIVE_EVERY_S:g} s from {run_dir.name}/metrics.jsonl"
                   if ui.live_every() else "Frozen: switch off “Freeze live charts” to follow the run again.")
    ui.progress_line(run_dir, status, df)
    st.caption(precision.caption(run_dir))
    if ui.nothing_recorded(status, df, "iteration"):
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
    refused = [r for r in V.control_log(Run(run_dir)) if r.get("rejected") or r.get("control/rejected")]
    if refused:
        last = refused[-1]
        st.warning(f"The run refused a live change: {last.get('control/rejected') or last.get('rejected')}")


live_charts(run_dir, drawn)


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
