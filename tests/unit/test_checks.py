"""Unit tests for lab.checks: the pure parsers, and every check kind against a fake machine.

The fake machine records each `sudo` call (command and keyword arguments) and
answers from a queue of canned results, so no SSH, Docker or network is used.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest

from lab.common.errors import LabFailure
from lab.engine import checks
from lab.engine.checks import HttpResponse, Outcome, curl_config, docker_auth, match_text, parse_http_response
from lab.engine.context import Context
from lab.model import manifest
from lab.model.credentials import MASK, Redactor
from lab.model.diagnosis import diagnose
from lab.model.lab import User, default_scenario
from lab.pki.make import make_ca

PASSWORD = "s3cret-Passw0rd"
DIGEST = "sha256:" + "ab" * 32


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    exited: int = 0

    @property
    def ok(self) -> bool:
        return self.exited == 0


@dataclass
class FakeMachine:
    """Answers `sudo` from a queue of results and records what it was asked."""

    results: list[Result]
    name: str = "registry"
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def sudo(self, command: str, **kwargs: Any) -> Result:
        self.calls.append((command, kwargs))
        assert self.results, f"unexpected command: {command}"
        return self.results.pop(0)

    @property
    def commands(self) -> list[str]:
        return [command for command, _ in self.calls]


class FakeContext:
    """What the checks use of engine.Context; `stdin` is the real one."""

    stdin = Context.stdin

    def __init__(self, files: dict[str, str] | None = None) -> None:
        self.redactor = Redactor()
        self.files = files or {}

    def lab_user(self) -> User:
        return User(name="student", password=PASSWORD)

    def read_file(self, spec: str, default_machine: str, missing_ok: bool = False) -> str | None:
        if missing_ok and spec not in self.files:
            return None
        return self.files[spec]


def machine(*results: Result, name: str = "registry") -> FakeMachine:
    return FakeMachine(list(results), name=name)


def http(status_line: str = "HTTP/1.1 200 OK", headers: tuple[str, ...] = (), body: str = "{}") -> str:
    """What `curl -i` prints: CRLF line ends, a blank line, then the body."""
    return "\r\n".join([status_line, *headers]) + "\r\n\r\n" + body


# --- parse_http_response -----------------------------------------------------


def test_parse_plain_200_with_empty_json_body() -> None:
    response = parse_http_response(http(headers=("Content-Type: application/json",), body="{}"))
    assert response == HttpResponse(200, {"content-type": "application/json"}, "{}")


def test_parse_keeps_the_last_response_after_100_continue() -> None:
    text = "HTTP/1.1 100 Continue\r\n\r\n" + http(
        "HTTP/1.1 401 Unauthorized",
        ('Www-Authenticate: Basic realm="registry.localhost"',),
        "<html>401 Authorization Required</html>\r\n",
    )
    response = parse_http_response(text)
    assert response.status == 401
    assert response.headers == {"www-authenticate": 'Basic realm="registry.localhost"'}
    assert response.body == "<html>401 Authorization Required</html>\n"


def test_parse_accepts_crlf_and_lf_line_ends_alike() -> None:
    lf = "HTTP/1.1 404 Not Found\nServer: nginx\n\nnope\n"
    crlf = lf.replace("\n", "\r\n")
    assert parse_http_response(crlf) == parse_http_response(lf) == HttpResponse(404, {"server": "nginx"}, "nope\n")


def test_parse_header_names_are_lower_cased() -> None:
    """Servers differ in header case (HTTP/2 sends lower case); lookups must not care."""
    response = parse_http_response(
        http(headers=("DOCKER-Distribution-API-Version: registry/2.0", "location: http://x/y:1"))
    )
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert response.headers["location"] == "http://x/y:1"  # only the first ':' splits


def test_parse_http2_status_line() -> None:
    assert parse_http_response("HTTP/2 200\r\nserver: nginx\r\n\r\n{}").status == 200


def test_parse_head_response_has_no_body() -> None:
    text = http(headers=(f"Docker-Content-Digest: {DIGEST}", "Content-Length: 528"), body="")
    response = parse_http_response(text)
    assert response.body == ""
    assert response.headers["docker-content-digest"] == DIGEST
    assert parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 0").body == ""  # no blank line at all


@pytest.mark.parametrize(
    "text",
    ["", "curl: (7) Failed to connect to localhost port 5043", "<html>not http</html>", "HTTP/1.1 OK\r\n\r\n"],
    ids=["empty", "curl-error", "html", "no-status-code"],
)
def test_parse_garbage_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_http_response(text)


# --- curl_config and docker_auth ---------------------------------------------


def test_curl_config_quotes_the_credentials() -> None:
    assert curl_config("student", "plain-pass") == 'user = "student:plain-pass"\n'


def test_curl_config_escapes_quotes_and_backslashes() -> None:
    """curl's config syntax reads \\\\ and \\" inside quotes; anything else would cut the password short."""
    assert curl_config("student", 'a"b\\c') == 'user = "student:a\\"b\\\\c"\n'
    assert curl_config("student", '\\"') == 'user = "student:\\\\\\""\n'


