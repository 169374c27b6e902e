"""PPO in a real browser: Playwright drives the system Chromium against `rlhf-lab app` started by the test
on a free 127.0.0.1 port. Open the home page, quick-start a PPO run, watch the reward chart gain points,
move the λ slider and see params/kl_coef of the running job change in metrics.jsonl, pause and resume.

Skipped cleanly where /usr/bin/chromium is missing (never `playwright install`). Screenshots go to
$RLHF_LAB_SCREENS when it is set (how the pages were checked by eye).
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from core.runs import Run, read_jsonl
from tests.browser.support import SKIP_WITHOUT_CHROMIUM, open_page, wait_until

# `server` (the app, started as a student would) and `browser` (the system Chromium): tests/conftest.py

SCREENS = os.environ.get("RLHF_LAB_SCREENS")

pytestmark = SKIP_WITHOUT_CHROMIUM
pytest.importorskip("playwright.sync_api")


def chart_points(page, title: str) -> int:
    """Points in the first trace of the Plotly chart whose title contains `title` (0 when absent)."""
    return page.evaluate(
        """(t) => { for (const p of document.querySelectorAll('.js-plotly-plot')) {
                      const l = p.layout || {}; const txt = (l.title && l.title.text) || '';
                      if (txt.includes(t) && p._fullData && p._fullData.length)
                          return (p._fullData[0].x || []).length; }
                    return 0; }""", title)


def steer_slider(page, run_dir: Path, label: str, key: str, presses: int, step: float) -> float:
    """Press ArrowRight `presses` times on the slider `label`; what it then shows must reach control.json[key] and
    the running job's params/<key> (its last value too, whichever redraw carried it). Returns the value shown."""
    before = Run(run_dir).read_control()[key]
    box = page.locator("[data-testid='stSlider']").filter(has_text=label)
    slider = box.get_by_role("slider")
    slider.focus()
    for _ in range(presses):
        slider.press("ArrowRight")
    shown = float(box.get_by_test_id("stSliderThumbValue").inner_text())
    assert shown == pytest.approx(before + presses * step)
    wait_until(lambda: Run(run_dir).read_control()[key] == pytest.approx(shown), timeout=30,
               what=f"control.json to receive the slider's {key}")
    wait_until(lambda: any(abs((r.get(f"params/{key}") or -1) - shown) < 1e-9
                           for r in read_jsonl(run_dir / "metrics.jsonl")),
               timeout=90, what=f"params/{key} of the running job to change")
    return shown


def shot(page, name):
    if SCREENS:  # Streamlit scrolls inside the page, so a tall viewport shows the whole of it
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": 3200})
        time.sleep(1.0)
        page.screenshot(path=str(Path(SCREENS) / f"{name}.png"))
        page.set_viewport_size(size)


def state(run_dir: Path) -> str:
    return json.loads((run_dir / "status.json").read_text())["state"]


def test_quick_start_ppo_then_steer_it_live(server, browser):
    page = open_page(browser, server["url"], viewport=(1500, 1100))
    # the first-time student's path: one click on Home, then the PPO page with its live curve
    button = page.get_by_role("button", name="Quick start: PPO on the shipped models")
    button.wait_for(timeout=60000)
    shot(page, "home")
    clicked = time.monotonic()
    button.click()
    page.wait_for_url("**/ppo**", timeout=60000)
    first = wait_until(lambda: chart_points(page, "Reward: proxy"), timeout=240, what="the first live PPO point")
    # (the server is shared with tests/browser/test_browser.py, so its launch time says nothing about this run)
    print(f"\nquick-start click -> first live PPO point: {time.monotonic() - clicked:.1f} s")
    run_dir = next(server["runs"].glob("*-ppo"))
    wait_until(lambda: chart_points(page, "Reward: proxy") > first + 1, timeout=60, what="more reward points")
    shot(page, "ppo_live")

    # move the λ slider: the running job's params/kl_coef follows at its next iteration
    new = steer_slider(page, run_dir, "λ (kl_coef)", "kl_coef", presses=10, step=0.01)
    wait_until(lambda: page.get_by_text(f"→{new:.3g}").count() > 0, timeout=30,
               what="the λ change marked on the charts")

    # pause: the job stops training; resume: it goes on
    page.get_by_role("button", name="Pause").click()
    wait_until(lambda: state(run_dir) == "paused", timeout=60, what="the run to pause")
    rows = len(read_jsonl(run_dir / "metrics.jsonl"))
    time.sleep(2.0)
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == rows
    shot(page, "ppo_paused")
    page.get_by_role("button", name="Resume").click()
    wait_until(lambda: len(read_jsonl(run_dir / "metrics.jsonl")) > rows, timeout=60, what="training after resume")
    assert state(run_dir) == "running"

    # the other panels of the page, for the eye
    page.get_by_role("tab", name="Generations: base vs policy").click()
    page.get_by_text("Per-token KL").first.wait_for(timeout=60000)
    shot(page, "ppo_generations")
    page.get_by_role("tab", name="One PPO step, slowly").click()
    page.get_by_role("button", name="Load the newest iteration").click()
    page.get_by_text("One PPO step, token by token").first.wait_for(timeout=30000)
    shot(page, "ppo_step")
    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: state(run_dir) == "stopped", timeout=90, what="the run to stop")
    page.close()


