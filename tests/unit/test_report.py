"""Reports must say the same thing in every format and survive a JSON round trip."""

import html
import json
import os
import stat
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab.common.errors import LabError
from lab.model.credentials import MASK, Redactor
from lab.model.diagnosis import cause_by_id
from lab.model.results import Look, RunResult, Status, StepResult
from lab.reports.files import load_result, write_reports
from lab.reports.html import render_html
from lab.reports.junit import render_junit
from lab.reports.maintainer import (
    TextCheck,
    check_text,
    check_tutorial_text,
    render_maintainer_html,
    render_maintainer_markdown,
    write_maintainer_report,
)
from lab.reports.markdown import render_markdown
from lab.reports.readme import README_END, README_START, render_summary_table, update_readme, update_readme_file
from lab.reports.text import clean_output

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
    assert result.counts == {Status.PASS: 1, Status.FAIL: 2, Status.NOT_RUN: 1, Status.UNREACHABLE: 0}
    assert not result.passed
    all_pass = RunResult("modern", STARTED, [StepResult("hosts", "Hosts", Status.PASS)])
    assert all_pass.passed
    assert not RunResult("modern", STARTED, []).passed


def test_round_trip_through_dict_and_json() -> None:
    result = make_result()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["steps"][1]["diagnosis"] == "legacy-cn"
    assert RunResult.from_dict(data) == result


def test_a_step_that_could_not_be_checked_keeps_its_reason_and_a_file_without_one_still_reads() -> None:
    step = StepResult("hosts", "Hosts", Status.UNREACHABLE, reason="lab did not answer: ssh: timed out")
    assert StepResult.from_dict(json.loads(json.dumps(step.to_dict()))) == step
    assert step.cause_line == "lab did not answer: ssh: timed out"
    older = make_result().to_dict()["steps"][1]
    del older["reason"]
    assert StepResult.from_dict(older).reason == ""
    assert StepResult.from_dict(older).cause_line == f"legacy-cn: {cause_by_id('legacy-cn').cause}"


def test_a_redacted_step_has_no_secret_in_any_of_its_strings() -> None:
    k = "K3Y"
    step = StepResult(k, k, Status.FAIL, expected=k, seen=k, logs=[k], bridge_error=k,
                      looks=[Look("legacy-cn", Status.FAIL, k, k, error=k)], reason=k)
    redacted = step.redacted(lambda text: text.replace(k, "*"))
    assert k in json.dumps(step.to_dict())
    assert k not in json.dumps(redacted.to_dict())


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
    truncated = clean_output(seen).splitlines()
    assert truncated[0] == "... (60 lines before)"
    assert truncated[1:] == [f"line {i}" for i in range(60, 100)]
    assert clean_output("short") == "short"


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
    ("readme", "problem"),
    [
        (f"# reglab\n{README_END}\n", f"no {README_START} marker"),
        (f"# reglab\n{README_START}\n", f"no {README_END} marker"),
        ("# reglab\n", f"no {README_START} marker"),
        (f"{README_START}\n{README_START}\n{README_END}\n", f"{README_START} appears 2 times"),
        (f"{README_END}\n{README_START}\n", f"{README_END} comes before {README_START}"),
    ],
    ids=["no-start", "no-end", "no-markers", "start-twice", "wrong-order"],
)
def test_update_readme_without_usable_markers_is_a_lab_error(readme: str, problem: str) -> None:
    """`reglab report --readme` on someone's README: one message naming it and the lines to add."""
    with pytest.raises(LabError) as info:
        update_readme(readme, "| new |", Path("docs/README.md"))
    message = str(info.value)
    assert message.startswith(f"docs/README.md: {problem}")
    assert message.endswith(f"where the table belongs:\n{README_START}\n{README_END}")


