"""Two students in two real browser contexts against `rlhf-lab app --classroom` (Playwright, system Chromium):
B opens A's live run and finds it read-only and labelled with its owner; A steers it; both keep their names
through a refresh. Skipped where /usr/bin/chromium is missing."""

import pytest

from core.config import to_dict
from core.runs import Run
from lab import jobs
from lab.views import ppo as V
from tests.browser.support import SKIP_WITHOUT_CHROMIUM, app_server, open_page, wait_until

pytestmark = [*SKIP_WITHOUT_CHROMIUM, pytest.mark.slow]
pytest.importorskip("playwright.sync_api")


def test_two_students_one_run_b_cannot_steer_a_and_both_survive_a_refresh(tmp_path, browser):
    runs = tmp_path / "runs"
    runs.mkdir()
    cfg, parents, control = V.ppo_job(iterations=5)
    run = Run.create("ppo", to_dict(cfg), root=runs, parents=parents, control=control)  # this test holds its lock:
    run.write_json(jobs.JOB_FILE, {"pid": None, "owner": "ana", "queued": 0, "started": 0})  # live for the server
    run.set_status("running", iteration=1)
    pages = []  # closed at the end: the Chromium is shared with the other browser tests
    try:
        with app_server(runs, extra=("--classroom", "--teacher-code", "class-code-1")) as (url, _):
            b = open_page(browser, url, f"ppo?student=ben&run={run.run_id}")
            pages.append(b)
            b.get_by_text("ana's run").first.wait_for(timeout=60000)
            assert b.get_by_role("button", name="Pause").is_disabled()
            assert b.get_by_role("button", name="Stop").is_disabled()
            a = open_page(browser, url, f"ppo?student=ana&run={run.run_id}")
            pages.append(a)
            a.get_by_role("button", name="Pause").wait_for(timeout=60000)
            wait_until(lambda: a.get_by_role("button", name="Pause").is_enabled(), timeout=60, what="A's Pause")
            a.get_by_role("button", name="Pause").click()
            wait_until(lambda: run.read_control().get("paused") is True, timeout=60, what="A's pause to land")
            for page, name in ((a, "ana"), (b, "ben")):
                page.reload()
                page.get_by_text(f"Working as {name}").first.wait_for(timeout=60000)
                assert f"student={name}" in page.url
            b.get_by_text("ana's run").first.wait_for(timeout=60000)
            assert b.get_by_role("button", name="Stop").is_disabled()
            for page in pages:
                page.close()
    finally:
        for page in pages:
            if not page.is_closed():
                page.close()
        run.release()
