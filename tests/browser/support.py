"""What the browser tests share: the system Chromium, a free port, polling, and `rlhf-lab app` started
as a student would start it (`--no-browser --port N --runs ROOT`) on 127.0.0.1.

Never `playwright install`: .ci/run installs Debian's Chromium, and the tests skip where it is missing.
"""

import contextlib
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

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# xdist_group: under pytest-xdist (--dist loadgroup) every browser test runs in one worker, which starts the one
# Chromium and the one app server (session fixtures) for all of them
SKIP_WITHOUT_CHROMIUM = [pytest.mark.browser, pytest.mark.xdist_group("browser"),
                         pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]


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


@contextlib.contextmanager
def app_server(runs: Path, extra: tuple = (), env: dict | None = None):
    """Start the app on a free port; yield (url, launch time). On exit ask every run to stop, then end
    the server (its process group, so spawned workers go too)."""
    runs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    exe = shutil.which("rlhf-lab") or str(Path(sys.executable).parent / "rlhf-lab")
    log = open(runs.parent / "server.log", "w")
    launched = time.monotonic()
    proc = subprocess.Popen([exe, "app", "--no-browser", "--port", str(port), "--runs", str(runs), *extra],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, **(env or {})))
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=90, what="the app server")
        yield url, launched
    finally:
        for control in runs.glob("*/control.json"):
            data = json.loads(control.read_text() or "{}")
            data["stop"] = True
            control.write_text(json.dumps(data))
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url, path="", viewport=(1400, 1000)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stAppViewContainer']", timeout=60000)
    return page
