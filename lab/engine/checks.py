"""Checks: observations on a machine that say what was expected and what was seen.

A check never changes a machine, so the same checks grade a student who did
a step by hand. The parsers here are pure and tested without machines; the
`run_*` functions fetch what they parse through the machine's connection.

Each check kind's keys are declared once in `lab.model.kinds.CHECKS` (the
scenario validates against them when it loads, with no machine); how it runs is
its `run_*` function here, in `RUNNERS`. A new check kind is one `Kind` there
and one function here; a unit test holds the two tables to the same names.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.common import clip
from lab.common.errors import LabFailure
from lab.pki import verify

if TYPE_CHECKING:
    from lab.engine.context import Context
    from lab.machines.remote import Machine

CURL_TIMEOUT = 10
UNREACHABLE_EXITS = {7: "connection refused", 28: "timed out", 52: "empty reply", 56: "connection reset"}
SEEN_LINES = 30
BODY_LINES = 10


@dataclass
class Outcome:
    ok: bool
    expected: str
    seen: str
    captured: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: str


def parse_http_response(text: str) -> HttpResponse:
    """Parse `curl -i` output: the last response's status, headers and body.

    Interim responses (100 Continue) come first; the last block wins.
    """
    text = text.replace("\r\n", "\n")
    blocks = []
    rest = text
    while rest.startswith("HTTP/"):
        head, sep, rest = rest.partition("\n\n")
        blocks.append(head)
        if not sep:
            break
    if not blocks:
        raise ValueError(f"not an HTTP response: {text[:80]!r}")
    lines = blocks[-1].split("\n")
    match = re.match(r"HTTP/[\d.]+\s+(\d{3})", lines[0])
    if not match:
        raise ValueError(f"no status line in {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpResponse(int(match.group(1)), headers, rest)


def curl_config(user: str, password: str) -> str:
    """curl's config syntax for credentials, read from stdin (`-K -`): never on a command line."""
    escaped = f"{user}:{password}".replace("\\", "\\\\").replace('"', '\\"')
    return f'user = "{escaped}"\n'


def docker_auth(config_json: str, registry: str) -> tuple[str, str] | None:
    """The user and password `docker login` stored for a registry in ~/.docker/config.json.

    None when the file holds none for it (or a credential helper keeps them);
    ValueError, saying what is wrong but never the secret, when the file is not
    what `docker login` writes.
    """
    try:
        data = json.loads(config_json or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"holds {_json_kind(data)}, not an object")
    auths = data.get("auths", {})
    if not isinstance(auths, dict):
        raise ValueError(f'"auths" holds {_json_kind(auths)}, not an object')
    for key in (registry, f"https://{registry}", f"https://{registry}/v1/", f"{registry}:443"):
        entry = auths.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise ValueError(f'"auths"."{key}" holds {_json_kind(entry)}, not an object')
        auth = entry.get("auth")
        if not auth:
            continue
        if not isinstance(auth, str):
            raise ValueError(f'"auths"."{key}".auth holds {_json_kind(auth)}, not a string')
        try:
            user, colon, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f'"auths"."{key}".auth is not base64 of user:password') from None
        if not colon:
            raise ValueError(f'"auths"."{key}".auth decodes to no user:password pair')
        return user, password
    return None


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def match_text(item: dict[str, Any], text: str) -> tuple[bool, str]:
    """The text expectations every check kind shares: equals, contains, regex, not_contains."""
    expectations = []
    ok = True
    if "equals" in item:
        expectations.append(f"exactly {item['equals']!r}")
        ok &= text.strip() == str(item["equals"]).strip()
    for needle in _as_list(item.get("contains")):
        expectations.append(f"containing {needle!r}")
        ok &= str(needle) in text
    for needle in _as_list(item.get("not_contains")):
        expectations.append(f"not containing {needle!r}")
        ok &= str(needle) not in text
    if "regex" in item:
        expectations.append(f"matching /{item['regex']}/")
        ok &= re.search(item["regex"], text) is not None
    return ok, ", ".join(expectations)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _tail(ctx: Context, text: str, lines: int = SEEN_LINES) -> str:
    """Redacted first, then the last lines: tools print their error at the end, and the
    diagnosis table matches against what a check saw, so the error must be in it."""
    return clip.tail(ctx.redactor.redact(text), lines)


