"""Unit tests for lab.cli: `main()` in-process, on commands that need no machine.

A guard makes any subprocess (Vagrant, Docker, invoke) fail the test, so these
tests prove that bad input and the read-only commands never reach the host's tools.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import invoke.runners
import pytest

from lab.cli.main import main
from lab.common.errors import LabFailure
from lab.engine.session import Session

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT / "lab.yml"
PASSWORD = "Sup3r-s3cret-pw"
STEP_IDS = [
    "local-registry",
    "hosts",
    "compose-registry",
    "nginx-proxy",
    "basic-auth",
    "tls",
    "port-443",
    "client-trust",
    "client-login",
    "client-push",
    "server-pull",
]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No REGLAB_* from the caller's shell, no cache outside tmp_path, no subprocess at all."""
    for name in ("REGLAB_PROVIDER", "REGLAB_EDITION", "REGLAB_IMAGES", "REGLAB_LAB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a unit test started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(invoke.runners, "Popen", no_process)
    yield
    # Session opens .lab/logs/*.log through process-wide loggers; close this test's files.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.name.startswith(f"reglab.{tmp_path}"):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()


def reglab(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def lab_file(tmp_path: Path, text: str | None = None) -> Path:
    """A lab file in tmp_path: the shipped one, or the given text."""
    path = tmp_path / "lab.yml"
    path.write_text(SHIPPED.read_text() if text is None else text)
    return path


def with_password(tmp_path: Path) -> Path:
    text = SHIPPED.read_text()
    assert "  - name: student\n" in text
    return lab_file(tmp_path, text.replace("  - name: student\n", f"  - name: student\n    password: {PASSWORD}\n"))


# --- bad lab files: one line, exit 2 -------------------------------------------------

BAD_LABS = [
    pytest.param("name: reglab\n  bad: indent\n", "line 2", id="yaml-syntax"),
    pytest.param("ports:\n  proxy: abc\n", "ports.proxy", id="wrong-type"),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 300.1.1.1}\n", "machines.client.ip", id="ip"
    ),
    pytest.param(
        "machines:\n  registry: {ip: 192.168.33.10}\n  client: {ip: 192.168.33.10}\n",
        "machines.client.ip",
        id="same-ip",
    ),
    pytest.param("provider: vmware\n", "provider", id="unknown-provider"),
    pytest.param("nmae: reglab\n", "nmae", id="unknown-key"),
    pytest.param("users:\n  - name: ann\n    password: 'a:bcdefgh'\n", "users[0].password", id="bad-password"),
]


def assert_one_error_line(err: str, *words: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reglab: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


@pytest.mark.parametrize(("text", "key_path"), BAD_LABS)
def test_bad_lab_file_is_one_error_line(tmp_path: Path, text: str, key_path: str) -> None:
    path = lab_file(tmp_path, text)
    code, out, err = reglab("--lab", str(path), "status")
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"{path}: {key_path}")
    assert not (tmp_path / ".lab" / "reglab").exists()  # nothing written for a lab that does not load


def test_missing_lab_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yml"
    code, _, err = reglab("--lab", str(path), "status")
    assert code == 2
    assert err == (f"reglab: error: {path}: no such file; `reglab init {tmp_path}` writes a commented lab.yml to "
                   f"start from (then give --lab {tmp_path / 'lab.yml'})\n")


def test_dev_zero_as_lab_file_is_exit_2_at_once() -> None:
    """/dev/zero never ends: read whole, it would eat the host's memory before any check."""
    started = time.monotonic()
    code, out, err = reglab("--lab", "/dev/zero", "status")
    assert code == 2 and out == ""
    assert_one_error_line(err, "/dev/zero: cannot read the lab file: not a regular file")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["up"],
        ["down"],
        ["provision"],
        ["steps"],
        ["show", "tls"],
        ["solve", "--all"],
        ["check", "tls"],
        ["run"],
        ["reset"],
        ["report"],
        ["ssh", "registry"],
        ["image", "build", "node"],
    ],
    ids=lambda c: "-".join(c),
)
def test_every_command_reports_a_bad_lab_file_first(tmp_path: Path, command: list[str]) -> None:
    path = lab_file(tmp_path, "provider: vmware\n")
    code, _, err = reglab("--lab", str(path), *command)
    assert code == 2
    assert_one_error_line(err, f"{path}: provider", "'vmware'")


def test_bad_environment_variable_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGLAB_EDITION", "2016")
    code, _, err = reglab("--lab", str(lab_file(tmp_path)), "steps")
    assert code == 2
    assert_one_error_line(err, "environment variable REGLAB_EDITION", "'2016'")


