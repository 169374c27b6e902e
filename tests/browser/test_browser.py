"""End to end in a real browser: Playwright drives the system Chromium against `rlhf-lab app` started
by the test on a free 127.0.0.1 port. Skipped cleanly where /usr/bin/chromium is missing (never
`playwright install`: .ci/run installs Chromium with apt).

These check what AppTest cannot: the live fragment redrawing on its own, the freeze switch, and that
a refresh or a second tab finds the running job again.
"""

import json
import time

import pytest

from tests.browser.support import SKIP_WITHOUT_CHROMIUM, open_page, wait_until

# `server` (the app, started as a student would) and `browser` (the system Chromium): tests/conftest.py

pytestmark = SKIP_WITHOUT_CHROMIUM
pytest.importorskip("playwright.sync_api")


def chart_points(page, index=0) -> int:
    """Number of points in the first trace of the index-th Plotly chart on the page (0 when absent)."""
    return page.evaluate(
        """(i) => { const plots = document.querySelectorAll('.js-plotly-plot');
                    if (plots.length <= i || !plots[i]._fullData || !plots[i]._fullData.length) return 0;
                    return (plots[i]._fullData[0].x || []).length; }""", index)


def stable_points(page, settle=2.0):
    """The chart's point count when it has not changed for `settle` seconds, else None."""
    before = chart_points(page)
    time.sleep(settle)
    return before if chart_points(page) == before and before else None


def test_home_page_loads_with_navigation_and_glossary(server, browser):
    page = open_page(browser, server["url"])
    page.get_by_text("RLHF Lab", exact=True).first.wait_for(timeout=60000)
    nav = page.locator("[data-testid='stSidebarNav']")
    for title in ("Home", "1 · Pretrain", "2 · Preferences", "3 · Reward model", "9 · Compare runs"):
        nav.get_by_text(title, exact=True).wait_for(timeout=10000)
    page.get_by_text("Glossary of metrics").click()
    page.get_by_text("objective/non_score_reward").first.wait_for(timeout=10000)
    page.close()


def test_a_pretraining_run_draws_live_survives_refresh_and_second_tab(server, browser):
    page = open_page(browser, server["url"], "pretrain")
    page.get_by_role("button", name="Start pretraining").wait_for(timeout=60000)
    steps = page.get_by_label("Steps")
    steps.fill("100000")  # long enough to stay running for the whole test; stopped at the end
    steps.press("Enter")
    time.sleep(1.0)
    page.get_by_role("button", name="Start pretraining").click()
    # the live fragment redraws on its own: the loss chart gains points with no click
    first = wait_until(lambda: chart_points(page), timeout=90, what="the first live point")
    wait_until(lambda: chart_points(page) > first + 2, timeout=60, what="more live points")
    assert "run=" in page.url  # the URL names the run, so a refresh finds it

    # freeze: the chart stops redrawing while the run keeps writing metrics
    page.get_by_text("Freeze live charts", exact=True).click()
    page.get_by_text("Frozen: zoom and read").wait_for(timeout=60000)  # the page has redrawn without a timer
    # On a loaded machine the caption can show before that rerun has replaced the chart: take the
    # frozen count only once it has held still for 2 s, then check it holds while the run writes on.
    frozen = wait_until(lambda: stable_points(page), timeout=30, what="the frozen chart to settle")
    run_dir = next(server["runs"].glob("*-pretrain"))
    lines = len((run_dir / "metrics.jsonl").read_text().splitlines())
    wait_until(lambda: len((run_dir / "metrics.jsonl").read_text().splitlines()) > lines + 5, timeout=60,
               what="the run to keep training")
    assert chart_points(page) == frozen
    page.get_by_text("Freeze live charts", exact=True).click()
    page.get_by_text("Live: redrawn about every").wait_for(timeout=60000)
    wait_until(lambda: chart_points(page) > frozen, timeout=30, what="the unfrozen chart to move again")

    # a refresh (new session) and a second tab both find the same running job
    url = page.url
    page.reload()
    wait_until(lambda: chart_points(page) > 0, timeout=60, what="the chart after a refresh")
    assert run_dir.name in page.content()
    second = open_page(browser, url.split("/pretrain")[0], "pretrain?" + url.split("?", 1)[1])
    wait_until(lambda: chart_points(second) > 0, timeout=60, what="the chart in a second tab")
    assert run_dir.name in second.content()

    # stop from the page: the run ends as stopped and the page says so
    second.get_by_role("button", name="Stop").click()
    wait_until(lambda: json.loads((run_dir / "status.json").read_text())["state"] == "stopped", timeout=60,
               what="the run to stop")
    page.close()
    second.close()


def test_human_labels_are_saved_per_click_and_counted_at_once(server, browser):
    page = open_page(browser, server["url"], "preferences")
    page.get_by_role("button", name="Start").wait_for(timeout=60000)
    page.get_by_text("label pairs myself").click()
    pairs = page.get_by_label("Pairs to prepare for you", exact=True)  # not its help button's "Help for ..."
    pairs.wait_for(timeout=30000)
    pairs.fill("4")
    pairs.press("Enter")
    time.sleep(1.0)
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="A is better").wait_for(timeout=120000)  # appears when the pairs exist
    run_dir = next(server["runs"].glob("*-preferences"))
    page.get_by_role("button", name="A is better").click()
    wait_until(lambda: (run_dir / "preferences.jsonl").exists(), timeout=30, what="the label on disk")
    page.get_by_text("1 of 4 decided").wait_for(timeout=30000)
    # the label-count chart redraws with the click (not only after a full reload)
    wait_until(lambda: page.evaluate(
        "() => { const p = document.querySelector('.js-plotly-plot'); "
        "return p && p._fullData && p._fullData.length ? Array.from(p._fullData[0].y || []) : []; }") == [1],
        timeout=30, what="the label count chart to show one label")
    page.get_by_role("button", name="Skip").click()
    page.get_by_text("2 of 4 decided").wait_for(timeout=30000)
    page.close()
