"""The portal's view of a real class: its students and steps, each student's texts, and checks.

Checks go through the class's board (`ClassBoard.refresh`), so the instructor's
grid, the gradebook and the students' pages agree. The texts of a student's
steps (the tutorial's, and `reglab show`'s commands) come from their own lab
and are kept once made: they change only when the class is made again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lab.classroom.room import ClassBoard, Classroom
from lab.common.errors import LabError
from lab.engine.teaching import instructions, tutorial_text
from lab.model.results import StudentResult


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