# --- argparse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["nosuch"], ["show"], ["solve"], ["solve", "tls", "--all"], ["--edition", "2016", "steps"], ["image"]],
    ids=[
        "no-command",
        "unknown-command",
        "show-without-step",
        "solve-without-target",
        "step-and-all",
        "bad-edition",
        "image-without-action",
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    code, out, err = reglab(*argv)
    assert code == 2
    assert "usage: reglab" in err  # argparse writes to main()'s stderr


@pytest.mark.parametrize("argv", [["--help"], ["show", "--help"], ["image", "build", "--help"]])
def test_help_exits_0(argv: list[str]) -> None:
    code, out, _ = reglab(*argv)
    assert code == 0
    assert "usage: reglab" in out


# --- commands that need no machine ----------------------------------------------------


@pytest.fixture
def machines(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Vagrant's view of the machines (name -> state) and their identities, without Vagrant."""
    from lab.engine.session import Session
    from lab.machines.providers.base import MachineStatus
    from lab.machines.providers.vagrant import VagrantProvider as Lifecycle

    found = {"registry": "not_created", "client": "not_created"}
    identities = {"registry": "id-r1", "client": "id-c1"}
    monkeypatch.setattr(Lifecycle, "status",
                        lambda self: [MachineStatus(n, "docker", s, "?") for n, s in found.items()])

    def verify(self: Session) -> None:
        for name in self.provider.names:
            self._identify(name, identities[name])

    monkeypatch.setattr(Session, "verify_machines", verify)
    found["identities"] = identities  # type: ignore[assignment]
    return found


def test_steps_lists_every_step_not_run(tmp_path: Path, machines: dict[str, str]) -> None:
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), "steps")
    assert code == 0, err
    rows = out.splitlines()
    assert [row.split()[0] for row in rows] == STEP_IDS
    assert all(row.split(None, 1)[1].startswith("not run ") for row in rows), out
    assert (tmp_path / ".lab" / "reglab" / "secrets.yml").is_file()  # the generated password lives beside the lab file


def _statuses(out: str) -> dict[str, str]:
    return {row.split()[0]: row.split()[1] for row in out.splitlines()}


@pytest.mark.parametrize(
    ("client_state", "client_id", "hosts", "note"),
    [
        ("running", "id-c1", "pass", ""),  # the same machines: results stand
        ("not_created", "id-c1", "not", "machine client is not the one"),  # item 8: `docker rm -f` by hand
        ("running", "id-c0", "not", "machine client is not the one"),  # destroyed and made anew
    ],
    ids=["same-machines", "destroyed-by-hand", "made-anew"],
)
def test_steps_show_results_only_for_the_machines_they_were_taken_on(
    tmp_path: Path, machines: dict[str, str], client_state: str, client_id: str, hosts: str, note: str
) -> None:
    path = lab_file(tmp_path)
    (tmp_path / ".lab" / "reglab").mkdir(parents=True)
    (tmp_path / ".lab" / "reglab" / "state.json").write_text(
        '{"steps": {"hosts": {"status": "pass"}, "tls": {"status": "pass"}}, '
        f'"machines": {{"registry": "id-r1", "client": "{client_id}"}}}}')
    machines.update(registry="running", client=client_state)
    code, out, err = reglab("--lab", str(path), "steps")
    assert code == 0
    assert _statuses(out)["hosts"] == hosts
    assert _statuses(out)["tls"] == "pass"  # the registry's own step: same machine
    assert _statuses(out)["local-registry"] == "not"
    assert note in err


def test_a_corrupt_state_file_is_set_aside_and_down_still_works(tmp_path: Path, machines, monkeypatch) -> None:
    """Item 9: the message used to say "remove it (reglab down does)", and down failed the same way."""
    from lab.machines.providers.vagrant import VagrantProvider as Lifecycle

    monkeypatch.setattr(Lifecycle, "down", lambda self: [])
    path = lab_file(tmp_path)
    (tmp_path / ".lab" / "reglab").mkdir(parents=True)
    (tmp_path / ".lab" / "reglab" / "state.json").write_text('{"steps": {"hosts": {"stat')
    code, out, err = reglab("--lab", str(path), "down")
    assert code == 0, err
    assert "set aside as state.json.corrupt" in err
    assert (tmp_path / ".lab" / "reglab" / "state.json.corrupt").exists()


def test_show_basic_auth_never_prints_the_password(tmp_path: Path) -> None:
    code, out, err = reglab("--lab", str(with_password(tmp_path)), "show", "basic-auth")
    assert code == 0, err
    assert "htpasswd -c /root/docker-registry/nginx/registry.password student" in out
    assert "auth_basic" in out
    assert PASSWORD not in out
    assert PASSWORD not in err


