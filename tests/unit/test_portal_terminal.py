"""Unit tests for the browser terminals: the websocket's guards, the bridge to a (fake) SSH channel, the
asciicast recording, the instructor's live view and replay. A real server on 127.0.0.1, no machine."""

from __future__ import annotations

import json
import queue
import re
import stat
import threading
import time
from pathlib import Path

import pytest
import simple_websocket
from test_portal import FakeBackend

from lab.common.polling import poll
from lab.portal.access import Access
from lab.portal.app import Settings, create_app
from lab.portal.progress import Progress
from lab.portal.serve import Listen, serve
from lab.portal.terminal import parse_cast


class FakeChannel:
    """An SSH channel whose machine echoes what it is sent, and says which student's it is."""

    def __init__(self, student: str, machine: str) -> None:
        self.out: queue.Queue[bytes] = queue.Queue()
        self.out.put(f"welcome {student} on {machine} secret-pw\r\n$ ".encode())
        self.sizes: list[tuple[int, int]] = []
        self.closed = threading.Event()

    def send(self, data: bytes) -> int:
        self.out.put(b"echo:" + data)
        return len(data)

    def recv(self, size: int) -> bytes:
        if self.closed.is_set():
            return b""
        try:
            return self.out.get(timeout=0.2)
        except queue.Empty:
            raise TimeoutError from None

    def resize_pty(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    def close(self) -> None:
        self.closed.set()


class FakeTerminals:
    def __init__(self) -> None:
        self.opened: list[tuple[str, str, int, int]] = []
        self.channels: list[FakeChannel] = []

    def machines(self, student: str) -> list[str]:
        return ["registry", "client"]

    def open(self, student: str, machine: str, cols: int, rows: int) -> FakeChannel:
        self.opened.append((student, machine, cols, rows))
        channel = FakeChannel(student, machine)
        self.channels.append(channel)
        return channel

    def redact(self, student: str, text: str) -> str:
        return text.replace("secret-pw", "********")

    def unfinished(self, student: str, text: str) -> int:
        return next((n for n in range(len("secret-pw") - 1, 0, -1) if text.endswith("secret-pw"[:n])), 0)


@pytest.fixture
def portal(tmp_path: Path):  # noqa: ANN201
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    access = Access(tmp_path / "access.json")
    terminals = FakeTerminals()
    app = create_app(FakeBackend(), access, Progress(None),
                     Settings(secure=False, terminals=terminals, sessions=tmp_path / "sessions"))
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=serve, args=(app, Listen("127.0.0.1", port), None, stop, lambda url: ready.set()),
                              daemon=True)
    thread.start()
    assert ready.wait(10)
    tokens = {who: access.new_student_token(who) for who in ("alice", "bob")}
    tokens["instructor"] = access.new_instructor_secret()
    yield {"base": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "terminals": terminals,
           "tokens": tokens, "sessions": tmp_path / "sessions", "app": app}
    stop.set()
    thread.join(5)


def login(portal: dict, who: str) -> tuple[str, str]:
    """(the Cookie header, the page's CSRF token) of a new session."""
    import urllib.request

    base = portal["base"]
    request = urllib.request.Request(f"{base}/login", data=json.dumps({"token": portal["tokens"][who]}).encode(),
                                     headers={"Content-Type": "application/json", "Origin": base}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
    with urllib.request.urlopen(urllib.request.Request(f"{base}/", headers={"Cookie": cookie}), timeout=5) as page:
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.read().decode()).group(1)
    return cookie, csrf


def connect(portal: dict, path: str, cookie: str, origin: str | None = None) -> simple_websocket.Client:
    # simple-websocket's client sends the Host header without the port: this site's origin, as the server sees it
    headers = {"Cookie": cookie, "Origin": origin or "http://127.0.0.1"}
    return simple_websocket.Client.connect(f"{portal['ws']}{path}", headers=headers)


def read_until(ws: simple_websocket.Client, words: str, seconds: float = 5) -> str:
    seen = ""
    deadline = time.monotonic() + seconds
    while words not in seen and time.monotonic() < deadline:
        data = ws.receive(timeout=0.5)
        if data:
            seen += data if isinstance(data, str) else data.decode()
    return seen


def refused(ws: simple_websocket.Client) -> bool:
    try:
        ws.receive(timeout=3)
        ws.receive(timeout=1)
    except simple_websocket.ConnectionClosed:
        return True
    return not ws.connected


