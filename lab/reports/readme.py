"""The README's results table: one row per step, one column per edition, between two marker lines."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from lab.common.errors import LabError
from lab.common.files import atomic_write
from lab.model.results import RunResult, Status, StepResult
from lab.reports.markdown import md_table
from lab.reports.text import cause_ids

README_START = "<!-- reglab:results:start -->"
README_END = "<!-- reglab:results:end -->"


def _status_label(step: StepResult) -> str:
    """Short status for summary cells: the cause ids tell most of the story."""
    if step.status is Status.FAIL:
        label = f"FAIL ({cause_ids(step)})" if step.causes else "FAIL"
        if step.bridged:
            label += ", bridge failed" if step.bridge_error else ", bridged"
        return label
    return step.status.value


def render_summary_table(results: Sequence[RunResult]) -> str:
    """Render the README table: one row per step, one column per edition (per edition and platform when the
    runs were on several platforms)."""
    if not results:
        raise ValueError("no results to summarize")
    columns = [(r.edition, r.platform) for r in results]
    if len(set(columns)) != len(columns):
        raise ValueError(f"duplicate editions in results: {[r.edition for r in results]}")
    several = len({r.platform for r in results}) > 1
    step_ids: list[str] = []
    for result in results:
        step_ids += [s.step_id for s in result.steps if s.step_id not in step_ids]
    by_edition = [{s.step_id: s for s in r.steps} for r in results]
    header = ["step", *(f"{r.edition}{f' on {r.platform}' if several else ''} ({r.started:%Y-%m-%d})"
                        for r in results)]
    rows = [
        [
            step_id,
            *(
                _status_label(steps[step_id]) if step_id in steps else "-"
                for steps in by_edition
            ),
        ]
        for step_id in step_ids
    ]
    return "\n".join(md_table(header, rows)) + "\n"


def update_readme(readme_text: str, table: str, readme: Path | str = "README.md") -> str:
    """Replace what lies between the README result markers with the table.

    Markers missing, repeated or in the wrong order are a LabError naming
    `readme` and the two lines to put where the table belongs.
    """
    add = f"put these two lines, in this order, where the table belongs:\n{README_START}\n{README_END}"
    for marker in (README_START, README_END):
        found = readme_text.count(marker)
        if found == 0:
            raise LabError(f"{readme}: no {marker} marker; {add}")
        if found > 1:
            raise LabError(f"{readme}: {marker} appears {found} times, expected once; {add}")
    head, rest = readme_text.split(README_START)
    if README_END not in rest:
        raise LabError(f"{readme}: {README_END} comes before {README_START}; {add}")
    _, tail = rest.split(README_END)
    body = table.strip("\n")
    return f"{head}{README_START}\n{body}\n{README_END}{tail}"


def update_readme_file(readme: Path, table: str) -> Path:
    """Write the table into the README file, atomically and keeping its mode."""
    try:
        text = readme.read_text(encoding="utf-8")
        mode = stat.S_IMODE(readme.stat().st_mode)
    except FileNotFoundError:
        raise LabError(f"{readme}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LabError(f"{readme}: cannot be read as UTF-8 text ({error})") from None
    return atomic_write(readme, update_readme(text, table, readme), mode)
