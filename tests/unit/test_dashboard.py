"""Unit tests for lab.dashboard: the instructor's grid over a fake Board, no machine.

Flask's test client for the routes; one real werkzeug server on 127.0.0.1 (fetched
with urllib) for `serve`. Fake refreshes are held on Events, so "one at a time" is
proved while a refresh is genuinely running.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from lab.classroom.dashboard import create_app, serve
from lab.classroom.gradebook import status_of
from lab.common.errors import LabError
from lab.common.polling import poll
from lab.model.diagnosis import Cause
from lab.model.results import Status, StepResult, StudentResult

TEXTS = ["cause", "fix", "expected", "seen", "checked_at"]
STEPS = [("hosts", "Hosts: both names in /etc/hosts"), ("tls", "TLS <with> the lab's CA")]


def row(student: str, step: str, status: Status, checked_at: str = "", **result: Any) -> StudentResult:
    """A student's result on a step as a Board gives it."""
    return StudentResult(student, StepResult(step, "", status, **result), checked_at)


class FakeBoard:
    """A Board whose cells the test sets and whose refresh can be held open or made to fail."""

    def __init__(self, students: list[str] | None = None) -> None:
        self._students = students if students is not None else ["alice", "bob"]
        self.grid: dict[tuple[str, str], StudentResult] = {}
        self.calls: list[str | None] = []
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        self.error: Exception | None = None
        self.busy = False

    def students(self) -> list[str]:
        return list(self._students)

    def steps(self) -> list[tuple[str, str]]:
        return list(STEPS)

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        return dict(self.grid)

    def refresh(self, student: str | None = None) -> None:
        self.calls.append(student)
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(10), "the test never released the held refresh"
        if self.error is not None:
            raise self.error

    def refreshing(self) -> bool:
        return self.busy


@pytest.fixture
def board() -> FakeBoard:
    return FakeBoard()


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def cell_tag(html: str, student: str, step: str) -> str:
    """The opening <td> of one cell, found the way the browser test finds it."""
    match = re.search(rf'<td [^>]*data-student="{re.escape(student)}" data-step="{step}"[^>]*>', html, re.S)
    assert match, f"no cell for {student}/{step}"
    return match.group(0)


def idle(app) -> bool:  # noqa: ANN001
    return not app.test_client().get("/api/grid").json["refreshing"]


def test_grid_has_a_row_per_student_and_a_column_per_step_with_its_title(board: FakeBoard) -> None:
    """Every student appears even with no results yet, and each step header carries its title as tooltip."""
    html = create_app(board).test_client().get("/").text

    for student in ("alice", "bob"):
        assert f'<th scope="row">{student}</th>' in html
        for step, _ in STEPS:
            assert 'data-status="not-checked"' in cell_tag(html, student, step)
    assert '<th scope="col" title="Hosts: both names in /etc/hosts">hosts</th>' in html
    assert '<th scope="col" title="TLS &lt;with&gt; the lab&#39;s CA">tls</th>' in html


def test_each_status_has_its_own_class_data_status_and_label(board: FakeBoard) -> None:
    """pass, fail, not yet and unreachable must look different and be findable by data-status."""
    board.grid = {
        ("alice", "hosts"): row("alice", "hosts", Status.PASS),
        ("alice", "tls"): row("alice", "tls", Status.FAIL, reason="wrong CA"),
        ("bob", "hosts"): row("bob", "hosts", Status.UNREACHABLE, reason="ssh: connection refused"),
    }
    html = create_app(board).test_client().get("/").text

    expected = {
        ("alice", "hosts"): "pass",
        ("alice", "tls"): "fail",
        ("bob", "hosts"): "unreachable",
        ("bob", "tls"): "not-checked",
    }
    for (student, step), status in expected.items():
        tag = cell_tag(html, student, step)
        assert f'class="cell cell-{status}"' in tag
        assert f'data-status="{status}"' in tag
    assert ">not yet</td>" in html


