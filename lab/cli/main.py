"""The `reglab` command: `main(argv) -> ExitStatus`, called in-process by the tests.

Exit 0: all good; 1: a check or a remote command failed; 2: bad input (lab
file, step name, missing tool, a file reglab cannot read or write); 130:
interrupted (Ctrl-C, SIGTERM, SIGHUP). One message each, never a traceback:
`main` is the one place that turns these exceptions into a message and a code.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from lab.classroom import CHECK_TIMEOUT, JOBS
from lab.common.errors import ExitStatus, LabError, LabFailure
from lab.common.progress import Progress
from lab.engine.session import Session, load_lab
from lab.engine.teaching import instructions
from lab.machines import boxes
from lab.machines.boxes import PROVIDERS as BOX_PROVIDERS
from lab.machines.providers.base import MachineStatus
from lab.model import labfile
from lab.model.diagnosis import format_diagnosis
from lab.model.labfile import EDITIONS, IMAGE_SOURCES, OS_FAMILIES, PROVIDERS
from lab.model.results import RunResult, Status, StepResult
from lab.reports import report

if TYPE_CHECKING:
    from lab.classroom.room import Outcome


class _Parser(argparse.ArgumentParser):
    """argparse writing to main()'s streams, so in-process callers see its messages."""

    out: TextIO = sys.stdout
    err: TextIO = sys.stderr

    def _print_message(self, message: str, file: TextIO | None = None) -> None:  # noqa: ARG002
        if message:
            (self.err if file is sys.stderr else self.out).write(message)