def _foresee(machine: Machine, command: str, stdin: str | None = None) -> None:
    """Say that the check will likely ask `command` once an answer it waits for is in: a batched
    check (lab.engine.batching's stand-in machines) asks it in the same round; a machine asked one
    command at a time has no `foresee`, and nothing happens. What the check asks and judges after
    is the same either way."""
    foresee = getattr(machine, "foresee", None)
    if foresee is not None:
        foresee(command, stdin)


def run_command(item: dict[str, Any], machine: Machine, ctx: Context) -> Outcome:
    command = item["command"]
    stdin = item.get("stdin")
    # NOTE: invoke reads timeout=None as "no timeout"; without one the machine's default applies.
    limit = {"timeout": item["timeout"]} if item.get("timeout") is not None else {}
    result = machine.sudo(command, warn=True, in_stream=ctx.stdin(stdin) if stdin is not None else False, **limit)
    text = result.stdout + result.stderr
    want_exit = item.get("exit", 0)
    exit_ok = (result.exited != 0) if want_exit == "nonzero" else (result.exited == want_exit)
    text_ok, wanted = match_text(item, text)
    captured = {}
    for name, pattern in (item.get("capture") or {}).items():
        found = re.search(pattern, text)
        if found:
            captured[name] = found.group(1) if found.groups() else found.group(0)
        else:
            text_ok = False
            wanted += f"{', ' if wanted else ''}with a value for {name} matching /{pattern}/"
    exit_text = "a non-zero exit" if want_exit == "nonzero" else f"exit {want_exit}"
    expected = item.get("why") or f"`{command}` gives {exit_text}{', output ' + wanted if wanted else ''}"
    seen = f"exit {result.exited}" + (f", output:\n{_tail(ctx, text)}" if text.strip() else ", no output")
    return Outcome(exit_ok and text_ok, expected, seen, captured)


def http_request(item: dict[str, Any], ctx: Context,
                 credentials: tuple[str, str] | None = None) -> tuple[str, str | None]:
    """The curl command an `http` item runs, and its stdin (the credentials, `-K -`), or None."""
    url = item["http"]
    args = ["curl", "-sS", "-i", "--max-time", str(item.get("timeout", CURL_TIMEOUT))]
    if item.get("head"):
        args.append("-I")
    if item.get("user_agent"):
        args += ["-A", item["user_agent"]]
    if item.get("accept"):
        args += ["-H", f"Accept: {item['accept']}"]
    if item.get("cacert"):
        args += ["--cacert", item["cacert"]]
    auth = item.get("auth", "none")
    stdin = None
    if auth != "none":
        name, password = credentials or (ctx.lab_user().name, ctx.lab_user().password or "")
        stdin = curl_config(name, password if auth == "user" else f"{password}-wrong")
        args += ["-K", "-"]
    args.append(url)
    return " ".join(shlex.quote(a) for a in args), stdin


