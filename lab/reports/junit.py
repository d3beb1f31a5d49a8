"""Results as JUnit XML, for CI servers and test-report viewers: an edition's run (`EDITION.xml`),
and a class's gradebook (`gradebook.xml`, a suite per student) through the same `render_suites`.

A step is a testcase: a failed one a <failure>, one whose lab did not answer an
<error>, one not checked a <skipped>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lab.model.diagnosis import format_diagnosis
from lab.model.results import RunResult, Status, StepResult
from lab.reports.text import bridge_lines, clean_output, look_heading, xml_text


@dataclass(frozen=True)
class Case:
    """One testcase: a step's result, and when it was checked ("" when the suite has no such times)."""

    result: StepResult
    checked_at: str = ""
    properties: tuple[tuple[str, str], ...] = ()  # more of the case's facts (a gradebook's time on step, hints)


@dataclass(frozen=True)
class Suite:
    """One testsuite: an edition's run, or one student's row of a class; its name is its cases' classname."""

    name: str
    cases: Sequence[Case]
    time: float  # seconds
    timestamp: str = ""  # when it started, ISO-8601; "" for none


def _failure_text(step: StepResult) -> str:
    parts = [f"expected: {step.expected}", "seen:", clean_output(step.seen)]
    if step.diagnosis:
        parts.append(format_diagnosis(step.diagnosis))
    parts += bridge_lines(step)
    if step.logs:
        parts.append("logs: " + ", ".join(step.logs))
    for look in step.looks:
        parts.append(look_heading(look))
        if look.status is Status.FAIL:
            parts += [f"expected: {look.expected}", "seen:", clean_output(look.seen)]
            if look.diagnosis:
                parts.append(format_diagnosis(look.diagnosis))
    return xml_text("\n".join(parts))


def _totals(steps: Sequence[StepResult], seconds: float) -> dict[str, str]:
    count = Counter(step.status for step in steps)
    return {"tests": str(len(steps)), "failures": str(count[Status.FAIL]), "errors": str(count[Status.UNREACHABLE]),
            "skipped": str(count[Status.NOT_RUN]), "time": f"{seconds:.3f}"}


def _properties(case: Case) -> list[tuple[str, str]]:
    step = case.result
    found = [("checked_at", case.checked_at)] if case.checked_at else []
    found += case.properties
    if step.bridged or step.bridge_failed:
        found += [("bridged", str(step.bridged).lower()), ("bridge_error", step.bridge_error),
                  ("bridge_failed", step.bridge_failed)]
    return found


def _testcase(parent: ET.Element, suite: Suite, case: Case, skipped: str) -> None:
    step = case.result
    element = ET.SubElement(parent, "testcase", {"classname": xml_text(suite.name), "name": xml_text(step.step_id),
                                                 "time": f"{step.duration:.3f}"})
    if properties := _properties(case):
        holder = ET.SubElement(element, "properties")
        for name, value in properties:
            ET.SubElement(holder, "property", {"name": name, "value": xml_text(value)})
    message = xml_text(step.cause_line or f"expected: {step.expected}")
    if step.status is Status.FAIL:
        kind = step.diagnosis.id if step.diagnosis else "check-failed"
        ET.SubElement(element, "failure", {"message": message, "type": kind}).text = _failure_text(step)
    elif step.status is Status.UNREACHABLE:
        ET.SubElement(element, "error", {"message": message, "type": "unreachable"}).text = _failure_text(step)
    elif step.status is Status.NOT_RUN:
        ET.SubElement(element, "skipped", {"message": skipped} if skipped else {})


def render_suites(name: str, suites: Sequence[Suite], skipped: str = "") -> str:
    """JUnit XML: <testsuites> named `name`, a testsuite per suite, a testcase per step.

    `skipped` is the message of a step not checked ("" for none).
    """
    everything = [case.result for suite in suites for case in suite.cases]
    root = ET.Element("testsuites", {"name": name, **_totals(everything, sum(suite.time for suite in suites))})
    for suite in suites:
        attributes = {"name": xml_text(suite.name), **_totals([case.result for case in suite.cases], suite.time)}
        if suite.timestamp:
            attributes["timestamp"] = suite.timestamp
        element = ET.SubElement(root, "testsuite", attributes)
        for case in suite.cases:
            _testcase(element, suite, case, skipped)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def render_junit(result: RunResult) -> str:
    """Render a run as JUnit XML, one testcase per step, for CI test reporting."""
    suite = Suite(f"reglab.{result.edition}", [Case(step) for step in result.steps], result.total_time,
                  result.started.isoformat())
    return render_suites("reglab", [suite])
