"""Unit tests for lab.classroom without machines: enrolment, the bounded parallel runner,
grades from step results, the dashboard's board, and the class commands' bad input."""

from __future__ import annotations

import io
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml

from lab.classroom import netpool, room
from lab.classroom.dashboard import cell
from lab.classroom.gradebook import WORDS, read_gradebook
from lab.classroom.room import ClassBoard, Classroom, roster_name, to_row
from lab.classroom.roster import Student
from lab.cli.main import main
from lab.common.errors import LabError
from lab.common.progress import Progress
from lab.model.diagnosis import Cause
from lab.model.results import Status, StepResult, StudentResult


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(netpool, "host_networks", lambda: [IPv4Network("10.77.0.0/24")])  # the host has one
    path = tmp_path / "lab.yml"
    path.write_text("provider: docker\n")
    return path


AT = "2026-12-01T09:30:00+00:00"


def quiet() -> Progress:
    return Progress(io.StringIO())


def test_enrol_gives_each_student_a_free_24_and_a_lab_file_and_keeps_them(base: Path) -> None:
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada"), Student("bob")])
    assert [(m.id, str(m.subnet)) for m in room.members] == [("ada", "10.77.1.0/24"), ("bob", "10.77.2.0/24")]
    lab = yaml.safe_load(room.member("bob").lab_file.read_text())
    assert lab["name"] == "net101-bob" and lab["machines"]["registry"]["ip"] == "10.77.2.10"
    assert room.member("bob").lab_file.stat().st_mode & 0o777 == 0o600
    again = Classroom(base, "net101", quiet())  # read back from class.yml
    again.enrol([Student("ada"), Student("cyd")])
    assert [(m.id, str(m.subnet)) for m in again.members] == [
        ("ada", "10.77.1.0/24"), ("bob", "10.77.2.0/24"), ("cyd", "10.77.3.0/24")]


@pytest.mark.parametrize("text, words", [
    ("pool: 10.77.0.0/16\npool: 10.78.0.0/16\nstudents: []\n", ["'pool' again"]),  # YAML would keep the last
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", ["aliases"]),
    ("students: 3\n", ["not a class file"]),
])
def test_a_class_file_edited_by_hand_is_one_clear_error(base: Path, text: str, words: list[str]) -> None:
    """class.yml is reglab's own, but a user may edit it: it is read as strictly as a lab file."""
    Classroom(base, "net101", quiet()).enrol([Student("ada")])
    (base.parent / ".class" / "net101" / "class.yml").write_text(text)
    with pytest.raises(LabError) as caught:
        Classroom(base, "net101", quiet())
    assert "class.yml" in str(caught.value) and all(w in str(caught.value) for w in words), str(caught.value)


def test_a_second_class_never_gets_the_first_ones_subnets(base: Path) -> None:
    Classroom(base, "net101", quiet()).enrol([Student("ada")])
    other = Classroom(base, "net102", quiet())
    other.enrol([Student("ada")])
    assert str(other.member("ada").subnet) == "10.77.2.0/24"


def test_students_with_given_machines_take_no_subnet(base: Path, tmp_path: Path) -> None:
    given = {"registry": {"ip": "10.9.0.5", "user": "t"}, "client": {"ip": "10.9.0.6", "user": "t"}}
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada", machines=given), Student("bob")])
    assert room.member("ada").subnet is None and str(room.member("bob").subnet) == "10.77.1.0/24"
    assert yaml.safe_load(room.member("ada").lab_file.read_text())["provider"] == "ssh"
    assert Classroom(base, "net101", quiet()).member("ada").student.machines == given


def test_open_finds_the_only_class_and_names_the_choices_otherwise(base: Path) -> None:
    with pytest.raises(LabError, match="no class here yet"):
        Classroom.open(base, None, quiet())
    Classroom(base, "net101", quiet()).enrol([Student("ada")])
    assert Classroom.open(base, None, quiet()).name == "net101"
    Classroom(base, "net102", quiet()).enrol([Student("ada")])
    with pytest.raises(LabError, match=r"several classes here \(net101, net102\)"):
        Classroom.open(base, None, quiet())


def test_each_runs_at_most_jobs_labs_at_once_and_a_failure_is_its_own_row(base: Path) -> None:
    room = Classroom(base, "net101", quiet())
    room.enrol([Student(f"s{i}") for i in range(6)])
    running, most = [0], [0]
    lock = threading.Lock()

    def work(member):  # noqa: ANN001, ANN202
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if member.id == "s3":
            raise LabError("machine registry is not running")
        return member.id

    outcomes = room.each(room.members, work, jobs=2, what="test")
    assert most[0] == 2
    assert [(o.member.id, o.ok) for o in outcomes] == [("s0", True), ("s1", True), ("s2", True), ("s3", False),
                                                       ("s4", True), ("s5", True)]
    assert outcomes[3].message == "machine registry is not running"