def _config(key: str, user: str = "student", password: str = PASSWORD) -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {key: {"auth": auth}}})


@pytest.mark.parametrize("key", ["myregistrydomain.com", "https://myregistrydomain.com"])
def test_docker_auth_reads_the_registrys_entry(key: str) -> None:
    assert docker_auth(_config(key), "myregistrydomain.com") == ("student", PASSWORD)


def test_docker_auth_password_may_contain_a_colon() -> None:
    assert docker_auth(_config("myregistrydomain.com", password="a:b:c"), "myregistrydomain.com") == (
        "student",
        "a:b:c",
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        _config("other.example.com"),
        json.dumps({"auths": {"myregistrydomain.com": {}}, "credsStore": "desktop"}),
    ],
    ids=["no-file", "empty", "other-registry", "credential-helper"],
)
def test_docker_auth_none_when_absent(text: str) -> None:
    assert docker_auth(text, "myregistrydomain.com") is None


# --- match_text --------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "text", "ok"),
    [
        ({}, "anything", True),
        ({"equals": ""}, "\n", True),
        ({"equals": "abc"}, "  abc\n", True),
        ({"equals": "abc"}, "abcd", False),
        ({"contains": "Login Succeeded"}, "WARNING!\nLogin Succeeded\n", True),
        ({"contains": ["a", "b"]}, "a only", False),
        ({"contains": ["a", "b"]}, "b and a", True),
        ({"not_contains": "error"}, "all good", True),
        ({"not_contains": ["x", "error"]}, "an error", False),
        ({"regex": r"^\d+$"}, "abc\n42\n", False),
        ({"regex": r"(?m)^\d+$"}, "abc\n42\n", True),
        ({"contains": "a", "not_contains": "z", "regex": "a+b"}, "aab", True),
        ({"contains": "a", "not_contains": "z", "regex": "a+b"}, "aabz", False),
        ({"equals": "1", "contains": 1}, "1", True),
    ],
)
def test_match_text(item: dict[str, Any], text: str, ok: bool) -> None:
    assert match_text(item, text)[0] is ok


def test_match_text_says_what_it_expected() -> None:
    _, wanted = match_text({"equals": "x", "contains": ["a"], "not_contains": "b", "regex": "c"}, "")
    assert wanted == "exactly 'x', containing 'a', not containing 'b', matching /c/"


# --- run_command ---------------------------------------------------------------


def test_run_command_passes_on_exit_and_regex() -> None:
    fake = machine(Result(stdout="myregistrydomain.com/test-image@" + DIGEST + "\n"))
    item = {"command": "docker image inspect x", "regex": r"@sha256:[0-9a-f]{64}"}
    outcome = checks.run_command(item, fake, FakeContext())
    assert outcome.ok
    command, kwargs = fake.calls[0]
    assert command == "docker image inspect x"
    assert kwargs["warn"] is True  # a failing command is an observation, not an exception
    assert kwargs["in_stream"] is False  # never the user's terminal
    assert "exit 0" in outcome.expected and "sha256" in outcome.expected


