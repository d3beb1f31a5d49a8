"""A class's gradebook: every student's result for every step, as CSV, JUnit XML and a terminal table.

A row is a `StudentResult`: the engine's StepResult of one step of one student's
lab, and when it was checked. CSV is for the instructor's spreadsheet (and is
read back by `read_gradebook`), JUnit XML for a CI server or any test-report
viewer (one suite per student, written by lab.reports.junit), `summary` for the
terminal. `WORDS` are the class's words for the statuses, as the CSV and the
dashboard show them.

NOTE: a gradebook is personal data, so its files are written 0600. Every
string is redacted before rendering (and the rendered text once more, as
the reports do), then clipped: redact first, clip after. `seen` is what
the students' machines printed, so a CSV cell that a spreadsheet would take
for a formula (starting with = + - @) is prefixed with a quote (and one that
starts with a quote gets one more), which `read_gradebook` takes off again.
Texts lose terminal escape codes and control characters, and are clipped by
lines and characters, before they are written.

NOTE: a class's gradebook has several writers at once: the portal's periodic
refresh and its students' checks (threads), and `class check` (another
process). Each write swaps a whole file in (atomic_write: a temporary file,
0600, then os.replace), and every read-merge-write holds the one
`gradebook_lock` (flock on `gradebook.lock` beside it), so no writer's rows
are lost to another's.

NOTE: `checked_at` is when a lab's check started (to the millisecond, UTC),
not when its writer wrote: a slow round (the portal's periodic refresh,
`class check`) may write after a student's own Check of one lab that
started later, and must not put its older look back. A merge replaces a
row only with one checked at the same time or later (`checked_later`).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lab.common import clip
from lab.common.errors import LabError
from lab.common.files import atomic_write, locked
from lab.model.diagnosis import Cause, cause_by_id
from lab.model.results import Status, StepResult, StudentResult
from lab.reports.junit import Case, Suite, render_suites
from lab.reports.text import clean_output, plain_text

if TYPE_CHECKING:
    from lab.model.credentials import Redactor

WORDS = {Status.PASS: "pass", Status.FAIL: "fail", Status.NOT_RUN: "not-checked", Status.UNREACHABLE: "unreachable"}
CSV_COLUMNS = ("student", "step", "result", "seconds", "checked_at", "cause", "expected", "seen", "minutes_on_step",
               "hints_used")
SYMBOLS = {Status.PASS: "P", Status.FAIL: "F", Status.NOT_RUN: "-", Status.UNREACHABLE: "!"}
GRADEBOOK_MODE = 0o600
LOCK_SECONDS = 60.0  # a merge takes milliseconds; a writer holding the lock this long is stuck
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Effort:
    """What a student spent on a step, as the portal counted it: time while it was their current step
    (seconds), and the hints they were shown for it."""

    seconds: float = 0.0
    hints: int = 0


Efforts = Mapping[tuple[str, str], Effort]  # (student, step) -> effort; a pair not in it: not counted


def status_of(word: str) -> Status:
    """The status a class's word stands for ("not-checked" -> NOT_RUN); ValueError naming the words."""
    for status, known in WORDS.items():
        if word == known:
            return status
    raise ValueError(f"{word!r} is not one of {', '.join(WORDS.values())}: a status must be one of these")


def checked_now() -> str:
    """The moment a check starts, as `checked_at` holds it: ISO 8601, UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _instant(checked_at: str) -> datetime | None:
    """A `checked_at` as a time to compare (a time without a zone taken as UTC); None when it is none."""
    try:
        when = datetime.fromisoformat(checked_at)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def checked_later(row: StudentResult, held: StudentResult | None) -> bool:
    """Whether `row` may replace `held`, the same student's and step's row: when nothing is held, or `row`
    was checked at the same moment or later (a re-check). Times are compared as times (any precision, any
    offset); a row without a time (never checked) replaces only another without one."""
    if held is None:
        return True
    new, old = _instant(row.checked_at), _instant(held.checked_at)
    if new is None or old is None:
        return old is None
    return new >= old


def not_checked(student: str, step: str) -> StudentResult:
    """The row of a step a student's lab was never checked at."""
    return StudentResult(student, StepResult(step, "", Status.NOT_RUN))


