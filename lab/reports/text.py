"""The words every report format shares: durations, tool output made readable, a step's causes and bridges,
a run's summary line.

Every renderer (Markdown, HTML, JUnit, the maintainer's report, the class's gradebook) says these
things the same way because it says them through here.
"""

from __future__ import annotations

import re

from lab.common import clip
from lab.model.results import Look, RunResult, Status, StepResult

SEEN_LINES = 40  # lines of tool output a report shows: the last ones, where tools print their error
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # a terminal's controls; newline and tab stay
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def format_seconds(seconds: float) -> str:
    """Render a duration short enough for a table cell."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def plain_text(text: str) -> str:
    """Text with no terminal escape codes or other control characters (newlines and tabs stay)."""
    return _CONTROL.sub("", _ANSI_ESCAPE.sub("", text.replace("\r\n", "\n")))


def clean_output(text: str) -> str:
    """Output as a reader should see it: no terminal colors or controls, only its last SEEN_LINES lines
    (and at most clip.MAX_CHARS characters)."""
    return clip.tail(plain_text(text), SEEN_LINES)


def xml_text(text: str) -> str:
    """Drop characters XML 1.0 cannot hold (ANSI escapes in tool output, for one)."""
    return _XML_INVALID.sub("", text)


def cause_ids(step: StepResult) -> str:
    """Every known cause of a failed step, in the order they were found."""
    return "; ".join(cause.id for cause in step.causes)


def look_heading(look: Look) -> str:
    """What one look past a cause found, in a sentence."""
    if look.error:
        return f"getting past {look.past} failed: {look.error}"
    if look.status is Status.PASS:
        return f"past {look.past}, the step as written passes: nothing else is wrong"
    found = look.diagnosis.id if look.diagnosis else "a cause reglab does not know"
    return f"past {look.past}, the step as written fails again: {found}"


def has_bridges(result: RunResult) -> bool:
    """The run kept going past a failed step: its reports show the bridges."""
    return any(step.bridged or step.bridge_failed for step in result.steps)


def bridge_cell(step: StepResult) -> str:
    """What a bridge did for this step, for a table cell ("" when none was needed)."""
    parts = []
    if step.bridged:
        parts.append("bridge FAILED" if step.bridge_error else "modern solution applied")
    if step.bridge_failed:
        parts.append(f"after the failed bridge of {step.bridge_failed}")
    return "; ".join(parts)


def bridge_lines(step: StepResult) -> list[str]:
    """The bridge's outcome in sentences, for a failure's details."""
    lines = []
    if step.bridged:
        lines.append(f"bridge failed: {step.bridge_error}" if step.bridge_error
                     else "bridge: the modern solution of this step was applied, then the run went on")
    if step.bridge_failed:
        lines.append(f"judged after the bridge of {step.bridge_failed} failed: "
                     "the lab may not be where the tutorial expects, so this may come from there")
    return lines


def summary_line(result: RunResult) -> str:
    counts = result.counts
    return (
        f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, "
        f"{counts[Status.NOT_RUN]} not run, "
        + (f"{sum(step.bridged for step in result.steps)} bridged, " if has_bridges(result) else "")
        + f"total time {format_seconds(result.total_time)}"
    )


def run_date(result: RunResult) -> str:
    return result.started.strftime("%Y-%m-%d %H:%M %Z").strip()


def failed_steps(result: RunResult) -> list[StepResult]:
    return [step for step in result.steps if step.status is Status.FAIL]


def before_solving(step: StepResult) -> str:
    """The check's result before solving, as a reader should take it (it must fail there)."""
    if step.before is None:
        return ""
    return "failed, as it must" if step.before is Status.FAIL else f"{step.before.value} (passes_before)"
