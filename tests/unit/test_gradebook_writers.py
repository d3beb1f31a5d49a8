"""Two writers of one class's gradebook at once (the portal's refreshes, `class check` in another
process): each one's rows must survive the other's. Before the gradebook had one lock, a merge read
the file, another writer wrote, and the first then wrote over it without the other's rows."""

from __future__ import annotations

import io
import stat
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from lab.classroom import gradebook, netpool, room
from lab.classroom.gradebook import WORDS, read_gradebook
from lab.classroom.room import ClassBoard, Classroom, to_row
from lab.classroom.roster import Student
from lab.common.progress import Progress
from lab.model.results import Status, StepResult

AT = "2026-12-01T09:30:00+00:00"


@pytest.fixture
def classroom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Classroom:
    monkeypatch.setattr(netpool, "host_networks", lambda: [IPv4Network("10.77.0.0/24")])
    base = tmp_path / "lab.yml"
    base.write_text("provider: docker\n")
    classroom = Classroom(base, "net101", Progress(io.StringIO()))
    classroom.enrol([Student("ada"), Student("bob")])
    return classroom


def grades(classroom: Classroom) -> dict[tuple[str, str], str]:
    return {(r.student, r.result.step_id): WORDS[r.result.status]
            for r in read_gradebook(classroom.dir / "gradebook.csv")}


def test_two_merges_at_once_keep_both_writers_rows(classroom: Classroom, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each merge reads, then waits (up to a second) for the other to have read too: without one lock
    both read the empty gradebook and the second write loses the first one's row."""
    real_read = read_gradebook
    read = threading.Barrier(2)

    def slow_read(path: Path):  # noqa: ANN202
        rows = real_read(path)
        try:
            read.wait(timeout=1)  # with the lock the other cannot read yet: this times out, and that is right
        except threading.BrokenBarrierError:
            pass
        return rows

    monkeypatch.setattr(room, "read_gradebook", slow_read)
    monkeypatch.setattr(gradebook, "read_gradebook", slow_read)
    rows = {"ada": to_row("ada", StepResult("hosts", "", Status.PASS, 1.0), AT),
            "bob": to_row("bob", StepResult("tls", "", Status.PASS, 1.0), AT)}
    errors: list[BaseException] = []

    def merge(student: str) -> None:
        try:
            Classroom.open(classroom.base_lab, "net101", Progress(io.StringIO())).record([rows[student]])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=merge, args=(s,)) for s in rows]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    assert not errors, errors
    seen = grades(classroom)
    assert seen[("ada", "hosts")] == "pass" and seen[("bob", "tls")] == "pass", seen