def run_http(
    item: dict[str, Any], machine: Machine, ctx: Context, credentials: tuple[str, str] | None = None
) -> Outcome:
    """curl on the machine; `auth: user` sends the lab user's password, or `credentials` when given."""
    url = item["http"]
    auth = item.get("auth", "none")
    command, stdin = http_request(item, ctx, credentials)
    result = machine.sudo(command, warn=True, in_stream=ctx.stdin(stdin) if stdin else False)
    who = {"none": "without credentials", "user": "as the lab user", "wrong": "with a wrong password"}[auth]
    if item.get("unreachable"):
        expected = item.get("why") or f"{url} does not answer from {machine.name}"
        if result.exited in UNREACHABLE_EXITS:
            return Outcome(True, expected, f"curl: {UNREACHABLE_EXITS[result.exited]}")
        return Outcome(False, expected, f"curl exit {result.exited}:\n{_tail(ctx, result.stdout + result.stderr)}")
    wants = []
    if "status" in item:
        wants.append(f"status {item['status']}")
    if "body" in item:
        wants.append(f"body {item['body']!r}")
    if "body_contains" in item:
        wants.append(f"a body containing {item['body_contains']!r}")
    for name, value in (item.get("headers") or {}).items():
        wants.append(f"header {name}: {value}")
    expected = item.get("why") or f"GET {url} {who} answers {', '.join(wants)}"
    if item.get("why"):
        expected += f" (GET {url} {who}: {', '.join(wants)})"
    if result.exited != 0:
        return Outcome(False, expected, f"curl exit {result.exited}: {_tail(ctx, result.stderr or result.stdout)}")
    try:
        response = parse_http_response(result.stdout)
    except ValueError:
        return Outcome(False, expected, f"curl's answer is not an HTTP response:\n{_tail(ctx, result.stdout)}")
    ok = True
    if "status" in item:
        ok &= response.status == item["status"]
    if "body" in item:
        ok &= response.body.strip() == str(item["body"]).strip()
    if "body_contains" in item:
        ok &= str(item["body_contains"]) in response.body
    for name, value in (item.get("headers") or {}).items():
        ok &= response.headers.get(name.lower()) == str(value)
    shown_headers = "".join(
        f"\n{name}: {response.headers.get(name.lower(), '(absent)')}" for name in (item.get("headers") or {})
    )
    seen = f"status {response.status}{shown_headers}, body: {_tail(ctx, response.body, BODY_LINES) or '(empty)'}"
    return Outcome(ok, expected, seen)


def run_tls(item: dict[str, Any], machine: Machine, ctx: Context) -> Outcome:
    target = item["tls"]
    servername = item.get("servername") or target.rsplit(":", 1)[0]
    command = (f"timeout {CURL_TIMEOUT} openssl s_client -connect {shlex.quote(target)} "
               f"-servername {shlex.quote(servername)} -showcerts </dev/null 2>&1")
    _foresee(machine, command)  # asked with the CA file in a batched check, judged after it
    ca_text = ctx.read_file(item["ca"], default_machine=machine.name, missing_ok=True)
    expected = item.get("why") or (
        f"the certificate served at {target} chains to the lab CA"
        + (f" and names {servername} in its subjectAltName" if item.get("san", True) else "")
    )
    if ca_text is None:
        return Outcome(False, expected, f"the CA file {item['ca']} does not exist or cannot be read")
    ca_pem = ca_text.encode()
    try:
        verify.cert_facts(ca_pem)
    except ValueError:
        return Outcome(False, expected, f"the CA file {item['ca']} is not a PEM certificate")
    result = machine.sudo(command, warn=True)
    chain = verify.extract_pem_certs(result.stdout)
    if not chain:
        seen = f"no certificate served (openssl exit {result.exited}):\n{_tail(ctx, result.stdout)}"
        return Outcome(False, expected, seen)
    try:
        facts = verify.cert_facts(chain[0])
        problems = verify.verify_chain(chain, ca_pem, servername, check_names=item.get("san", True))
    except ValueError as exc:
        return Outcome(False, expected, f"the certificate served at {target} cannot be read: {exc}")
    seen = (
        f"subject CN={facts.subject_cn}, issuer CN={facts.issuer_cn}, "
        f"SAN={', '.join((*facts.dns_names, *facts.ip_addresses)) or 'none'}, "
        f"expires {facts.not_after:%Y-%m-%d}, signature {facts.signature_hash}"
    )
    if problems:
        seen += "\n" + "\n".join(f"- {p}" for p in problems)
    return Outcome(not problems, expected, seen)


