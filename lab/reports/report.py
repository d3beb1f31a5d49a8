"""Reports of the last run per edition: Markdown, JUnit XML, HTML and JSON.

Markdown is for people reading the repository, JUnit XML for CI, HTML for a
browser, JSON so `reglab report` can re-render the others later. The
maintainer's report (`maintainer.md`, `.html`) puts both editions side by side
per step, with the drift check of the tutorial's text, built from the
per-edition JSON files.

NOTE: the engine redacts what it stores in a result; `write_reports` takes the
session's Redactor as well and redacts every string once more before writing,
so a secret that slipped past the engine still never reaches a report file.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.common.errors import LabError
from lab.common.files import atomic_write
from lab.model.diagnosis import Cause, format_diagnosis
from lab.model.results import Look, RunResult, Status, StepResult
from lab.tutorial import text as tutorial_text

if TYPE_CHECKING:
    from lab.model.credentials import Redactor
    from lab.model.scenario import Scenario

SEEN_LINES = 40
README_START = "<!-- reglab:results:start -->"
README_END = "<!-- reglab:results:end -->"

_EDITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
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


def truncate_lines(text: str, limit: int = SEEN_LINES) -> str:
    """Keep the last `limit` lines, since tools print their error at the end."""
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    omitted = len(lines) - limit
    return "\n".join([f"[... {omitted} earlier lines omitted ...]", *lines[-limit:]])


def clean_output(text: str) -> str:
    """Output as a reader should see it: no terminal colors, only the tail."""
    return truncate_lines(_ANSI_ESCAPE.sub("", text))


def _seen(step: StepResult) -> str:
    return clean_output(step.seen)


def _cause_ids(step: StepResult) -> str:
    """Every known cause of a failed step, in the order they were found."""
    return "; ".join(cause.id for cause in step.causes)


def _status_label(step: StepResult) -> str:
    """Short status for summary cells: the cause ids tell most of the story."""
    if step.status is Status.FAIL:
        label = f"FAIL ({_cause_ids(step)})" if step.causes else "FAIL"
        if step.bridged:
            label += ", bridge failed" if step.bridge_error else ", bridged"
        return label
    return step.status.value


def look_heading(look: Look) -> str:
    """What one look past a cause found, in a sentence."""
    if look.error:
        return f"getting past {look.past} failed: {look.error}"
    if look.status is Status.PASS:
        return f"past {look.past}, the step as written passes: nothing else is wrong"
    found = look.diagnosis.id if look.diagnosis else "a cause reglab does not know"
    return f"past {look.past}, the step as written fails again: {found}"


def _bridged(result: RunResult) -> bool:
    """The run kept going past a failed step: its reports show the bridges."""
    return any(step.bridged or step.bridge_failed for step in result.steps)


def _bridge(step: StepResult) -> str:
    """What a bridge did for this step, for a table cell ("" when none was needed)."""
    parts = []
    if step.bridged:
        parts.append("bridge FAILED" if step.bridge_error else "modern solution applied")
    if step.bridge_failed:
        parts.append(f"after the failed bridge of {step.bridge_failed}")
    return "; ".join(parts)


def _bridge_lines(step: StepResult) -> list[str]:
    """The bridge's outcome in sentences, for a failure's details."""
    lines = []
    if step.bridged:
        lines.append(f"bridge failed: {step.bridge_error}" if step.bridge_error
                     else "bridge: the modern solution of this step was applied, then the run went on")
    if step.bridge_failed:
        lines.append(f"judged after the bridge of {step.bridge_failed} failed: "
                     "the lab may not be where the tutorial expects, so this may come from there")
    return lines


def _summary_line(result: RunResult) -> str:
    counts = result.counts
    return (
        f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, "
        f"{counts[Status.NOT_RUN]} not run, "
        + (f"{sum(step.bridged for step in result.steps)} bridged, " if _bridged(result) else "")
        + f"total time {format_seconds(result.total_time)}"
    )


def _run_date(result: RunResult) -> str:
    return result.started.strftime("%Y-%m-%d %H:%M %Z").strip()


def _md_cell(text: str) -> str:
    """Keep a value inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", r"\|")