def test_a_lab_that_does_not_answer_is_given_up_after_its_timeout(base: Path) -> None:
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada"), Student("bob")])
    stuck = threading.Event()
    started = time.monotonic()
    outcomes = room.each(room.members, lambda m: stuck.wait(30) if m.id == "bob" else "ok", jobs=2, what="check",
                         timeout=2)
    stuck.set()
    assert time.monotonic() - started < 6
    assert [(o.member.id, o.ok) for o in outcomes] == [("ada", True), ("bob", False)]
    assert outcomes[1].message == "no answer within 2s"


def test_a_step_result_becomes_a_gradebook_row_with_every_cause() -> None:
    cause = Cause("no-basic-auth", __import__("re").compile("x"), "the server never logged in", "docker login")
    result = StepResult("server-pull", "Pull", Status.FAIL, 1.234, "an image", "no basic auth credentials", cause)
    row = to_row("ada", result, "2026-11-29T12:00:00+00:00")
    assert (WORDS[row.result.status], row.result.duration, row.result.cause_line) == (
        "fail", 1.23, "no-basic-auth: the server never logged in")
    assert (row.student, row.checked_at) == ("ada", "2026-11-29T12:00:00+00:00")
    assert WORDS[to_row("ada", StepResult("hosts", "Hosts", Status.PASS), "t").result.status] == "pass"


@pytest.mark.parametrize(("roster", "name"), [("4", "class"), ("net101.csv", "net101"), ("/x/Net 1-01.yml", "net101"),
                                              ("2026-spring.csv", "c2026spring")])
def test_a_class_is_named_after_its_roster(roster: str, name: str) -> None:
    assert roster_name(roster) == name


def test_the_board_shows_the_last_gradebook_and_refreshes_through_class_check(base: Path, monkeypatch) -> None:
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada"), Student("bob")])
    room.write_gradebook([StudentResult("ada", StepResult("hosts", "", Status.PASS, 0.5), "2026-11-29T12:00:00+00:00")])
    board = ClassBoard(room)
    assert board.students() == ["ada", "bob"] and board.steps()[0][0] == "local-registry"
    assert cell("hosts", board.cells()[("ada", "hosts")])["status"] == "pass"
    seen: list[list[str]] = []

    def check(members, step, jobs, timeout):  # noqa: ANN001, ANN202
        seen.append([m.id for m in members])
        return [StudentResult("bob", StepResult("hosts", "", Status.FAIL, 0.4, reason="unresolved-name: no such host"),
                              "2026-11-29T12:01:00+00:00")]

    monkeypatch.setattr(room, "check", check)
    board.refresh("bob")
    assert seen == [["bob"]] and not board.refreshing()
    assert cell("hosts", board.cells()[("bob", "hosts")])["cause"] == "unresolved-name: no such host"
    assert cell("hosts", board.cells()[("ada", "hosts")])["status"] == "pass"  # another student's last result stays
    rows = {(r.student, r.result.step_id): WORDS[r.result.status] for r in read_gradebook(room.dir / "gradebook.csv")}
    assert rows[("bob", "hosts")] == "fail" and rows[("ada", "hosts")] == "pass"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["class", "up", "0"], "expected a number of students from 1"),
        (["class", "up", "2", "--pool", "10.77.0.0/33"], "--pool: expected a private IPv4 network"),
        (["class", "status"], "no class here yet"),
        (["class", "--name", "Bad_Name", "up", "2"], "expected 1 to 12 lower-case letters or digits"),
    ],
    ids=["no-students", "bad-pool", "no-class", "bad-name"],
)
def test_bad_class_input_is_exit_2_with_one_message(base: Path, args: list[str], words: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(base), *args], stdout=out, stderr=err) == 2
    assert words in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()
    assert err.getvalue().count("\n") == 1


def test_the_class_module_bounds_every_wait() -> None:
    assert room.CHECK_TIMEOUT > 0 and room.JOBS >= 1


def test_a_failure_without_a_known_cause_shows_what_its_check_expected_and_saw() -> None:
    from lab.classroom.dashboard import cause_or_check

    result = StepResult("hosts", "", Status.FAIL, 0.3, "bob.example resolves to the registry", "on client: exit 2\nx")
    assert cause_or_check(result) == "expected bob.example resolves to the registry; saw on client: exit 2"
    assert cause_or_check(StepResult("tls", "", Status.FAIL, 0.3, reason="legacy-cn: CN only")) == "legacy-cn: CN only"
    assert cause_or_check(StepResult("hosts", "", Status.PASS)) == ""


