"""Unit tests for Session.close: the connections a command or a class's check opened end with it.

Before, each dashboard refresh left two SSH connections open per lab.
"""

from __future__ import annotations

import io
import logging
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import invoke
import pytest

from lab.classroom import netpool
from lab.classroom.room import Classroom
from lab.classroom.roster import Student
from lab.cli.main import main
from lab.common.progress import Progress
from lab.engine.session import Session
from lab.machines.providers.vagrant import VagrantProvider
from lab.model.results import Status, StepResult

OS_RELEASE = 'ID=debian\nPRETTY_NAME="Debian GNU/Linux 12"\n\nreglab-identity=id-{name}\n'


class FakeMachine:
    """Answers what `reglab check hosts` asks, and counts how often it is closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0
        self.abandoned = False
        self.asked: list[str] = []

    def sudo(self, command: str, **_: Any) -> invoke.Result:
        self.asked.append(command)
        if "reglab-identity=" in command:
            return invoke.Result(stdout=OS_RELEASE.format(name=self.name), exited=0)
        if command.startswith("getent hosts"):
            return invoke.Result(stdout="192.168.33.10   myregistrydomain.com\n", exited=0)
        return invoke.Result(stdout="", stderr="no\n", exited=1)

    def close(self) -> None:
        self.closed += 1

    def abandon(self) -> None:
        self.abandoned = True


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("REGLAB_PROVIDER", "REGLAB_EDITION", "REGLAB_IMAGES", "REGLAB_LAB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a unit test started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(invoke.runners, "Popen", no_process)
    yield
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.name.startswith(f"reglab.{tmp_path}"):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[FakeMachine]:
    """Every machine connection the provider hands out."""
    machines: list[FakeMachine] = []

    def connect(self: VagrantProvider, name: str) -> FakeMachine:
        machines.append(FakeMachine(name))
        return machines[-1]

    monkeypatch.setattr(VagrantProvider, "connect", connect)
    monkeypatch.setattr(VagrantProvider, "ssh_config", lambda self: Path("/nonexistent"))
    monkeypatch.setattr(VagrantProvider, "keep_apart", lambda self: [])  # host iptables: not this test's
    return machines


def test_a_check_closes_the_connections_it_opened_and_only_at_its_end(tmp_path: Path, made: list) -> None:
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["--lab", str(tmp_path / "lab.yml"), "-q", "check", "hosts"], stdout=out, stderr=err)
    assert code == 0, err.getvalue() + out.getvalue()
    assert sorted(m.name for m in made) == ["client", "registry"]  # one connection per machine, kept
    assert all(len(m.asked) == 2 for m in made)  # who it is, then the check: on the same connection
    assert [m.closed for m in made] == [1, 1]


def test_close_closes_each_machine_the_session_opened_once(tmp_path: Path, made: list) -> None:
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    session = Session.from_file(tmp_path / "lab.yml", progress=Progress(io.StringIO()), lock=False)
    ctx = session.context()
    assert ctx.machine("registry") is ctx.machine("registry")
    session.connect("client")  # as `reglab ssh client -- CMD` does
    session.close()
    assert [(m.name, m.closed) for m in made] == [("registry", 1), ("client", 1)]
    session.close()  # twice is no error, and closes nothing again
    assert [m.closed for m in made] == [1, 1]


def test_a_class_check_closes_each_labs_connections_even_when_it_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(netpool, "host_networks", lambda: [IPv4Network("10.77.0.0/24")])
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    room = Classroom(tmp_path / "lab.yml", "net101", Progress(io.StringIO()))
    room.enrol([Student("ada"), Student("bob")])
    sessions: dict[str, SimpleNamespace] = {}

    def session(member: Any, **_: Any) -> SimpleNamespace:
        def require_running() -> None:
            if member.id == "bob":
                from lab.common.errors import RemoteError

                raise RemoteError("registry does not answer")

        step = SimpleNamespace(id="hosts")
        engine = SimpleNamespace(run=lambda steps, **kw: SimpleNamespace(
            steps=[StepResult("hosts", "Hosts", Status.PASS)]))
        made = SimpleNamespace(closed=0, lock=SimpleNamespace(release=lambda: None),
                               step_ids=lambda step: ["hosts"], require_running=require_running,
                               scenario=SimpleNamespace(step=lambda step_id: step, steps=[step]),
                               engine=lambda: engine)
        made.close = lambda: setattr(made, "closed", made.closed + 1)
        sessions[member.id] = made
        return made

    monkeypatch.setattr(room, "session", session)
    grades = room.check(room.members, "hosts")
    assert sorted((g.student, g.result.status.value) for g in grades) == [("ada", "pass"), ("bob", "unreachable")]
    assert {student: s.closed for student, s in sessions.items()} == {"ada": 1, "bob": 1}


def test_a_lab_past_its_timeout_is_stopped_not_left_running_beside_the_next_check(tmp_path: Path, monkeypatch) -> None:
    """Issue 19: a lab given up on kept running, holding its lock, while the next check of it began."""
    import threading
    import time

    monkeypatch.setattr(netpool, "host_networks", lambda: [IPv4Network("10.77.0.0/24")])
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    room = Classroom(tmp_path / "lab.yml", "net101", Progress(io.StringIO()))
    room.enrol([Student("ada")])
    stopped = threading.Event()
    released = threading.Event()

    def require_running() -> None:  # a frozen machine: it answers only once its connection is dropped
        if stopped.wait(30):
            from lab.common.errors import RemoteError

            raise RemoteError("registry: not used any more")

    made = SimpleNamespace(lock=SimpleNamespace(release=released.set), step_ids=lambda step: ["hosts"],
                           require_running=require_running, close=lambda: None, abandon=stopped.set)
    monkeypatch.setattr(room, "session", lambda member, **_: made)
    started = time.monotonic()
    grades = room.check(room.members, "hosts", timeout=1)
    assert [g.result.status.value for g in grades] == ["unreachable"]
    assert stopped.is_set()  # given up on: its connections dropped
    assert released.wait(5)  # so its work ended and its lock is free for the next check
    assert time.monotonic() - started < 5


def test_abandon_drops_every_connection_and_those_opened_after(tmp_path: Path, made: list) -> None:
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    session = Session.from_file(tmp_path / "lab.yml", progress=Progress(io.StringIO()), lock=False)
    session.connect("registry")
    session.abandon()
    session.connect("client")  # the work still running asks for another machine: refused too
    assert [(m.name, m.abandoned) for m in made] == [("registry", True), ("client", True)]


def test_dashboard_refreshes_leave_no_connection_open(tmp_path: Path, made: list, monkeypatch) -> None:
    """Issue 19: every refresh opened two SSH connections per lab and closed none."""
    from lab.classroom.room import ClassBoard

    monkeypatch.setattr(netpool, "host_networks", lambda: [IPv4Network("10.77.0.0/24")])
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    room = Classroom(tmp_path / "lab.yml", "net101", Progress(io.StringIO()))
    room.enrol([Student("ada"), Student("bob")])
    board = ClassBoard(room)
    for _ in range(3):
        board.refresh()
    assert len(made) == 3 * 2 * 2  # each refresh: two labs, two machines each
    assert [m.closed for m in made] == [1] * len(made)