def test_run_command_fails_on_the_wrong_exit() -> None:
    outcome = checks.run_command({"command": "false"}, machine(Result(stderr="boom\n", exited=1)), FakeContext())
    assert not outcome.ok
    assert outcome.seen == "exit 1, output:\nboom"


def test_run_command_fails_when_the_text_does_not_match() -> None:
    outcome = checks.run_command(
        {"command": "x", "contains": "initcron"}, machine(Result(stdout="bin\n")), FakeContext()
    )
    assert not outcome.ok
    assert "containing 'initcron'" in outcome.expected


def test_run_command_matches_stderr_too() -> None:
    fake = machine(Result(stderr="Login Succeeded\n"))
    assert checks.run_command({"command": "docker login", "contains": "Login Succeeded"}, fake, FakeContext()).ok


@pytest.mark.parametrize(("exited", "ok"), [(1, True), (125, True), (0, False)])
def test_run_command_exit_nonzero(exited: int, ok: bool) -> None:
    item = {"command": "docker login", "exit": "nonzero"}
    outcome = checks.run_command(item, machine(Result(exited=exited)), FakeContext())
    assert outcome.ok is ok
    assert "a non-zero exit" in outcome.expected


def test_run_command_captures_the_group() -> None:
    fake = machine(Result(stdout=f'["myregistrydomain.com/test-image@{DIGEST}"]\n'))
    item = {"command": "docker image inspect", "capture": {"pushed": r"test-image@(sha256:[0-9a-f]{64})"}}
    outcome = checks.run_command(item, fake, FakeContext())
    assert outcome.ok
    assert outcome.captured == {"pushed": DIGEST}


def test_run_command_captures_the_whole_match_without_a_group() -> None:
    item = {"command": "x", "capture": {"digest": r"sha256:[0-9a-f]{64}"}}
    assert checks.run_command(item, machine(Result(stdout=DIGEST)), FakeContext()).captured == {"digest": DIGEST}


def test_run_command_missing_capture_fails() -> None:
    item = {"command": "docker image inspect", "capture": {"pushed": r"@(sha256:[0-9a-f]{64})"}}
    outcome = checks.run_command(item, machine(Result(stdout="[]\n")), FakeContext())
    assert not outcome.ok
    assert outcome.captured == {}
    assert "with a value for pushed matching" in outcome.expected


def test_run_command_sends_stdin_with_a_final_newline() -> None:
    fake = machine(Result(stdout="Login Succeeded\n"))
    item = {"command": "docker login -u student --password-stdin", "stdin": PASSWORD}
    checks.run_command(item, fake, FakeContext())
    command, kwargs = fake.calls[0]
    assert PASSWORD not in command
    assert kwargs["in_stream"].read() == PASSWORD + "\n"


def test_run_command_why_replaces_the_expectation() -> None:
    outcome = checks.run_command({"command": "x", "why": "the reason"}, machine(Result()), FakeContext())
    assert outcome == Outcome(True, "the reason", "exit 0, no output")


def test_run_command_without_a_timeout_leaves_the_machines_default() -> None:
    """invoke reads timeout=None as no timeout at all: a hung command would hang the lab."""
    fake = machine(Result())
    checks.run_command({"command": "x"}, fake, FakeContext())
    assert "timeout" not in fake.calls[0][1]


def test_run_command_passes_its_own_timeout() -> None:
    fake = machine(Result())
    checks.run_command({"command": "x", "timeout": 5}, fake, FakeContext())
    assert fake.calls[0][1]["timeout"] == 5


LEGACY_CN = "Error response from daemon: x509: certificate relies on legacy Common Name field, use SANs instead"