def test_down_twice_is_no_error(base: Path, monkeypatch) -> None:
    """The first down removes the labs' files; a second (a teardown, a script run again) finds nothing to do."""
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada")])
    room.member("ada").lab_file.unlink()
    monkeypatch.setattr(room, "session", lambda member, **kw: pytest.fail("no lab left to open"))
    assert [o.ok for o in room.down()] == [True]


def test_the_class_grades_the_steps_of_its_base_labs_scenario(tmp_path: Path, monkeypatch) -> None:
    """A class of a second tutorial lists that tutorial's steps, not the shipped one's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("second", Path(__file__).with_name("test_second_scenario.py"))
    second = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(second)
    folder = second.write_second(tmp_path / "second")
    monkeypatch.setattr(netpool, "host_networks", lambda: [])
    base = tmp_path / "lab.yml"
    base.write_text(f"provider: docker\nscenario: {folder}\n")
    room = Classroom(base, "web101", quiet())
    assert room.step_ids() == ["page", "hosts", "serve"]
    assert ClassBoard(room).steps()[0][0] == "page"


def test_class_up_refuses_before_booting_labs_that_would_reach_each_other(base: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from lab.common.errors import LabFailure

    classroom = Classroom(base, "net101", quiet())
    classroom.enrol([Student("ada"), Student("bob")])
    problem = "the br_netfilter module is not loaded, so iptables never sees traffic between containers"
    opened = []

    def session(member, **kwargs):  # noqa: ANN001, ANN003
        opened.append((member.id, kwargs))
        return SimpleNamespace(provider=SimpleNamespace(isolation=lambda: problem))

    monkeypatch.setattr(classroom, "session", session)
    monkeypatch.setattr(classroom, "each", lambda *a, **k: pytest.fail("a lab was booted"))
    with pytest.raises(LabFailure, match="expected each student's lab kept apart.*br_netfilter.*Nothing was booted"):
        classroom.up(classroom.members)
    assert opened == [("ada", {"lock": False})]
    problem = None
    monkeypatch.setattr(classroom, "each", lambda members, work, jobs, what: ["booted"])
    assert classroom.up(classroom.members) == ["booted"]


def test_an_unexpected_error_in_one_lab_is_its_failed_row_not_a_hang(base: Path) -> None:
    """Issue 19: `each` waited for ever when a worker raised anything but the four errors it caught."""
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada"), Student("bob")])

    def work(member):  # noqa: ANN001, ANN202
        if member.id == "bob":
            raise KeyError("steps")
        return "ok"

    got: list = []
    worker = threading.Thread(target=lambda: got.append(room.each(room.members, work, jobs=2, what="check")),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert got, "each() did not return"
    assert [(o.member.id, o.ok) for o in got[0]] == [("ada", True), ("bob", False)]
    assert got[0][1].message == "reglab failed on this lab: KeyError: 'steps'"


# --- issue 19: class check STEP, an unknown step, redaction -----------------------------------


def _graded(monkeypatch: pytest.MonkeyPatch, results: dict[str, StepResult]) -> list[str]:
    """Every lab's session a fake whose check gives `results` (by student); returns who was checked."""
    from types import SimpleNamespace

    checked: list[str] = []

    def session(self, member, **_):  # noqa: ANN001, ANN202
        checked.append(member.id)
        engine = SimpleNamespace(run=lambda steps, **kw: SimpleNamespace(steps=[results[member.id]]))
        return SimpleNamespace(lock=SimpleNamespace(release=lambda: None), step_ids=lambda step: [],
                               require_running=lambda: None, close=lambda: None, abandon=lambda: None,
                               scenario=SimpleNamespace(step=lambda step_id: step_id, steps=[]), engine=lambda: engine)

    monkeypatch.setattr(Classroom, "session", session)
    return checked


def test_class_check_of_an_unknown_step_is_exit_2_before_any_lab_is_touched(base: Path, monkeypatch) -> None:
    Classroom(base, "net101", quiet()).enrol([Student("ada"), Student("bob")])
    checked = _graded(monkeypatch, {})
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(base), "class", "check", "hostz"], stdout=out, stderr=err) == 2
    assert "no step 'hostz'" in err.getvalue() and err.getvalue().count("\n") == 1, err.getvalue()
    assert checked == []
    assert not (base.parent / ".class" / "net101" / "gradebook.csv").exists()


