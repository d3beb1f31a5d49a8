"""The gradebook: what CSV and JUnit readers get back, in roster and scenario order, redacted, owner-only."""

import csv
import io
import os
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.classroom.gradebook import CSV_COLUMNS, read_gradebook, status_of, summary, write_gradebook
from lab.model.credentials import MASK, Redactor
from lab.model.diagnosis import Cause
from lab.model.results import Status, StepResult, StudentResult

STUDENTS = ["s01", "s02", "s03"]
STEPS = ["local-registry", "hosts", "tls"]
AT = "2026-12-01T09:30:00+00:00"
SECRET = "correct-horse-battery"
HOSTS_MISSING = Cause("hosts-missing", re.compile("getent"), "the registry's name does not resolve",
                      "add the registry's name to /etc/hosts")


def grades() -> list[StudentResult]:
    """A class mid-lesson, in the order checks finished (not roster order)."""
    return [
        StudentResult("s02", StepResult("hosts", "Hosts", Status.FAIL, 1.25,
                                        "s02.myregistrydomain.com resolves to 10.77.1.10", "getent: exit status 2",
                                        HOSTS_MISSING), AT),
        StudentResult("s01", StepResult("tls", "TLS", Status.PASS, 3.5), AT),
        StudentResult("s01", StepResult("local-registry", "Local registry", Status.PASS, 2.0), AT),
        StudentResult("s03", StepResult("local-registry", "", Status.UNREACHABLE, 10.0, "the machine answers over SSH",
                                        "Connection timed out", reason="ssh: the client does not answer"), AT),
        StudentResult("s01", StepResult("hosts", "Hosts", Status.PASS, 0.5), AT),
        StudentResult("s02", StepResult("local-registry", "Local registry", Status.PASS, 2.5), AT),
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def test_csv_has_one_row_per_student_and_step_in_roster_and_scenario_order(tmp_path: Path) -> None:
    paths = write_gradebook(grades(), tmp_path, students=STUDENTS, steps=STEPS)
    rows = read_csv(paths["csv"])
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["student"], r["step"]) for r in rows] == [(s, step) for s in STUDENTS for step in STEPS]
    failed = rows[4]
    assert failed == {
        "student": "s02", "step": "hosts", "result": "fail", "seconds": "1.25", "checked_at": AT,
        "cause": "hosts-missing: the registry's name does not resolve",
        "expected": "s02.myregistrydomain.com resolves to 10.77.1.10", "seen": "getent: exit status 2",
        "minutes_on_step": "", "hints_used": "",  # no portal counted them
    }


def test_a_step_never_graded_is_a_not_checked_row(tmp_path: Path) -> None:
    rows = read_csv(write_gradebook(grades(), tmp_path, students=STUDENTS, steps=STEPS)["csv"])
    s02_tls = rows[5]
    assert (s02_tls["student"], s02_tls["step"], s02_tls["result"], s02_tls["checked_at"]) == (
        "s02", "tls", "not-checked", "")


def test_without_orders_the_grades_own_order_is_kept(tmp_path: Path) -> None:
    rows = read_csv(write_gradebook(grades(), tmp_path)["csv"])
    assert list(dict.fromkeys(r["student"] for r in rows)) == ["s02", "s01", "s03"]
    assert [r["step"] for r in rows[:3]] == ["hosts", "tls", "local-registry"]


def test_a_re_check_replaces_the_earlier_grade(tmp_path: Path) -> None:
    later = "2026-12-01T09:45:00+00:00"
    again = [*grades(), StudentResult("s02", StepResult("hosts", "Hosts", Status.PASS, 0.9), later)]
    rows = read_csv(write_gradebook(again, tmp_path, students=STUDENTS, steps=STEPS)["csv"])
    assert rows[4]["result"] == "pass" and rows[4]["checked_at"] == "2026-12-01T09:45:00+00:00"
    assert len(rows) == 9


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted(tmp_path: Path) -> None:
    """`seen` comes from a student's machine: it must not run in the instructor's spreadsheet."""
    evil = StudentResult("s01", StepResult("hosts", "", Status.FAIL, 1.0, "=1+1", '=HYPERLINK("http://x.invalid","a")',
                                           reason="@SUM(A1)"), AT)
    row = read_csv(write_gradebook([evil], tmp_path)["csv"])[0]
    assert row["cause"] == "'@SUM(A1)"
    assert row["expected"] == "'=1+1"
    assert row["seen"].startswith("'=HYPERLINK")