def build_parser(out: TextIO | None = None, err: TextIO | None = None) -> argparse.ArgumentParser:
    _Parser.out = out or sys.stdout
    _Parser.err = err or sys.stderr
    parser = _Parser(
        prog="reglab",
        description="A lab for the private Docker registry tutorial: boot, provision, solve and check it.",
    )
    parser.add_argument("--lab", type=Path, default=Path(os.environ.get("REGLAB_LAB", "lab.yml")),
                        help="the lab file (default: ./lab.yml, or $REGLAB_LAB)")
    parser.add_argument("--scenario", type=Path, help="the scenario to run: its steps file, or a folder with "
                        "scenario.yaml (default: the lab file's `scenario:`, else the tutorial)")
    parser.add_argument("--provider", choices=(*PROVIDERS, "auto"), help="override the lab's provider")
    parser.add_argument("--edition", choices=EDITIONS, help="override the lab's edition")
    parser.add_argument("--images", choices=IMAGE_SOURCES, help="where the lab's images come from")
    parser.add_argument("--fresh", action="store_true",
                        help="provision new machines from nothing, not from a warm image (REGLAB_START=fresh)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="boot the machines and wait for SSH")
    up.add_argument("machines", nargs="*", metavar="MACHINE")
    sub.add_parser("status", help="machine, provider, state and IP")
    ssh = sub.add_parser("ssh", help="a shell on a machine, or one command: reglab ssh MACHINE -- CMD...")
    ssh.add_argument("machine")
    ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("down", help="destroy the machines and their networks (caches are kept); "
                   "on machines given over SSH, remove only what reglab put there")
    sub.add_parser("provision", help="install Docker, Compose, htpasswd, curl, openssl; load the images")
    sub.add_parser("steps", help="the steps, with their last result")
    for name, text in (("solve", "apply the reference answer (steps before it first)"),
                       ("check", "grade a step without changing anything")):
        command = sub.add_parser(name, help=text)
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("step", nargs="?")
        target.add_argument("--all", action="store_true")
    show = sub.add_parser("show", help="the commands to type for a step, per machine")
    show.add_argument("step")
    run = sub.add_parser("run", help="up, provision, solve and check every step; write the report")
    run.add_argument("--keep-going", action="store_true",
                     help="after a failed step, apply its modern solution (a bridge) and judge the next steps")
    sub.add_parser("reset", help="bring the machines back to the state after provisioning")
    rep = sub.add_parser("report", help="print the last run's report per edition, write the maintainer's report "
                                        "(both editions side by side); --readme updates README.md")
    rep.add_argument("--readme", type=Path, nargs="?", const=Path("README.md"))
    klass = sub.add_parser("class", help="a class: a lab per student from a roster (up, status, check, reset, "
                                         "down, bundle, serve)")
    klass.add_argument("--name", help="the class (up: default the roster file's name; else the only class here)")
    class_sub = klass.add_subparsers(dest="class_command", required=True, metavar="ACTION")
    class_up = class_sub.add_parser("up", help="a lab per student of ROSTER (CSV, YAML or a count), booted at once")
    class_up.add_argument("roster")
    class_up.add_argument("--pool", help="the private network the labs' /24s come from (default 10.77.0.0/16)")
    class_up.add_argument("--jobs", type=int, default=JOBS, help=f"labs booted at once (default {JOBS})")
    class_sub.add_parser("status", help="each student's lab and its machines' state")
    class_check = class_sub.add_parser("check", help="grade every student's lab (observe-only); write the gradebook")
    target = class_check.add_mutually_exclusive_group(required=True)
    target.add_argument("step", nargs="?")
    target.add_argument("--all", action="store_true")
    class_check.add_argument("--jobs", type=int, default=8, help="labs graded at once (default 8)")
    class_check.add_argument("--timeout", type=int, default=CHECK_TIMEOUT,
                             help=f"seconds before an unanswering lab is a failed row (default {CHECK_TIMEOUT})")
    class_reset = class_sub.add_parser("reset", help="a student's lab back to the state after provisioning")
    class_reset.add_argument("student")
    class_sub.add_parser("down", help="destroy every lab of the class and the students' keys (the gradebook stays)")
    class_bundle = class_sub.add_parser("bundle", help="what to hand a student: ssh_config, key, registry login")
    class_bundle.add_argument("student")
    class_serve = class_sub.add_parser("serve", help="the instructor's dashboard on localhost")
    class_serve.add_argument("--port", type=int, default=8765)
    class_serve.add_argument("--every", type=int, help="re-check every N seconds (default: on demand only)")
    image = sub.add_parser("image", help="build images on the host")
    image_sub = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    build = image_sub.add_parser("build", help="build an image: node (the machine image) or lab")
    build.add_argument("what", choices=("node", "lab"))
    build.add_argument("--from", dest="base_from", choices=("auto", "hub", "debootstrap"), default="auto",
                       help="node only: debian:bookworm from Docker Hub, or debootstrap from the Debian mirror")
    box = sub.add_parser("box", help="build Vagrant boxes on the host")
    box_sub = box.add_subparsers(dest="box_command", required=True, metavar="ACTION")
    box_build = box_sub.add_parser(
        "build", help="build the Debian 12 box from Debian packages (as root) and add it to Vagrant")
    box_build.add_argument("--provider", dest="box_provider", choices=(*BOX_PROVIDERS, "all"),
                           help="the box's provider (default: the lab's, when libvirt or virtualbox; else all)")
    box_build.add_argument("--os", dest="box_os", choices=OS_FAMILIES, help="default: the lab's `os`")
    box_build.add_argument("--no-add", dest="box_add", action="store_false", help="build only; no `vagrant box add`")
    return parser


INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C (or SIGTERM, SIGHUP) that stopped a command, with the phase it stopped."""

    def __init__(self, phase: str | None) -> None:
        super().__init__(phase)
        self.phase = phase


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end reglab as a Ctrl-C does: Vagrant stopped, connections closed, exit 130.

    Python raises KeyboardInterrupt in the main thread for SIGINT only; the
    previous handlers come back afterwards (main() is also called in-process).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser(out, err)
    with signals_as_interrupt():
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse has printed its usage message
            return int(exc.code or 0)
        try:
            return int(dispatch(args, out, err))
        except LabError as exc:
            print(f"reglab: error: {exc}", file=err)
            return ExitStatus.USAGE
        except LabFailure as exc:
            print(f"reglab: failed: {exc}", file=err)
            return ExitStatus.FAILED
        except OSError as exc:  # a file of the user's or of .lab that cannot be read or written
            if exc.filename is not None:
                print(f"reglab: error: {exc.filename}: {exc.strerror or exc}", file=err)
                return ExitStatus.USAGE
            print(f"reglab: failed: {exc.strerror or exc}", file=err)
            return ExitStatus.FAILED
        except KeyboardInterrupt as exc:
            phase = getattr(exc, "phase", None)
            print(f"reglab: interrupted{f' during {phase}' if phase else ''}. Machines may still be running: "
                  "`reglab status` shows them, `reglab down` removes them.", file=err)
            return ExitStatus.INTERRUPTED


def dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> ExitStatus:
    overrides = {"provider": args.provider, "edition": args.edition, "images.source": args.images,
                 "start": "fresh" if args.fresh else None, "scenario": str(args.scenario) if args.scenario else None}
    if args.command == "class":  # many labs: each its own session
        return class_command(args, out, err)
    if args.command == "box":  # the host's cache only: no machine, no lab state, no lock
        return box_build(load_lab(args.lab, overrides), args, out, Progress(err, quiet=args.quiet))
    # Commands that only read, or hand the terminal over (ssh), do not wait for the lab's lock.
    lock = args.command not in ("status", "show", "report", "ssh")
    session = Session.from_file(args.lab, overrides, Progress(err, quiet=args.quiet), lock=lock)
    try:
        return run_command(session, args, out, err)
    except KeyboardInterrupt:
        raise Interrupted(note_interrupted(session, args.command)) from None
    finally:
        session.close()  # the machines' connections stayed open for the whole command
        session.lock.release()  # main() may be called again in this process (the tests do)


def class_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> ExitStatus:
    """`reglab class ACTION`: one lab per student, from the lab file as the class's base."""
    # Loaded here, not with the module: a student's `reglab check` waits for none of it.
    from lab.classroom.room import ClassBoard, Classroom, roster_name
    from lab.classroom.roster import load_roster

    progress = Progress(err, quiet=args.quiet)
    action = args.class_command
    try:
        if action == "up":
            students = load_roster(args.roster)
            if args.jobs < 1:
                raise LabError(f"--jobs: expected 1 or more labs at once, got {args.jobs}")
            pool = None
            if args.pool:
                try:
                    pool = ipaddress.IPv4Network(args.pool)
                except ValueError as exc:
                    raise LabError(f"--pool: expected a private IPv4 network like 10.77.0.0/16 ({exc})") from None
            room = Classroom(args.lab, args.name or roster_name(args.roster), progress)
            room.enrol(students, pool)
            wanted = {s.id for s in students}
            outcomes = room.up([m for m in room.members if m.id in wanted], args.jobs)
            print_outcomes(outcomes, "lab up", out)
            for outcome in outcomes:
                if outcome.ok:
                    print(f"{outcome.member.id}: bundle in {outcome.value} (`reglab class bundle "
                          f"{outcome.member.id}` prints it)", file=out)
            return ExitStatus.OK if all(o.ok for o in outcomes) else ExitStatus.FAILED
        room = Classroom.open(args.lab, args.name, progress)
        if action == "status":
            rows = [("STUDENT", "LAB", "SUBNET", "REGISTRY", "CLIENT")]
            for outcome in room.status():
                states = outcome.value or {}
                member = outcome.member
                rows.append((member.id, f"{room.name}-{member.id}", str(member.subnet or "given (ssh)"),
                             states.get("registry", outcome.first_line or "?"), states.get("client", "?")))
            print_table(rows, out)
            return ExitStatus.OK
        if action == "check":
            grades = room.check(room.members, None if args.all else args.step, args.jobs, args.timeout)
            paths = room.write_gradebook(grades)
            print(room.summary(grades), file=out)
            print(f"gradebook: {paths['csv']} (also {paths['xml'].name})", file=out)
            return ExitStatus.OK if grades and all(g.status == "pass" for g in grades) else ExitStatus.FAILED
        if action == "reset":
            room.reset(room.member(args.student))
            print(f"{args.student}: lab reset to the state after provisioning", file=out)
            return ExitStatus.OK
        if action == "down":
            outcomes = room.down()
            print_outcomes(outcomes, "lab down", out)
            return ExitStatus.OK if all(o.ok for o in outcomes) else ExitStatus.FAILED
        if action == "bundle":
            print(room.bundle(room.member(args.student)), file=out)
            return ExitStatus.OK
        if action == "serve":
            from lab.classroom.dashboard import serve

            board = ClassBoard(room)
            serve(board, port=args.port, every=args.every,
                  ready=lambda url: print(f"dashboard of class {room.name}: {url} (Ctrl-C stops it)", file=out,
                                          flush=True))
            return ExitStatus.OK
    except KeyboardInterrupt:
        print("reglab: interrupted. Labs may still be booting or running: `reglab class status` shows them, "
              "`reglab class down` removes them.", file=err)
        return ExitStatus.INTERRUPTED
    raise LabError(f"unknown class action {action!r}")


def print_outcomes(outcomes: list[Outcome], what: str, out: TextIO) -> None:
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


def note_interrupted(session: Session, command: str) -> str | None:
    """Record in the state file what an interrupt stopped; the phase, for the message."""
    progress = session.progress
    phase = progress.interrupted or ", ".join(progress.running) or None
    session.state.data["interrupted"] = {
        "phase": phase,
        "command": command,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # already on the way out: the message matters more
        session.state.save()
    return phase


def run_command(session: Session, args: argparse.Namespace, out: TextIO, err: TextIO) -> ExitStatus:
    command = args.command

    if command == "up":
        session.up(args.machines)
        print_status(session, out)
    elif command == "status":
        print_status(session, out)
    elif command == "ssh":
        return ssh(session, args.machine, args.cmd, err)
    elif command == "down":
        removed = session.down()
        done = "machines destroyed" if session.provider.makes_machines else "machines left running"
        print(done + (f"; removed {'; '.join(removed)}" if removed else ""), file=out)
    elif command == "provision":
        session.require_running()
        for done in session.provision():
            print(f"{done.machine}: {'; '.join(done.changes) if done.changes else 'nothing to change'}", file=out)
    elif command == "steps":
        session.refresh_state()
        for step in session.scenario.steps:
            print(f"{step.id:<18} {session.state.step_status(step.id):<8} {step.title}", file=out)
    elif command == "show":
        session.step_ids(args.step)
        print(instructions(session, args.step), file=out)
    elif command in ("solve", "check"):
        return solve_or_check(session, command, None if args.all else args.step, out)
    elif command == "run":
        result = session.run(keep_going=args.keep_going)
        for step_result in result.steps:
            if step_result.status is Status.FAIL:
                print_step(step_result, out)
        print_summary(result, out, session.lab.state_dir / "reports")
        return ExitStatus.OK if result.passed else ExitStatus.FAILED
    elif command == "reset":
        session.require_running()
        session.reset()
        print("machines reset to the state after provisioning", file=out)
    elif command == "report":
        return show_report(session, args.readme, out)
    elif command == "image":
        if args.what == "node":
            print(session.builder.node(args.base_from), file=out)
        else:
            images = session.builder.lab_images()
            print("\n".join(images.all()), file=out)
    return ExitStatus.OK


def box_build(lab: labfile.Lab, args: argparse.Namespace, out: TextIO, progress: Progress) -> ExitStatus:
    """Build (or take from the cache) the box for each provider, then add it to Vagrant with its version."""
    provider = args.box_provider or (lab.provider if lab.provider in BOX_PROVIDERS else "all")
    result = boxes.build_box(lab, provider, progress.say, args.box_os or lab.os)
    for name, path in result.boxes.items():
        cached = " (from the cache)" if name in result.cached else ""
        print(f"{result.name} {result.version} ({name}): {path}, {path.stat().st_size / 1024**2:.0f} MiB{cached}",
              file=out)
    print(f"catalogue: {result.catalog}", file=out)
    if args.box_add:
        added = boxes.add_box(result, progress.say)
        print(f"in Vagrant as {result.name} {result.version}"
              + (f" (added: {', '.join(added)})" if added else " (already there)"), file=out)
    return ExitStatus.OK


def solve_or_check(session: Session, command: str, step: str | None, out: TextIO) -> ExitStatus:
    session.step_ids(step)
    session.require_running()
    engine = session.engine()
    if command == "solve":
        steps = engine.steps_to_solve(step) if step else list(session.scenario.steps)
        result = engine.run(steps, solve=True, phases={})
    else:
        # Each step's checks capture what they compare (a digest) themselves.
        targets = [session.scenario.step(step)] if step else list(session.scenario.steps)
        result = engine.run(targets, solve=False, phases={})
    for step_result in result.steps:
        print_step(step_result, out)
    if step is None:
        session.write_report(result)
        print_summary(result, out, session.lab.state_dir / "reports")
    return ExitStatus.OK if result.passed else ExitStatus.FAILED


def print_step(step: StepResult, out: TextIO) -> None:
    mark = {Status.PASS: "ok  ", Status.FAIL: "FAIL", Status.NOT_RUN: "--  "}[step.status]
    print(f"{mark} {step.step_id}: {step.title}", file=out)
    if step.status is Status.FAIL:
        print(f"     expected: {step.expected}", file=out)
        print("     seen:     " + step.seen.replace("\n", "\n               "), file=out)
        if step.diagnosis:
            print("     " + format_diagnosis(step.diagnosis).replace("\n", "\n     "), file=out)
        for look in step.looks:
            print(f"     then:     {report.look_heading(look)}", file=out)
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


def ssh(session: Session, name: str, cmd: list[str], err: TextIO) -> ExitStatus | int:
    machine = session.connect(name)  # names an unknown machine clearly
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if cmd:
        result = machine.run(" ".join(cmd), warn=True, hide=False, pty=False)
        return result.exited
    if shutil.which("ssh") is None:
        raise LabError("ssh is not installed; on Debian or Ubuntu: apt-get install openssh-client")
    return subprocess.call(["ssh", "-F", str(session.provider.ssh_config()), name])


def show_report(session: Session, readme: Path | None, out: TextIO) -> ExitStatus:
    directory = session.lab.state_dir / "reports"
    results = report.load_results(directory)
    if not results:
        raise LabError(f"no report in {directory}; `reglab run` writes one")
    for result in results:
        report.write_reports(result, directory, session.redactor)
        print(report.render_markdown(result), file=out)
    text = report.check_tutorial_text(session.scenario)
    paths = report.write_maintainer_report(results, text, directory, session.redactor)
    print(f"both editions side by side: {paths['md']} (also .html); {text.line}", file=out)
    if readme is not None:
        report.update_readme_file(readme, report.render_summary_table(results))
        print(f"updated {readme}", file=out)
    return ExitStatus.OK
