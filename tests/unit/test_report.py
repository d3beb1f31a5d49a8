"""Reports must say the same thing in every format and survive a JSON round trip."""

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab.diagnosis import cause_by_id
from lab.report import (
    README_END,
    README_START,
    load_result,
    render_html,
    render_junit,
    render_markdown,
    render_summary_table,
    truncate_lines,
    update_readme,
    write_reports,
)
from lab.results import RunResult, Status, StepResult

STARTED = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
FINISHED = datetime(2024, 5, 1, 10, 3, 20, tzinfo=UTC)
LEGACY_CN = (
    'Error response from daemon: Get "https://myregistrydomain.com/v2/": '
    "x509: certificate relies on legacy Common Name field, use SANs instead"
)


def make_result(edition: str = "as-written") -> RunResult:
    return RunResult(
        edition=edition,
        started=STARTED,
        finished=FINISHED,
        phases={"boot": 14.2, "provision": 30.1},
        steps=[
            StepResult("local-registry", "Run a local registry", Status.PASS, 3.5),
            StepResult(
                "tls",
                "Serve the registry over TLS",
                Status.FAIL,
                2.0,
                expected="docker login succeeds over https",
                seen=LEGACY_CN,
                diagnosis=cause_by_id("legacy-cn"),
                logs=["runs/as-written/client.log"],
            ),
            StepResult(
                "client-push",
                "Push from the client",
                Status.FAIL,
                1.0,
                expected="push <ok> & done",
                seen="<script>alert(1)</script>\x1b[31m",
            ),
            StepResult("server-pull", "Pull on the server", Status.NOT_RUN),
        ],
    )


def test_counts_and_passed() -> None:
    result = make_result()
    assert result.counts == {Status.PASS: 1, Status.FAIL: 2, Status.NOT_RUN: 1}
    assert not result.passed
    all_pass = RunResult("modern", STARTED, [StepResult("hosts", "Hosts", Status.PASS)])
    assert all_pass.passed
    assert not RunResult("modern", STARTED, []).passed


def test_round_trip_through_dict_and_json() -> None:
    result = make_result()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["steps"][1]["diagnosis"] == "legacy-cn"
    assert RunResult.from_dict(data) == result


def test_from_dict_rejects_unknown_cause() -> None:
    data = make_result().to_dict()
    data["steps"][1]["diagnosis"] = "no-such-cause"
    with pytest.raises(ValueError, match="no-such-cause"):
        RunResult.from_dict(data)


def test_markdown_content() -> None:
    text = render_markdown(make_result())
    assert text.startswith("# reglab: as-written (2024-05-01 10:00 UTC)")
    assert "1 passed, 2 failed, 1 not run, total time 3m 20s" in text
    assert "| boot | 14.2s |" in text
    assert "| tls | Serve the registry over TLS | **FAIL** | 2.0s | legacy-cn |" in text
    assert "| server-pull | Pull on the server | not run | 0.0s |  |" in text
    failures = text.split("## Failures", 1)[1]
    assert "### tls: Serve the registry over TLS" in failures
    assert "- expected: docker login succeeds over https" in failures
    assert LEGACY_CN in failures
    assert f"- likely cause: {cause_by_id('legacy-cn').cause}" in failures
    assert f"- fix: {cause_by_id('legacy-cn').fix}" in failures
    assert "- logs: `runs/as-written/client.log`" in failures
    assert "likely cause: unknown" in failures
    assert "server-pull" not in failures


def test_terminal_colors_are_stripped_from_seen() -> None:
    result = make_result()
    result.steps[2].seen = "\x1b[31merror:\x1b[0m push failed"
    for text in (render_markdown(result), render_html(result), render_junit(result)):
        assert "\x1b" not in text
        assert "error: push failed" in text


def test_markdown_without_failures_has_no_failures_section() -> None:
    result = RunResult("modern", STARTED, [StepResult("hosts", "Hosts", Status.PASS)])
    assert "## Failures" not in render_markdown(result)


