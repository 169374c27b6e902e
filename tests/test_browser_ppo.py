"""PPO in a real browser: Playwright drives the system Chromium against `rlhf-lab app` started by the test
on a free 127.0.0.1 port. Open the home page, quick-start a PPO run, watch the reward chart gain points,
move the λ slider and see params/kl_coef of the running job change in metrics.jsonl, pause and resume.

Skipped cleanly where /usr/bin/chromium is missing (never `playwright install`). Screenshots go to
$RLHF_LAB_SCREENS when it is set (how the pages were checked by eye).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.model import SHIPPED
from core.runs import Run, read_jsonl

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENS = os.environ.get("RLHF_LAB_SCREENS")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]
playwright_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=60.0, poll=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def own_reward_run(runs: Path) -> None:
    """Where the shipped reward model is not (yet) in assets/, the student's own finished reward run
    (the small base model's backbone with a fresh score head) stands in for it."""
    from core.model import load_lm, save_checkpoint, scorer_from_lm

    run = Run.create("reward", {}, out=runs / "20260101-000000-reward")
    lm, tok = load_lm("small")
    save_checkpoint(scorer_from_lm(lm), tok, run.checkpoint_dir)
    run.set_status("done", iteration=1, message="finished")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("browser_ppo") / "runs"
    runs.mkdir()
    shipped_rm = (SHIPPED["reward"] / "model.safetensors").exists()
    if not shipped_rm:
        own_reward_run(runs)
    port = free_port()
    exe = shutil.which("rlhf-lab") or str(Path(sys.executable).parent / "rlhf-lab")
    log = open(runs.parent / "server.log", "w")
    launched = time.monotonic()
    proc = subprocess.Popen([exe, "app", "--no-browser", "--port", str(port), "--runs", str(runs)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=90, what="the app server")
        yield {"url": url, "runs": runs, "launched": launched, "shipped_rm": shipped_rm}
    finally:
        for control in runs.glob("*/control.json"):  # ask every run to stop, then end the server
            data = json.loads(control.read_text() or "{}")
            data["stop"] = True
            control.write_text(json.dumps(data))
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url, path=""):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stAppViewContainer']", timeout=60000)
    return page


def chart_points(page, title: str) -> int:
    """Points in the first trace of the Plotly chart whose title contains `title` (0 when absent)."""
    return page.evaluate(
        """(t) => { for (const p of document.querySelectorAll('.js-plotly-plot')) {
                      const l = p.layout || {}; const txt = (l.title && l.title.text) || '';
                      if (txt.includes(t) && p._fullData && p._fullData.length)
                          return (p._fullData[0].x || []).length; }
                    return 0; }""", title)


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
    page = open_page(browser, server["url"])
    if server["shipped_rm"]:
        # the first-time student's path: one click on Home, then the PPO page with its live curve
        button = page.get_by_role("button", name="Quick start: PPO on the shipped models")
        button.wait_for(timeout=60000)
        shot(page, "home")
        button.click()
        page.wait_for_url("**/ppo**", timeout=60000)
    else:
        page.get_by_text("RLHF Lab", exact=True).first.wait_for(timeout=60000)
        page.goto(f"{server['url']}/ppo")
        page.get_by_role("button", name="Start PPO").wait_for(timeout=60000)
        page.get_by_role("button", name="Start PPO").click()
    first = wait_until(lambda: chart_points(page, "Reward: proxy"), timeout=240, what="the first live PPO point")
    seconds = time.monotonic() - server["launched"]
    print(f"\nlaunch -> first live PPO point: {seconds:.1f} s")
    run_dir = next(server["runs"].glob("*-ppo"))
    wait_until(lambda: chart_points(page, "Reward: proxy") > first + 1, timeout=60, what="more reward points")
    shot(page, "ppo_live")

    # move the λ slider: the running job's params/kl_coef follows at its next iteration
    before = Run(run_dir).read_control()["kl_coef"]
    box = page.locator("[data-testid='stSlider']").filter(has_text="λ (kl_coef)")
    slider = box.get_by_role("slider")
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")
    shown = float(box.get_by_test_id("stSliderThumbValue").inner_text())
    assert shown == pytest.approx(before + 0.10)
    # what the slider shows is what the job gets: its last value too, whichever redraw carried it
    wait_until(lambda: Run(run_dir).read_control()["kl_coef"] == pytest.approx(shown), timeout=30,
               what="control.json to receive the slider's value")
    new = shown
    wait_until(lambda: any(abs((r.get("params/kl_coef") or -1) - new) < 1e-9
                           for r in read_jsonl(run_dir / "metrics.jsonl")),
               timeout=90, what="params/kl_coef of the running job to change")
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