def test_junit_xml_is_well_formed_with_a_suite_per_student(tmp_path: Path) -> None:
    root = ET.parse(write_gradebook(grades(), tmp_path, students=STUDENTS, steps=STEPS)["xml"]).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("9", "1", "1", "3")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == STUDENTS
    for suite in suites:
        cases = suite.findall("testcase")
        assert [c.get("name") for c in cases] == STEPS
        assert {c.get("classname") for c in cases} == {suite.get("name")}
    s01 = suites[0]
    assert (s01.get("tests"), s01.get("failures"), s01.get("errors"), s01.get("time")) == ("3", "0", "0", "6.000")
    assert all(len(case.findall("failure") + case.findall("error") + case.findall("skipped")) == 0
               for case in s01.findall("testcase"))


def test_junit_failure_carries_the_cause_and_what_was_expected_and_seen(tmp_path: Path) -> None:
    root = ET.parse(write_gradebook(grades(), tmp_path, students=STUDENTS, steps=STEPS)["xml"]).getroot()
    hosts = root.find("testsuite[@name='s02']/testcase[@name='hosts']")
    assert hosts is not None
    failure = hosts.find("failure")
    assert failure is not None
    assert failure.get("message") == "hosts-missing: the registry's name does not resolve"
    assert failure.text is not None
    assert "expected: s02.myregistrydomain.com resolves to 10.77.1.10" in failure.text
    assert "getent: exit status 2" in failure.text
    prop = hosts.find("properties/property[@name='checked_at']")
    assert prop is not None and prop.get("value") == AT
    assert root.find("testsuite[@name='s02']/testcase[@name='tls']/skipped") is not None


def test_an_unreachable_machine_is_a_junit_error_not_a_failure(tmp_path: Path) -> None:
    root = ET.parse(write_gradebook(grades(), tmp_path, students=STUDENTS, steps=STEPS)["xml"]).getroot()
    case = root.find("testsuite[@name='s03']/testcase[@name='local-registry']")
    assert case is not None and case.find("failure") is None
    error = case.find("error")
    assert error is not None and error.get("message") == "ssh: the client does not answer"
    assert error.text is not None and "Connection timed out" in error.text


def test_terminal_colors_and_control_characters_in_seen_keep_the_xml_well_formed(tmp_path: Path) -> None:
    grade = StudentResult("s01", StepResult("tls", "", Status.FAIL, 1.0, "a certificate",
                                            "\x1b[31mx509: bad\x1b[0m\x00\x07"), AT)
    paths = write_gradebook([grade], tmp_path)
    failure = ET.parse(paths["xml"]).getroot().find("testsuite/testcase/failure")
    assert failure is not None and failure.text is not None
    assert "x509: bad" in failure.text and "\x1b" not in failure.text
    assert failure.get("message") == "expected: a certificate"  # no cause known: what was expected
    assert read_csv(paths["csv"])[0]["seen"] == "x509: bad"  # no control characters either (issue 19)


def test_long_output_is_clipped_to_its_end(tmp_path: Path) -> None:
    seen = "\n".join(f"line {n}" for n in range(1, 201))
    row = read_csv(write_gradebook([StudentResult("s01", StepResult("tls", "", Status.FAIL, seen=seen))],
                                   tmp_path)["csv"])[0]
    assert row["seen"].endswith("line 200") and "line 100\n" not in row["seen"]
    assert "... (160 lines before)" in row["seen"]


def test_secrets_are_redacted_in_both_files(tmp_path: Path) -> None:
    leaky = StudentResult("s01", StepResult("client-login", "", Status.FAIL, 1.0, f"docker login with {SECRET}",
                                            f"Password: {SECRET}\nError: unauthorized",
                                            reason=f"bad-login: {SECRET} refused"), AT)
    paths = write_gradebook([leaky], tmp_path, Redactor([SECRET]))
    for path in paths.values():
        text = path.read_text()
        assert SECRET not in text
        assert MASK in text
    assert read_csv(paths["csv"])[0]["seen"] == f"Password: {MASK}\nError: unauthorized"


