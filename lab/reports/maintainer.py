"""The maintainer's report (`maintainer.md`, `.html`): both editions side by side per step (or, with runs
on several platforms, every (edition, platform) per step and what changed between platforms), and the
check of the tutorial's text against the scenario's citations.

Built from the per-edition JSON files, so it always shows each edition's last run.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.common.files import atomic_write
from lab.model.results import RunResult, Status, StepResult
from lab.reports.files import redact_result
from lab.reports.html import CSS, status_class
from lab.reports.markdown import md_table
from lab.reports.text import cause_ids, clean_output, failed_steps, run_date, summary_line
from lab.tutorial import text as tutorial_text

if TYPE_CHECKING:
    from lab.model.credentials import Redactor
    from lab.model.scenario import Scenario


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
    return f"{edition}, {run_date(result)}: {summary_line(result)} (details: {edition}.md, .html)"


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
            modern_verdict += f" ({cause_ids(new)})"
        rows.append((
            step_id,
            _verdict(old, written),
            "; ".join(_cause_names(old)) if failed else "",
            _fixes(old) if failed else "",
            _bridged_cell(old) if old is not None else "",
            modern_verdict,
            status_class(new.status) if new is not None else "not-run",
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


def _markdown_end(lines: list[str], text: TextCheck) -> str:
    """The tutorial text's drift check, last in both reports; the Markdown as one string."""
    lines += ["## Tutorial text", "", text.line, ""]
    lines += [f"- {problem}" for problem in text.problems]
    return "\n".join(lines).rstrip("\n") + "\n"


def _html_start(title: str, intro: str) -> list[str]:
    """A self-contained page's head, its title and intro, and the opening of the runs' list."""
    e = html.escape
    return ["<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8">', f"<title>{e(title)}</title>",
            f"<style>{CSS}</style>", "</head>", "<body>", f"<h1>{e(title)}</h1>", f"<p>{e(intro)}</p>", "<ul>"]


