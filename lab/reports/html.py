"""An edition's run as one self-contained HTML page (`EDITION.html`): for a browser.

`CSS` and `status_class` are the maintainer's page's too.
"""

from __future__ import annotations

import html

from lab.model.diagnosis import Cause
from lab.model.results import RunResult, Status, StepResult
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

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }
td { vertical-align: top; }
th { background: #f3f3f3; }
.pass { background: #d8f5d0; }
.fail { background: #f9d0d0; font-weight: bold; }
.not-run { background: #eee; color: #666; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; }
"""


def status_class(status: Status) -> str:
    return status.value.replace(" ", "-")


def _html_attempt(expected: str, seen: str, diagnosis: Cause | None) -> list[str]:
    e = html.escape
    parts = [
        f"<p><b>expected:</b> {e(expected or '(not recorded)')}</p>",
        "<p><b>seen:</b></p>",
        f"<pre>{e(clean_output(seen) or '(nothing)')}</pre>",
    ]
    if diagnosis:
        return [*parts, f"<p><b>likely cause:</b> {e(diagnosis.cause)}</p>", f"<p><b>fix:</b> {e(diagnosis.fix)}</p>"]
    return [*parts, "<p><b>likely cause:</b> unknown (no known cause matched)</p>"]


def _html_failure(step: StepResult) -> list[str]:
    e = html.escape
    parts = [f"<h3>{e(step.step_id)}: {e(step.title)}</h3>", *_html_attempt(step.expected, step.seen, step.diagnosis)]
    parts += [f"<p>{e(line)}</p>" for line in bridge_lines(step)]
    if step.logs:
        logs = ", ".join(f"<code>{e(log)}</code>" for log in step.logs)
        parts.append(f"<p><b>logs:</b> {logs}</p>")
    for look in step.looks:
        parts.append(f"<h4>{e(look_heading(look))}</h4>")
        if look.status is Status.FAIL:
            parts += _html_attempt(look.expected, look.seen, look.diagnosis)
    return parts


def render_html(result: RunResult) -> str:
    """Render a run as one self-contained HTML page with colored statuses."""
    e = html.escape
    title = f"reglab: {result.edition} ({run_date(result)})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(summary_line(result))}</p>",
    ]
    if result.phases:
        parts += ["<h2>Phases</h2>", "<table>", "<tr><th>phase</th><th>time</th></tr>"]
        parts += [
            f"<tr><td>{e(name)}</td><td>{e(format_seconds(secs))}</td></tr>"
            for name, secs in result.phases.items()
        ]
        parts.append("</table>")
    bridged = has_bridges(result)
    parts += [
        "<h2>Steps</h2>",
        "<table>",
        "<tr><th>step</th><th>title</th><th>check before solving</th><th>result</th><th>time</th>"
        "<th>diagnosis</th>" + ("<th>bridge</th>" if bridged else "") + "</tr>",
    ]
    for step in result.steps:
        diagnosis = cause_ids(step)
        bridge = f"<td>{e(bridge_cell(step))}</td>" if bridged else ""
        parts.append(
            f"<tr><td>{e(step.step_id)}</td><td>{e(step.title)}</td><td>{e(before_solving(step))}</td>"
            f'<td class="{status_class(step.status)}">{e(step.status.value)}</td>'
            f"<td>{e(format_seconds(step.duration))}</td><td>{e(diagnosis)}</td>{bridge}</tr>"
        )
    parts.append("</table>")
    failures = failed_steps(result)
    if failures:
        parts.append("<h2>Failures</h2>")
        for step in failures:
            parts += _html_failure(step)
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