def test_run_command_shows_the_last_lines_where_the_error_is() -> None:
    """Tools print the cause last; the diagnosis table reads `seen`, so the tail must be in it."""
    output = "".join(f"progress line {i}\n" for i in range(100)) + LEGACY_CN + "\n"
    outcome = checks.run_command({"command": "docker login"}, machine(Result(stderr=output, exited=1)), FakeContext())
    lines = outcome.seen.splitlines()
    assert lines[:2] == ["exit 1, output:", f"... ({101 - checks.SEEN_LINES} lines before)"]
    assert lines[-1] == LEGACY_CN
    assert "progress line 0\n" not in outcome.seen
    assert len(lines) == 2 + checks.SEEN_LINES
    cause = diagnose(outcome.seen, manifest.load(default_scenario()).table)  # the tutorial's causes
    assert cause is not None and cause.id == "legacy-cn"


def test_run_command_redacts_before_clipping() -> None:
    """A key block cut in half by the clip would no longer match the redactor's pattern."""
    body = "".join(f"{'A' * 60}\n" for _ in range(40))
    output = f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\npassword was {PASSWORD}\n"
    ctx = FakeContext()
    ctx.redactor.add(PASSWORD)
    outcome = checks.run_command({"command": "cat"}, machine(Result(stdout=output)), ctx)
    assert "A" * 60 not in outcome.seen
    assert "-----PRIVATE KEY REDACTED-----" in outcome.seen
    assert outcome.seen.endswith(f"password was {MASK}")


# --- run_http ----------------------------------------------------------------------

OK_V2 = http(headers=("Content-Type: application/json", "Docker-Distribution-Api-Version: registry/2.0"))


def _argv(fake: FakeMachine) -> list[str]:
    return shlex.split(fake.calls[0][0])


@pytest.mark.parametrize(("auth", "password"), [("user", PASSWORD), ("wrong", PASSWORD + "-wrong")])
def test_run_http_sends_the_password_on_stdin_only(auth: str, password: str) -> None:
    fake = machine(Result(stdout=OK_V2))
    item = {"http": "https://myregistrydomain.com/v2/", "auth": auth, "status": 200}
    checks.run_http(item, fake, FakeContext())
    command, kwargs = fake.calls[0]
    assert PASSWORD not in command
    assert _argv(fake)[-3:] == ["-K", "-", "https://myregistrydomain.com/v2/"]
    assert kwargs["in_stream"].read() == f'user = "student:{password}"\n'
    assert kwargs["warn"] is True


def test_run_http_without_auth_reads_no_stdin() -> None:
    fake = machine(Result(stdout=OK_V2))
    checks.run_http({"http": "http://localhost:5043/v2/", "status": 200}, fake, FakeContext())
    assert "-K" not in _argv(fake)
    assert fake.calls[0][1]["in_stream"] is False


def test_run_http_options_reach_curl_quoted() -> None:
    fake = machine(Result(stdout=http(body="")))
    item = {
        "http": "https://myregistrydomain.com/v2/test-image/manifests/latest",
        "head": True,
        "user_agent": "docker/1.5.0",
        "accept": "application/vnd.docker.distribution.manifest.v2+json",
        "cacert": "/root/ca dir/devdockerCA.crt",
        "timeout": 3,
        "status": 200,
    }
    checks.run_http(item, fake, FakeContext())
    argv = _argv(fake)
    assert argv[:5] == ["curl", "-sS", "-i", "--max-time", "3"]
    assert "-I" in argv
    assert argv[argv.index("-A") + 1] == "docker/1.5.0"
    assert argv[argv.index("-H") + 1] == "Accept: application/vnd.docker.distribution.manifest.v2+json"
    assert argv[argv.index("--cacert") + 1] == "/root/ca dir/devdockerCA.crt"
    assert argv[-1] == item["http"]


def test_run_http_passes_on_status_body_and_headers() -> None:
    item = {
        "http": "http://localhost:5043/v2/",
        "auth": "user",
        "status": 200,
        "body": "{}",
        "headers": {"Docker-Distribution-Api-Version": "registry/2.0"},
    }
    outcome = checks.run_http(item, machine(Result(stdout=OK_V2)), FakeContext())
    assert outcome.ok, outcome
    assert "as the lab user" in outcome.expected
    assert "status 200" in outcome.seen and "Docker-Distribution-Api-Version: registry/2.0" in outcome.seen


