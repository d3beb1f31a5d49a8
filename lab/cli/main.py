"""The `reglab` command: `main(argv) -> ExitStatus`, called in-process by the tests.

Exit 0: all good; 1: a check or a remote command failed; 2: bad input (lab
file, arguments); 130: interrupted. What a command prints is lab.cli.output's;
what it accepts, lab.cli.parser's."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lab.cli import matrixrun, scaffold
from lab.cli.guard import Interrupted, guarded, note_interrupted, signals_as_interrupt
from lab.cli.output import print_status, print_step, print_summary, show_report
from lab.cli.parser import build_parser
from lab.common.errors import ExitStatus, LabError
from lab.common.progress import Progress
from lab.engine.matrix import matrix_results
from lab.engine.session import Session, load_lab
from lab.engine.teaching import instructions
from lab.machines import boxes, hostsetup
from lab.machines.boxes import PROVIDERS as BOX_PROVIDERS
from lab.machines.providers.vagrant import box_vagrant
from lab.model import labfile
from lab.model.lab import EDITIONS, Lab
from lab.model.platforms import PLATFORMS
from lab.model.results import Status
from lab.reports.fixed import write_fixed_tutorial
from lab.reports.maintainer import EDITION_ORDER, check_tutorial_text, write_maintainer_report


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser(out, err)
    with signals_as_interrupt():
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse has printed its usage message
            return int(exc.code or 0)
        return guarded(lambda: dispatch(args, out, err), err)


def setup_provider(args: argparse.Namespace) -> str:
    """The provider to set the host up for: --provider, $REGLAB_PROVIDER, the lab file's, else auto."""
    chosen = args.provider or os.environ.get("REGLAB_PROVIDER")
    if not chosen and args.lab.exists():
        chosen = labfile.read_lab_file(args.lab).get("provider")
    return str(chosen or "auto")


def platforms_given(value: str | None, command: str) -> list[str]:
    """`--platform debian12,debian13` as a list of known platforms; several only for `run` (exit 2 else)."""
    if value is None:
        return []
    names = [name.strip() for name in value.split(",")]
    for name in names:
        if name not in PLATFORMS:
            raise LabError(f"--platform: expected {' or '.join(PLATFORMS)} (several comma-separated), got {name!r}")
    if len(set(names)) != len(names):
        raise LabError(f"--platform: {value!r} names a platform twice")
    if len(names) > 1 and command != "run":
        raise LabError(f"--platform: several platforms only for `run` (a matrix); `{command}` takes one")
    return names


def dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> ExitStatus:
    platforms = platforms_given(args.platform, args.command)
    overrides = {"provider": args.provider, "edition": args.edition, "images.source": args.images,
                 "start": "fresh" if args.fresh else None, "scenario": str(args.scenario) if args.scenario else None,
                 "platform": platforms[0] if len(platforms) == 1 else None}
    if args.command == "init":  # writes the lab file: nothing to load yet
        return init_command(args, out)
    if args.command == "setup-host":  # the host, before any lab can boot
        return ExitStatus(hostsetup.main(["--browser"] if args.browser else [], setup_provider(args)))
    if args.command == "class":  # many labs: each its own session
        from lab.cli.classes import class_command  # loaded here: a student's `reglab check` waits for none of it

        return class_command(args, out, err)
    if args.command == "box":  # the host's cache only: no machine, no lab state, no lock
        return box_build(load_lab(args.lab, overrides), args, out, Progress(err, quiet=args.quiet))
    if getattr(args, "jobs", None) is not None and len(platforms) < 2:
        raise LabError("--jobs: only with several platforms (`run --platform debian12,debian13 --jobs N`)")
    if len(platforms) > 1:  # `run` on several platforms: a lab each
        return matrix_run(load_lab(args.lab, overrides), platforms, args, overrides, out, err)
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


def matrix_run(lab: Lab, platforms: list[str], args: argparse.Namespace, overrides: dict[str, str | None],
               out: TextIO, err: TextIO) -> ExitStatus:
    """Every edition (or --edition's) on each platform, a lab per platform, `--jobs` of them at once
    (lab.cli.matrixrun), then the maintainer's report as a matrix.

    The as-written edition runs with --keep-going, so every step of it is judged on every platform.
    """
    editions = [args.edition] if args.edition else [e for e in EDITION_ORDER if e in EDITIONS]
    status, outcomes = matrixrun.matrix_run(lab, platforms, editions, args.jobs, overrides, args.keep_going,
                                            args.quiet, out, err)
    if not all(outcome.completed for outcome in outcomes):  # no report from another run's results
        return status
    own = Session(lab, Progress(err, quiet=args.quiet), lock=False)
    text = check_tutorial_text(own.scenario)
    paths = write_maintainer_report(matrix_results(lab), text, lab.state_dir / "reports", own.redactor)
    print(f"every edition on {', '.join(platforms)}: {paths['md']} (also .html)", file=out)
    if own.scenario.text is not None and own.scenario.fixes:
        written = write_fixed_tutorial(own.scenario.text, own.scenario.fixes, lab.state_dir / "reports")
        print(f"the tutorial fixed: {written['fixed']} (and {written['patch'].name})", file=out)
    return status


def init_command(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    """`reglab init [FOLDER] [--class ROSTER]`: the files to start from, and what to type next."""
    written = scaffold.write(args.folder, args.roster, args.force)
    for path in written:
        print(f"wrote {path}", file=out)
    here = args.folder.resolve() == Path.cwd()
    lab = "" if here else f" --lab {shlex.quote(str(written[0]))}"
    print(f"next: `reglab{lab} run` boots, provisions, solves and checks every step (edit lab.yml first for "
          "another provider, edition or network)", file=out)
    if args.roster is not None:
        base, roster = (shlex.quote(str(p if not here else p.name)) for p in written[1:])
        print(f"a class: edit {roster}, then `reglab --lab {base} class up {roster}`", file=out)
    return ExitStatus.OK


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
        if session.state.has_results():  # only results can go stale; with none, no machine is asked
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


def box_build(lab: Lab, args: argparse.Namespace, out: TextIO, progress: Progress) -> ExitStatus:
    """Build (or take from the cache) the box for each provider, then add it to Vagrant with its version."""
    provider = args.box_provider or (lab.provider if lab.provider in BOX_PROVIDERS else "all")
    result = boxes.build_box(lab, provider, progress.say, args.box_os or lab.os)
    for name, path in result.boxes.items():
        cached = " (from the cache)" if name in result.cached else ""
        print(f"{result.name} {result.version} ({name}): {path}, {path.stat().st_size / 1024**2:.0f} MiB{cached}",
              file=out)
    print(f"catalogue: {result.catalog}", file=out)
    if args.box_add:
        added = boxes.add_box(result, progress.say, box_vagrant(lab))
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


if __name__ == "__main__":  # `python -m lab.cli.main`, as `python -m lab`
    sys.exit(main())