def test_update_readme_file_writes_atomically_and_keeps_the_mode(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# lab\n{README_START}\nold\n{README_END}\n")
    os.chmod(readme, 0o664)
    update_readme_file(readme, "| new |\n")
    assert readme.read_text() == f"# lab\n{README_START}\n| new |\n{README_END}\n"
    assert stat.S_IMODE(readme.stat().st_mode) == 0o664
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_update_readme_file_names_a_missing_readme(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=f"{tmp_path / 'README.md'}: no such file"):
        update_readme_file(tmp_path / "README.md", "| new |\n")


def test_update_readme_file_leaves_a_readme_without_markers_untouched(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# lab\n")
    with pytest.raises(LabError, match=str(readme)):
        update_readme_file(readme, "| new |\n")
    assert readme.read_text() == "# lab\n"


# --- load_result: a damaged report file -----------------------------------------


def _json_with(**changes: object) -> str:
    data = make_result().to_dict()
    for key, value in changes.items():
        if key.startswith("step1_"):
            data["steps"][1][key.removeprefix("step1_")] = value
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (json.dumps(make_result().to_dict())[:150], "not valid JSON (line 1, column"),
        ("", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
        (_json_with(step1_status="passed"),
         "steps[1].status: unknown status 'passed' (known: pass, fail, not run, unreachable)"),
        (_json_with(step1_diagnosis="no-such-cause"), "steps[1].diagnosis: unknown cause id: 'no-such-cause'"),
        (_json_with(step1_duration="2s"), "steps[1].duration: expected a number, found '2s'"),
        (_json_with(step1_logs=[1]), "steps[1].logs: expected a list of strings"),
        (_json_with(steps={}), "steps: expected a list, found {}"),
        (_json_with(started="yesterday"), "started: not an ISO date and time: 'yesterday'"),
        (_json_with(phases={"boot": "fast"}), "phases.boot: expected a number of seconds"),
        (_json_with(edition="../evil"), "edition: '../evil' is not an edition name"),
        (json.dumps({"edition": "modern"}), "started: missing"),
    ],
    ids=["truncated", "empty", "not-an-object", "unknown-status", "unknown-diagnosis", "bad-duration", "bad-logs",
         "steps-not-a-list", "bad-date", "bad-phase", "unsafe-edition", "missing-key"],
)
def test_damaged_report_json_is_a_lab_error_naming_the_file(tmp_path: Path, text: str, words: str) -> None:
    """`reglab report` reads files a crash may have cut or a person edited: a message, never a traceback."""
    path = tmp_path / "modern.json"
    path.write_text(text)
    with pytest.raises(LabError) as info:
        load_result(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    assert message.endswith("rerun `reglab run` to write it again (or remove it)")


def test_report_json_that_is_not_text_is_a_lab_error(tmp_path: Path) -> None:
    path = tmp_path / "modern.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LabError, match="not UTF-8"):
        load_result(path)


# --- write_reports: atomic, and redacted -----------------------------------------


def test_write_reports_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    """Each report goes through atomic_write: a unique temporary file, swapped in whole."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "as-written.md").symlink_to(elsewhere)
    write_reports(make_result(), reports)
    assert elsewhere.read_text() == "untouched"
    assert not (reports / "as-written.md").is_symlink()
    assert sorted(p.name for p in reports.iterdir()) == [f"as-written.{k}" for k in ("html", "json", "md", "xml")]


SECRET = "pa<ss>&word-S3cret"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"


def _leaky_result() -> RunResult:
    result = make_result()
    result.phases[f"login {SECRET}"] = 1.0
    step = result.steps[2]
    step.title = f"Push with {SECRET}"
    step.expected = f"docker login -p {SECRET}"
    step.seen = f"stdin was {SECRET}\nstudent:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n{KEY}"
    step.logs = [f"/tmp/{SECRET}.log"]
    return result


def test_write_reports_with_a_redactor_leaves_no_secret_in_any_file(tmp_path: Path) -> None:
    """The last line of defence: a secret the engine missed never reaches a report, escaped or not."""
    paths = write_reports(_leaky_result(), tmp_path / "reports", Redactor([SECRET]))
    for kind, path in paths.items():
        text = path.read_text()
        for form in (SECRET, html.escape(SECRET), json.dumps(SECRET)[1:-1], "HqJZimcKQFAMYayBlzkrA", "MIIEvQIBADAN"):
            assert form not in text, (kind, form)
        assert MASK in text
    loaded = load_result(paths["json"])
    assert loaded.steps[2].expected == f"docker login -p {MASK}"
    ET.parse(paths["xml"])


def test_write_reports_without_a_redactor_writes_the_result_as_given(tmp_path: Path) -> None:
    """The engine's redaction is the first line; without a Redactor the writer changes nothing."""
    paths = write_reports(_leaky_result(), tmp_path / "reports")
    assert load_result(paths["json"]) == _leaky_result()


def test_reports_show_the_check_before_solving_when_the_run_proved_its_checks() -> None:
    """Item 5: the report shows both results, before and after solving."""
    from datetime import UTC, datetime

    from lab.model.results import RunResult, Status, StepResult
    from lab.reports.html import render_html
    from lab.reports.markdown import render_markdown

    steps = [StepResult("hosts", "Name the registry", Status.PASS, before=Status.FAIL),
             StepResult("tls", "Serve TLS", Status.PASS, before=Status.PASS)]
    result = RunResult("modern", datetime(2026, 11, 29, tzinfo=UTC), steps)
    markdown = render_markdown(result)
    assert "check before solving" in markdown
    assert "| hosts | Name the registry | failed, as it must | pass |" in markdown
    assert "pass (passes_before)" in markdown
    assert "failed, as it must" in render_html(result)
    assert RunResult.from_dict(result.to_dict()).steps[0].before is Status.FAIL


# --- keep going: every format says which steps were bridged --------------------------------------


def _kept_going() -> RunResult:
    """An as-written run with --keep-going: one step bridged, one bridge failed, one judged after it."""
    return RunResult("as-written", STARTED, [
        StepResult("client-trust", "Trust the CA", Status.PASS, 1.0),
        StepResult("client-login", "docker login", Status.FAIL, 2.0, expected="Login Succeeded", seen=LEGACY_CN,
                   diagnosis=cause_by_id("legacy-cn"), bridged=True),
        StepResult("client-push", "Push test-image", Status.FAIL, 3.0, expected="a digest", seen="push refused",
                   bridged=True, bridge_error="expected a digest; saw 413"),
        StepResult("server-pull", "Pull test-images", Status.FAIL, 1.0, expected="initcron", seen="no image",
                   bridge_failed="client-push"),
    ], finished=FINISHED)


def test_reports_show_which_steps_were_bridged() -> None:
    """Issue 11: with --keep-going a reader must tell a verdict on the tutorial from one on a bridged lab."""
    result = _kept_going()
    markdown = render_markdown(result)
    assert "| step | title | result | time | diagnosis | bridge |" in markdown
    assert "| client-login | docker login | **FAIL** | 2.0s | legacy-cn | modern solution applied |" in markdown
    assert "| client-push | Push test-image | **FAIL** | 3.0s |  | bridge FAILED |" in markdown
    after = "| server-pull | Pull test-images | **FAIL** | 1.0s |  | after the failed bridge of client-push |"
    assert after in markdown
    assert "2 bridged" in markdown
    assert "- bridge failed: expected a digest; saw 413" in markdown
    assert "judged after the bridge of client-push failed" in markdown
    page = render_html(result)
    assert "<th>bridge</th>" in page and "modern solution applied" in page and "bridge FAILED" in page
    cases = {c.get("name"): c for c in ET.fromstring(render_junit(result)).iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["client-push"].iter("property")}
    assert props == {"bridged": "true", "bridge_error": "expected a digest; saw 413", "bridge_failed": ""}
    assert {p.get("name"): p.get("value") for p in cases["server-pull"].iter("property")}["bridge_failed"] == (
        "client-push")
    assert cases["client-trust"].find("properties") is None
    assert "bridge failed: expected a digest; saw 413" in (cases["client-push"].find("failure").text or "")
    assert render_summary_table([result]).splitlines()[3] == "| client-login | FAIL (legacy-cn), bridged |"


def test_a_run_that_did_not_bridge_renders_as_before() -> None:
    """The bridge column, count and JUnit properties appear only when a run kept going."""
    result = make_result()
    assert "bridge" not in render_markdown(result)
    assert "bridge" not in render_html(result)
    assert "bridge" not in render_junit(result)


def test_bridges_survive_the_json_round_trip(tmp_path: Path) -> None:
    result = _kept_going()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["steps"][1]["bridged"] is True
    assert data["steps"][3]["bridge_failed"] == "client-push"
    paths = write_reports(result, tmp_path / "reports")
    assert load_result(paths["json"]) == result


def test_a_report_written_before_bridges_existed_still_loads() -> None:
    data = make_result().to_dict()
    for step in data["steps"]:
        for key in ("bridged", "bridge_error", "bridge_failed"):
            del step[key]
    assert RunResult.from_dict(data) == make_result()


def test_a_bridged_flag_that_is_not_a_bool_is_named(tmp_path: Path) -> None:
    path = tmp_path / "as-written.json"
    path.write_text(_json_with(step1_bridged="yes"))
    with pytest.raises(LabError, match=r"steps\[1\]\.bridged: expected true or false"):
        load_result(path)


def test_a_bridge_error_is_redacted_in_every_report(tmp_path: Path) -> None:
    result = _kept_going()
    result.steps[2].bridge_error = f"docker login -p {SECRET} refused"
    for path in write_reports(result, tmp_path / "reports", Redactor([SECRET])).values():
        assert SECRET not in path.read_text()


# --- looks past a cause: every cause of a failed step -------------------------------------------

NO_AUTH = 'Error response from daemon: Head "https://myregistrydomain.com/v2/test-images/manifests/latest": ' \
          "no basic auth credentials"
NOT_PUSHED = "Error response from daemon: manifest for myregistrydomain.com/test-images:latest not found: " \
             "manifest unknown: manifest unknown"


def _two_causes() -> StepResult:
    """server-pull as written, past its missing login: the name test-images, never pushed."""
    from lab.model.results import Look

    return StepResult("server-pull", "Pull test-images", Status.FAIL, 4.0, expected="initcron", seen=NO_AUTH,
                      diagnosis=cause_by_id("no-basic-auth"), bridged=True,
                      looks=[Look("no-basic-auth", Status.FAIL, "initcron", NOT_PUSHED,
                                  cause_by_id("name-not-pushed"))])


def test_looks_survive_the_json_round_trip(tmp_path: Path) -> None:
    result = RunResult("as-written", STARTED, [_two_causes()], finished=FINISHED)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["steps"][0]["looks"][0]["diagnosis"] == "name-not-pushed"
    loaded = load_result(write_reports(result, tmp_path / "reports")["json"])
    assert loaded == result
    assert [c.id for c in loaded.steps[0].causes] == ["no-basic-auth", "name-not-pushed"]


def test_a_report_written_before_looks_existed_still_loads() -> None:
    data = make_result().to_dict()
    for step in data["steps"]:
        del step["looks"]
    assert RunResult.from_dict(data) == make_result()
    assert [c.id for c in RunResult.from_dict(data).steps[1].causes] == ["legacy-cn"]


@pytest.mark.parametrize(("look", "words"), [
    ({"past": "no-such-cause"}, "steps[1].looks[0].past: unknown cause id"),
    ({"past": "no-basic-auth", "status": "maybe"}, "steps[1].looks[0].status: unknown status 'maybe'"),
    ({"past": "no-basic-auth", "diagnosis": 3}, "steps[1].looks[0].diagnosis: expected a cause id or null"),
    ({}, "steps[1].looks[0].past: missing"),
    ("no-basic-auth", "steps[1].looks[0]: expected a JSON object"),
], ids=["unknown-past", "unknown-status", "bad-diagnosis", "no-past", "not-an-object"])
def test_a_damaged_look_is_named(tmp_path: Path, look: object, words: str) -> None:
    path = tmp_path / "as-written.json"
    path.write_text(_json_with(step1_looks=[look]))
    with pytest.raises(LabError) as info:
        load_result(path)
    assert words in str(info.value)


def test_what_a_look_saw_is_redacted_in_every_report(tmp_path: Path) -> None:
    step = _two_causes()
    step.looks[0].seen = f"{NOT_PUSHED}\nstdin was {SECRET}"
    step.looks[0].error = f"docker login -p {SECRET}"
    result = RunResult("as-written", STARTED, [step], finished=FINISHED)
    for path in write_reports(result, tmp_path / "reports", Redactor([SECRET])).values():
        assert SECRET not in path.read_text() and json.dumps(SECRET)[1:-1] not in path.read_text()


# --- every cause in the per-edition reports and the README table -------------------------------


def _written() -> RunResult:
    """An as-written keep-going run: client-login bridged (legacy-cn), server-pull with two causes."""
    result = _kept_going()
    result.steps[3] = _two_causes()
    return result


def _modern() -> RunResult:
    return RunResult("modern", STARTED, [StepResult(s.step_id, s.title, Status.PASS, 1.0) for s in _written().steps],
                     finished=FINISHED)


def test_every_report_names_each_cause_of_a_step_in_order() -> None:
    """Issue 11: the name never pushed, hidden behind the missing login, is reported with its own fix."""
    result = _written()
    markdown = render_markdown(result)
    assert "| server-pull | Pull test-images | **FAIL** | 4.0s | no-basic-auth; name-not-pushed |" in markdown
    past = markdown.index("#### past no-basic-auth, the step as written fails again: name-not-pushed")
    assert markdown.index(cause_by_id("no-basic-auth").fix) < past < markdown.index(cause_by_id("name-not-pushed").fix)
    assert "manifest unknown" in markdown[past:]
    page = render_html(result)
    assert "<td>no-basic-auth; name-not-pushed</td>" in page
    assert "<h4>past no-basic-auth, the step as written fails again: name-not-pushed</h4>" in page
    assert html.escape(cause_by_id("name-not-pushed").fix) in page
    cases = {c.get("name"): c for c in ET.fromstring(render_junit(result)).iter("testcase")}
    failure = cases["server-pull"].find("failure")
    assert failure.get("type") == "no-basic-auth"
    assert "past no-basic-auth" in failure.text and cause_by_id("name-not-pushed").fix in failure.text


def test_readme_table_shows_both_editions_every_cause_and_the_bridges() -> None:
    lines = render_summary_table([_modern(), _written()]).splitlines()
    assert lines[0] == "| step | modern (2024-05-01) | as-written (2024-05-01) |"
    assert lines[2:] == [
        "| client-trust | pass | pass |",
        "| client-login | pass | FAIL (legacy-cn), bridged |",
        "| client-push | pass | FAIL, bridge failed |",
        "| server-pull | pass | FAIL (no-basic-auth; name-not-pushed), bridged |",
    ]


# --- the maintainer's report: both editions side by side -----------------------------------------

UNCHANGED = TextCheck(cited=48, left_out=11)


def test_maintainer_report_puts_both_editions_side_by_side_per_step() -> None:
    markdown = render_maintainer_markdown([_modern(), _written()], UNCHANGED)
    assert "| step | as written | cause(s) | fix | bridged | modern |" in markdown
    assert "| client-trust | pass |  |  |  | pass |" in markdown
    legacy = cause_by_id("legacy-cn").fix
    assert f"| client-login | FAIL | legacy-cn | {legacy} | yes | pass |" in markdown
    assert "| client-push | FAIL | unknown |  | bridge failed: expected a digest; saw 413 | pass |" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| server-pull |"))
    assert row.startswith("| server-pull | FAIL | no-basic-auth; name-not-pushed | 1. no-basic-auth: Run `docker login")
    assert "2. name-not-pushed: Pull exactly the name that was pushed" in row and row.endswith("| yes | pass |")
    why = markdown[markdown.index("### server-pull: Pull test-images"):]
    assert "\n1. no-basic-auth: " in why and "\n2. past no-basic-auth: name-not-pushed: " in why
    assert "- tutorial text unchanged: 48 blocks cited, 11 left out" in markdown
    assert "as-written, 2024-05-01 10:00 UTC: 1 passed, 3 failed, 0 not run, 3 bridged" in markdown


@pytest.mark.parametrize("missing", ["modern", "as-written"])
def test_an_edition_without_a_run_says_so_in_its_column(missing: str) -> None:
    present = _written() if missing == "modern" else _modern()
    markdown = render_maintainer_markdown([present], UNCHANGED)
    assert f"- {missing}: no run yet (`reglab --edition {missing} run" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| client-trust |")]
    assert rows == (["| client-trust | pass |  |  |  | no run yet |"] if missing == "modern"
                    else ["| client-trust | no run yet |  |  |  | pass |"])
    assert "no run yet" in render_maintainer_html([present], UNCHANGED)


def test_a_modern_failure_shows_its_cause_in_the_modern_column() -> None:
    modern = _modern()
    modern.steps[1] = StepResult("client-login", "docker login", Status.FAIL, seen=LEGACY_CN,
                                 diagnosis=cause_by_id("legacy-cn"))
    markdown = render_maintainer_markdown([modern, _written()], UNCHANGED)
    assert "| yes | FAIL (legacy-cn) |\n| client-push |" in markdown


def test_a_look_that_could_not_be_made_or_that_passed_is_said() -> None:
    from lab.model.results import Look

    written = _written()
    written.steps[3].looks = [Look("no-basic-auth", error="expected Login Succeeded; saw 401 Unauthorized")]
    markdown = render_maintainer_markdown([written], UNCHANGED)
    assert "| no-basic-auth; (could not get past no-basic-auth) |" in markdown
    assert "2. getting past no-basic-auth failed: expected Login Succeeded; saw 401 Unauthorized" in markdown
    written.steps[3].looks = [Look("no-basic-auth", Status.PASS)]
    assert "2. past no-basic-auth, the step as written passes: nothing else is wrong" in render_maintainer_markdown(
        [written], UNCHANGED)


def test_the_maintainer_html_escapes_everything() -> None:
    written = _written()
    written.steps[2].title = "<script>alert(1)</script>"
    written.steps[2].bridge_error = "saw <b>413</b> & more"
    text = TextCheck(problems=("step 'x<y>' cites block 3: the block changed",))
    page = render_maintainer_html([written, _modern()], text)
    assert "<script>" not in page and "<b>413" not in page and "x<y>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "saw &lt;b&gt;413&lt;/b&gt; &amp; more" in page
    assert "<li>step &#x27;x&lt;y&gt;&#x27; cites block 3: the block changed</li>" in page


def test_the_drift_line_counts_what_the_scenario_cites_when_the_text_is_unchanged() -> None:
    from lab.model.scenario import default_path, load
    from lab.tutorial.text import TUTORIAL

    scenario = load(default_path(), "as-written")
    check = check_tutorial_text(scenario)
    cited = {c.block for s in scenario.steps for c in s.tutorial}
    assert check == TextCheck(cited=len(cited), left_out=len(scenario.left_out))
    assert check.line == f"tutorial text unchanged: {len(cited)} blocks cited, {len(scenario.left_out)} left out"
    assert check_text(scenario, TUTORIAL.read_text()) == check


def test_the_drift_line_names_the_step_whose_block_changed() -> None:
    from lab.model.scenario import default_path, load
    from lab.tutorial.text import TUTORIAL

    scenario = load(default_path(), "as-written")
    text = TUTORIAL.read_text()
    assert text.count("/test-images") == 2
    check = check_text(scenario, text.replace("docker pull [YOUR-DOMAIN]/test-images",
                                              "docker pull [YOUR-DOMAIN]/test-image"))
    # The citation, and the fix of that line (the fixed text replaced it): both name the step.
    assert check.line == "tutorial text changed: 2 differences from the scenario's citations"
    problem, fix = check.problems
    assert problem.startswith("step 'server-pull' cites block 61: the block changed")
    assert fix.startswith("step 'server-pull': the fix of block 61, line 1 is stale")
    markdown = render_maintainer_markdown([_written()], check)
    assert f"## Tutorial text\n\n{check.line}\n\n- {problem}" in markdown


def test_a_tutorial_text_that_cannot_be_read_is_said_not_raised(tmp_path: Path) -> None:
    from lab.model.scenario import default_path, load

    check = check_tutorial_text(load(default_path(), "modern"), tmp_path / "nosuch.md")
    assert check.line.startswith(f"tutorial text not checked: {tmp_path / 'nosuch.md'} cannot be read")


def test_the_maintainer_report_is_written_beside_the_others_and_redacted(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    written = _written()
    written.steps[3].looks[0].seen = f"{NOT_PUSHED}\nstdin was {SECRET}"
    written.steps[2].bridge_error = f"docker login -p {SECRET} refused"
    write_reports(written, reports)
    text = TextCheck(problems=(f"step 'tls' cites block 3: now 'curl -u student:{SECRET}'",))
    paths = write_maintainer_report([written], text, reports, Redactor([SECRET]))
    assert paths == {"md": reports / "maintainer.md", "html": reports / "maintainer.html"}
    for path in paths.values():
        content = path.read_text()
        assert SECRET not in content and html.escape(SECRET) not in content and MASK in content
    assert sorted(p.suffix for p in reports.glob("maintainer.*")) == [".html", ".md"]  # no JSON: not a run
