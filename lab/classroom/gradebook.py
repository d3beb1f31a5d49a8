"""A class's gradebook: every student's result for every step, as CSV, JUnit XML and a terminal table.

CSV is for the instructor's spreadsheet, JUnit XML for a CI server or any
test-report viewer (one suite per student), `summary` for the terminal.

NOTE: a gradebook is personal data, so its files are written 0600. Every
string is redacted before rendering (and the rendered text once more, as
the reports do), then clipped: redact first, clip after. `seen` is what
the students' machines printed, so a CSV cell that a spreadsheet would take
for a formula (starting with = + - @) is prefixed with a quote.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.common.files import atomic_write
from lab.reports.text import clean_output, xml_text

if TYPE_CHECKING:
    from lab.model.credentials import Redactor

STATUSES = ("pass", "fail", "not-checked", "unreachable")
CSV_COLUMNS = ("student", "step", "result", "seconds", "checked_at", "cause", "expected", "seen")
SYMBOLS = {"pass": "P", "fail": "F", "not-checked": "-", "unreachable": "!"}
GRADEBOOK_MODE = 0o600
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Grade:
    """One student's result for one step.

    `cause` is the diagnosis id and its one-line cause ("legacy-cn: ..."), or
    "" when none is known; `checked_at` is ISO-8601 UTC, "" when never checked.
    """

    student: str
    step: str
    status: str
    seconds: float = 0.0
    checked_at: str = ""
    cause: str = ""
    expected: str = ""
    seen: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")


def _order(grades: Sequence[Grade], students: Sequence[str] | None, steps: Sequence[str] | None,
           ) -> tuple[list[str], list[str]]:
    """Students and steps in the order given (roster, scenario), then any others in the order they come."""
    return (list(dict.fromkeys([*(students or ()), *(g.student for g in grades)])),
            list(dict.fromkeys([*(steps or ()), *(g.step for g in grades)])))


def _grid(grades: Iterable[Grade], students: Sequence[str] | None = None, steps: Sequence[str] | None = None,
          ) -> list[list[Grade]]:
    """One row of grades per student, one grade per step; a step with no grade is not-checked.

    When a student and step are graded twice, the last grade given wins (a re-check).
    """
    grades = list(grades)
    student_order, step_order = _order(grades, students, steps)
    by_key = {(g.student, g.step): g for g in grades}
    return [
        [by_key.get((student, step)) or Grade(student, step, "not-checked") for step in step_order]
        for student in student_order
    ]


def _redacted(grade: Grade, redactor: Redactor | None) -> Grade:
    """The grade with every string redacted (when a redactor is given), then `seen` cleaned and clipped."""
    if redactor is not None:
        r = redactor.redact
        grade = dataclasses.replace(grade, student=r(grade.student), step=r(grade.step), cause=r(grade.cause),
                                    expected=r(grade.expected), seen=r(grade.seen))
    return dataclasses.replace(grade, seen=clean_output(grade.seen))


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(grid: Sequence[Sequence[Grade]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in grid:
        for g in row:
            writer.writerow([g.student, g.step, g.status, f"{g.seconds:.2f}", g.checked_at,
                             _cell(g.cause), _cell(g.expected), _cell(g.seen)])
    return out.getvalue()


def _details(grade: Grade) -> str:
    return xml_text(f"expected: {grade.expected}\nseen:\n{grade.seen}")


def render_junit(grid: Sequence[Sequence[Grade]]) -> str:
    """JUnit XML: one testsuite per student, one testcase per step (classname = the student)."""

    def totals(grades: Sequence[Grade]) -> dict[str, str]:
        count = {status: sum(g.status == status for g in grades) for status in STATUSES}
        return {"tests": str(len(grades)), "failures": str(count["fail"]), "errors": str(count["unreachable"]),
                "skipped": str(count["not-checked"]), "time": f"{sum(g.seconds for g in grades):.3f}"}

    root = ET.Element("testsuites", {"name": "reglab-class", **totals([g for row in grid for g in row])})
    for row in grid:
        if not row:
            continue
        suite = ET.SubElement(root, "testsuite", {"name": xml_text(row[0].student), **totals(row)})
        for g in row:
            case = ET.SubElement(suite, "testcase", {"classname": xml_text(g.student), "name": xml_text(g.step),
                                                     "time": f"{g.seconds:.3f}"})
            if g.checked_at:
                properties = ET.SubElement(case, "properties")
                ET.SubElement(properties, "property", {"name": "checked_at", "value": xml_text(g.checked_at)})
            message = xml_text(g.cause or f"expected: {g.expected}")
            if g.status == "fail":
                ET.SubElement(case, "failure", {"message": message, "type": "check-failed"}).text = _details(g)
            elif g.status == "unreachable":
                element = ET.SubElement(case, "error", {"message": message, "type": "unreachable"})
                element.text = _details(g)
            elif g.status == "not-checked":
                ET.SubElement(case, "skipped", {"message": "not checked"})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_gradebook(
    grades: Iterable[Grade],
    folder: Path,
    redactor: Redactor | None = None,
    *,
    students: Sequence[str] | None = None,
    steps: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write gradebook.csv and gradebook.xml into `folder`, atomically and 0600; return their paths by kind.

    Rows: students in roster order, steps in scenario order (`students`,
    `steps`; by default the order the grades come in), one per student and
    step, a missing one as not-checked.
    """
    grid = [[_redacted(g, redactor) for g in row] for row in _grid(grades, students, steps)]
    paths: dict[str, Path] = {}
    for kind, render in (("csv", render_csv), ("xml", render_junit)):
        text = render(grid)
        if redactor is not None:
            text = redactor.redact(text)
        paths[kind] = atomic_write(Path(folder) / f"gradebook.{kind}", text, GRADEBOOK_MODE)
    return paths


def summary(grades: Iterable[Grade], students: Sequence[str] | None = None, steps: Sequence[str] | None = None,
            ) -> str:
    """A short table for the terminal: students down, steps across (numbered), each student's passes."""
    grid = _grid(grades, students, steps)
    if not grid or not grid[0]:
        return "no grades\n"
    step_names = [g.step for g in grid[0]]
    widths = [len(str(n)) for n in range(1, len(step_names) + 1)]
    first = max(len("student"), *(len(row[0].student) for row in grid))
    lines = ["  ".join([f"{'student':<{first}}", " ".join(str(n) for n in range(1, len(widths) + 1)), "passed"])]
    for row in grid:
        marks = " ".join(f"{SYMBOLS[g.status]:<{w}}" for g, w in zip(row, widths, strict=True))
        passed = sum(g.status == "pass" for g in row)
        lines.append("  ".join([f"{row[0].student:<{first}}", marks, f"{passed}/{len(row)}"]))
    lines.append("")
    lines += [f"{n:>{widths[-1]}} {name}" for n, name in enumerate(step_names, 1)]
    lines.append("P pass  F fail  - not checked  ! unreachable")
    return "\n".join(lines) + "\n"