def test_failed_cell_shows_its_cause_on_hover_and_details_on_click(board: FakeBoard) -> None:
    """The title is the hover text; <details> holds cause, fix, expected and seen for the click."""
    board.grid = {
        ("bob", "tls"): row(
            "bob", "tls", Status.FAIL, expected="HTTP 200", seen="x509: unknown CA",
            diagnosis=Cause("untrusted-ca", re.compile("unknown CA"), "the CA is not trusted", "copy ca.crt"),
        )
    }
    html = create_app(board).test_client().get("/").text

    assert 'title="untrusted-ca: the CA is not trusted"' in cell_tag(html, "bob", "tls")
    details = html[html.index('data-step="tls"', html.index('data-student="bob"')) :].split("</details>")[0]
    for text in ("<summary>fail</summary>", "the CA is not trusted", "copy ca.crt", "HTTP 200", "x509: unknown CA"):
        assert text in details


def test_student_ids_causes_and_seen_output_are_escaped(board: FakeBoard) -> None:
    """A student id or a command's output with markup must show as text, never run in the instructor's browser."""
    evil = FakeBoard(students=['<img src=x onerror="alert(1)">'])
    name = evil.students()[0]
    evil.grid = {(name, "tls"): row(name, "tls", Status.FAIL, reason="<script>alert(2)</script>", seen="<b>401</b>")}
    html = create_app(evil).test_client().get("/").text

    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<b>401" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;b&gt;401&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_each_row_says_when_it_was_last_checked_and_how_many_steps_passed(board: FakeBoard) -> None:
    """The newest check of a student's cells is the row's time; a student never checked says so."""
    board.grid = {
        ("alice", "hosts"): row("alice", "hosts", Status.PASS, "2026-11-28T10:00:00+00:00"),
        ("alice", "tls"): row("alice", "tls", Status.PASS, "2026-11-28T10:05:30Z"),
    }
    client = create_app(board).test_client()
    html = client.get("/").text
    rows = {row["student"]: row for row in client.get("/api/grid").json["rows"]}

    assert rows["alice"]["last_checked"] == "2026-11-28T10:05:30Z"
    assert rows["alice"]["passed"] == 2
    assert rows["bob"]["last_checked"] == ""
    assert rows["bob"]["passed"] == 0
    assert "2026-11-28 10:05:30 UTC</time>" in html
    assert '<td class="passed">2/2</td>' in html
    assert '<td class="passed">0/2</td>' in html
    assert ">never</td>" in html


def test_api_grid_is_the_same_grid_as_json(board: FakeBoard) -> None:
    """The page's script and other tools read this shape; a change here breaks them."""
    cause = Cause("c", re.compile("seen"), "cause", "fix")
    board.grid = {("alice", "tls"): row("alice", "tls", Status.FAIL, "2026-11-28T10:00:00Z", expected="expected",
                                        seen="seen", diagnosis=cause)}
    data = create_app(board).test_client().get("/api/grid").json

    assert data["students"] == ["alice", "bob"]
    assert data["steps"] == [{"id": step, "title": title} for step, title in STEPS]
    assert data["refreshing"] is False
    assert data["every"] is None
    assert data["last_error"] == ""
    assert data["passed_per_step"] == [0, 0]
    alice = data["rows"][0]
    assert alice["student"] == "alice"
    assert alice["total"] == 2
    assert alice["cells"] == [
        {"step": "hosts", "status": "not-checked", **dict.fromkeys(TEXTS, "")},
        {
            "step": "tls",
            "status": "fail",
            "cause": "c: cause",
            "fix": "fix",
            "expected": "expected",
            "seen": "seen",
            "checked_at": "2026-11-28T10:00:00Z",
        },
    ]


