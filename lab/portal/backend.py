"""The portal's view of a real class: its students and steps, each student's texts, and checks.

Checks go through the class's board (`ClassBoard.refresh`), so the instructor's
grid, the gradebook and the students' pages agree. The texts of a student's
steps (the tutorial's, and `reglab show`'s commands) come from their own lab
and are kept once made: they change only when the class is made again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.classroom.room import ClassBoard, Classroom
from lab.common.errors import LabError
from lab.engine.teaching import instructions, tutorial_text
from lab.model.results import StudentResult

if TYPE_CHECKING:
    from lab.model.credentials import Redactor


class ClassPortal:
    """`lab.portal.app.Backend` over a `Classroom` and its `ClassBoard`."""

    def __init__(self, classroom: Classroom, board: ClassBoard) -> None:
        self.classroom = classroom
        self.board = board
        self._texts: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def students(self) -> list[str]:
        return self.board.students()

    def steps(self) -> list[tuple[str, str]]:
        return self.board.steps()

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        return self.board.cells()

    def _text(self, kind: str, student: str, step: str, make: Callable) -> str:
        key = (kind, student, step)
        with self._lock:
            if key in self._texts:
                return self._texts[key]
        try:
            session = self.classroom.session(self.classroom.member(student), lock=False)
            text = session.redactor.redact(make(session, step))
        except (LabError, OSError, KeyError) as exc:
            return f"(could not be read from your lab just now: {exc})"
        with self._lock:
            self._texts[key] = text
        return text

    def instructions(self, student: str, step: str) -> str:
        return self._text("tutorial", student, step, tutorial_text)

    def commands(self, student: str, step: str) -> str:
        return self._text("show", student, step, instructions)

    def check(self, student: str | None) -> None:
        self.board.refresh(student)


class ClassTerminals:
    """`lab.portal.terminal.Terminals` for a class: the student's own machines, with the student's own key.

    Addresses come from the student's bundle as `class up` wrote it (straight to the machines, which
    the class host reaches); host keys are checked against the bundle's known_hosts, learnt on first use
    as the bundle's ssh_config does (`accept-new`).
    """

    def __init__(self, classroom: Classroom) -> None:
        self.classroom = classroom
        self._redactors: dict[str, Redactor] = {}

    def _folder(self, student: str):  # noqa: ANN202
        return self.classroom.dir / "students" / self.classroom.member(student).id

    def _machines(self, student: str) -> dict:
        from lab.portal.gateway import parse_ssh_config

        folder = self._folder(student)
        for name in ("ssh_config.direct", "ssh_config"):
            if (folder / name).is_file():
                text = (folder / name).read_text()
                if name == "ssh_config" and "ProxyJump" in text:
                    continue
                return {m.name: m for m in parse_ssh_config(text)}
        return {}

    def machines(self, student: str) -> list[str]:
        return list(self._machines(student))

    def open(self, student: str, machine: str, cols: int, rows: int):  # noqa: ANN201
        import paramiko

        from lab.portal.terminal import CONNECT_SECONDS

        spec = self._machines(student).get(machine)
        if spec is None:
            raise LabError(f"no machine {machine!r} in {student}'s lab")
        user = next((line.split(" ", 1)[1] for line in spec.lines if line.startswith("User ")), "vagrant")
        folder = self._folder(student)
        client = paramiko.SSHClient()
        known = folder / "known_hosts"
        if known.is_file():
            client.load_host_keys(str(known))
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # accept-new, as the bundle's ssh_config
        client.connect(spec.host, spec.port, user, key_filename=str(folder / "id_ed25519"), timeout=CONNECT_SECONDS,
                       banner_timeout=CONNECT_SECONDS, auth_timeout=CONNECT_SECONDS, allow_agent=False,
                       look_for_keys=False)
        try:
            client.save_host_keys(str(known))
            known.chmod(0o600)
            transport = client.get_transport()
            transport.set_keepalive(30)
            channel = transport.open_session(timeout=CONNECT_SECONDS)
            channel.get_pty(term="xterm-256color", width=cols, height=rows)
            channel.invoke_shell()
            channel.settimeout(1.0)
        except BaseException:
            client.close()
            raise
        return _Shell(client, channel)

    def _redactor(self, student: str) -> Redactor:
        redactor = self._redactors.get(student)
        if redactor is None:
            session = self.classroom.session(self.classroom.member(student), lock=False)
            redactor = self._redactors[student] = session.redactor
        return redactor

    def redact(self, student: str, text: str) -> str:
        return self._redactor(student).redact(text)

    def unfinished(self, student: str, text: str) -> int:
        return self._redactor(student).unfinished(text)


class _Shell:
    """A shell's channel that closes its own SSH connection with it."""

    def __init__(self, client, channel) -> None:  # noqa: ANN001
        self._client = client
        self._channel = channel

    def send(self, data: bytes) -> int:
        return self._channel.send(data)

    def recv(self, size: int) -> bytes:
        return self._channel.recv(size)

    def resize_pty(self, width: int, height: int) -> None:
        self._channel.resize_pty(width=width, height=height)

    def close(self) -> None:
        try:
            self._channel.close()
        finally:
            self._client.close()