def _html_end(parts: list[str], text: TextCheck) -> str:
    """The tutorial text's drift check, last in both reports; the page as one string."""
    e = html.escape
    parts += ["<h2>Tutorial text</h2>", f"<p>{e(text.line)}</p>"]
    if text.problems:
        parts += ["<ul>", *(f"<li>{e(problem)}</li>" for problem in text.problems), "</ul>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


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
    lines += md_table(_MAINTAINER_HEADER, [row[:6] for row in _maintainer_rows(by_edition)])
    lines.append("")
    written = by_edition.get(AS_WRITTEN)
    failed = failed_steps(written) if written else []
    if failed:
        lines += ["## Why the as-written steps fail", ""]
        for step in failed:
            lines += [f"### {step.step_id}: {step.title}", ""]
            lines += [f"{n}. {line}" for n, line in enumerate(_why_lines(step), 1)]
            lines.append("")
    return _markdown_end(lines, text)


def render_maintainer_html(results: Sequence[RunResult], text: TextCheck) -> str:
    """The same as render_maintainer_markdown, as one self-contained HTML page; every value escaped."""
    e = html.escape
    by_edition = _by_edition(results)
    parts = _html_start(_MAINTAINER_TITLE, _MAINTAINER_INTRO)
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
    failed = failed_steps(written) if written else []
    if failed:
        parts.append("<h2>Why the as-written steps fail</h2>")
        for step in failed:
            parts += [f"<h3>{e(step.step_id)}: {e(step.title)}</h3>", "<ol>"]
            parts += [f"<li>{e(line)}</li>" for line in _why_lines(step)]
            parts.append("</ol>")
    return _html_end(parts, text)


# -- several platforms: step x (edition, platform) ----------------------------------------------
EDITION_ORDER = (MODERN, AS_WRITTEN, "fixed")
_MATRIX_TITLE = "reglab: the tutorial as written and today, per platform"
_MATRIX_INTRO = ("Each step of the tutorial, run on each platform (one lab per platform) as written (its own 2016 "
                 "commands), modern (the flow that works on today's tools) and fixed (the corrected text's commands, "
                 "where run). A failed step names its causes in the cell; every cause's fix follows the table.")


def platforms_of(results: Sequence[RunResult]) -> list[str]:
    return sorted({r.platform or "unknown" for r in results})


def _columns(results: Sequence[RunResult]) -> list[tuple[str, str]]:
    """(edition, platform) of every run, editions in their usual order, platforms in name order."""
    found = {(r.edition, r.platform or "unknown") for r in results}
    rank = {edition: n for n, edition in enumerate(EDITION_ORDER)}
    return sorted(found, key=lambda column: (rank.get(column[0], 9), column[0], column[1]))


def _by_column(results: Sequence[RunResult]) -> dict[tuple[str, str], RunResult]:
    by: dict[tuple[str, str], RunResult] = {}
    for result in results:
        column = (result.edition, result.platform or "unknown")
        if column in by:
            raise ValueError(f"two runs of {column[0]} on {column[1]}")
        by[column] = result
    return by


def _cell(step: StepResult | None, result: RunResult) -> str:
    verdict = _verdict(step, result)
    if step is not None and step.status is Status.FAIL:
        verdict += f" ({'; '.join(_cause_names(step))})"
    return verdict


def matrix_rows(results: Sequence[RunResult]) -> tuple[list[str], list[list[str]]]:
    """The header and, per step, its verdict in each (edition, platform) column."""
    by = _by_column(results)
    columns = _columns(results)
    steps = {column: {s.step_id: s for s in by[column].steps} for column in columns}
    header = ["step", *(f"{edition} on {platform}" for edition, platform in columns)]
    rows = [[step_id, *(_cell(steps[c].get(step_id), by[c]) for c in columns)]
            for step_id in _step_ids([by[c] for c in columns])]
    return header, rows


def changed_between_platforms(results: Sequence[RunResult]) -> list[str]:
    """Per edition, each step whose verdict is not the same on every platform that ran it."""
    by = _by_column(results)
    lines = []
    for edition in dict.fromkeys(edition for edition, _ in _columns(results)):
        runs = {platform: by[(e, platform)] for e, platform in by if e == edition}
        if len(runs) < 2:
            continue
        for step_id in _step_ids(list(runs.values())):
            cells = {platform: _cell(next((s for s in run.steps if s.step_id == step_id), None), run)
                     for platform, run in sorted(runs.items())}
            if len(set(cells.values())) > 1:
                lines.append(f"{step_id} ({edition}): " + "; ".join(f"{p} {v}" for p, v in cells.items()))
    return lines


def _matrix_failures(results: Sequence[RunResult]) -> list[tuple[str, StepResult, list[str]]]:
    by = _by_column(results)
    return [(f"{edition} on {platform}", step, _why_lines(step))
            for edition, platform in _columns(results) for step in failed_steps(by[(edition, platform)])]


def render_matrix_markdown(results: Sequence[RunResult], text: TextCheck) -> str:
    """Every (edition, platform) per step as Markdown, what changed between platforms, every cause's fix."""
    by = _by_column(results)
    lines = [f"# {_MATRIX_TITLE}", "", _MATRIX_INTRO, ""]
    lines += [f"- {edition} on {platform}, {run_date(by[(edition, platform)])}: {summary_line(by[(edition, platform)])}"
              for edition, platform in _columns(results)]
    lines += [f"- {text.line}", "", "## Steps", ""]
    header, rows = matrix_rows(results)
    lines += md_table(header, rows)
    lines += ["", "## Changed between platforms", ""]
    changed = changed_between_platforms(results)
    lines += [f"- {line}" for line in changed] or ["No step changed its verdict between platforms."]
    lines.append("")
    failures = _matrix_failures(results)
    if failures:
        lines += ["## Causes and fixes", ""]
        for where, step, why in failures:
            lines += [f"### {step.step_id} ({where}): {step.title}", ""]
            lines += [f"{n}. {line}" for n, line in enumerate(why, 1)]
            lines.append("")
    return _markdown_end(lines, text)


def render_matrix_html(results: Sequence[RunResult], text: TextCheck) -> str:
    """The same as render_matrix_markdown, as one self-contained HTML page; every value escaped."""
    e = html.escape
    by = _by_column(results)
    parts = _html_start(_MATRIX_TITLE, _MATRIX_INTRO)
    parts += [f"<li>{e(edition)} on {e(platform)}, {e(run_date(by[(edition, platform)]))}: "
              f"{e(summary_line(by[(edition, platform)]))}</li>" for edition, platform in _columns(results)]
    parts += [f"<li>{e(text.line)}</li>", "</ul>", "<h2>Steps</h2>", "<table>"]
    header, rows = matrix_rows(results)
    parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = [f"<td>{e(row[0])}</td>"]
        for cell in row[1:]:
            kind = "fail" if cell.startswith("FAIL") else "pass" if cell == "pass" else "not-run"
            cells.append(f'<td class="{kind}">{e(cell)}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts += ["</table>", "<h2>Changed between platforms</h2>"]
    changed = changed_between_platforms(results)
    parts += (["<ul>", *(f"<li>{e(line)}</li>" for line in changed), "</ul>"] if changed
              else ["<p>No step changed its verdict between platforms.</p>"])
    failures = _matrix_failures(results)
    if failures:
        parts.append("<h2>Causes and fixes</h2>")
        for where, step, why in failures:
            parts += [f"<h3>{e(step.step_id)} ({e(where)}): {e(step.title)}</h3>", "<ol>"]
            parts += [f"<li>{e(line)}</li>" for line in why]
            parts.append("</ol>")
    return _html_end(parts, text)


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
    several = (len(platforms_of(results)) > 1 or len({r.edition for r in results}) != len(results)
               or any(r.edition not in (AS_WRITTEN, MODERN) for r in results))
    renderers = ((("md", render_matrix_markdown), ("html", render_matrix_html)) if several else
                 (("md", render_maintainer_markdown), ("html", render_maintainer_html)))
    for kind, render in renderers:
        rendered = render(results, text)
        if redactor is not None:
            rendered = redactor.redact(rendered)
        paths[kind] = atomic_write(directory / f"{MAINTAINER}.{kind}", rendered)
    return paths