def test_refresh_starts_at_most_one_at_a_time(board: FakeBoard) -> None:
    """A second "Check now" while checks run must not start a second round against the same machines."""
    board.hold = threading.Event()
    app = create_app(board)
    client = app.test_client()

    first = client.post("/refresh")
    assert board.entered.wait(5)
    second = client.post("/refresh")
    running = client.get("/api/grid").json["refreshing"]
    board.hold.set()

    assert (first.status_code, first.json) == (202, {"started": True})
    assert (second.status_code, second.json) == (202, {"started": False})
    assert running is True
    assert poll(lambda: idle(app), timeout=5, interval=0.02)
    assert board.calls == [None]
    assert client.post("/refresh").json == {"started": True}, "a finished refresh must free the slot"


def test_refresh_does_not_start_while_the_board_is_already_refreshing(board: FakeBoard) -> None:
    """A refresh started elsewhere (the periodic thread of another process, the CLI) counts as running."""
    board.busy = True
    client = create_app(board).test_client()

    assert client.post("/refresh").json == {"started": False}
    assert client.get("/api/grid").json["refreshing"] is True
    assert board.calls == []


def test_refresh_of_one_student_passes_the_student_and_refuses_an_unknown_one(board: FakeBoard) -> None:
    """The per-row button checks one lab; a name not in the class is an error, not a check of everyone."""
    app = create_app(board)
    client = app.test_client()

    assert client.post("/refresh", data={"student": "bob"}).status_code == 202
    assert poll(lambda: board.calls, timeout=5, interval=0.02) == ["bob"]
    unknown = client.post("/refresh", data={"student": "mallory"})

    assert unknown.status_code == 400
    assert unknown.json["started"] is False
    assert poll(lambda: idle(app), timeout=5, interval=0.02)
    assert board.calls == ["bob"]


def test_a_failed_refresh_is_shown_redacted_and_the_server_keeps_answering(board: FakeBoard) -> None:
    """An exception in the Board's checks becomes a line on the page, through the redactor, never a 500."""
    board.error = RuntimeError("ssh to <alice> failed with password Sup3r-s3cret")
    app = create_app(board, redact=lambda text: text.replace("Sup3r-s3cret", "****"))
    client = app.test_client()

    client.post("/refresh")
    assert poll(lambda: client.get("/api/grid").json["last_error"], timeout=5, interval=0.02)
    page = client.get("/")

    assert page.status_code == 200
    assert "last check failed: ssh to &lt;alice&gt; failed with password ****" in page.text
    assert "Sup3r-s3cret" not in page.text
    board.error = None
    client.post("/refresh")
    assert poll(lambda: len(board.calls) == 2 and idle(app), timeout=5, interval=0.02)
    assert "last check failed" not in client.get("/").text, "a good check clears the old error"


def test_periodic_refresh_calls_the_board_until_stopped(board: FakeBoard, stop: threading.Event) -> None:
    """`--every N` re-checks on its own (first at once) and says so; the stop event ends the thread."""
    app = create_app(board, every=1, stop=stop)

    assert app.extensions["reglab_stop"] is stop
    assert "checked every 1 s" in app.test_client().get("/").text
    assert poll(lambda: len(board.calls) >= 2, timeout=5, interval=0.02), "the board was not refreshed twice"
    stop.set()
    assert poll(lambda: not any(t.name == "reglab-every" for t in threading.enumerate()), timeout=5, interval=0.02)


def test_periodic_refresh_survives_a_failing_board(board: FakeBoard, stop: threading.Event) -> None:
    """One failed round must not end the periodic thread: the next round still runs."""
    board.error = RuntimeError("machine gone")
    app = create_app(board, every=1, stop=stop)

    assert poll(lambda: len(board.calls) >= 2, timeout=5, interval=0.02)
    assert "last check failed: machine gone" in app.test_client().get("/").text


@pytest.mark.parametrize("every", [0, -5, 1.5, "10", True])
def test_every_must_be_a_positive_whole_number_of_seconds(board: FakeBoard, every: object) -> None:
    with pytest.raises(LabError, match="--every"):
        create_app(board, every=every)  # type: ignore[arg-type]