def test_without_a_redactor_nothing_is_masked(tmp_path: Path) -> None:
    """The control for the test above: the secret does reach the file when nobody redacts."""
    paths = write_gradebook([StudentResult("s01", StepResult("tls", "", Status.FAIL, seen=SECRET))], tmp_path)
    assert SECRET in paths["csv"].read_text()


def test_gradebook_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "gradebook.csv").write_text("old")
    os.chmod(tmp_path / "gradebook.csv", 0o644)
    old_umask = os.umask(0)
    try:
        paths = write_gradebook(grades(), tmp_path / "class")
        paths.update({"old": write_gradebook(grades(), tmp_path)["csv"]})
    finally:
        os.umask(old_umask)
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in (tmp_path / "class").iterdir()) == ["gradebook.csv", "gradebook.xml"]


def test_a_grade_with_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        status_of("passed")


def test_summary_shows_each_student_step_and_pass_count() -> None:
    text = summary(grades(), students=STUDENTS, steps=STEPS)
    lines = text.splitlines()
    assert lines[0].split() == ["student", "1", "2", "3", "passed"]
    assert lines[1].split() == ["s01", "P", "P", "P", "3/3"]
    assert lines[2].split() == ["s02", "P", "F", "-", "1/3"]
    assert lines[3].split() == ["s03", "!", "-", "-", "0/3"]
    assert "1 local-registry" in text and "3 tls" in text
    assert "P pass  F fail  - not checked  ! unreachable" in text


def test_summary_columns_stay_aligned_past_nine_steps() -> None:
    steps = [f"step{n}" for n in range(1, 12)]
    text = summary([StudentResult("s01", StepResult("step11", "", Status.PASS))], students=["s01", "s0002"],
                   steps=steps)
    header, first, second = text.splitlines()[:3]
    assert header.index(" 11 ") + 1 == first.index("P")
    assert header.index("passed") == first.index("1/11") == second.index("0/11")


def test_summary_of_nothing_says_so() -> None:
    assert summary([]) == "no grades\n"


def test_a_gradebook_read_back_writes_the_same_csv(tmp_path: Path) -> None:
    """The dashboard starts from the last gradebook.csv: what it reads must be what was written."""
    first = write_gradebook(grades(), tmp_path / "first", students=STUDENTS, steps=STEPS)["csv"]
    rows = read_gradebook(first)
    again = write_gradebook(rows, tmp_path / "again", students=STUDENTS, steps=STEPS)["csv"]
    assert again.read_text() == first.read_text()
    unreachable = next(r for r in rows if r.result.status is Status.UNREACHABLE)
    assert (unreachable.student, unreachable.result.reason) == ("s03", "ssh: the client does not answer")
    assert {r.result.status for r in rows} == {Status.PASS, Status.FAIL, Status.NOT_RUN, Status.UNREACHABLE}


def test_a_cause_this_process_knows_is_read_back_as_that_cause(tmp_path: Path) -> None:
    """A known cause comes back whole, with its fix; the words of one it does not know stay as they were."""
    from lab.model.diagnosis import cause_by_id

    known = cause_by_id("unresolved-name")
    rows = [StudentResult("s01", StepResult("hosts", "", Status.FAIL, diagnosis=known), AT),
            StudentResult("s02", StepResult("hosts", "", Status.FAIL, diagnosis=HOSTS_MISSING), AT)]
    back = {r.student: r.result for r in read_gradebook(write_gradebook(rows, tmp_path)["csv"])}
    assert back["s01"].diagnosis == known and back["s01"].reason == ""
    assert back["s02"].diagnosis is None
    assert back["s02"].cause_line == "hosts-missing: the registry's name does not resolve"


# --- issue 19: what a student's machine prints cannot break or spoof the gradebook --------------