@pytest.mark.parametrize(
    ("item", "seen"),
    [
        ({"status": 401}, "status 200"),
        ({"status": 200, "body": "[]"}, "body: {}"),
        ({"status": 200, "body_contains": "test-image"}, "body: {}"),
        ({"headers": {"Docker-Content-Digest": DIGEST}}, "Docker-Content-Digest: (absent)"),
        ({"headers": {"Docker-Distribution-Api-Version": "registry/3.0"}}, "registry/2.0"),
    ],
    ids=["status", "body", "body_contains", "header-absent", "header-value"],
)
def test_run_http_fails_on_a_mismatch(item: dict[str, Any], seen: str) -> None:
    outcome = checks.run_http(
        {"http": "http://localhost:5043/v2/", **item}, machine(Result(stdout=OK_V2)), FakeContext()
    )
    assert not outcome.ok
    assert seen in outcome.seen


def test_run_http_body_contains() -> None:
    fake = machine(Result(stdout=http(body='{"repositories":["test-image"]}')))
    item = {"http": "https://myregistrydomain.com/v2/_catalog", "status": 200, "body_contains": '"test-image"'}
    assert checks.run_http(item, fake, FakeContext()).ok


def test_run_http_curl_error_fails_with_its_message() -> None:
    fake = machine(Result(stderr="curl: (60) SSL certificate problem: unable to get local issuer\n", exited=60))
    outcome = checks.run_http({"http": "https://myregistrydomain.com/v2/", "status": 200}, fake, FakeContext())
    assert not outcome.ok
    assert outcome.seen.startswith("curl exit 60: curl: (60) SSL certificate problem")


def test_run_http_curl_error_shows_the_last_lines() -> None:
    stderr = "".join(f"* verbose {i}\n" for i in range(50)) + "curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL\n"
    outcome = checks.run_http({"http": "https://x/", "status": 200}, machine(Result(stderr=stderr, exited=35)),
                              FakeContext())
    assert outcome.seen.endswith("curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL")
    assert "* verbose 0\n" not in outcome.seen


def test_run_http_unparseable_answer_fails_showing_its_end() -> None:
    stdout = "".join(f"<p>{i}</p>\n" for i in range(40)) + "<p>the end</p>\n"
    outcome = checks.run_http({"http": "http://x/", "status": 200}, machine(Result(stdout=stdout)), FakeContext())
    assert not outcome.ok
    assert outcome.seen.startswith("curl's answer is not an HTTP response:\n")
    assert outcome.seen.endswith("<p>the end</p>")


@pytest.mark.parametrize(("exited", "seen"), [(7, "curl: connection refused"), (28, "curl: timed out")])
def test_run_http_unreachable_passes_when_curl_cannot_connect(exited: int, seen: str) -> None:
    item = {"http": "http://192.168.33.10:5000/v2/", "unreachable": True}
    outcome = checks.run_http(item, machine(Result(exited=exited), name="client"), FakeContext())
    assert outcome.ok
    assert outcome.seen == seen
    assert outcome.expected == "http://192.168.33.10:5000/v2/ does not answer from client"


def test_run_http_unreachable_fails_when_it_answers() -> None:
    item = {"http": "http://192.168.33.10:5000/v2/", "unreachable": True, "why": "bound to 127.0.0.1"}
    outcome = checks.run_http(item, machine(Result(stdout=OK_V2)), FakeContext())
    assert not outcome.ok
    assert outcome.expected == "bound to 127.0.0.1"
    assert outcome.seen.startswith("curl exit 0:\nHTTP/1.1 200 OK")


# --- run_file --------------------------------------------------------------------


def test_run_file_mode_0600_passes() -> None:
    fake = machine(Result(stdout="regular file 600 root\n"))
    outcome = checks.run_file({"file": "/root/docker-registry/nginx/domain.key", "mode": "0600"}, fake, FakeContext())
    assert outcome.ok
    assert fake.commands == ["stat -c '%F %a %U' /root/docker-registry/nginx/domain.key"]
    assert outcome.seen == "regular file, mode 0600, owner root"
    assert outcome.expected == "/root/docker-registry/nginx/domain.key exists (regular file, mode 0600)"


