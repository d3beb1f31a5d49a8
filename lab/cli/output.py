"""What reglab prints: a step, a run's summary, the machines' status, a table, a class's outcomes, the last report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from lab.common.errors import ExitStatus, LabError
from lab.engine.matrix import matrix_results
from lab.engine.session import Session
from lab.machines.providers.base import MachineStatus
from lab.model.diagnosis import format_diagnosis
from lab.model.results import DEPENDS, RunResult, Status, StepResult
from lab.reports.files import load_results, write_reports
from lab.reports.fixed import write_fixed_tutorial
from lab.reports.maintainer import check_tutorial_text, platforms_of, write_maintainer_report
from lab.reports.markdown import render_markdown
from lab.reports.readme import render_summary_table, update_readme_file
from lab.reports.text import look_heading

if TYPE_CHECKING:
    from lab.classroom.room import LabOutcome  # loaded only by `reglab class`


def print_outcomes(outcomes: list[LabOutcome], what: str, out: TextIO) -> None:
    rows = [("STUDENT", "RESULT", "SECONDS")]
    rows += [(o.member.id, "ok" if o.ok else f"FAILED: {o.first_line}", f"{o.seconds:.1f}") for o in outcomes]
    print_table(rows, out)
    for outcome in outcomes:
        if not outcome.ok and "\n" in outcome.message:
            print(f"\n{outcome.member.id}:\n  " + outcome.message.replace("\n", "\n  "), file=out)
    failed = sum(not o.ok for o in outcomes)
    print(f"{what}: {len(outcomes) - failed} of {len(outcomes)} ok" + (f", {failed} failed" if failed else ""),
          file=out)


def print_table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


def print_step(step: StepResult, out: TextIO) -> None:
    mark = {Status.PASS: "ok  ", Status.FAIL: "FAIL", Status.NOT_RUN: "--  ", Status.UNREACHABLE: "!!  "}[step.status]
    depends = f"  ({DEPENDS}: {step.depends_on})" if step.depends_on else ""
    print(f"{mark} {step.step_id}: {step.title}{depends}", file=out)
    if step.status is Status.FAIL:
        print(f"     expected: {step.expected}", file=out)
        print("     seen:     " + step.seen.replace("\n", "\n               "), file=out)
        if step.diagnosis:
            print("     " + format_diagnosis(step.diagnosis).replace("\n", "\n     "), file=out)
        for look in step.looks:
            print(f"     then:     {look_heading(look)}", file=out)
            if look.diagnosis:
                print("     " + format_diagnosis(look.diagnosis).replace("\n", "\n     "), file=out)
        if step.bridged:
            print("     bridge:   " + (f"FAILED: {step.bridge_error}" if step.bridge_error
                                        else "the modern solution was applied; the run went on"), file=out)
        if step.bridge_failed:
            print(f"     note:     judged after the bridge of {step.bridge_failed} failed", file=out)
        if step.logs:
            print(f"     logs:     {', '.join(step.logs)}", file=out)


def print_summary(result: RunResult, out: TextIO, reports: Path | None = None) -> None:
    counts = result.counts
    phases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.phases.items())
    print(
        f"\n{result.edition}: {counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, "
        f"{counts[Status.NOT_RUN]} not run" + (f"  ({phases})" if phases else ""),
        file=out,
    )
    if reports is not None:
        print(f"report: {reports / (result.edition + '.md')} (also .xml, .html)", file=out)


def print_status(session: Session, out: TextIO) -> None:
    starts = session.state.data.get("starts", {})

    def start(status: MachineStatus) -> str:
        record = starts.get(status.name)
        if status.state == "not_created" or not record:
            return "-"
        return f"{record['kind']} ({record['image']})" if record["kind"] == "warm" else "fresh"

    rows = [("MACHINE", "PROVIDER", "STATE", "IP", "START")]
    rows += [(s.name, s.provider, s.state, s.ip, start(s)) for s in session.provider.status()]
    print_table(rows, out)
    for note in session.provider.notes():
        print(note, file=out)


def show_report(session: Session, readme: Path | None, out: TextIO) -> ExitStatus:
    directory = session.lab.state_dir / "reports"
    results = load_results(directory)
    if not results:
        raise LabError(f"no report in {directory}; `reglab run` writes one")
    for result in results:
        write_reports(result, directory, session.redactor)
        print(render_markdown(result), file=out)
    text = check_tutorial_text(session.scenario)
    everything = matrix_results(session.lab)
    paths = write_maintainer_report(everything, text, directory, session.redactor)
    platforms = platforms_of(everything)
    what = f"every edition on {', '.join(platforms)}" if len(platforms) > 1 else "both editions side by side"
    print(f"{what}: {paths['md']} (also .html); {text.line}", file=out)
    scenario = session.scenario
    if scenario.text is not None and scenario.fixes:
        try:
            written = write_fixed_tutorial(scenario.text, scenario.fixes, directory)
        except ValueError as exc:  # a stale fix: the text moved under it
            raise LabError(f"{scenario.path}: fixes: {exc}") from None
        print(f"the tutorial fixed: {written['fixed']} (and {written['patch'].name}: "
              f"{len(scenario.fixes)} changes)", file=out)
    if readme is not None:
        update_readme_file(readme, render_summary_table(everything))
        print(f"updated {readme}", file=out)
    return ExitStatus.OK
