"""The dashboard in a real browser: Debian's Chromium driven by Playwright, on 127.0.0.1 only.

The unit tests prove what the server sends; this proves the page's own script:
"Check now" posts /refresh, polls until the check is done and swaps the new grid
in without a reload. Any request that is not to the dashboard itself is aborted
and fails the test, so the page is shown to need nothing from elsewhere.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from lab.classroom.dashboard import serve
from lab.common.polling import poll
from lab.model.diagnosis import Cause
from lab.model.results import Status, StepResult, StudentResult

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STUDENTS = ["alice", "bob", "carol"]
STEPS = [("hosts", "Hosts: both names in /etc/hosts"), ("tls", "TLS with the lab's CA")]
UNTRUSTED = Cause("untrusted-ca", re.compile("unknown CA"), "the client does not trust <ca.crt>",
                  "copy ca.crt to the client")
CAUSE = "untrusted-ca: the client does not trust <ca.crt>"  # what the page shows of it

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(autouse=True)
def chromium() -> None:
    """`tox -e e2e` installs it (python -m lab.machines.hostsetup --browser); without it this fails, never skips."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed (Debian's chromium package); "
                    "run `python -m lab.machines.hostsetup --browser`")


class FlippingBoard:
    """Everyone passes until a refresh, which finds bob's TLS step broken; the refresh waits for `release`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        passed = "2026-11-28T10:00:00Z"
        self._cells = {(student, step): StudentResult(student, StepResult(step, "", Status.PASS), passed)
                       for student in STUDENTS for step, _ in STEPS}
        self.release = threading.Event()

    def students(self) -> list[str]:
        return list(STUDENTS)

    def steps(self) -> list[tuple[str, str]]:
        return list(STEPS)

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        with self._lock:
            return dict(self._cells)

    def refresh(self, student: str | None = None) -> None:
        assert self.release.wait(30), "the test never released the refresh"
        with self._lock:
            self._cells["bob", "tls"] = StudentResult(
                "bob",
                StepResult("tls", "", Status.FAIL, expected="HTTP 200", seen="x509: unknown CA", diagnosis=UNTRUSTED),
                "2026-11-28T10:05:00Z",
            )

    def refreshing(self) -> bool:
        return False


@pytest.fixture
def dashboard() -> Iterator[tuple[str, FlippingBoard]]:
    board = FlippingBoard()
    stop = threading.Event()
    urls: list[str] = []
    thread = threading.Thread(target=serve, args=(board,), kwargs={"ready": urls.append, "stop": stop}, daemon=True)
    thread.start()
    try:
        assert poll(lambda: urls, timeout=10, interval=0.05), "the dashboard never said it was listening"
        yield urls[0], board
    finally:
        board.release.set()
        stop.set()
        thread.join(10)


@pytest.fixture
def page(dashboard: tuple[str, FlippingBoard]) -> Iterator[Page]:
    url, _ = dashboard
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_the_dashboard(route: Route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab = browser.new_page()
            tab.route("**/*", only_the_dashboard)
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(url)
            yield tab
        finally:
            browser.close()
    assert elsewhere == [], "the page asked for something other than the dashboard"
    assert errors == [], "the page's script raised"


def test_check_now_turns_a_cell_to_fail_with_its_cause_without_a_reload(
    page: Page, dashboard: tuple[str, FlippingBoard]
) -> None:
    """Every student has a row; after "Check now" the broken step shows fail, its cause on hover, details on click."""
    _, board = dashboard
    for student in STUDENTS:
        expect(page.locator(f'tr[data-student="{student}"]')).to_be_visible()
    cell = page.locator('td[data-student="bob"][data-step="tls"]')
    expect(cell).to_have_attribute("data-status", "pass")
    page.evaluate("window.reglabSamePage = true")

    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_role("button", name="Check now")).to_be_disabled()
    board.release.set()

    expect(cell).to_have_attribute("data-status", "fail", timeout=15_000)
    expect(cell).to_have_attribute("title", CAUSE)
    expect(cell).to_have_class("cell cell-fail")
    expect(page.get_by_role("button", name="Check now")).to_be_enabled()
    expect(page.locator('td[data-student="alice"][data-step="tls"]')).to_have_attribute("data-status", "pass")
    assert page.evaluate("window.reglabSamePage") is True, "the grid came back through a full page reload"

    cell.locator("summary").click()
    expect(cell.get_by_text("copy ca.crt to the client")).to_be_visible()