def run_file(item: dict[str, Any], machine: Machine, ctx: Context) -> Outcome:
    path = item["file"]
    quoted = shlex.quote(path)
    reads = any(k in item for k in ("contains", "not_contains", "regex", "equals"))
    if reads and not item.get("absent"):
        _foresee(machine, f"cat {quoted}")  # asked with the stat in a batched check, judged after it
    result = machine.sudo(f"stat -c '%F %a %U' {quoted}", warn=True)
    if item.get("absent"):
        return Outcome(result.exited != 0, f"{path} does not exist", "it exists" if result.ok else "absent")
    kind = item.get("type", "regular file")
    wants = [kind]
    if "mode" in item:
        wants.append(f"mode {item['mode']}")
    expected = item.get("why") or f"{path} exists ({', '.join(wants)})"
    if result.exited != 0:
        return Outcome(False, expected, f"{path} does not exist")
    ftype, mode, owner = result.stdout.strip().rsplit(" ", 2)
    ok = ftype.startswith(kind) or (kind == "regular file" and ftype == "regular empty file")
    if "mode" in item:
        ok &= int(mode, 8) == int(str(item["mode"]), 8)
    seen = f"{ftype}, mode {int(mode, 8):04o}, owner {owner}"
    if reads:
        text = machine.sudo(f"cat {quoted}", warn=True).stdout
        text_ok, wanted = match_text(item, text)
        ok &= text_ok
        expected += f", its content {wanted}"
        if not text_ok:
            seen += f", content:\n{_tail(ctx, text)}"
    return Outcome(ok, expected, seen)


# What `stat -c %F` prints; a check names one (an empty regular file counts as a regular file).


def run_docker_login(item: dict[str, Any], machine: Machine, ctx: Context) -> Outcome:
    registry = item["docker_login"]
    expected = item.get("why") or f"`docker login {registry}` stored credentials that {registry} accepts"
    # Most often `docker login` stored the lab user's own credentials: a batched check asks for the probe
    # with them beside config.json (lab.engine.batching), so its answer is there if they are the stored ones.
    command, stdin = http_request({"http": f"https://{registry}/v2/", "auth": "user"}, ctx)
    _foresee(machine, command, ctx.stdin(stdin).read() if stdin else None)
    text = machine.sudo("cat ~/.docker/config.json", warn=True).stdout
    try:
        found = docker_auth(text, registry)
    except ValueError as exc:
        return Outcome(False, expected, f"root's ~/.docker/config.json: {exc}")
    if not found:
        return Outcome(False, expected, f"no credentials for {registry} in root's ~/.docker/config.json")
    user, password = found
    ctx.redactor.add(password)
    probe = run_http({"http": f"https://{registry}/v2/", "auth": "user", "status": 200}, machine, ctx,
                     credentials=(user, password))
    return Outcome(probe.ok, expected, f"stored user {user!r}; GET https://{registry}/v2/ with them: {probe.seen}")


def run_any(item: dict[str, Any], machine: Machine, ctx: Context) -> Outcome:
    """Passes when one alternative passes: a step's effect as it stands now or after later steps."""
    outcomes = []
    for alternative in item["any"]:
        outcome = run(alternative, machine, ctx)
        if outcome.ok:
            return Outcome(True, item.get("why") or outcome.expected, outcome.seen, outcome.captured)
        outcomes.append(outcome)
    expected = item.get("why") or "one of: " + "; ".join(o.expected for o in outcomes)
    seen = "\n".join(f"- {o.expected}: {o.seen}" for o in outcomes)
    return Outcome(False, expected, seen)


# How each check kind runs; its keys are declared in lab.model.kinds.CHECKS.
RUNNERS: dict[str, Callable[..., Outcome]] = {
    "command": run_command,
    "http": run_http,
    "tls": run_tls,
    "file": run_file,
    "docker_login": run_docker_login,
    "any": run_any,
}


def run(item: dict[str, Any], machine: Machine, ctx: Context) -> Outcome:
    kind = next((k for k in RUNNERS if k in item), None)
    if kind is None:
        raise LabFailure(f"not a check: {item}")
    return RUNNERS[kind](item, machine, ctx)