def test_show_client_login_uses_a_placeholder_for_the_password(tmp_path: Path) -> None:
    code, out, _ = reglab("--lab", str(with_password(tmp_path)), "show", "client-login")
    assert code == 0
    assert "docker login myregistrydomain.com -u student --password-stdin" in out
    assert PASSWORD not in out


def test_show_unknown_step(tmp_path: Path) -> None:
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), "show", "nosuch")
    assert code == 2
    assert out == ""
    assert_one_error_line(err, "'nosuch'", "tutorial.yaml", "basic-auth")


def test_show_tls_as_written(tmp_path: Path) -> None:
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), "--edition", "as-written", "show", "tls")
    assert code == 0, err
    assert "(as-written edition)" in out
    assert "ssl on;" in [line.strip() for line in out.splitlines()]
    assert "openssl genrsa -out devdockerCA.key 2048" in out
    assert "openssl req -x509 -new -nodes -key devdockerCA.key" in out
    assert "openssl x509 -req -in dev-docker-registry.com.csr" in out
    assert "/CN=myregistrydomain.com" in out


def test_show_tls_modern(tmp_path: Path) -> None:
    code, out, _ = reglab("--lab", str(lab_file(tmp_path)), "show", "tls")
    assert code == 0
    assert "listen 443 ssl;" in out
    assert "ssl on;" not in [line.strip() for line in out.splitlines()]
    assert "openssl genrsa" not in out
    assert ".lab/NAME/pki/" in out


# --- interrupts: Ctrl-C, SIGTERM and SIGHUP are exit 130, recorded, never a traceback -------


@pytest.mark.usefixtures("ctrl_c")  # SIGINT raises KeyboardInterrupt, even where pytest inherited it ignored
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_during_a_phase_is_exit_130_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    """SIGTERM (a `kill`, a CI timeout) and SIGHUP (a closed terminal) stop reglab as Ctrl-C does."""

    def up(self: Session, names: list[str] | None = None) -> None:
        with self.progress.phase("boot"):
            signal.raise_signal(sig)
            time.sleep(2)  # reached only if the signal did not interrupt
            raise AssertionError("the signal did not interrupt")

    monkeypatch.setattr(Session, "up", up)
    # Without main()'s own handlers, SIGTERM and SIGHUP would end pytest: these note them instead.
    unhandled: list[int] = []
    before = {s: signal.signal(s, lambda signum, _frame: unhandled.append(signum))
              for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        ours = {s: signal.getsignal(s) for s in before}
        started = time.monotonic()
        code, out, err = reglab("--lab", str(lab_file(tmp_path)), "up")
        assert {s: signal.getsignal(s) for s in before} == ours  # main() put the handlers back
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert unhandled == []
    assert time.monotonic() - started < 1.5
    assert code == 130
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        "reglab: interrupted during boot. Machines may still be running: `reglab status` shows them, "
        "`reglab down` removes them."
    )
    state = json.loads((tmp_path / ".lab" / "reglab" / "state.json").read_text())
    assert state["interrupted"]["phase"] == "boot"
    assert state["interrupted"]["command"] == "up"
    assert datetime.fromisoformat(state["interrupted"]["at"]).tzinfo is not None


