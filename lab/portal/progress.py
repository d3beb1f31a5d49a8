"""Where each student is: their current step, since when, their failed checks and the hints they saw.

The current step is the first step of the tutorial's order that has not
passed. Time on a step is counted from when it became current until it stops
being so (summed, should a student come back to it). A student's failed Check
counts against their current step only: the steps after it fail too, but that
is not where they are. Hints escalate with those failures (`hints.py`) and each
one shown is recorded here with its time: the instructor sees hints used, the
gradebook's progress file counts them.

Kept in `portal/progress.json` (0600), rewritten whole after each change.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.common.errors import LabError
from lab.common.files import write_private


def now_utc() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


class Progress:
    """Every student's position and hints, saved to `path` (None: kept in memory, for tests)."""

    def __init__(self, path: Path | None, clock: Callable[[], datetime] = now_utc) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                    raise ValueError("expected a mapping of students")
                self._data = data
            except (OSError, ValueError) as exc:
                raise LabError(f"{path}: not the portal's progress file ({exc}); move it away to start afresh") \
                    from None

    def _save(self) -> None:
        if self.path is not None:
            write_private(self.path, json.dumps(self._data, indent=1, sort_keys=True) + "\n")

    def _student(self, student: str) -> dict[str, Any]:
        return self._data.setdefault(student, {"current": "", "since": "", "steps": {}})

    @staticmethod
    def _step(record: dict[str, Any], step: str) -> dict[str, Any]:
        return record["steps"].setdefault(step, {"fails": 0, "hints": [], "seconds": 0.0, "passed_at": ""})

    def observe(self, student: str, passed: dict[str, bool], order: Sequence[str], *, by_student: bool = False) \
            -> str:
        """Take in a check's results (step -> passed); with `by_student`, a failure of the current step
        counts toward its hints. Returns the current step ("" when every step passed)."""
        now = self._clock()
        with self._lock:
            record = self._student(student)
            current = next((s for s in order if not passed.get(s, False)), "")
            for step in order:
                if passed.get(step) and not self._step(record, step)["passed_at"]:
                    self._step(record, step)["passed_at"] = _iso(now)
            if record["current"] != current or not record["since"]:
                self._leave(record, now)
                record["current"] = current
                record["since"] = _iso(now)
            if by_student and current:
                self._step(record, current)["fails"] += 1
            self._save()
            return current

    def _leave(self, record: dict[str, Any], now: datetime) -> None:
        if record["current"] and record["since"]:
            spent = (now - datetime.fromisoformat(record["since"])).total_seconds()
            self._step(record, record["current"])["seconds"] += max(0.0, spent)

    def fails(self, student: str, step: str) -> int:
        with self._lock:
            return int(self._data.get(student, {}).get("steps", {}).get(step, {}).get("fails", 0))

    def shown(self, student: str, step: str, level: int) -> None:
        """Record that hint `level` of `step` was shown to `student` (once per level)."""
        with self._lock:
            hints = self._step(self._student(student), step)["hints"]
            if not any(h["level"] == level for h in hints):
                hints.append({"level": level, "at": _iso(self._clock())})
                self._save()

    def hints_used(self, student: str, step: str | None = None) -> int:
        with self._lock:
            steps = self._data.get(student, {}).get("steps", {})
            return sum(len(v.get("hints", [])) for k, v in steps.items() if step is None or k == step)

    def position(self, student: str) -> tuple[str, float]:
        """(current step, seconds on it so far); ("", 0) before the first check."""
        with self._lock:
            record = self._data.get(student)
            if not record or not record.get("since"):
                return "", 0.0
            since = datetime.fromisoformat(record["since"])
            return record["current"], max(0.0, (self._clock() - since).total_seconds())

    def seen(self, student: str) -> bool:
        """Whether any check of this student was taken in yet."""
        with self._lock:
            return bool(self._data.get(student, {}).get("since"))

    def seconds_on(self, student: str, step: str) -> float:
        """Time spent on `step` so far, the running stretch included."""
        current, running = self.position(student)
        with self._lock:
            spent = float(self._data.get(student, {}).get("steps", {}).get(step, {}).get("seconds", 0.0))
        return spent + (running if current == step else 0.0)


def progress_csv(progress: Progress, students: Sequence[str], steps: Sequence[str]) -> str:
    """The gradebook's companion: per student and step, the minutes spent and the hints used."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "step", "minutes", "hints", "failed_checks"])
    for student in students:
        for step in steps:
            writer.writerow([student, step, f"{progress.seconds_on(student, step) / 60:.1f}",
                             progress.hints_used(student, step), progress.fails(student, step)])
    return out.getvalue()