def test_run_file_mode_644_fails_a_0600_check() -> None:
    outcome = checks.run_file(
        {"file": "/k", "mode": "0600"}, machine(Result(stdout="regular file 644 root\n")), FakeContext()
    )
    assert not outcome.ok
    assert outcome.seen == "regular file, mode 0644, owner root"


def test_run_file_mode_written_without_a_leading_zero() -> None:
    assert checks.run_file(
        {"file": "/k", "mode": 644}, machine(Result(stdout="regular file 644 root")), FakeContext()
    ).ok


def test_run_file_quotes_the_path() -> None:
    fake = machine(Result(stdout="regular file 644 root"))
    checks.run_file({"file": "/tmp/a b"}, fake, FakeContext())
    assert fake.commands == ["stat -c '%F %a %U' '/tmp/a b'"]


@pytest.mark.parametrize(
    ("stat", "item", "ok"),
    [
        ("directory 755 root", {"type": "directory"}, True),
        ("regular file 644 root", {"type": "directory"}, False),
        ("directory 755 root", {}, False),
        ("regular empty file 644 root", {}, True),
        ("symbolic link 777 root", {}, False),
    ],
)
def test_run_file_type(stat: str, item: dict[str, Any], ok: bool) -> None:
    assert checks.run_file({"file": "/x", **item}, machine(Result(stdout=stat)), FakeContext()).ok is ok


def test_run_file_missing_fails() -> None:
    fake = machine(Result(stderr="stat: cannot statx '/x': No such file or directory", exited=1))
    outcome = checks.run_file({"file": "/x"}, fake, FakeContext())
    assert outcome == Outcome(False, "/x exists (regular file)", "/x does not exist")


@pytest.mark.parametrize(("exited", "ok"), [(1, True), (0, False)])
def test_run_file_absent(exited: int, ok: bool) -> None:
    fake = machine(Result(stdout="regular file 644 root" if exited == 0 else "", exited=exited))
    assert checks.run_file({"file": "/x", "absent": True}, fake, FakeContext()).ok is ok


def test_run_file_content() -> None:
    fake = machine(Result(stdout="regular file 644 root"), Result(stdout="student:$apr1$abc$def\n"))
    outcome = checks.run_file({"file": "/p", "contains": ["student:"]}, fake, FakeContext())
    assert outcome.ok
    assert fake.commands[1] == "cat /p"
    assert outcome.expected.endswith(", its content containing 'student:'")


def test_run_file_content_mismatch_shows_the_content() -> None:
    fake = machine(Result(stdout="regular file 644 root"), Result(stdout="alice:$apr1$x\n"))
    outcome = checks.run_file({"file": "/p", "contains": "student:"}, fake, FakeContext())
    assert not outcome.ok
    assert outcome.seen.endswith("content:\nalice:$apr1$x")


# --- run_any and run -----------------------------------------------------------------


def test_run_any_passes_when_the_second_alternative_passes() -> None:
    fake = machine(Result(stdout="no"), Result(stdout=f"yes {DIGEST}"))
    item = {
        "any": [
            {"command": "first", "contains": "yes"},
            {"command": "second", "contains": "yes", "capture": {"d": "(sha256:[0-9a-f]+)"}},
        ],
        "why": "one of them holds",
    }
    outcome = checks.run_any(item, fake, FakeContext())
    assert outcome.ok
    assert outcome.expected == "one of them holds"
    assert outcome.captured == {"d": DIGEST}
    assert fake.commands == ["first", "second"]


def test_run_any_stops_at_the_first_pass() -> None:
    fake = machine(Result(stdout="yes"))
    item = {"any": [{"command": "first", "contains": "yes"}, {"command": "second"}]}
    outcome = checks.run_any(item, fake, FakeContext())
    assert outcome.ok
    assert outcome.expected == "`first` gives exit 0, output containing 'yes'"
    assert fake.commands == ["first"]