LIVE_PAGES = {"ppo": "ppo", "grpo": "grpo-rloo", "dpo": "dpo"}  # the stages with the live panel, and their pages


def shown_value(page, label: str) -> float:
    """The number a knob's slider or number input shows."""
    slider = page.locator("[data-testid='stSlider']").filter(has_text=label)
    if slider.count():
        return float(slider.first.get_by_test_id("stSliderThumbValue").inner_text())
    return float(page.locator("[data-testid='stNumberInput']").filter(has_text=label).first.locator("input")
                 .input_value())


# One stage in the browser: the panel is one module for the three (tests/lab/test_live_panel.py covers each page
# with AppTest); GRPO's page is the one whose bug only a fragment-only redraw showed.
@pytest.mark.parametrize("stage", ["grpo"])
def test_the_page_follows_another_writers_knob_and_the_run_ending_with_no_click(server, browser, stage):
    """Only the live fragment redraws here (nobody clicks): the panel must notice a knob another tab (or `rlhf-lab
    set`) changed, and the end of the run, and redraw the page for each."""
    from core.config import dpo_preset, grpo_preset, to_dict
    from core.session import initial_control
    from lab import live_panel
    from lab.views import ppo as V

    cfg = {"ppo": lambda: V.make_ppo_config(preset="tiny", device="cpu"),
           "grpo": lambda: grpo_preset("tiny", device="cpu"),
           "dpo": lambda: dpo_preset("tiny", preferences="pairs.jsonl", device="cpu")}[stage]()
    run = Run.create(stage, to_dict(cfg), root=server["runs"], control=initial_control(cfg))
    run.set_status("running", iteration=1)  # a folder only: the test plays the trainer
    run.log_metrics({"step": 1, "time": time.time(), "objective/scores": 0.1, "objective/gold": 0.0,
                     "objective/kl": 0.0})
    names = ("Pause", "Resume", live_panel.STAGES[stage].step_label, "Stop")
    page = open_page(browser, server["url"], f"{LIVE_PAGES[stage]}?run={run.run_id}")
    try:
        pause = page.get_by_role("button", name="Pause", exact=True)
        pause.wait_for(timeout=60000)
        wait_until(lambda: pause.is_enabled(), timeout=30, what="Pause enabled on a running run")
        page.get_by_text("Knobs — live").wait_for(timeout=10000)
        knob = "beta" if "beta" in live_panel.knobs_of(stage) else "kl_coef"
        label = live_panel.look(stage, knob).label
        assert shown_value(page, label) == pytest.approx(getattr(cfg, knob))
        run.write_control(**{knob: 0.3})  # another tab's change
        wait_until(lambda: shown_value(page, label) == pytest.approx(0.3), timeout=10,
                   what=f"the {knob} widget to show the value another writer set")
        run.set_status("done", iteration=1, message="finished")
        ended = time.monotonic()
        page.get_by_text("done · step 1").first.wait_for(timeout=10000)
        def every_control_disabled():  # once the redraw is over: while it runs, Streamlit keeps the old buttons too
            buttons = [page.get_by_role("button", name=n, exact=True) for n in names]
            return all(b.count() == 1 and b.is_disabled() for b in buttons)

        wait_until(every_control_disabled, timeout=10, what="every control disabled")
        assert page.get_by_text("Knobs — live").count() == 0 and page.get_by_text("Redrawn about every").count() == 0
        print(f"\n{stage}: run ended -> page shows done, controls disabled: {time.monotonic() - ended:.1f} s")
    finally:
        page.close()
        run.release()
        shutil.rmtree(run.path)  # the other tests here find their runs by stage


def test_grpo_live_start_chart_and_beta_reach_the_running_job(server, browser):
    """The GRPO page's live path: Start, the reward chart gains points, the β slider reaches the running job's
    params/beta, Stop stops it (the session's shared server and browser, tests/conftest.py)."""
    page = open_page(browser, server["url"], "grpo-rloo", viewport=(1500, 1100))
    page.get_by_role("button", name="Start GRPO").click(timeout=60000)
    first = wait_until(lambda: chart_points(page, "Reward: proxy"), timeout=180, what="the first live GRPO point")
    run_dir = next(server["runs"].glob("*-grpo"))
    shot(page, "grpo_live")
    steer_slider(page, run_dir, "β (KL to the base model)", "beta", presses=5, step=0.01)
    assert chart_points(page, "Reward: proxy") >= first
    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: state(run_dir) == "stopped", timeout=90, what="the GRPO run to stop")
    page.close()
