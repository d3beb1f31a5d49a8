"""An edition's run as JUnit XML (`EDITION.xml`): for CI servers and test-report viewers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lab.model.diagnosis import format_diagnosis
from lab.model.results import RunResult, Status, StepResult
from lab.reports.text import bridge_lines, clean_output, look_heading, xml_text


def _seen(step: StepResult) -> str:
    return clean_output(step.seen)


def _failure_text(step: StepResult) -> str:
    parts = [f"expected: {step.expected}", "seen:", _seen(step)]
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