def _md_fence(text: str) -> str:
    """Fence text in a code block that no backtick run inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _failures(result: RunResult) -> list[StepResult]:
    return [step for step in result.steps if step.status is Status.FAIL]


def _before(step: StepResult) -> str:
    """The check's result before solving, as a reader should take it (it must fail there)."""
    if step.before is None:
        return ""
    return "failed, as it must" if step.before is Status.FAIL else f"{step.before.value} (passes_before)"


def render_markdown(result: RunResult) -> str:
    """Render a run as Markdown: summary, phase timings, steps, then failure details."""
    lines = [
        f"# reglab: {result.edition} ({_run_date(result)})",
        "",
        _summary_line(result),
        "",
    ]
    if result.phases:
        lines += ["## Phases", ""]
        lines += _md_table(
            ["phase", "time"],
            [[name, format_seconds(secs)] for name, secs in result.phases.items()],
        )
        lines.append("")
    lines += ["## Steps", ""]
    proved = any(step.before is not None for step in result.steps)
    bridged = _bridged(result)
    lines += _md_table(
        ["step", "title", *(["check before solving"] if proved else []), "result", "time", "diagnosis",
         *(["bridge"] if bridged else [])],
        [
            [
                step.step_id,
                step.title,
                *([_before(step)] if proved else []),
                "**FAIL**" if step.status is Status.FAIL else step.status.value,
                format_seconds(step.duration),
                _cause_ids(step),
                *([_bridge(step)] if bridged else []),
            ]
            for step in result.steps
        ],
    )
    lines.append("")
    failures = _failures(result)
    if failures:
        lines += ["## Failures", ""]
        for step in failures:
            lines += [f"### {step.step_id}: {step.title}", ""]
            lines += _md_attempt(step.expected, step.seen, step.diagnosis)
            lines += [f"- {line}" for line in _bridge_lines(step)]
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


def xml_text(text: str) -> str:
    """Drop characters XML 1.0 cannot hold (ANSI escapes in tool output, for one)."""
    return _XML_INVALID.sub("", text)


def _failure_text(step: StepResult) -> str:
    parts = [f"expected: {step.expected}", "seen:", _seen(step)]
    if step.diagnosis:
        parts.append(format_diagnosis(step.diagnosis))
    parts += _bridge_lines(step)
    if step.logs:
        parts.append("logs: " + ", ".join(step.logs))
    for look in step.looks:
        parts.append(look_heading(look))
        if look.status is Status.FAIL:
            parts += [f"expected: {look.expected}", "seen:", clean_output(look.seen)]
            if look.diagnosis:
                parts.append(format_diagnosis(look.diagnosis))
    return xml_text("\n".join(parts))


def render_junit(result: RunResult) -> str:
    """Render a run as JUnit XML, one testcase per step, for CI test reporting."""
    suite_name = f"reglab.{result.edition}"
    counts = result.counts
    totals = {
        "tests": str(len(result.steps)),
        "failures": str(counts[Status.FAIL]),
        "errors": "0",
        "skipped": str(counts[Status.NOT_RUN]),
        "time": f"{result.total_time:.3f}",
    }
    root = ET.Element("testsuites", {"name": "reglab", **totals})
    suite = ET.SubElement(
        root,
        "testsuite",
        {"name": suite_name, **totals, "timestamp": result.started.isoformat()},
    )
    for step in result.steps:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": suite_name,
                "name": step.step_id,
                "time": f"{step.duration:.3f}",
            },
        )
        if step.bridged or step.bridge_failed:
            properties = ET.SubElement(case, "properties")
            for name, value in (("bridged", str(step.bridged).lower()), ("bridge_error", step.bridge_error),
                                ("bridge_failed", step.bridge_failed)):
                ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
        if step.status is Status.FAIL:
            message = (
                f"likely cause: {step.diagnosis.cause}"
                if step.diagnosis
                else f"expected: {step.expected}"
            )
            failure = ET.SubElement(
                case,
                "failure",
                {
                    "message": xml_text(message),
                    "type": step.diagnosis.id if step.diagnosis else "check-failed",
                },
            )
            failure.text = _failure_text(step)
        elif step.status is Status.NOT_RUN:
            ET.SubElement(case, "skipped")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