def test_run_any_fails_listing_every_alternative() -> None:
    fake = machine(Result(stdout="HTTP/1.1 200 OK\r\n\r\n{}"), Result(exited=7), Result(stdout="regular file 644 x"))
    item = {
        "any": [
            {"http": "http://localhost:5043/v2/", "status": 401},
            {"http": "https://myregistrydomain.com/v2/", "status": 401},
            {"file": "/k", "mode": "0600"},
        ]
    }
    outcome = checks.run_any(item, fake, FakeContext())
    assert not outcome.ok
    assert outcome.expected.startswith("one of: GET http://localhost:5043/v2/ without credentials answers status 401; ")
    assert "GET https://myregistrydomain.com/v2/" in outcome.expected
    assert outcome.expected.endswith("/k exists (regular file, mode 0600)")
    lines = outcome.seen.splitlines()
    assert lines[0].startswith("- GET http://localhost:5043/v2/ without credentials answers status 401: status 200")
    assert "curl exit 7" in outcome.seen
    assert lines[-1] == "- /k exists (regular file, mode 0600): regular file, mode 0644, owner x"


def test_run_dispatches_on_the_kind() -> None:
    assert checks.run({"command": "true"}, machine(Result()), FakeContext()).ok


def test_run_rejects_a_non_check() -> None:
    with pytest.raises(LabFailure, match="not a check"):
        checks.run({"run": "true"}, machine(), FakeContext())


# --- run_docker_login and run_tls (the parts that need no certificate) ------------------


def test_run_docker_login_probes_with_the_stored_credentials_on_stdin() -> None:
    fake = machine(Result(stdout=_config("myregistrydomain.com")), Result(stdout=OK_V2), name="client")
    ctx = FakeContext()
    outcome = checks.run_docker_login({"docker_login": "myregistrydomain.com"}, fake, ctx)
    assert outcome.ok
    assert outcome.seen == "stored user 'student'; GET https://myregistrydomain.com/v2/ with them: status 200, body: {}"
    probe, kwargs = fake.calls[1]
    assert PASSWORD not in probe
    assert kwargs["in_stream"].read() == f'user = "student:{PASSWORD}"\n'
    assert PASSWORD not in ctx.redactor.redact(f"x {PASSWORD} y")  # what it read is now a secret


def test_run_docker_login_without_credentials_fails() -> None:
    outcome = checks.run_docker_login(
        {"docker_login": "myregistrydomain.com"}, machine(Result(exited=1)), FakeContext()
    )
    assert not outcome.ok
    assert "no credentials for myregistrydomain.com" in outcome.seen


REGISTRY = "myregistrydomain.com"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BROKEN_CONFIGS = [
    pytest.param("{not json", "not JSON (", id="not-json"),
    pytest.param("[]", "holds an array, not an object", id="array"),
    pytest.param('"x"', "holds a string, not an object", id="string"),
    pytest.param('{"auths": []}', '"auths" holds an array, not an object', id="auths-array"),
    pytest.param(json.dumps({"auths": {REGISTRY: "x"}}), f'"auths"."{REGISTRY}" holds a string', id="entry-string"),
    pytest.param(json.dumps({"auths": {REGISTRY: {"auth": 5}}}), ".auth holds a number", id="auth-number"),
    pytest.param(json.dumps({"auths": {REGISTRY: {"auth": "%%not base64%%"}}}), ".auth is not base64",
                 id="auth-not-base64"),
    pytest.param(json.dumps({"auths": {REGISTRY: {"auth": _b64(b"\xff\xfe:x")}}}), ".auth is not base64",
                 id="auth-not-utf8"),
    pytest.param(json.dumps({"auths": {REGISTRY: {"auth": _b64(b"studentsecret")}}}), "no user:password pair",
                 id="auth-no-colon"),
]