def _order(rows: Sequence[StudentResult], students: Sequence[str] | None, steps: Sequence[str] | None,
           ) -> tuple[list[str], list[str]]:
    """Students and steps in the order given (roster, scenario), then any others in the order they come."""
    return (list(dict.fromkeys([*(students or ()), *(r.student for r in rows)])),
            list(dict.fromkeys([*(steps or ()), *(r.result.step_id for r in rows)])))


def _grid(rows: Iterable[StudentResult], students: Sequence[str] | None = None,
          steps: Sequence[str] | None = None) -> list[list[StudentResult]]:
    """One row per student, one result per step; a step with no result is not checked.

    When a student and step are graded twice, the last result given wins (a re-check).
    """
    rows = list(rows)
    student_order, step_order = _order(rows, students, steps)
    by_key = {(r.student, r.result.step_id): r for r in rows}
    return [
        [by_key.get((student, step)) or not_checked(student, step) for step in step_order]
        for student in student_order
    ]


def _redacted(row: StudentResult, redactor: Redactor | None) -> StudentResult:
    """The row with every string redacted (when a redactor is given)."""
    if redactor is None:
        return row
    return StudentResult(redactor.redact(row.student), row.result.redacted(redactor.redact), row.checked_at)


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith((*_FORMULA_START, "'")) else text


def _uncell(text: str) -> str:
    """The text `_cell` was given."""
    return text[1:] if text.startswith("'") else text


def _text(text: str) -> str:
    """A short text (a cause, what was expected) as the gradebook keeps it: plain, clipped."""
    return clip.chars(plain_text(text))


def _effort_cells(effort: Effort | None) -> list[str]:
    """Minutes on the step (to the tenth) and hints used; empty where the portal counted nothing."""
    return ["", ""] if effort is None else [f"{effort.seconds / 60:.1f}", str(effort.hints)]


