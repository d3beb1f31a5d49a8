"""Unit tests for lab.portal: logins, cookies, CSRF, origins, rate limits, CSP, hints and who sees what.

Flask's test client over a fake class backend: no machine, no network.
"""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lab.model.diagnosis import Cause
from lab.model.results import Status, StepResult, StudentResult
from lab.portal import access as access_module
from lab.portal.access import Access, RateLimit
from lab.portal.app import CSP, SECURE_COOKIE, Settings, create_app
from lab.portal.hints import hints
from lab.portal.progress import Progress, progress_csv

STEPS = [("hosts", "Name the registry"), ("tls", "TLS with the lab's CA")]
ORIGIN = "https://portal.test"
BASE = "https://portal.test"
CAUSE = Cause("no-hosts-line", re.compile("nope"), "the name does not resolve to your registry",
              "add the line to /etc/hosts on both machines")


class FakeBackend:
    """Two students whose data carry their own id everywhere, so a leak shows in any response."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], StudentResult] = {}
        self.checked: list[str | None] = []
        self.next_status: dict[str, Status] = {}

    def students(self) -> list[str]:
        return ["alice", "bob"]

    def steps(self) -> list[tuple[str, str]]:
        return list(STEPS)

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        return dict(self.rows)

    def instructions(self, student: str, step: str) -> str:
        return f"echo '10.0.0.10 {student}.secret-domain.test' >> /etc/hosts  # {step}"

    def commands(self, student: str, step: str) -> str:
        return f"reglab-show {student}-commands {step}"

    def check(self, student: str | None) -> None:
        self.checked.append(student)
        for who in [student] if student else self.students():
            for step, _ in STEPS:
                status = self.next_status.get(step, Status.FAIL)
                self.rows[(who, step)] = StudentResult(
                    who, StepResult(step, "", status, expected=f"{who}-expected", seen=f"{who}-seen-output",
                                    diagnosis=CAUSE if status is Status.FAIL else None), "2026-12-03T10:00:00+00:00")


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    backend = FakeBackend()
    access = Access(tmp_path / "access.json")
    progress = Progress(tmp_path / "progress.json")
    app = create_app(backend, access, progress, Settings(secure=True))
    tokens = {"instructor": access.new_instructor_secret(), "alice": access.new_student_token("alice"),
              "bob": access.new_student_token("bob")}
    return {"app": app, "backend": backend, "access": access, "progress": progress, "tokens": tokens,
            "path": tmp_path}


def client_for(setup: dict, who: str | None):  # noqa: ANN201
    client = setup["app"].test_client()
    if who is not None:
        response = client.post("/login", json={"token": setup["tokens"][who]}, base_url=BASE,
                               headers={"Origin": ORIGIN})
        assert response.status_code == 204, response.text
    return client


def csrf_of(client) -> str:  # noqa: ANN001
    page = client.get("/", base_url=BASE).text
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def post(client, url: str, csrf: str | None = None, origin: str | None = ORIGIN):  # noqa: ANN001, ANN201
    headers = {}
    if origin:
        headers["Origin"] = origin
    if csrf:
        headers["X-CSRF-Token"] = csrf
    return client.post(url, base_url=BASE, headers=headers)


# -- logging in ----------------------------------------------------------------------
def test_tokens_are_stored_hashed_and_private(setup: dict) -> None:
    path = setup["path"] / "access.json"
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for token in setup["tokens"].values():
        assert token not in text
        assert access_module.digest(token) in text


def test_no_session_gets_no_data(setup: dict) -> None:
    client = client_for(setup, None)
    assert client.get("/", base_url=BASE).status_code == 401
    for url in ("/api/me", "/api/class"):
        assert client.get(url, base_url=BASE).status_code == 401
    setup["backend"].check(None)
    for url in ("/", "/api/me", "/api/class"):
        assert "alice" not in client.get(url, base_url=BASE).text


def test_login_sets_a_strict_httponly_secure_host_cookie(setup: dict) -> None:
    client = setup["app"].test_client()
    response = client.post("/login", json={"token": setup["tokens"]["alice"]}, base_url=BASE,
                           headers={"Origin": ORIGIN})
    assert response.status_code == 204
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE}=")
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie
    assert setup["tokens"]["alice"] not in cookie


def test_a_wrong_token_is_refused(setup: dict) -> None:
    client = setup["app"].test_client()
    response = client.post("/login", json={"token": "x" * 43}, base_url=BASE, headers={"Origin": ORIGIN})
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers


def test_login_from_another_site_is_refused(setup: dict) -> None:
    client = setup["app"].test_client()
    response = client.post("/login", json={"token": setup["tokens"]["alice"]}, base_url=BASE,
                           headers={"Origin": "https://evil.test"})
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers


def test_login_attempts_are_rate_limited(setup: dict) -> None:
    client = setup["app"].test_client()
    codes = [client.post("/login", json={"token": f"{n:043d}"}, base_url=BASE, headers={"Origin": ORIGIN},
                         environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code for n in range(12)]
    assert codes[:10] == [403] * 10
    assert codes[10:] == [429, 429]
    # even the right token waits, from that address; another address is not held back
    held = client.post("/login", json={"token": setup["tokens"]["alice"]}, base_url=BASE,
                       headers={"Origin": ORIGIN}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert held.status_code == 429
    other = client.post("/login", json={"token": setup["tokens"]["alice"]}, base_url=BASE,
                        headers={"Origin": ORIGIN}, environ_base={"REMOTE_ADDR": "10.9.9.8"})
    assert other.status_code == 204


def test_good_logins_are_not_limited(setup: dict) -> None:
    """A class behind one address opens its links at once: only failures count."""
    client = setup["app"].test_client()
    codes = {client.post("/login", json={"token": setup["tokens"]["alice"]}, base_url=BASE,
                         headers={"Origin": ORIGIN}, environ_base={"REMOTE_ADDR": "10.9.9.7"}).status_code
             for _ in range(30)}
    assert codes == {204}


def test_a_renewed_link_ends_the_old_one_and_its_sessions(setup: dict) -> None:
    client = client_for(setup, "alice")
    assert client.get("/api/me", base_url=BASE).status_code == 200
    setup["access"].new_student_token("alice")
    assert client.get("/api/me", base_url=BASE).status_code == 401
    again = setup["app"].test_client().post("/login", json={"token": setup["tokens"]["alice"]}, base_url=BASE,
                                            headers={"Origin": ORIGIN})
    assert again.status_code == 403


def test_logout_ends_the_session(setup: dict) -> None:
    client = client_for(setup, "alice")
    assert post(client, "/logout", csrf_of(client)).status_code == 204
    assert client.get("/api/me", base_url=BASE).status_code == 401


# -- CSRF and origin ---------------------------------------------------------------------
@pytest.mark.parametrize("who,url", [("alice", "/api/check"), ("instructor", "/api/refresh"),
                                     ("alice", "/logout")])
def test_state_changes_need_the_csrf_token(setup: dict, who: str, url: str) -> None:
    client = client_for(setup, who)
    assert post(client, url).status_code == 403
    assert post(client, url, "wrong-token").status_code == 403
    assert setup["backend"].checked == []


@pytest.mark.parametrize("origin", ["https://evil.test", "http://portal.test", None])
def test_state_changes_need_this_sites_origin(setup: dict, origin: str | None) -> None:
    client = client_for(setup, "alice")
    token = csrf_of(client)
    assert post(client, "/api/check", token, origin=origin).status_code == 403
    assert setup["backend"].checked == []
    assert post(client, "/api/check", token).status_code == 200
    assert setup["backend"].checked == ["alice"]


def test_a_cross_site_form_post_is_refused(setup: dict) -> None:
    client = client_for(setup, "instructor")
    response = client.post("/api/refresh", base_url=BASE, data={"student": "alice"},
                           headers={"Origin": "https://evil.test"})
    assert response.status_code == 403
    assert setup["backend"].checked == []


# -- headers -------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/", "/login", "/api/me", "/static/portal.js"])
def test_every_answer_has_a_strict_csp(setup: dict, url: str) -> None:
    client = client_for(setup, "alice")
    response = client.get(url, base_url=BASE)
    policy = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([A-Za-z0-9_-]{16,})'", policy).group(1)
    assert policy == CSP.format(nonce=nonce)
    assert nonce not in client.get(url, base_url=BASE).headers["Content-Security-Policy"]  # a new one each time
    assert "default-src 'self'; script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_pages_have_no_inline_script_or_style(setup: dict) -> None:
    setup["backend"].check(None)
    for who in ("alice", "instructor", None):
        page = client_for(setup, who).get("/", base_url=BASE).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), page
        assert "<style" not in page and " style=" not in page and "onclick" not in page


def test_an_unknown_host_name_is_refused(tmp_path: Path) -> None:
    backend, access = FakeBackend(), Access(tmp_path / "a.json")
    app = create_app(backend, access, Progress(None), Settings(allowed_hosts=frozenset({"portal.test"})))
    client = app.test_client()
    assert client.get("/login", base_url="https://portal.test").status_code == 200
    assert client.get("/login", base_url="https://rebound.evil.test").status_code == 400


def test_without_tls_only_loopback_answers(tmp_path: Path) -> None:
    app = create_app(FakeBackend(), Access(tmp_path / "a.json"), Progress(None), Settings(secure=False))
    client = app.test_client()
    assert client.get("/login", base_url="http://127.0.0.1:8765").status_code == 200
    assert client.get("/login", base_url="http://10.77.0.1:8765").status_code == 400


# -- a student sees their own only --------------------------------------------------------
def test_every_url_with_another_students_session_gives_nothing_of_theirs(setup: dict) -> None:
    """Walk the whole url map as bob, with alice's data in place: nothing of alice's comes back."""
    backend = setup["backend"]
    backend.check(None)
    setup["progress"].observe("alice", {}, ["hosts", "tls"], by_student=True)
    bob = client_for(setup, "bob")
    token = csrf_of(bob)
    app = setup["app"]
    urls = []
    for rule in app.url_map.iter_rules():
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "alice").replace(f"<path:{arg}>", "alice")
            url = re.sub(r"<[^>]*>", "alice", url)
        for method in rule.methods - {"OPTIONS", "HEAD"}:
            urls.append((method, url))
    assert len(urls) >= 9
    extra = [("GET", "/?student=alice"), ("GET", "/api/me?student=alice"), ("POST", "/api/check?student=alice")]
    for method, url in urls + extra:
        if url == "/logout":
            continue
        response = bob.open(url, method=method, base_url=BASE, headers={"Origin": ORIGIN, "X-CSRF-Token": token})
        assert "alice" not in response.text, (method, url, response.status_code)
    # alice's link is not bob's either way: bob's own page is bob's
    assert "bob.secret-domain.test" in bob.get("/", base_url=BASE).text
    assert backend.checked.count("alice") == 0


def test_a_student_cannot_use_the_instructors_api(setup: dict) -> None:
    alice = client_for(setup, "alice")
    assert alice.get("/api/class", base_url=BASE).status_code == 404
    assert post(alice, "/api/refresh", csrf_of(alice)).status_code == 404


# -- checks and hints ---------------------------------------------------------------------
def test_checks_are_rate_limited_per_student(setup: dict) -> None:
    alice, bob = client_for(setup, "alice"), client_for(setup, "bob")
    a, b = csrf_of(alice), csrf_of(bob)
    assert post(alice, "/api/check", a).status_code == 200
    assert post(alice, "/api/check", a).status_code == 429
    assert post(bob, "/api/check", b).status_code == 200
    assert setup["backend"].checked == ["alice", "bob"]


def test_hints_escalate_with_each_failed_check_and_are_recorded(setup: dict, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("lab.portal.app.CHECKS", (100, 1.0))
    app = create_app(setup["backend"], setup["access"], setup["progress"], Settings())
    setup["app"] = app
    alice = client_for(setup, "alice")
    token = csrf_of(alice)
    seen_kinds = []
    for _ in range(4):
        body = post(alice, "/api/check", token).get_json()
        hosts = body["steps"][0]
        seen_kinds.append([h["kind"] for h in hosts["hints"]])
        assert body["steps"][1]["hints"] == []  # only the current step earns hints
    assert seen_kinds == [["cause"], ["cause", "fix"], ["cause", "fix", "commands"], ["cause", "fix", "commands"]]
    hosts = alice.get("/api/me", base_url=BASE).get_json()["steps"][0]
    assert [h["text"] for h in hosts["hints"]] == [
        "no-hosts-line: the name does not resolve to your registry", "add the line to /etc/hosts on both machines",
        "reglab-show alice-commands hosts"]
    page = alice.get("/", base_url=BASE).text
    assert page.index("Hint 1 (cause)") < page.index("Hint 2 (fix)") < page.index("Hint 3 (commands)")
    assert setup["progress"].hints_used("alice") == 3
    assert setup["progress"].hints_used("bob") == 0
    recorded = json.loads((setup["path"] / "progress.json").read_text())
    assert [h["level"] for h in recorded["alice"]["steps"]["hosts"]["hints"]] == [1, 2, 3]


def test_a_passing_step_moves_the_student_on(setup: dict, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("lab.portal.app.CHECKS", (100, 1.0))
    setup["app"] = create_app(setup["backend"], setup["access"], setup["progress"], Settings())
    alice = client_for(setup, "alice")
    token = csrf_of(alice)
    assert post(alice, "/api/check", token).get_json()["current"] == "hosts"
    setup["backend"].next_status["hosts"] = Status.PASS
    body = post(alice, "/api/check", token).get_json()
    assert body["current"] == "tls"
    assert body["steps"][0]["status"] == "pass" and body["steps"][0]["hints"] == []
    assert body["steps"][1]["hints"][0]["kind"] == "cause"


def test_instructor_sees_current_step_time_stuck_and_hints(setup: dict) -> None:
    clock = [datetime(2026, 12, 3, 10, 0, tzinfo=UTC)]
    progress = Progress(None, clock=lambda: clock[0])
    backend = setup["backend"]
    app = create_app(backend, setup["access"], progress, Settings(stuck_after=600))
    backend.check("alice")
    progress.observe("alice", {}, ["hosts", "tls"], by_student=True)
    progress.shown("alice", "hosts", 1)
    clock[0] += timedelta(minutes=11)
    client = app.test_client()
    client.post("/login", json={"token": setup["tokens"]["instructor"]}, base_url=BASE, headers={"Origin": ORIGIN})
    data = client.get("/api/class", base_url=BASE).get_json()
    alice = data["rows"][0]
    assert (alice["current"], alice["time_on_step"], alice["stuck"], alice["hints"]) == ("hosts", "11 min", True, 1)
    assert data["rows"][1]["stuck"] is False
    assert data["rows"][1]["current"] is None  # bob: never checked, not "done"
    page = client.get("/", base_url=BASE).text
    assert "stuck" in page and "11 min" in page


def test_hints_pure() -> None:
    failed = StepResult("hosts", "", Status.FAIL, expected="a line", seen="x")
    assert hints(failed, 0, "cmds") == []
    assert [h.text for h in hints(failed, 2, "cmds")] == [
        "expected a line; saw x", "make it so that a line; compare what you typed with the step's instructions"]
    assert hints(StepResult("hosts", "", Status.PASS), 5, "cmds") == []


def test_progress_counts_time_per_step_and_writes_csv() -> None:
    clock = [datetime(2026, 12, 3, 10, 0, tzinfo=UTC)]
    progress = Progress(None, clock=lambda: clock[0])
    order = ["hosts", "tls"]
    progress.observe("alice", {}, order, by_student=True)
    clock[0] += timedelta(minutes=6)
    progress.observe("alice", {"hosts": True}, order, by_student=True)
    clock[0] += timedelta(minutes=3)
    assert progress.position("alice") == ("tls", 180.0)
    text = progress_csv(progress, ["alice"], order)
    assert text.splitlines()[1:] == ["alice,hosts,6.0,0,1", "alice,tls,3.0,0,1"]


def test_rate_limit_window() -> None:
    now = [0.0]
    limit = RateLimit(2, 10, clock=lambda: now[0])
    assert [limit.allow("k") for _ in range(3)] == [True, True, False]
    now[0] = 10.5
    assert limit.allow("k")