def test_seen_is_truncated_to_the_last_lines() -> None:
    seen = "\n".join(f"line {i}" for i in range(100))
    truncated = truncate_lines(seen).splitlines()
    assert truncated[0] == "[... 60 earlier lines omitted ...]"
    assert truncated[1:] == [f"line {i}" for i in range(60, 100)]
    assert truncate_lines("short") == "short"


def test_junit_counts_failures_and_skipped() -> None:
    root = ET.fromstring(render_junit(make_result()))
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "reglab.as-written"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        "4",
        "2",
        "1",
    )
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "local-registry",
        "tls",
        "client-push",
        "server-pull",
    ]
    assert {c.get("classname") for c in cases} == {"reglab.as-written"}
    assert len(suite.findall("testcase/failure")) == 2
    assert len(suite.findall("testcase/skipped")) == 1
    tls_failure = cases[1].find("failure")
    assert tls_failure is not None
    assert tls_failure.get("type") == "legacy-cn"
    assert "legacy Common Name" in (tls_failure.text or "")
    push_failure = cases[2].find("failure")
    assert push_failure is not None
    assert push_failure.get("message") == "expected: push <ok> & done"
    assert "<script>" in (push_failure.text or "")
    assert "\x1b" not in (push_failure.text or "")


def test_html_escapes_everything() -> None:
    page = render_html(make_result())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "push &lt;ok&gt; &amp; done" in page
    assert '<td class="fail">fail</td>' in page
    assert '<td class="not-run">not run</td>' in page
    assert "<style>" in page and "<link" not in page


def test_write_reports_and_load_result(tmp_path: Path) -> None:
    result = make_result()
    paths = write_reports(result, tmp_path / "reports")
    assert set(paths) == {"md", "xml", "html", "json"}
    for kind, path in paths.items():
        assert path == tmp_path / "reports" / f"as-written.{kind}"
        assert path.read_text(encoding="utf-8")
    assert load_result(paths["json"]) == result
    ET.parse(paths["xml"])


def test_write_reports_rejects_unsafe_edition(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="edition"):
        write_reports(make_result("../evil"), tmp_path)


def test_summary_table() -> None:
    modern = RunResult(
        "modern",
        STARTED,
        [
            StepResult("local-registry", "Run a local registry", Status.PASS),
            StepResult("tls", "Serve the registry over TLS", Status.PASS),
            StepResult("client-push", "Push from the client", Status.PASS),
            StepResult("server-pull", "Pull on the server", Status.PASS),
        ],
    )
    table = render_summary_table([modern, make_result()])
    assert table.splitlines() == [
        "| step | modern (2024-05-01) | as-written (2024-05-01) |",
        "|---|---|---|",
        "| local-registry | pass | pass |",
        "| tls | pass | FAIL (legacy-cn) |",
        "| client-push | pass | FAIL |",
        "| server-pull | pass | not run |",
    ]


def test_summary_table_rejects_nothing_and_duplicates() -> None:
    with pytest.raises(ValueError):
        render_summary_table([])
    with pytest.raises(ValueError, match="duplicate"):
        render_summary_table([make_result(), make_result()])


def test_update_readme_replaces_between_markers() -> None:
    readme = f"# reglab\n\n{README_START}\nold table\n{README_END}\n\nmore text\n"
    updated = update_readme(readme, "| new |\n")
    assert (
        updated == f"# reglab\n\n{README_START}\n| new |\n{README_END}\n\nmore text\n"
    )
    assert update_readme(updated, "| new |\n") == updated


@pytest.mark.parametrize(
    ("readme", "missing"),
    [
        (f"# reglab\n{README_END}\n", README_START),
        (f"# reglab\n{README_START}\n", README_END),
        ("# reglab\n", README_START),
    ],
)
def test_update_readme_names_missing_marker(readme: str, missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        update_readme(readme, "| new |")


def test_update_readme_rejects_markers_in_wrong_order() -> None:
    with pytest.raises(ValueError, match="after"):
        update_readme(f"{README_END}\n{README_START}\n", "| new |")