def render_csv(grid: Sequence[Sequence[StudentResult]], effort: Efforts | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in grid:
        for r in row:
            step = r.result
            writer.writerow([r.student, step.step_id, WORDS[step.status], f"{step.duration:.2f}", r.checked_at,
                             _cell(_text(step.cause_line)), _cell(_text(step.expected)),
                             _cell(clean_output(step.seen)),
                             *_effort_cells((effort or {}).get((r.student, step.step_id)))])
    return out.getvalue()


def render_junit(grid: Sequence[Sequence[StudentResult]], effort: Efforts | None = None) -> str:
    """JUnit XML: one testsuite per student, one testcase per step (classname = the student); the time
    on the step and the hints used are the testcase's properties `minutes_on_step` and `hints_used`."""
    def case(r: StudentResult) -> Case:
        spent = (effort or {}).get((r.student, r.result.step_id))
        return Case(r.result, r.checked_at, tuple(zip(("minutes_on_step", "hints_used"), _effort_cells(spent),
                                                      strict=True)) if spent else ())

    suites = [Suite(row[0].student, [case(r) for r in row], sum(r.result.duration for r in row))
              for row in grid if row]
    return render_suites("reglab-class", suites, skipped="not checked")


def write_gradebook(
    rows: Iterable[StudentResult],
    folder: Path,
    redactor: Redactor | None = None,
    *,
    students: Sequence[str] | None = None,
    steps: Sequence[str] | None = None,
    effort: Efforts | None = None,
) -> dict[str, Path]:
    """Write gradebook.csv and gradebook.xml into `folder`, atomically and 0600; return their paths by kind.

    Rows: students in roster order, steps in scenario order (`students`,
    `steps`; by default the order the results come in), one per student and
    step, a missing one as not-checked; with each one's `effort` where the portal counted it.
    """
    grid = [[_redacted(r, redactor) for r in row] for row in _grid(rows, students, steps)]
    paths: dict[str, Path] = {}
    for kind, render in (("csv", render_csv), ("xml", render_junit)):
        text = render(grid, effort)
        if redactor is not None:
            text = redactor.redact(text)
        paths[kind] = atomic_write(Path(folder) / f"gradebook.{kind}", text, GRADEBOOK_MODE)
    return paths


@contextlib.contextmanager
def gradebook_lock(folder: Path, timeout: float = LOCK_SECONDS) -> Iterator[None]:
    """The class's one gradebook lock, across threads and processes (flock on a file of its own: each
    holder opens it anew, so two threads of one process exclude each other too)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / "gradebook.lock", timeout) as held:
        if not held:
            raise LabError(f"{folder / 'gradebook.csv'}: another reglab has been writing the gradebook for "
                           f"more than {timeout:.0f}s; try again when it has finished")
        yield


def merge_gradebook(
    rows: Iterable[StudentResult],
    folder: Path,
    redactor: Redactor | None = None,
    *,
    students: Sequence[str] | None = None,
    steps: Sequence[str] | None = None,
    effort: Efforts | None = None,
) -> tuple[dict[str, Path], list[StudentResult]]:
    """Merge `rows` (and `effort`) into the gradebook on disk (other students' and steps' results, and
    the effort a writer without it does not know, stay) under the gradebook's lock, and write it; its
    paths and every row it now holds. A row on disk checked later than the one given stays."""
    with gradebook_lock(folder):
        path = Path(folder) / "gradebook.csv"
        merged = {(r.student, r.result.step_id): r for r in read_gradebook(path)}
        for row in rows:  # a row checked before the one on disk (a slow round's) is left out
            key = (row.student, row.result.step_id)
            if checked_later(row, merged.get(key)):
                merged[key] = row
        everything = list(merged.values())
        spent = {**read_effort(path), **(effort or {})}
        return write_gradebook(everything, folder, redactor, students=students, steps=steps,
                               effort=spent), everything


def read_effort(path: Path) -> dict[tuple[str, str], Effort]:
    """The time on step and hints used of a gradebook.csv reglab wrote, where it has them."""
    if not path.is_file():
        return {}
    found = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle, contextlib.suppress(csv.Error):
        for row in csv.DictReader(handle):
            with contextlib.suppress(KeyError, ValueError, TypeError):
                if row["minutes_on_step"] and row["hints_used"]:
                    found[(row["student"], row["step"])] = Effort(float(row["minutes_on_step"]) * 60,
                                                                  int(row["hints_used"]))
    return found


def _known_cause(line: str) -> Cause | None:
    """The known cause a CSV cause cell is exactly the line of, as this process knows it; else None."""
    with contextlib.suppress(ValueError):
        cause = cause_by_id(line.partition(": ")[0])
        if line == f"{cause.id}: {cause.cause}":
            return cause
    return None


def read_gradebook(path: Path) -> list[StudentResult]:
    """The rows of a gradebook.csv reglab wrote (none when there is none yet); a row it cannot read is left out.

    A cause cell that is one cause this process knows becomes that cause; any
    other (a lab that did not answer, several causes, a cause of a scenario not
    loaded) is kept as its words, the result's `reason`.
    """
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle, \
            contextlib.suppress(csv.Error):  # a field past csv's limit (an older gradebook): the rows before it
        for row in csv.DictReader(handle):
            with contextlib.suppress(KeyError, ValueError, TypeError):
                line = _uncell(row["cause"])
                cause = _known_cause(line)
                result = StepResult(row["step"], "", status_of(row["result"]), float(row["seconds"] or 0),
                                    _uncell(row["expected"]), _uncell(row["seen"]), cause,
                                    reason="" if cause else line)
                rows.append(StudentResult(row["student"], result, row["checked_at"]))
    return rows


def summary(rows: Iterable[StudentResult], students: Sequence[str] | None = None,
            steps: Sequence[str] | None = None) -> str:
    """A short table for the terminal: students down, steps across (numbered), each student's passes."""
    grid = _grid(rows, students, steps)
    if not grid or not grid[0]:
        return "no grades\n"
    step_names = [r.result.step_id for r in grid[0]]
    widths = [len(str(n)) for n in range(1, len(step_names) + 1)]
    first = max(len("student"), *(len(row[0].student) for row in grid))
    lines = ["  ".join([f"{'student':<{first}}", " ".join(str(n) for n in range(1, len(widths) + 1)), "passed"])]
    for row in grid:
        marks = " ".join(f"{SYMBOLS[r.result.status]:<{w}}" for r, w in zip(row, widths, strict=True))
        passed = sum(r.result.status is Status.PASS for r in row)
        lines.append("  ".join([f"{row[0].student:<{first}}", marks, f"{passed}/{len(row)}"]))
    lines.append("")
    lines += [f"{n:>{widths[-1]}} {name}" for n, name in enumerate(step_names, 1)]
    lines.append("P pass  F fail  - not checked  ! unreachable")
    return "\n".join(lines) + "\n"