@pytest.mark.parametrize(("text", "problem"), BROKEN_CONFIGS)
def test_docker_auth_says_what_is_wrong_with_a_broken_config(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        docker_auth(text, REGISTRY)
    assert problem in str(info.value)
    assert "studentsecret" not in str(info.value)  # what it decoded is never shown


@pytest.mark.parametrize(("text", "problem"), BROKEN_CONFIGS)
def test_run_docker_login_grades_a_broken_config_as_a_failure(text: str, problem: str) -> None:
    """A student's config.json of any shape is an observation, never an exception."""
    outcome = checks.run_docker_login({"docker_login": REGISTRY}, machine(Result(stdout=text)), FakeContext())
    assert not outcome.ok
    assert outcome.seen.startswith("root's ~/.docker/config.json: ")
    assert problem in outcome.seen


def test_docker_auth_ignores_a_broken_entry_of_another_registry() -> None:
    assert docker_auth('{"auths": {"h": "x"}}', REGISTRY) is None
    with pytest.raises(ValueError, match='"auths"."h" holds a string'):
        docker_auth('{"auths": {"h": "x"}}', "h")


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    """The lab CA as (key PEM, cert PEM)."""
    key, cert = make_ca()
    return key.decode(), cert.decode()


TLS_ITEM = {"tls": "localhost:443", "servername": "myregistrydomain.com", "ca": "/ca.crt"}
GARBAGE_CERT = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    "ca_text",
    ["", "hello\n", GARBAGE_CERT, "private-key"],
    ids=["empty", "text", "garbage-pem", "a-private-key"],
)
def test_run_tls_ca_file_not_pem_fails_without_crashing(ca: tuple[str, str], ca_text: str) -> None:
    """A student's CA file that is not a certificate is their mistake to read about, not a traceback."""
    fake = machine()  # nothing to ask the server: the CA already decides
    ctx = FakeContext(files={"/ca.crt": ca[0] if ca_text == "private-key" else ca_text})
    outcome = checks.run_tls(TLS_ITEM, fake, ctx)
    assert not outcome.ok
    assert outcome.seen == "the CA file /ca.crt is not a PEM certificate"
    assert fake.calls == []


def test_run_tls_unreadable_served_certificate_fails(ca: tuple[str, str]) -> None:
    fake = machine(Result(stdout=f"CONNECTED(00000003)\n{GARBAGE_CERT}---\n"))
    outcome = checks.run_tls(TLS_ITEM, fake, FakeContext(files={"/ca.crt": ca[1]}))
    assert not outcome.ok
    assert outcome.seen.startswith("the certificate served at localhost:443 cannot be read: ")


def test_run_tls_without_a_certificate_fails(ca: tuple[str, str]) -> None:
    fake = machine(Result(stdout="connect:errno=111\n", exited=1))
    ctx = FakeContext(files={"/ca.crt": ca[1]})
    outcome = checks.run_tls({"tls": "localhost:443", "servername": "myregistrydomain.com", "ca": "/ca.crt"}, fake, ctx)
    assert not outcome.ok
    assert outcome.seen.startswith("no certificate served (openssl exit 1)")
    assert "-connect localhost:443 -servername myregistrydomain.com" in fake.commands[0]


def test_tls_with_a_missing_ca_file_fails_and_lets_the_next_alternative_run() -> None:
    """Inside `any`, a missing CA file raised and the other alternatives were never tried."""
    from lab.engine.checks import run_any

    ctx = FakeContext({"/etc/ca.crt": "not a certificate"})
    item = {"any": [{"tls": "localhost:5043", "ca": "/nonexistent.crt"},
                    {"tls": "localhost:443", "ca": "/etc/ca.crt"}]}
    outcome = run_any(item, machine(), ctx)
    assert not outcome.ok
    assert "/nonexistent.crt does not exist or cannot be read" in outcome.seen
    assert "/etc/ca.crt is not a PEM certificate" in outcome.seen


def test_every_check_kind_declared_in_the_model_has_a_runner_and_no_more() -> None:
    from lab.engine.checks import RUNNERS
    from lab.model.kinds import CHECKS

    assert list(RUNNERS) == list(CHECKS)
