"""A class on one host: a lab per student from a roster, booted, graded and removed together.

`reglab class up ROSTER` makes each student's lab file from the base lab
file (lab.classlabs: their own name, /24, domain, registry user and
generated password), boots and provisions the labs in parallel under a
bound, and gives each student a key of their own and an ssh_config to their
two machines. `check` grades every lab at once, observe-only, into a
gradebook; `serve` shows it live; `reset STUDENT` and `down` act per lab.

Everything of a class lives in FOLDER/.class/NAME (FOLDER: the base lab file's):
  class.yml           the class: its base lab file, pool, students and their /24s
  labs/ID.yml         each student's lab file (its state in labs/.lab/NAME-ID/)
  students/ID/        what the student gets: key, ssh_config, credentials (0600)
  gradebook.csv/.xml  the last `class check`
  logs/ID.log         each lab's progress
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import shlex
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lab.classroom import CHECK_TIMEOUT, JOBS, netpool
from lab.classroom.gradebook import (
    Efforts,
    checked_later,
    checked_now,
    gradebook_lock,
    merge_gradebook,
    read_gradebook,
    summary,
    write_gradebook,
)
from lab.classroom.labs import check_class_name, student_lab
from lab.classroom.roster import Student
from lab.common.errors import ConfigError, LabError, LabFailure, RemoteError
from lab.common.files import private_dir, write_private
from lab.common.progress import Progress
from lab.common.sshkeys import new_key
from lab.common.yamlfile import read_yaml
from lab.engine.cleanup import account_mark
from lab.engine.session import load_lab
from lab.machines.providers.ssh import host_block
from lab.model import labfile
from lab.model.credentials import Redactor
from lab.model.results import Status, StepResult, StudentResult

T = TypeVar("T")


@dataclass(frozen=True)
class Member:
    """One student of the class and where their lab is."""

    student: Student
    subnet: ipaddress.IPv4Network | None  # None: the student's machines are given over SSH
    lab_file: Path

    @property
    def id(self) -> str:
        return self.student.id


@dataclass
class LabOutcome:
    """What one lab's part of a class command came to."""

    member: Member
    ok: bool
    message: str  # why it failed, whole (a table shows its first line)
    seconds: float
    value: Any = None

    @property
    def first_line(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


def classes_in(folder: Path) -> list[str]:
    root = folder / ".class"
    return sorted(p.name for p in root.iterdir() if (p / "class.yml").is_file()) if root.is_dir() else []


class Classroom:
    """A class of labs from one base lab file; made by `create`, found again by `open`."""

    def __init__(self, base_lab: Path, name: str, progress: Progress) -> None:
        self.base_lab = base_lab.resolve()
        self.name = check_class_name(name)
        self.dir = self.base_lab.parent / ".class" / self.name
        self.progress = progress
        self.members: list[Member] = []
        self.pool = netpool.CLASS_POOL
        self._logs: dict[str, Any] = {}
        self._logs_lock = threading.Lock()
        if (self.dir / "class.yml").is_file():
            self._load()

    @classmethod
    def open(cls, base_lab: Path, name: str | None, progress: Progress) -> Classroom:
        """The class of this name, or the only class beside the lab file."""
        found = classes_in(base_lab.resolve().parent)
        if name is None:
            if len(found) != 1:
                raise LabError("no class here yet; make one with `reglab class up ROSTER`" if not found else
                               f"several classes here ({', '.join(found)}); name one with --name")
            name = found[0]
        if name not in found:
            raise LabError(f"no class {name!r} beside {base_lab}; classes here: {', '.join(found) or 'none'}")
        return cls(base_lab, name, progress)

    # -- the record ---------------------------------------------------------------
    def _load(self) -> None:
        source = str(self.dir / "class.yml")
        data = read_yaml(source, "class file")  # bounded and strict, as every file a user could edit
        try:
            self.pool = ipaddress.IPv4Network(data["pool"])
            self.members = [
                Member(Student(s["id"], s.get("name", ""), machines=s.get("machines")),
                       ipaddress.IPv4Network(s["subnet"]) if s.get("subnet") else None,
                       self.dir / "labs" / f"{s['id']}.yml")
                for s in data["students"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(source, "", f"not a class file reglab wrote ({type(exc).__name__}: {exc}); "
                              "remove the class folder, after `reglab class down` if its labs run") from None

    def _save(self) -> None:
        data = {
            "name": self.name,
            "base": str(self.base_lab),
            "pool": str(self.pool),
            "students": [{"id": m.id, "name": m.student.name, "subnet": str(m.subnet) if m.subnet else None,
                          "machines": dict(m.student.machines) if m.student.machines else None}
                         for m in self.members],
        }
        write_private(self.dir / "class.yml", yaml.safe_dump(data, sort_keys=False))

    def member(self, student: str) -> Member:
        for member in self.members:
            if member.id == student:
                return member
        raise LabError(f"no student {student!r} in class {self.name}; students: "
                       f"{', '.join(m.id for m in self.members)}")

    # -- making the labs ------------------------------------------------------------
    def enrol(self, roster: Sequence[Student], pool: ipaddress.IPv4Network | None = None,
              provider: str | None = None) -> list[Member]:
        """Give each new student of the roster a /24 and a lab file; those enrolled before keep theirs.
        `provider`: what the labs boot with when the base lab leaves it open (`auto`), written into each."""
        private_dir(self.dir.parent)
        private_dir(self.dir)
        if pool is not None:
            self.pool = pool
        known = {m.id for m in self.members}
        new = [s for s in roster if s.id not in known]
        booted = [s for s in new if s.machines is None]  # the others' machines are given over SSH
        subnets: list[ipaddress.IPv4Network] = []
        if booted:
            taken = [*netpool.host_networks(), *(m.subnet for m in self.members if m.subnet),
                     *self._other_classes_subnets()]
            subnets = netpool.free_subnets(len(booted), self.pool, taken)
        nets = dict(zip((s.id for s in booted), subnets, strict=True))
        self.members += [Member(s, nets.get(s.id), self.dir / "labs" / f"{s.id}.yml") for s in new]
        base = labfile.read_lab_file(self.base_lab)
        if provider is not None:
            base["provider"] = provider
        if isinstance(base.get("scenario"), str):  # the labs' files live elsewhere: the base's scenario, absolute
            base["scenario"] = str((self.base_lab.parent / Path(base["scenario"]).expanduser()).resolve())
        private_dir(self.dir / "labs")
        for member in self.members:
            text = yaml.safe_dump(student_lab(base, self.name, member.student, member.subnet,
                                              source=str(self.base_lab)), sort_keys=False)
            write_private(member.lab_file, text)
        self._save()
        return [m for m in self.members if m.student in new]

    def _other_classes_subnets(self) -> list[ipaddress.IPv4Network]:
        """The /24s of the other classes beside this one, booted or not: never given twice."""
        nets = []
        for name in classes_in(self.base_lab.parent):
            if name != self.name:
                with contextlib.suppress(LabError):
                    nets += [m.subnet for m in Classroom(self.base_lab, name, self.progress).members if m.subnet]
        return nets

    def session(self, member: Member, lock: bool = True, overrides: dict[str, str | None] | None = None):  # noqa: ANN201
        """The member's lab, its progress going to its own log."""
        from lab.engine.session import Session

        with self._logs_lock:  # one stream per lab, reused: a dashboard checks again and again
            stream = self._logs.get(member.id)
            if stream is None:
                log_dir = private_dir(self.dir / "logs")
                stream = self._logs[member.id] = (log_dir / f"{member.id}.log").open("a", encoding="utf-8")
        if member.student.machines is not None:  # given over SSH, whatever REGLAB_PROVIDER says
            overrides = {**(overrides or {}), "provider": "ssh"}
        return Session.from_file(member.lab_file, overrides, Progress(stream), lock=lock)

    def log_error(self, member: Member, exc: BaseException) -> None:
        """An unexpected error of one lab's work, with its traceback, in that lab's own log."""
        import traceback

        with contextlib.suppress(OSError):
            with self._logs_lock:
                stream = self._logs.get(member.id)
            if stream is not None:
                stream.write("".join(traceback.format_exception(exc)))
                stream.flush()

    # -- one job per lab, a bounded number at once ------------------------------------
    def each(self, members: Sequence[Member], work: Callable[[Member], T], jobs: int, what: str,
             timeout: float | None = None, give_up: Callable[[Member], None] | None = None) -> list[LabOutcome]:
        """`work(member)` for each lab, `jobs` at once, each in a thread of its own.

        One lab's failure is its own row; the others go on. The threads are
        daemons, so a Ctrl-C ends reglab at once (then `reglab class down`
        removes what was booting). With `timeout`, a lab still at work after
        it is given up on and reported as not answering, and `give_up(member)` told so (to stop its work).
        """
        slots = threading.Semaphore(max(1, jobs))
        outcomes: dict[str, LabOutcome] = {}
        done = threading.Event()
        lock = threading.Lock()
        started_at = time.monotonic()

        def one(member: Member) -> None:
            with slots:
                began = time.monotonic()
                try:
                    value = work(member)
                    outcome = LabOutcome(member, True, "", time.monotonic() - began, value)
                except (LabError, LabFailure, RemoteError, OSError) as exc:
                    outcome = LabOutcome(member, False, str(exc), time.monotonic() - began)
                except Exception as exc:  # noqa: BLE001 - a bug in one lab's work is that lab's row, never a hang
                    self.log_error(member, exc)
                    outcome = LabOutcome(member, False, f"reglab failed on this lab: {type(exc).__name__}: {exc}",
                                         time.monotonic() - began)
                with lock:
                    outcomes.setdefault(member.id, outcome)
                    finished = len(outcomes)
                self.progress.say(f"{member.id}: {what} {'done' if outcome.ok else 'FAILED: ' + outcome.first_line} "
                                  f"in {outcome.seconds:.1f}s ({finished}/{len(members)})")
                if finished == len(members):
                    done.set()

        if not members:
            return []
        for member in members:
            threading.Thread(target=one, args=(member,), name=f"lab-{member.id}", daemon=True).start()
        deadline = None if timeout is None else started_at + timeout * -(-len(members) // max(1, jobs))
        while not done.wait(1.0):
            if deadline is not None and time.monotonic() > deadline:
                break
        with lock:
            late = [member for member in members if member.id not in outcomes]
            for member in late:
                outcomes[member.id] = LabOutcome(member, False, f"no answer within {timeout or 0:.0f}s",
                                              float(timeout or 0))
            result = [outcomes[m.id] for m in members]
        for member in late:
            if give_up is not None:
                with contextlib.suppress(Exception):  # giving up: the row says it already
                    give_up(member)
        return result

    # -- commands -------------------------------------------------------------------------
    def up(self, members: Sequence[Member], jobs: int = JOBS) -> list[LabOutcome]:
        """Boot and provision each lab, then give its student their key; `jobs` labs at once.

        Refused before anything boots when the labs could not be kept apart
        on this host: a class promises each student their own lab.
        """
        self.refuse_unisolated(members)
        self.progress.say(f"class {self.name}: {len(members)} labs, {jobs} at once "
                          f"(each lab's progress: {self.dir / 'logs'}/ID.log)")

        def start(member: Member) -> str:
            session = self.session(member)
            try:
                session.start()
                return self.grant(member, session)
            finally:
                session.close()
                session.lock.release()

        with self.progress.phase("class up", f"boot and provision {len(members)} labs"):
            return self.each(members, start, jobs, "lab up")

    def refuse_unisolated(self, members: Sequence[Member]) -> None:
        """LabFailure when the labs reglab boots here would reach each other (a host-wide matter: one asks)."""
        booted = [m for m in members if m.student.machines is None]
        if not booted:
            return
        session = self.session(booted[0], lock=False)
        problem = session.provider.isolation()
        if problem:
            raise LabFailure(f"class {self.name}: expected each student's lab kept apart from the others on this "
                             f"host; seen: {problem}. Nothing was booted.")

    def grant(self, member: Member, session: Any) -> str:
        """The student's own key on both of their machines, and their bundle: ssh_config, key, credentials.

        On machines reglab made, the key goes to the machine's login user. On machines a school
        gives over SSH it never goes to the school's account: reglab makes the student an account
        of their own (named after the lab, marked as reglab's, with sudo as the tutorial needs),
        which `down` and `class down` remove whole (lab.engine.cleanup).
        """
        folder = private_dir(self.dir / "students" / member.id)
        key_path = folder / "id_ed25519"
        if not key_path.exists():
            new_key(key_path, session.lab.name)
        public_line = (folder / "id_ed25519.pub").read_text().strip()
        given = not session.provider.makes_machines
        hosts = []
        for name in session.provider.names:
            machine = session.context().machine(name)
            if given:
                user = session.lab.name
                machine.sudo(student_account(user, public_line), timeout=60)
            else:
                user = machine.user
                keys = f"~{user}/.ssh/authorized_keys"
                machine.sudo(f"grep -qxF {shlex.quote(public_line)} {keys} 2>/dev/null || "
                             f"echo {shlex.quote(public_line)} >> {keys}", timeout=30)
            spec = session.lab.machine(name)
            hosts.append(host_block(name, spec.host or spec.ip, spec.port, user, folder / "known_hosts", key_path))
        write_private(folder / "ssh_config", "\n\n".join(hosts) + "\n")
        user = session.lab.users[0]
        write_private(folder / "credentials.txt",
                      f"lab: {session.lab.name}\ndomain: {session.lab.domain}\n"
                      + "".join(f"{m.name}: {m.ip}\n" for m in session.lab.machines)
                      + f"registry user: {user.name}\nregistry password: {user.password}\n")
        return str(folder)

    def revoke_login_key(self, member: Member, session: Any) -> None:
        """Take the student's key line out of the login account of given machines, exactly that line:
        where a class made before student accounts put it (it would outlive the class there)."""
        public = self.dir / "students" / member.id / "id_ed25519.pub"
        if session.provider.makes_machines or not public.is_file():
            return
        line = shlex.quote(public.read_text().strip())
        for name in session.provider.names:
            machine = session.context().machine(name)
            keys = f"~{machine.user}/.ssh/authorized_keys"
            machine.sudo(f"f={keys}; test -f \"$f\" || exit 0; grep -qxF {line} \"$f\" || exit 0; "
                         f"t=$(mktemp) && {{ grep -vxF {line} \"$f\" || true; }} > \"$t\" && cat \"$t\" > \"$f\"; "
                         f"rc=$?; rm -f \"$t\"; exit $rc", timeout=30)

    def bundle(self, member: Member) -> str:
        """What to hand a student: how to reach their machines, and their registry login."""
        folder = self.dir / "students" / member.id
        if not (folder / "ssh_config").is_file():
            raise LabError(f"no bundle for {member.id} yet: `reglab class up` makes it once their lab is up")
        return (f"# {member.id}: ssh -F {folder / 'ssh_config'} registry   (or client)\n"
                f"# key: {folder / 'id_ed25519'} (0600; only this student's machines accept it)\n"
                + (folder / "ssh_config").read_text() + "\n" + (folder / "credentials.txt").read_text())

    def status(self, jobs: int = 8) -> list[LabOutcome]:
        """Each lab's machines: {machine: (state, where)}, `where` the cluster member it runs on or ""."""
        def states(member: Member) -> dict[str, tuple[str, str]]:
            session = self.session(member, lock=False)
            return {s.name: (s.state, s.where) for s in session.provider.status()}

        return self.each(self.members, states, jobs, "status")

    def check(self, members: Sequence[Member], step: str | None, jobs: int = 8,
              timeout: float = CHECK_TIMEOUT) -> list[StudentResult]:
        """Grade each lab, observe-only, `jobs` at once; a lab that does not answer is unreachable at every step.
        Each lab's rows are `checked_at` when its check began (its lock held). An unknown step is a LabError
        before any lab is touched."""
        if step is not None and step not in self.step_ids():
            raise LabError(f"no step {step!r} in the class's scenario; steps: {', '.join(self.step_ids())}")
        running: dict[str, Any] = {}  # each lab's session while it is graded
        started: dict[str, str] = {}  # each lab's checked_at: when its check began, its lock held
        given_up: set[str] = set()
        guard = threading.Lock()
        round_started = checked_now()

        def grade(member: Member) -> list[StepResult]:
            session = self.session(member)  # waits for the lab's lock: one check of a lab at a time
            with guard:
                started[member.id] = checked_now()
                running[member.id] = session
                late = member.id in given_up
            if late:
                session.abandon()
            try:
                session.step_ids(step)
                session.require_running()
                targets = [session.scenario.step(step)] if step else list(session.scenario.steps)
                return session.engine().run(targets, solve=False, phases={}).steps
            finally:
                session.close()  # a dashboard checks again and again: each check's connections end with it
                session.lock.release()

        with self.progress.phase("class check", f"grade {len(members)} labs ({step or 'every step'})"):
            def give_up(member: Member) -> None:  # past --timeout: it must not run on beside the next check
                with guard:
                    given_up.add(member.id)
                    session = running.get(member.id)
                if session is not None:
                    session.abandon()

            outcomes = self.each(members, grade, jobs, "check", timeout, give_up)
        ids = [step] if step else self.step_ids()
        rows = []
        for outcome in outcomes:
            # when this lab's check began (what it saw is at least that fresh), not when the round ended: a
            # student's Check of it that began later, while the round went on, must stay the newer row
            with guard:
                when = started.get(outcome.member.id, round_started)
            if not outcome.ok:
                reason = f"lab did not answer: {outcome.first_line}"
                rows += [StudentResult(outcome.member.id, StepResult(s, "", Status.UNREACHABLE, outcome.seconds,
                                                                     seen=outcome.message, reason=reason), when)
                         for s in ids]
                continue
            rows += [to_row(outcome.member.id, result, when) for result in outcome.value]
        return rows

    @functools.cached_property
    def steps(self) -> list[tuple[str, str]]:
        """(id, title) of the class's scenario, the base lab file's, read once."""
        from lab.model import scenario

        lab = load_lab(self.base_lab)
        return [(s.id, s.title) for s in scenario.load(lab.manifest.path, lab.edition, lab.manifest).steps]

    def step_ids(self) -> list[str]:
        return [step_id for step_id, _ in self.steps]

    def redactor(self) -> Redactor:
        """Every lab's passwords and every student's key: what the gradebook and the dashboard mask."""
        redactor = Redactor()
        for member in self.members:
            with contextlib.suppress(LabError, OSError):
                redactor.add_lab(load_lab(member.lab_file))
            key = self.dir / "students" / member.id / "id_ed25519"
            with contextlib.suppress(OSError):
                redactor.add_private_key(key.read_bytes())
        return redactor

    def record(self, rows: Sequence[StudentResult], redactor: Redactor | None = None, effort: Efforts | None = None,
               ) -> tuple[dict[str, Path], list[StudentResult]]:
        """Merge `rows` into the gradebook on disk (other students' and steps' results stay) and write it
        redacted; its paths and every row it now holds. One writer at a time, in any process."""
        return merge_gradebook(rows, self.dir, redactor or self.redactor(), students=[m.id for m in self.members],
                               steps=self.step_ids(), effort=effort)

    def write_gradebook(self, rows: Sequence[StudentResult], redactor: Any = None) -> dict[str, Path]:
        """Write exactly `rows` as the gradebook (under its lock)."""
        with gradebook_lock(self.dir):
            return write_gradebook(rows, self.dir, redactor, students=[m.id for m in self.members],
                                   steps=self.step_ids())

    def summary(self, rows: Sequence[StudentResult]) -> str:
        return summary(rows, students=[m.id for m in self.members], steps=self.step_ids())

    def reset(self, member: Member) -> None:
        session = self.session(member)
        try:
            session.require_running()
            session.reset()
        finally:
            session.close()
            session.lock.release()

    def down(self, jobs: int = JOBS) -> list[LabOutcome]:
        """Destroy every lab, then the students' keys and secrets; the class record and gradebook stay."""

        def destroy(member: Member) -> list[str]:
            if not member.lab_file.exists():  # an earlier `class down` took this lab away already
                return []
            session = self.session(member)
            try:
                if member.student.machines is not None:
                    self.revoke_login_key(member, session)
                return session.down()
            finally:
                session.close()
                session.lock.release()

        with self.progress.phase("class down", f"destroy {len(self.members)} labs"):
            outcomes = self.each(self.members, destroy, jobs, "lab down")
        if all(o.ok for o in outcomes):
            for folder in (self.dir / "students", self.dir / "labs"):
                shutil.rmtree(folder, ignore_errors=True)
        return outcomes


def student_account(account: str, public_line: str) -> str:
    """The root command that makes (or finds again) a student's own account on a given machine, with
    sudo and their key. An account of that name the school has is refused, never taken over. Pure.

    The key is written as the student (runuser): their home is theirs, and a link planted in it
    must never make root write elsewhere. The password is `*`, not locked (`!`): sshd without
    PAM refuses even key logins to a locked account.
    """
    a = shlex.quote(account)
    mark = shlex.quote(account_mark(account))
    rule = shlex.quote(f"{account} ALL=(ALL) NOPASSWD: ALL")
    add_key = shlex.quote('umask 077; mkdir -p "$HOME/.ssh" && { grep -qxF "$1" "$HOME/.ssh/authorized_keys" '
                          '2>/dev/null || printf "%s\\n" "$1" >> "$HOME/.ssh/authorized_keys"; }')
    return (f"if getent passwd {a} >/dev/null; then getent passwd {a} | cut -d: -f5 | grep -qxF {mark} || "
            f"{{ echo 'an account {account} exists here and reglab did not make it: it is not given to a student' >&2; "
            f"exit 3; }}; else useradd -m -s /bin/bash -p '*' -c {mark} {a}; fi && "
            f"t=$(mktemp) && printf '%s\\n' {rule} > \"$t\" && visudo -cqf \"$t\" && "
            f"install -m 0440 \"$t\" /etc/sudoers.d/reglab-{account}; rc=$?; rm -f \"$t\"; [ $rc = 0 ] && "
            f"runuser -u {a} -- env HOME=\"$(getent passwd {a} | cut -d: -f6)\" sh -c {add_key} sh "
            f"{shlex.quote(public_line)}")


def to_row(student: str, result: StepResult, when: str) -> StudentResult:
    """A step's result as a gradebook row: the student's, checked `when`, its time to the hundredth."""
    return StudentResult(student, dataclasses.replace(result, duration=round(result.duration, 2)), when)


def roster_name(roster: str) -> str:
    """A class name from the roster file's name (`net101.csv` -> net101), or `class` for a count."""
    if roster.strip().isdigit():
        return "class"
    stem = "".join(c for c in Path(roster).stem.lower() if c.isalnum())
    return stem[:12] if stem[:1].isalpha() else f"c{stem[:11]}"


class ClassBoard:
    """The class as the dashboard sees it: the last results, and a check that refreshes them."""

    def __init__(self, classroom: Classroom, jobs: int = 8, timeout: float = CHECK_TIMEOUT) -> None:
        self.classroom = classroom
        self.jobs = jobs
        self.timeout = timeout
        self._rows: dict[tuple[str, str], StudentResult] = {}
        self._busy = threading.Event()
        self._lock = threading.Lock()
        self._checked: dict[str, float] = {}  # student -> when their lab's last check ended (monotonic)
        self.redactor = classroom.redactor()  # what the page, the gradebook and error messages mask
        self.effort: Callable[[], Efforts] | None = None  # the portal's count of time on step and hints
        for row in read_gradebook(classroom.dir / "gradebook.csv"):
            self._rows[(row.student, row.result.step_id)] = self._redacted(row)

    def students(self) -> list[str]:
        return [m.id for m in self.classroom.members]

    def steps(self) -> list[tuple[str, str]]:
        return list(self.classroom.steps)

    def cells(self) -> dict[tuple[str, str], StudentResult]:
        with self._lock:
            return dict(self._rows)

    def refresh(self, student: str | None = None, *, fresher_than: float | None = None) -> None:
        """Check every lab (or one student's), observe-only, and keep the gradebook up to date.

        With `fresher_than` (a periodic round's seconds), a lab checked that recently (by its student's
        Check) is left out: its results are as fresh as the round's, and a check of it now would only
        make its student's next Check wait for the lab."""
        members = [self.classroom.member(student)] if student else list(self.classroom.members)
        if fresher_than is not None:
            now = time.monotonic()
            with self._lock:
                members = [m for m in members if now - self._checked.get(m.id, -fresher_than) >= fresher_than]
            if not members:
                return
        self._busy.set()
        try:
            rows = [self._redacted(row) for row in self.classroom.check(members, None, self.jobs, self.timeout)]
            done = time.monotonic()
            with self._lock:
                self._checked.update({m.id: done for m in members})
            # merged with what is on disk: another writer's rows (`class check`, a concurrent refresh) stay
            _, everything = self.classroom.record(rows, self.redactor, self.effort() if self.effort else None)
            with self._lock:  # the gradebook's rows, each the latest checked: the merge kept no older one
                for row in everything:
                    key = (row.student, row.result.step_id)
                    if checked_later(row, self._rows.get(key)):
                        self._rows[key] = self._redacted(row)
        finally:
            self._busy.clear()

    def refreshing(self) -> bool:
        return self._busy.is_set()

    def save_effort(self) -> None:
        """Write the portal's latest time on step and hints used into the gradebook (its results stay)."""
        if self.effort is not None:
            self.classroom.record([], self.redactor, self.effort())

    def _redacted(self, row: StudentResult) -> StudentResult:
        return StudentResult(row.student, row.result.redacted(self.redactor.redact), row.checked_at)