def test_class_check_of_one_step_keeps_the_other_steps_results(base: Path, monkeypatch) -> None:
    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada")])
    earlier = [to_row("ada", StepResult("local-registry", "", Status.PASS, 1.0), AT),
               to_row("ada", StepResult("hosts", "", Status.FAIL, 1.0, "a name", "none"), AT)]
    room.write_gradebook(earlier)
    _graded(monkeypatch, {"ada": StepResult("hosts", "Hosts", Status.PASS, 0.5)})
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(base), "class", "check", "hosts"], stdout=out, stderr=err) == 0, err.getvalue()
    rows = {r.result.step_id: WORDS[r.result.status] for r in read_gradebook(room.dir / "gradebook.csv")}
    assert rows["local-registry"] == "pass" and rows["hosts"] == "pass"
    assert rows["tls"] == "not-checked"


def test_the_gradebook_and_the_board_are_redacted_with_every_labs_password(base: Path, monkeypatch) -> None:
    from lab.engine.session import load_lab

    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada")])
    state = load_lab(room.members[0].lab_file).state_dir  # where `class up` keeps the password it made
    state.mkdir(parents=True, mode=0o700)
    (state / "secrets.yml").write_text("ada: Wonderland-42\n")
    (state / "secrets.yml").chmod(0o600)
    leak = StepResult("hosts", "Hosts", Status.FAIL, 0.5, "a name", "printed Wonderland-42 by mistake")
    _graded(monkeypatch, {"ada": leak})
    out, err = io.StringIO(), io.StringIO()
    main(["--lab", str(base), "class", "check", "hosts"], stdout=out, stderr=err)
    assert "Wonderland-42" not in (room.dir / "gradebook.csv").read_text()
    assert "Wonderland-42" not in (room.dir / "gradebook.xml").read_text()
    board = ClassBoard(room)
    board.refresh()
    assert "Wonderland-42" not in board.cells()[("ada", "hosts")].result.seen
    assert "Wonderland-42" not in board.redactor.redact("error: Wonderland-42")


def test_a_cell_shows_no_terminal_control_characters() -> None:
    row = StudentResult("ada", StepResult("tls", "", Status.FAIL, 1.0, "a \x1b[2Jcert", "\x1b[31mred\x1b[0m\x07"), AT)
    shown = cell("tls", row)
    assert (shown["expected"], shown["seen"]) == ("a cert", "red")


def test_a_class_on_the_docker_provider_is_refused_unless_the_instructor_says_students_are_root(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGLAB_PROVIDER", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(base), "class", "up", "2"], stdout=out, stderr=err) == 2
    said = err.getvalue()
    assert "root on this host" in said and "provider: incus" in said and "--students-are-root-on-this-host" in said
    assert "Traceback" not in said and said.count("\n") == 1
    assert not (base.parent / ".class" / "2" / "labs").exists()  # nothing enrolled, nothing booted


def test_a_class_left_to_auto_boots_on_incus_where_incus_answers(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.cli import classes
    from lab.machines import hostsetup

    monkeypatch.delenv("REGLAB_PROVIDER", raising=False)
    base.write_text("provider: auto\n")
    monkeypatch.setattr(hostsetup, "incus_answers", lambda: True)
    assert classes.class_provider(base) == "incus"
    monkeypatch.setattr(hostsetup, "incus_answers", lambda: False)
    monkeypatch.setattr(hostsetup, "usable_provider", lambda: "docker")
    assert classes.class_provider(base) == "docker"
    monkeypatch.setenv("REGLAB_PROVIDER", "incus")
    assert classes.class_provider(base) == "incus"


# --- issue 21: a class on an Incus cluster -----------------------------------------------------


def test_class_status_shows_each_labs_cluster_member_and_no_member_column_on_one_host(base: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from lab.machines.providers.base import MachineStatus

    room = Classroom(base, "net101", quiet())
    room.enrol([Student("ada"), Student("bob")])
    where = {"ada": "m1", "bob": "m2"}

    def session(self, member, **_):  # noqa: ANN001, ANN202
        return SimpleNamespace(provider=SimpleNamespace(status=lambda: [
            MachineStatus(name, "incus", "running", "10.0.0.1", where[member.id]) for name in ("registry", "client")]))

    monkeypatch.setattr(Classroom, "session", session)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(base), "class", "status"], stdout=out, stderr=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].split()[-1] == "MEMBER"
    assert next(line for line in lines if line.startswith("ada ")).split()[-1] == "m1"
    assert next(line for line in lines if line.startswith("bob ")).split()[-1] == "m2"
    where.update(ada="", bob="")  # one host: no member column
    out = io.StringIO()
    assert main(["--lab", str(base), "class", "status"], stdout=out, stderr=io.StringIO()) == 0
    assert "MEMBER" not in out.getvalue() and out.getvalue().count("running") == 4