def test_no_periodic_refresh_without_every(board: FakeBoard) -> None:
    """Without --every nothing reaches the machines until someone presses "Check now"."""
    html = create_app(board).test_client().get("/").text

    assert "checked on demand" in html
    assert board.calls == []


def test_requests_naming_another_host_are_refused(board: FakeBoard) -> None:
    """A page that rebinds its own name to 127.0.0.1 must not read the students' grid."""
    client = create_app(board).test_client()

    assert client.get("/api/grid", headers={"Host": "evil.example:8000"}).status_code == 400
    assert client.get("/api/grid", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/api/grid", headers={"Host": "[::1]:8000"}).status_code == 200


def test_the_page_is_self_contained(board: FakeBoard) -> None:
    """Nothing may be fetched from elsewhere: no external src/href, and a CSP that forbids it."""
    response = create_app(board).test_client().get("/")

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", response.text)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy).group(1)
    assert f'<script nonce="{nonce}">' in response.text
    assert '<button type="button" id="check-now">Check now</button>' in response.text


def test_grid_fragment_is_the_pages_board_without_the_page(board: FakeBoard) -> None:
    """The script swaps this in after a check, so it must hold the same cells and no second page."""
    board.grid = {("bob", "tls"): row("bob", "tls", Status.FAIL, reason="wrong CA")}
    fragment = create_app(board).test_client().get("/grid").text

    assert "<html" not in fragment
    assert 'title="wrong CA"' in cell_tag(fragment, "bob", "tls")


def test_a_status_word_the_page_does_not_know_is_refused() -> None:
    """The page's words are the gradebook's; one outside them is an error, not a cell of no colour."""
    with pytest.raises(ValueError, match="not one of pass, fail, not-checked, unreachable"):
        status_of("passed")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.33.10", "::", "example.org", ""])
def test_serve_refuses_a_non_loopback_host(board: FakeBoard, host: str) -> None:
    """The grid holds students' data: listening beyond this host is refused before any socket opens."""
    ready: list[str] = []

    with pytest.raises(LabError, match="loopback only"):
        serve(board, host=host, port=0, ready=ready.append)
    assert ready == []


def test_serve_reports_a_busy_port_as_a_lab_error(board: FakeBoard) -> None:
    """A port already taken is the user's to change: a message, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(LabError, match="cannot listen on 127.0.0.1"):
            serve(board, port=taken.getsockname()[1])


def test_serve_on_port_0_announces_a_loopback_url_and_stops_on_the_stop_event(
    board: FakeBoard, caplog: pytest.LogCaptureFixture
) -> None:
    """A real werkzeug server: ready() gets a URL that answers, and setting stop ends serve()."""
    board.grid = {("alice", "hosts"): row("alice", "hosts", Status.PASS)}
    stop = threading.Event()
    urls: list[str] = []
    thread = threading.Thread(target=serve, args=(board,), kwargs={"ready": urls.append, "stop": stop}, daemon=True)
    caplog.set_level(logging.INFO, logger="werkzeug")
    thread.start()
    try:
        assert poll(lambda: urls, timeout=5, interval=0.02), "ready() was never called"
        url = urls[0]
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*/", url)
        with urllib.request.urlopen(url + "api/grid", timeout=5) as response:
            data = json.load(response)
        refresh = urllib.request.Request(url + "refresh", data=b"", method="POST")
        with urllib.request.urlopen(refresh, timeout=5) as response:
            started = (response.status, json.load(response))
    finally:
        stop.set()
        thread.join(5)

    assert data["rows"][0]["cells"][0]["status"] == "pass"
    assert started == (202, {"started": True})
    assert not thread.is_alive(), "serve() did not return after the stop event"
    assert not [r for r in caplog.records if "GET /api/grid" in r.getMessage()], "the page's polling floods the log"
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)