_CSS = """
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


def _status_class(status: Status) -> str:
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
    parts += [f"<p>{e(line)}</p>" for line in _bridge_lines(step)]
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
    title = f"reglab: {result.edition} ({_run_date(result)})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(_summary_line(result))}</p>",
    ]
    if result.phases:
        parts += ["<h2>Phases</h2>", "<table>", "<tr><th>phase</th><th>time</th></tr>"]
        parts += [
            f"<tr><td>{e(name)}</td><td>{e(format_seconds(secs))}</td></tr>"
            for name, secs in result.phases.items()
        ]
        parts.append("</table>")
    bridged = _bridged(result)
    parts += [
        "<h2>Steps</h2>",
        "<table>",
        "<tr><th>step</th><th>title</th><th>check before solving</th><th>result</th><th>time</th>"
        "<th>diagnosis</th>" + ("<th>bridge</th>" if bridged else "") + "</tr>",
    ]
    for step in result.steps:
        diagnosis = _cause_ids(step)
        bridge = f"<td>{e(_bridge(step))}</td>" if bridged else ""
        parts.append(
            f"<tr><td>{e(step.step_id)}</td><td>{e(step.title)}</td><td>{e(_before(step))}</td>"
            f'<td class="{_status_class(step.status)}">{e(step.status.value)}</td>'
            f"<td>{e(format_seconds(step.duration))}</td><td>{e(diagnosis)}</td>{bridge}</tr>"
        )
    parts.append("</table>")
    failures = _failures(result)
    if failures:
        parts.append("<h2>Failures</h2>")
        for step in failures:
            parts += _html_failure(step)
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def render_json(result: RunResult) -> str:
    """Render a run as the JSON that load_result reads back."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def redact_result(result: RunResult, redactor: Redactor) -> RunResult:
    """A copy of `result` with every string redacted but the edition (a checked file name)."""
    r = redactor.redact
    steps = [
        dataclasses.replace(
            step,
            step_id=r(step.step_id),
            title=r(step.title),
            expected=r(step.expected),
            seen=r(step.seen),
            logs=[r(log) for log in step.logs],
            bridge_error=r(step.bridge_error),
            looks=[dataclasses.replace(look, expected=r(look.expected), seen=r(look.seen), error=r(look.error))
                   for look in step.looks],
        )
        for step in result.steps
    ]
    phases = {r(name): secs for name, secs in result.phases.items()}
    return dataclasses.replace(result, steps=steps, phases=phases)


def write_reports(result: RunResult, directory: Path, redactor: Redactor | None = None) -> dict[str, Path]:
    """Write <edition>.md, .xml, .html and .json, each atomically; return their paths by kind.

    With a `redactor`, every string of the result is redacted before rendering
    (so HTML or XML escaping cannot hide a secret from it) and the rendered
    Markdown, XML and HTML once more (the diagnosis texts they add).
    """
    if not _EDITION_NAME.fullmatch(result.edition):
        raise ValueError(f"edition name not usable as a file name: {result.edition!r}")
    if redactor is not None:
        result = redact_result(result, redactor)
    renderers = {
        "md": render_markdown,
        "xml": render_junit,
        "html": render_html,
        "json": render_json,
    }
    paths: dict[str, Path] = {}
    for kind, render in renderers.items():
        text = render(result)
        if redactor is not None and kind != "json":  # JSON: its strings are the result's, redacted above
            text = redactor.redact(text)
        paths[kind] = atomic_write(directory / f"{result.edition}.{kind}", text)
    return paths


