"""An edition's run as Markdown (`EDITION.md`): for people reading the repository or a terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lab.model.diagnosis import Cause
from lab.model.results import RunResult, Status
from lab.reports.text import (
    before_solving,
    bridge_cell,
    bridge_lines,
    cause_ids,
    clean_output,
    failed_steps,
    format_seconds,
    has_bridges,
    look_heading,
    run_date,
    summary_line,
)


def _md_cell(text: str) -> str:
    """Keep a value inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", r"\|")


def _md_fence(text: str) -> str:
    """Fence text in a code block that no backtick run inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, one line per row, every cell kept to one line."""
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(result: RunResult) -> str:
    """Render a run as Markdown: summary, phase timings, steps, then failure details."""
    lines = [
        f"# reglab: {result.edition} ({run_date(result)})",
        "",
        summary_line(result),
        "",
    ]
    if result.phases:
        lines += ["## Phases", ""]
        lines += md_table(
            ["phase", "time"],
            [[name, format_seconds(secs)] for name, secs in result.phases.items()],
        )
        lines.append("")
    lines += ["## Steps", ""]
    proved = any(step.before is not None for step in result.steps)
    bridged = has_bridges(result)
    lines += md_table(
        ["step", "title", *(["check before solving"] if proved else []), "result", "time", "diagnosis",
         *(["bridge"] if bridged else [])],
        [
            [
                step.step_id,
                step.title,
                *([before_solving(step)] if proved else []),
                "**FAIL**" if step.status is Status.FAIL else step.status.value,
                format_seconds(step.duration),
                cause_ids(step),
                *([bridge_cell(step)] if bridged else []),
            ]
            for step in result.steps
        ],
    )
    lines.append("")
    failures = failed_steps(result)
    if failures:
        lines += ["## Failures", ""]
        for step in failures:
            lines += [f"### {step.step_id}: {step.title}", ""]
            lines += _md_attempt(step.expected, step.seen, step.diagnosis)
            lines += [f"- {line}" for line in bridge_lines(step)]
            if step.logs:
                lines.append("- logs: " + ", ".join(f"`{log}`" for log in step.logs))
            lines.append("")
            for look in step.looks:
                lines += [f"#### {look_heading(look)}", ""]
                if look.status is Status.FAIL:
                    lines += [*_md_attempt(look.expected, look.seen, look.diagnosis), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _md_attempt(expected: str, seen: str, diagnosis: Cause | None) -> list[str]:
    """One failure's details: what was expected, what was seen, its cause and fix."""
    lines = [f"- expected: {expected or '(not recorded)'}", "- seen:", "",
             _md_fence(clean_output(seen) or "(nothing)"), ""]
    if diagnosis:
        return [*lines, f"- likely cause: {diagnosis.cause}", f"- fix: {diagnosis.fix}"]
    return [*lines, "- likely cause: unknown (no known cause matched)"]