def test_a_signal_reglab_was_started_with_ignored_stays_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nohup reglab up &` ignores SIGHUP: closing the terminal must not stop it half-way."""
    seen: list[object] = []

    def up(self: Session, names: list[str] | None = None) -> None:
        seen.append(signal.getsignal(signal.SIGHUP))
        signal.raise_signal(signal.SIGHUP)  # the terminal closes: nothing happens
        raise LabFailure("up went on after SIGHUP")  # and nothing after `up` is under test here

    monkeypatch.setattr(Session, "up", up)
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        code, _, err = reglab("--lab", str(lab_file(tmp_path)), "up")
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
    assert seen == [signal.SIG_IGN]
    assert code == 1 and err == "reglab: failed: up went on after SIGHUP\n"


def test_an_interrupt_outside_any_phase_still_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def steps(self: Session, step: str | None) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "step_ids", steps)
    code, _, err = reglab("--lab", str(lab_file(tmp_path)), "show", "tls")
    assert code == 130
    assert err == ("reglab: interrupted. Machines may still be running: `reglab status` shows them, "
                   "`reglab down` removes them.\n")
    state = json.loads((tmp_path / ".lab" / "reglab" / "state.json").read_text())
    assert state["interrupted"]["phase"] is None
    assert state["interrupted"]["command"] == "show"


# --- one message for whatever a user can cause --------------------------------------------


def test_status_without_vagrant_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), "status")
    assert code == 2
    assert out == ""
    assert_one_error_line(err, "vagrant is not installed; ", "apt-get install")


def test_a_file_reglab_cannot_read_is_one_error_line_naming_it(tmp_path: Path) -> None:
    state = tmp_path / ".lab" / "reglab" / "state.json"
    state.mkdir(parents=True)  # a folder where the state file goes
    code, _, err = reglab("--lab", str(lab_file(tmp_path)), "steps")
    assert code == 2
    assert_one_error_line(err, f"{state}: Is a directory")


def test_an_os_error_without_a_path_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def steps(self: Session, step: str | None) -> list[str]:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(Session, "step_ids", steps)
    code, _, err = reglab("--lab", str(lab_file(tmp_path)), "show", "tls")
    assert code == 1
    assert err == "reglab: failed: Connection reset by peer\n"


def test_the_cli_gives_the_lab_lock_back_when_a_command_ends(tmp_path: Path, machines: dict[str, str]) -> None:
    """Seen: in-process calls kept the lock, and a second reglab process waited for the test's."""
    import fcntl
    import os

    path = lab_file(tmp_path)
    assert reglab("--lab", str(path), "steps")[0] == 0
    fd = os.open(tmp_path / ".lab" / "reglab" / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
    finally:
        os.close(fd)


# --- reglab run --keep-going -------------------------------------------------------------


def _fake_run_session(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Session.run's own code with no machine: start does nothing, the engine records how it was called."""
    from lab.model.results import RunResult, Status, StepResult

    calls: list[dict[str, object]] = []

    class Engine:
        def run(self, steps: object, solve: bool, phases: dict[str, float], keep_going: bool = False) -> RunResult:
            calls.append({"solve": solve, "keep_going": keep_going})
            step = StepResult("client-login", "docker login", Status.FAIL, bridged=keep_going)
            return RunResult("as-written", datetime.now().astimezone(), [step])

    monkeypatch.setattr(Session, "start", lambda self: None)
    monkeypatch.setattr(Session, "engine", lambda self: Engine())
    return calls


@pytest.mark.parametrize(("argv", "keep_going"), [(["run"], False), (["run", "--keep-going"], True)])
def test_run_passes_keep_going_down_to_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], keep_going: bool) -> None:
    calls = _fake_run_session(monkeypatch)
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), *argv)
    assert code == 1, err
    assert calls == [{"solve": True, "keep_going": keep_going}]
    assert ("bridge:   the modern solution was applied" in out) is keep_going
    assert (tmp_path / ".lab" / "reglab" / "reports" / "as-written.json").exists()


def test_keep_going_is_a_flag_of_run_only(tmp_path: Path) -> None:
    """The flag belongs to `run` (the issue asks for it there); other commands refuse it as usage."""
    code, _, err = reglab("--lab", str(lab_file(tmp_path)), "solve", "--all", "--keep-going")
    assert code == 2
    assert "--keep-going" in err


# --- reglab report: the maintainer's report and the README table ----------------------------------


def test_report_writes_the_maintainers_report_and_the_readme_table_from_the_runs_json(tmp_path: Path) -> None:
    """Only the as-written run exists: the modern column says so, and the README table shows its causes."""
    from lab.model.diagnosis import cause_by_id
    from lab.model.results import Look, RunResult, Status, StepResult
    from lab.reports.files import write_reports
    from lab.reports.readme import README_END, README_START

    pull = StepResult("server-pull", "Pull", Status.FAIL, seen="no basic auth credentials",
                      diagnosis=cause_by_id("no-basic-auth"), bridged=True,
                      looks=[Look("no-basic-auth", Status.FAIL, diagnosis=cause_by_id("name-not-pushed"))])
    reports = tmp_path / ".lab" / "reglab" / "reports"
    write_reports(RunResult("as-written", datetime.now().astimezone(), [pull]), reports)
    readme = tmp_path / "README.md"
    readme.write_text(f"# lab\n{README_START}\nold\n{README_END}\n")
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), "report", "--readme", str(readme))
    assert code == 0, err
    maintainer = (reports / "maintainer.md").read_text()
    assert "| server-pull | FAIL | no-basic-auth; name-not-pushed |" in maintainer
    assert "- modern: no run yet" in maintainer and maintainer.count("| no run yet |") == 1
    assert "tutorial text unchanged:" in maintainer
    assert (reports / "maintainer.html").exists()
    assert f"both editions side by side: {reports / 'maintainer.md'} (also .html); tutorial text unchanged" in out
    assert "| server-pull | FAIL (no-basic-auth; name-not-pushed), bridged |" in readme.read_text()


def test_a_failed_step_prints_what_each_look_past_a_cause_found() -> None:
    from lab.cli.output import print_step
    from lab.model.diagnosis import cause_by_id
    from lab.model.results import Look, Status, StepResult

    out = io.StringIO()
    print_step(StepResult("server-pull", "Pull", Status.FAIL, diagnosis=cause_by_id("no-basic-auth"),
                          looks=[Look("no-basic-auth", Status.FAIL, diagnosis=cause_by_id("name-not-pushed"))]), out)
    text = out.getvalue()
    assert "then:     past no-basic-auth, the step as written fails again: name-not-pushed" in text
    assert text.index(cause_by_id("no-basic-auth").fix) < text.index(cause_by_id("name-not-pushed").fix)


# --- numeric options: bounded where argparse reads them -------------------------------

BAD_NUMBERS = [
    (["class", "check", "--all", "--timeout", "0"], "--timeout", "'0'"),
    (["class", "check", "--all", "--timeout", "-5"], "--timeout", "'-5'"),
    (["class", "check", "--all", "--timeout", "1e9"], "--timeout", "'1e9'"),
    (["class", "check", "--all", "--timeout", "3601"], "--timeout", "'3601'"),
    (["class", "check", "--all", "--jobs", "0"], "--jobs", "'0'"),
    (["class", "up", "2", "--jobs", "0"], "--jobs", "'0'"),
    (["class", "up", "2", "--jobs", "251"], "--jobs", "'251'"),
    (["class", "serve", "--port", "65536"], "--port", "'65536'"),
    (["class", "serve", "--port", "-1"], "--port", "'-1'"),
    (["class", "serve", "--every", "0"], "--every", "'0'"),
    (["class", "serve", "--every", "abc"], "--every", "'abc'"),
]


@pytest.mark.parametrize(("argv", "option", "given"), BAD_NUMBERS, ids=[" ".join(a[-2:]) for a, _, _ in BAD_NUMBERS])
def test_numeric_options_out_of_bounds_are_usage_errors(tmp_path: Path, argv: list[str], option: str,
                                                        given: str) -> None:
    """`--timeout 0` was accepted: every lab then failed at once as `unreachable`."""
    code, out, err = reglab("--lab", str(lab_file(tmp_path)), *argv)
    assert code == 2 and out == ""
    assert f"error: argument {option}: expected " in err and f"got {given}" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / ".class").exists()


def test_numeric_options_accept_their_bounds() -> None:
    from lab.cli.parser import CHECK_TIMEOUT_MAX, build_parser

    parser = build_parser(io.StringIO(), io.StringIO())
    args = parser.parse_args(["class", "check", "--all", "--timeout", "1", "--jobs", "250"])
    assert (args.timeout, args.jobs) == (1, 250)
    assert parser.parse_args(["class", "check", "--all", "--timeout", str(CHECK_TIMEOUT_MAX)]).timeout == 3600
    args = parser.parse_args(["class", "serve", "--port", "0", "--every", "1"])
    assert (args.port, args.every) == (0, 1)


def test_setup_host_prepares_the_host_for_the_lab_files_provider_unless_told_otherwise(tmp_path, monkeypatch) -> None:
    """`reglab setup-host`: what an installed reglab has in place of `python -m lab.machines.hostsetup`."""
    from lab.machines import hostsetup

    asked = []
    monkeypatch.setattr(hostsetup, "setup", lambda provider, log_dir, say, browser=False: asked.append(
        (provider, browser)) or provider)
    monkeypatch.delenv("REGLAB_PROVIDER", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["setup-host"], stdout=out, stderr=err) == 0
    assert main(["--provider", "libvirt", "setup-host", "--browser"], stdout=out, stderr=err) == 0
    monkeypatch.setenv("REGLAB_PROVIDER", "ssh")
    assert main(["setup-host"], stdout=out, stderr=err) == 0
    assert asked == [("docker", False), ("libvirt", True), ("ssh", False)]


def test_a_step_that_may_fail_for_an_earlier_one_says_so_beside_it() -> None:
    from lab.cli.output import print_step
    from lab.model.results import Status, StepResult

    out = io.StringIO()
    print_step(StepResult("tls", "TLS", Status.FAIL, expected="a 200", seen="nothing", depends_on="hosts"), out)
    assert out.getvalue().splitlines()[0] == "FAIL tls: TLS  (depends on a failed step: hosts)"