def load_result(path: Path) -> RunResult:
    """Read a run written by write_reports, so reports can be re-rendered.

    A file cut short, edited or from another version is a LabError naming it:
    `reglab run` writes it again.
    """
    again = "rerun `reglab run` to write it again (or remove it)"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise LabError(f"{path}: cannot be read ({error.strerror}); {again}") from None
    except UnicodeDecodeError:
        raise LabError(f"{path}: not UTF-8 text, so not a report reglab wrote; {again}") from None
    try:
        result = RunResult.from_dict(json.loads(text))
    except json.JSONDecodeError as error:
        raise LabError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); {again}"
        ) from None
    except ValueError as error:
        raise LabError(f"{path}: {error}; {again}") from None
    if not _EDITION_NAME.fullmatch(result.edition):
        raise LabError(f"{path}: edition: {result.edition!r} is not an edition name; {again}")
    return result


def load_results(directory: Path) -> list[RunResult]:
    """The last run of each edition in a reports folder, modern first."""
    results = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        result = load_result(path)
        if result.edition == path.stem:  # EDITION.json is what reglab writes; a copy beside it is not a run
            results.append(result)
    order = {"modern": 0, "as-written": 1}
    return sorted(results, key=lambda r: order.get(r.edition, 9))


def render_summary_table(results: Sequence[RunResult]) -> str:
    """Render the README table: one row per step, one column per edition."""
    if not results:
        raise ValueError("no results to summarize")
    editions = [r.edition for r in results]
    if len(set(editions)) != len(editions):
        raise ValueError(f"duplicate editions in results: {editions}")
    step_ids: list[str] = []
    for result in results:
        step_ids += [s.step_id for s in result.steps if s.step_id not in step_ids]
    by_edition = [{s.step_id: s for s in r.steps} for r in results]
    header = ["step", *(f"{r.edition} ({r.started:%Y-%m-%d})" for r in results)]
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
    return "\n".join(_md_table(header, rows)) + "\n"


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


# --- the maintainer's report: both editions side by side, and the tutorial's text -----------------

MAINTAINER = "maintainer"  # reports/maintainer.md and .html; never an edition's name
AS_WRITTEN, MODERN = "as-written", "modern"


@dataclass(frozen=True)
class TextCheck:
    """The drift check of the tutorial's text against the scenario's citations, at report time."""

    cited: int = 0  # blocks cited by the steps
    left_out: int = 0  # blocks the scenario leaves out, with a reason
    problems: tuple[str, ...] = ()  # drift's messages, each naming a step or a block
    error: str = ""  # why the text could not be checked

    @property
    def line(self) -> str:
        if self.error:
            return f"tutorial text not checked: {self.error}"
        if not self.problems:
            return f"tutorial text unchanged: {self.cited} blocks cited, {self.left_out} left out"
        return (f"tutorial text changed: {len(self.problems)} "
                f"{'difference' if len(self.problems) == 1 else 'differences'} from the scenario's citations")


def check_text(scenario: Scenario, text: str) -> TextCheck:
    """`tutorial_text.drift` of the scenario against the tutorial's text, with what it counted."""
    return TextCheck(
        cited=len({cite.block for step in scenario.steps for cite in step.tutorial}),
        left_out=len({cite.block for cite in scenario.left_out}),
        problems=tuple(tutorial_text.drift(scenario, text)),
    )