def test_the_boards_refresh_keeps_what_class_check_wrote_meanwhile(classroom: Classroom,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal's board writes what it holds; `class check` (another process) recorded a row while the
    board's check ran: the board's write must not take it away."""
    board = ClassBoard(classroom)

    def check(members, step, jobs, timeout):  # noqa: ANN001, ANN202
        other = Classroom.open(classroom.base_lab, "net101", Progress(io.StringIO()))  # `class check ada`
        other.record([to_row("ada", StepResult("hosts", "", Status.PASS, 1.0), AT)])
        return [to_row("bob", StepResult("tls", "", Status.FAIL, 1.0, "a cert", "none"), AT)]

    monkeypatch.setattr(classroom, "check", check)
    board.refresh("bob")
    seen = grades(classroom)
    assert seen[("bob", "tls")] == "fail" and seen[("ada", "hosts")] == "pass", seen
    assert board.cells()[("ada", "hosts")].result.status is Status.PASS, "the board shows it too"


def test_the_gradebook_is_swapped_in_whole_and_owner_only(classroom: Classroom) -> None:
    classroom.record([to_row("ada", StepResult("hosts", "", Status.PASS, 1.0), AT)])
    for name in ("gradebook.csv", "gradebook.xml"):
        assert stat.S_IMODE((classroom.dir / name).stat().st_mode) == 0o600
    assert not [p for p in classroom.dir.iterdir() if p.name.endswith(".tmp")], "no temporary file left"


def test_a_writer_that_keeps_the_lock_too_long_is_a_clear_error(classroom: Classroom) -> None:
    from lab.common.errors import LabError

    with gradebook.gradebook_lock(classroom.dir), pytest.raises(LabError, match="gradebook"):
        with gradebook.gradebook_lock(classroom.dir, timeout=0.3):
            pass


# -- time on each step and hints used (issue 19, item 5) ------------------------------------------------


def test_the_gradebook_has_each_students_time_on_each_step_and_hints_used(classroom: Classroom) -> None:
    import xml.etree.ElementTree as ET

    from lab.classroom.gradebook import Effort, read_effort

    effort = {("ada", "hosts"): Effort(seconds=750.0, hints=2), ("ada", "tls"): Effort(0.0, 0)}
    classroom.record([to_row("ada", StepResult("hosts", "", Status.PASS, 1.0), AT)], effort=effort)
    csv_text = (classroom.dir / "gradebook.csv").read_text()
    assert csv_text.splitlines()[0].endswith(",minutes_on_step,hints_used")
    assert "ada,hosts,pass,1.00," in csv_text and csv_text.count(",12.5,2\n") == 1
    assert read_effort(classroom.dir / "gradebook.csv") == effort
    assert ",bob,hosts," not in csv_text and "bob,hosts,not-checked,0.00,,,,,,\n" in csv_text, "bob: not counted"
    cases = {(c.get("classname"), c.get("name")): c for c in ET.parse(classroom.dir / "gradebook.xml").iter("testcase")}
    found = {p.get("name"): p.get("value") for p in cases[("ada", "hosts")].iter("property")}
    assert found["minutes_on_step"] == "12.5" and found["hints_used"] == "2"
    assert not [p for p in cases[("bob", "hosts")].iter("property") if p.get("name") == "hints_used"]


def test_class_check_without_the_portal_keeps_the_time_and_hints_the_portal_wrote(classroom: Classroom) -> None:
    from lab.classroom.gradebook import Effort, read_effort

    classroom.record([], effort={("ada", "hosts"): Effort(120.0, 3)})
    classroom.record([to_row("ada", StepResult("hosts", "", Status.FAIL, 1.0, "x", "y"), AT)])  # `class check`
    assert read_effort(classroom.dir / "gradebook.csv") == {("ada", "hosts"): Effort(120.0, 3)}
    assert grades(classroom)[("ada", "hosts")] == "fail"


def test_the_boards_refresh_and_the_portals_end_write_the_portals_count(classroom: Classroom,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.classroom.gradebook import Effort, read_effort

    board = ClassBoard(classroom)
    counted = {("bob", "tls"): Effort(60.0, 1)}
    board.effort = lambda: counted
    monkeypatch.setattr(classroom, "check", lambda *a: [to_row("bob", StepResult("tls", "", Status.PASS, 1.0), AT)])
    board.refresh("bob")
    assert read_effort(classroom.dir / "gradebook.csv") == counted
    counted = {("bob", "tls"): Effort(90.0, 3)}  # hints shown after the last check
    board.save_effort()
    assert read_effort(classroom.dir / "gradebook.csv") == counted
    assert grades(classroom)[("bob", "tls")] == "pass", "saving the effort keeps the results"


def test_the_portal_counts_time_on_step_and_hints_for_the_gradebook() -> None:
    from datetime import UTC, datetime, timedelta

    from lab.classroom.gradebook import Effort
    from lab.portal.progress import Progress as Positions
    from lab.portal.run import class_effort

    now = [datetime(2026, 12, 4, 9, 0, tzinfo=UTC)]
    positions = Positions(None, clock=lambda: now[0])
    order = ["hosts", "tls"]
    positions.observe("ada", {}, order)
    now[0] += timedelta(minutes=5)
    positions.shown("ada", "hosts", 1)
    positions.observe("ada", {"hosts": True}, order)
    now[0] += timedelta(minutes=2)
    assert class_effort(positions, ["ada", "bob"], order) == {
        ("ada", "hosts"): Effort(300.0, 1), ("ada", "tls"): Effort(120.0, 0)}  # bob never seen: not counted


def test_a_periodic_round_leaves_out_labs_their_students_just_checked(classroom: Classroom,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    board = ClassBoard(classroom)
    checked: list[list[str]] = []

    def check(members, step, jobs, timeout):  # noqa: ANN001, ANN202
        checked.append([m.id for m in members])
        return [to_row(m.id, StepResult("hosts", "", Status.PASS, 1.0), AT) for m in members]

    monkeypatch.setattr(classroom, "check", check)
    board.refresh("ada")  # ada presses Check
    board.refresh(fresher_than=10)  # the round a moment later: bob only
    board.refresh(fresher_than=10)  # and again: both fresh, nothing to do
    board.refresh(fresher_than=0)  # the round when both have aged
    board.refresh()  # the instructor's "Check now": every lab
    assert checked == [["ada"], ["bob"], ["ada", "bob"], ["ada", "bob"]]


# -- a slow round must not put back an older result (issue 19) ------------------------------------------


def test_a_slow_round_keeps_a_students_check_that_started_after_it(classroom: Classroom,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal's round grades ada (her step still failing), then waits on bob's slow lab; meanwhile ada
    fixes her step and presses Check (pass). When the round ends, its older look at ada must not replace
    the newer pass: in the gradebook or on the board. Before, the round stamped every row with the time it
    ended and its rows replaced whatever was there."""
    from types import SimpleNamespace

    results = {"ada": iter([Status.FAIL, Status.PASS]), "bob": iter([Status.FAIL])}
    ada_graded, bob_started, bob_may_end = threading.Event(), threading.Event(), threading.Event()

    def session(self, member, **_):  # noqa: ANN001, ANN202
        def run(steps, **kw):  # noqa: ANN001, ANN202, ARG001
            status = next(results[member.id])
            if member.id == "bob":
                bob_started.set()
                assert bob_may_end.wait(10)
            else:
                ada_graded.set()
            return SimpleNamespace(steps=[StepResult("hosts", "", status, 0.5)])

        return SimpleNamespace(lock=SimpleNamespace(release=lambda: None), step_ids=lambda step: [],
                               require_running=lambda: None, close=lambda: None, abandon=lambda: None,
                               scenario=SimpleNamespace(step=lambda step_id: step_id, steps=[]),
                               engine=lambda: SimpleNamespace(run=run))

    monkeypatch.setattr(Classroom, "session", session)
    board = ClassBoard(classroom, jobs=2)
    errors: list[BaseException] = []

    def the_round() -> None:
        try:
            board.refresh()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    round_thread = threading.Thread(target=the_round)
    round_thread.start()
    assert ada_graded.wait(10) and bob_started.wait(10)
    time.sleep(0.01)  # the times are to the millisecond: ada's Check starts visibly later
    board.refresh("ada")  # ada's own Check, while the round still waits for bob
    assert grades(classroom)[("ada", "hosts")] == "pass"
    bob_may_end.set()
    round_thread.join(30)
    assert not errors, errors
    seen = grades(classroom)
    assert seen[("ada", "hosts")] == "pass" and seen[("bob", "hosts")] == "fail", seen
    assert board.cells()[("ada", "hosts")].result.status is Status.PASS, "the board shows the newer result too"