def test_a_200000_character_line_is_clipped_and_the_gradebook_reads_back(tmp_path: Path) -> None:
    line = "x" * 200_000
    grade = StudentResult("s01", StepResult("tls", "", Status.FAIL, 1.0, "y" * 200_000, line), AT)
    paths = write_gradebook([grade], tmp_path)
    (row,) = read_gradebook(paths["csv"])
    assert len(row.result.seen) < 10_000 and row.result.seen.endswith("x" * 100)
    assert "characters before" in row.result.seen
    assert len(row.result.expected) < 10_000


def test_a_gradebook_with_a_field_past_csvs_limit_keeps_the_rows_before_it(tmp_path: Path) -> None:
    """One written before clipping by characters: `class serve` died reading it."""
    path = tmp_path / "gradebook.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerow(["s01", "hosts", "pass", "1.00", AT, "", "", ""])
        writer.writerow(["s01", "tls", "fail", "1.00", AT, "", "a 200", "z" * 200_000])
    assert [(r.student, r.result.step_id) for r in read_gradebook(path)] == [("s01", "hosts")]


@pytest.mark.parametrize("text", ["=1+1", "-rw-r--r-- root", "'quoted'", "''", "@cmd", "plain"])
def test_the_protective_quote_is_taken_off_when_read_back(tmp_path: Path, text: str) -> None:
    grade = StudentResult("s01", StepResult("tls", "", Status.FAIL, 1.0, text, text, reason=text), AT)
    (row,) = read_gradebook(write_gradebook([grade], tmp_path)["csv"])
    assert (row.result.expected, row.result.seen, row.result.reason) == (text, text, text)


def test_cause_and_expected_lose_terminal_escape_codes(tmp_path: Path) -> None:
    grade = StudentResult("s01", StepResult("tls", "", Status.FAIL, 1.0, "a \x1b]0;owned\x07title\x1b[2J",
                                            "seen", reason="lab did not answer: \x1b[31mred\x1b[0m\x08"), AT)
    row = read_csv(write_gradebook([grade], tmp_path)["csv"])[0]
    assert row["expected"] == "a ]0;ownedtitle" and row["cause"] == "lab did not answer: red"
    assert not any(ord(c) < 32 for c in row["expected"] + row["cause"])


def test_a_merge_replaces_a_row_only_with_one_checked_later(tmp_path: Path) -> None:
    """`checked_at` is when a check started: a writer that started earlier (a slow round) keeps the newer row
    on disk; one that started later, or at the same moment (a re-check), replaces it. Times are compared as
    times, not strings, whatever their precision."""
    from lab.classroom.gradebook import merge_gradebook

    def hosts(status: Status, when: str) -> StudentResult:
        return StudentResult("s01", StepResult("hosts", "", status, 1.0), when)

    def merged(status: Status, when: str) -> tuple[str, str]:
        merge_gradebook([hosts(status, when)], tmp_path, students=STUDENTS, steps=STEPS)
        row = {(r.student, r.result.step_id): r for r in read_gradebook(tmp_path / "gradebook.csv")}[("s01", "hosts")]
        return row.result.status.name, row.checked_at

    assert merged(Status.PASS, "2026-12-01T09:30:00.500+00:00") == ("PASS", "2026-12-01T09:30:00.500+00:00")
    assert merged(Status.FAIL, "2026-12-01T09:30:00+00:00") == ("PASS", "2026-12-01T09:30:00.500+00:00")
    assert merged(Status.FAIL, "2026-12-01T09:29:59.999+00:00") == ("PASS", "2026-12-01T09:30:00.500+00:00")
    assert merged(Status.FAIL, "2026-12-01T09:30:00.500+00:00") == ("FAIL", "2026-12-01T09:30:00.500+00:00")
    assert merged(Status.PASS, "2026-12-01T10:29:00+01:00") == ("FAIL", "2026-12-01T09:30:00.500+00:00")
    assert merged(Status.PASS, "2026-12-01T09:31:00+00:00") == ("PASS", "2026-12-01T09:31:00+00:00")
    assert merged(Status.FAIL, "") == ("PASS", "2026-12-01T09:31:00+00:00"), "a row never checked replaces nothing"