def test_a_students_terminal_bridges_keys_resizes_and_is_recorded(portal: dict) -> None:
    cookie, csrf = login(portal, "alice")
    ws = connect(portal, f"/ws/terminal/client?csrf={csrf}&cols=100&rows=30", cookie)
    assert "welcome alice on client" in read_until(ws, "$ ")
    ws.send(json.dumps({"type": "input", "data": "echo hi\r"}))
    assert "echo:echo hi" in read_until(ws, "echo hi")
    ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
    ws.send(json.dumps({"type": "resize", "cols": 100000, "rows": 40}))  # out of bounds: ignored
    channel = portal["terminals"].channels[0]
    assert poll(lambda: channel.sizes == [(120, 40)], 5, 0.1)
    ws.close()
    assert poll(channel.closed.is_set, 5, 0.1), "the SSH channel outlives the browser's terminal"
    assert portal["terminals"].opened == [("alice", "client", 100, 30)]
    [cast] = list((portal["sessions"] / "alice").glob("*-client.cast"))
    assert stat.S_IMODE(cast.stat().st_mode) == 0o600
    assert poll(lambda: "echo:echo hi" in cast.read_text(), 5, 0.1)
    header, events = parse_cast(cast.read_text())
    assert (header["version"], header["width"], header["height"]) == (2, 100, 30)
    # output is recorded a moment late (held until a pause, so a secret across chunks is masked whole):
    # a resize may come first
    assert {kind for _, kind, _ in events} == {"o", "r"}
    assert all(a <= b for (a, _, _), (b, _, _) in zip(events, events[1:], strict=False))
    assert "secret-pw" not in cast.read_text() and "********" in cast.read_text()


@pytest.mark.parametrize("case", ["other-site", "no-csrf", "no-session", "instructor"])
def test_a_terminal_is_refused_without_this_sites_page_a_students_session_and_its_token(portal: dict,
                                                                                       case: str) -> None:
    cookie, csrf = login(portal, "instructor" if case == "instructor" else "alice")
    path = "/ws/terminal/client" + ("" if case == "no-csrf" else f"?csrf={csrf}")
    try:
        ws = connect(portal, path, "" if case == "no-session" else cookie,
                     origin="http://evil.test" if case == "other-site" else None)
    except (simple_websocket.ConnectionError, simple_websocket.ConnectionClosed):
        ws = None
    assert ws is None or refused(ws)
    assert portal["terminals"].opened == []


def test_a_student_reaches_only_their_own_machines(portal: dict) -> None:
    cookie, csrf = login(portal, "bob")
    ws = connect(portal, f"/ws/terminal/registry?csrf={csrf}", cookie)
    text = read_until(ws, "$ ")
    ws.close()
    assert "bob on registry" in text and "alice" not in text
    assert [who for who, *_ in portal["terminals"].opened] == ["bob"]
    ws = connect(portal, f"/ws/terminal/alice-registry?csrf={csrf}", cookie)  # not a machine of bob's lab
    assert refused(ws)
    assert len(portal["terminals"].opened) == 1


def test_the_instructor_watches_live_read_only_and_replays(portal: dict) -> None:
    student_cookie, student_csrf = login(portal, "alice")
    cookie, csrf = login(portal, "instructor")
    ws = connect(portal, f"/ws/terminal/client?csrf={student_csrf}", student_cookie)
    read_until(ws, "$ ")
    watch = connect(portal, f"/ws/watch/alice/client?csrf={csrf}", cookie)
    time.sleep(0.5)
    ws.send(json.dumps({"type": "input", "data": "ls\r"}))
    assert "echo:ls" in read_until(watch, "echo:ls")
    watch.send(json.dumps({"type": "input", "data": "rm -rf /\r"}))  # the watcher cannot type
    time.sleep(0.5)
    assert "rm -rf" not in read_until(ws, "rm -rf", 1)
    ws.close()
    watch.close()
    import urllib.error
    import urllib.request

    base = portal["base"]
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", headers={"Cookie": cookie}),
                                timeout=5) as answer:
        sessions = [s for s in json.loads(answer.read()) if s["name"]]
    assert [(s["student"], s["machine"]) for s in sessions] == [("alice", "client")]
    url = f"{base}/api/sessions/alice/{sessions[0]['name']}"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": cookie}), timeout=5) as answer:
        assert "echo:ls" in answer.read().decode()
    for who_cookie in (student_cookie, login(portal, "bob")[0]):  # students get no one's recordings
        for path in (url, f"{base}/api/sessions"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(urllib.request.Request(path, headers={"Cookie": who_cookie}), timeout=5)
            assert error.value.code == 404
    with pytest.raises(urllib.error.HTTPError):  # a name that climbs out of the folder
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions/alice/..%2F..%2Faccess.json",
                                                      headers={"Cookie": cookie}), timeout=5)