def check_tutorial_text(scenario: Scenario, path: Path = tutorial_text.TUTORIAL) -> TextCheck:
    """check_text on the tutorial's file; one that cannot be read is said so, not raised."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        return TextCheck(error=f"{path} cannot be read ({error.strerror})")
    except UnicodeDecodeError:
        return TextCheck(error=f"{path} is not UTF-8 text")
    return check_text(scenario, text)


def _by_edition(results: Sequence[RunResult]) -> dict[str, RunResult]:
    editions = [r.edition for r in results]
    if len(set(editions)) != len(editions):
        raise ValueError(f"duplicate editions in results: {editions}")
    return {r.edition: r for r in results}


def _step_ids(results: Sequence[RunResult]) -> list[str]:
    ids: list[str] = []
    for result in results:
        ids += [s.step_id for s in result.steps if s.step_id not in ids]
    return ids


def _no_run(edition: str) -> str:
    keep_going = " --keep-going" if edition == AS_WRITTEN else ""
    return f"no run yet (`reglab --edition {edition} run{keep_going}`)"


def _run_line(edition: str, result: RunResult | None) -> str:
    if result is None:
        return f"{edition}: {_no_run(edition)}"
    return f"{edition}, {_run_date(result)}: {_summary_line(result)} (details: {edition}.md, .html)"


def _cause_names(step: StepResult) -> list[str]:
    """Every cause in the order found; "unknown" where none matched; a look that could not be made."""
    names = [step.diagnosis.id if step.diagnosis else "unknown"]
    for look in step.looks:
        if look.error:
            names.append(f"(could not get past {look.past})")
        elif look.status is Status.FAIL:
            names.append(look.diagnosis.id if look.diagnosis else "unknown")
    return list(dict.fromkeys(names))


def _fixes(step: StepResult) -> str:
    causes = step.causes
    if len(causes) == 1:
        return causes[0].fix
    return " ".join(f"{n}. {cause.id}: {cause.fix}" for n, cause in enumerate(causes, 1))


def _bridged_cell(step: StepResult) -> str:
    parts = []
    if step.status is Status.FAIL:
        parts.append(("bridge failed: " + step.bridge_error if step.bridge_error else "yes") if step.bridged
                     else "no (the run stopped here)")
    if step.bridge_failed:
        parts.append(f"judged after the failed bridge of {step.bridge_failed}")
    return "; ".join(parts)


def _verdict(step: StepResult | None, result: RunResult | None) -> str:
    if result is None:
        return "no run yet"
    if step is None:
        return "not in this run"
    return "FAIL" if step.status is Status.FAIL else step.status.value


def _maintainer_rows(results: dict[str, RunResult]) -> list[tuple[str, str, str, str, str, str, str]]:
    """Per step: id, as-written verdict, causes, fixes, bridged, modern verdict, its class (for HTML)."""
    written, modern = results.get(AS_WRITTEN), results.get(MODERN)
    steps = {edition: {s.step_id: s for s in r.steps} for edition, r in results.items()}
    rows = []
    for step_id in _step_ids([r for r in (written, modern) if r is not None]):
        old = steps.get(AS_WRITTEN, {}).get(step_id)
        new = steps.get(MODERN, {}).get(step_id)
        failed = old is not None and old.status is Status.FAIL
        modern_verdict = _verdict(new, modern)
        if new is not None and new.status is Status.FAIL and new.causes:
            modern_verdict += f" ({_cause_ids(new)})"
        rows.append((
            step_id,
            _verdict(old, written),
            "; ".join(_cause_names(old)) if failed else "",
            _fixes(old) if failed else "",
            _bridged_cell(old) if old is not None else "",
            modern_verdict,
            _status_class(new.status) if new is not None else "not-run",
        ))
    return rows


def _why_lines(step: StepResult) -> list[str]:
    """Each cause of a failed as-written step with its fix, in the order found."""
    lines = []
    attempts = [(step.diagnosis, step.expected, step.seen, "")] + [
        (look.diagnosis, look.expected, look.seen, look.past) for look in step.looks if look.status is Status.FAIL]
    for cause, expected, seen, past in attempts:
        after = f"past {past}: " if past else ""
        if cause:
            lines.append(f"{after}{cause.id}: {cause.cause} Fix: {cause.fix}")
        else:
            last = next((line for line in reversed(clean_output(seen).splitlines()) if line.strip()), "(nothing)")
            lines.append(f"{after}a cause reglab does not know: expected {expected or '(not recorded)'}; saw {last}")
    for look in step.looks:
        if look.error:
            lines.append(f"getting past {look.past} failed: {look.error}")
        elif look.status is Status.PASS:
            lines.append(f"past {look.past}, the step as written passes: nothing else is wrong")
    return lines


_MAINTAINER_HEADER = ("step", "as written", "cause(s)", "fix", "bridged", "modern")
_MAINTAINER_TITLE = "reglab: the tutorial as written and today"
_MAINTAINER_INTRO = ("Each step of the tutorial, run two ways: as written (its own 2016 commands) and modern "
                     "(the flow that works on today's tools). A failed as-written step names every cause found, "
                     "in order, and whether its modern solution was applied (bridged) so the next steps could be "
                     "judged.")


def render_maintainer_markdown(results: Sequence[RunResult], text: TextCheck) -> str:
    """Both editions side by side per step, as Markdown, with the tutorial text's drift check."""
    by_edition = _by_edition(results)
    lines = [f"# {_MAINTAINER_TITLE}", "", _MAINTAINER_INTRO, ""]
    lines += [f"- {_run_line(edition, by_edition.get(edition))}" for edition in (AS_WRITTEN, MODERN)]
    lines += [f"- {text.line}", "", "## Steps", ""]
    lines += _md_table(_MAINTAINER_HEADER, [row[:6] for row in _maintainer_rows(by_edition)])
    lines.append("")
    written = by_edition.get(AS_WRITTEN)
    failed = _failures(written) if written else []
    if failed:
        lines += ["## Why the as-written steps fail", ""]
        for step in failed:
            lines += [f"### {step.step_id}: {step.title}", ""]
            lines += [f"{n}. {line}" for n, line in enumerate(_why_lines(step), 1)]
            lines.append("")
    lines += ["## Tutorial text", "", text.line, ""]
    lines += [f"- {problem}" for problem in text.problems]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_maintainer_html(results: Sequence[RunResult], text: TextCheck) -> str:
    """The same as render_maintainer_markdown, as one self-contained HTML page; every value escaped."""
    e = html.escape
    by_edition = _by_edition(results)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8">',
        f"<title>{e(_MAINTAINER_TITLE)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{e(_MAINTAINER_TITLE)}</h1>", f"<p>{e(_MAINTAINER_INTRO)}</p>", "<ul>",
    ]
    parts += [f"<li>{e(_run_line(edition, by_edition.get(edition)))}</li>" for edition in (AS_WRITTEN, MODERN)]
    parts += [f"<li>{e(text.line)}</li>", "</ul>", "<h2>Steps</h2>", "<table>",
              "<tr>" + "".join(f"<th>{e(h)}</th>" for h in _MAINTAINER_HEADER) + "</tr>"]
    for step_id, old, causes, fixes, bridged, new, new_class in _maintainer_rows(by_edition):
        old_class = {"FAIL": "fail", "pass": "pass"}.get(old, "not-run")
        parts.append(
            f"<tr><td>{e(step_id)}</td><td class=\"{old_class}\">{e(old)}</td><td>{e(causes)}</td>"
            f"<td>{e(fixes)}</td><td>{e(bridged)}</td><td class=\"{new_class}\">{e(new)}</td></tr>"
        )
    parts.append("</table>")
    written = by_edition.get(AS_WRITTEN)
    failed = _failures(written) if written else []
    if failed:
        parts.append("<h2>Why the as-written steps fail</h2>")
        for step in failed:
            parts += [f"<h3>{e(step.step_id)}: {e(step.title)}</h3>", "<ol>"]
            parts += [f"<li>{e(line)}</li>" for line in _why_lines(step)]
            parts.append("</ol>")
    parts += ["<h2>Tutorial text</h2>", f"<p>{e(text.line)}</p>"]
    if text.problems:
        parts += ["<ul>", *(f"<li>{e(problem)}</li>" for problem in text.problems), "</ul>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def write_maintainer_report(results: Sequence[RunResult], text: TextCheck, directory: Path,
                            redactor: Redactor | None = None) -> dict[str, Path]:
    """Write maintainer.md and .html beside the per-edition reports, each atomically; their paths by kind.

    Redacted as write_reports does: every string of the results (and of the
    drift check) before rendering, the rendered text once more.
    """
    if redactor is not None:
        results = [redact_result(result, redactor) for result in results]
        text = dataclasses.replace(text, problems=tuple(redactor.redact(p) for p in text.problems),
                                   error=redactor.redact(text.error))
    paths: dict[str, Path] = {}
    for kind, render in (("md", render_maintainer_markdown), ("html", render_maintainer_html)):
        rendered = render(results, text)
        if redactor is not None:
            rendered = redactor.redact(rendered)
        paths[kind] = atomic_write(directory / f"{MAINTAINER}.{kind}", rendered)
    return paths
