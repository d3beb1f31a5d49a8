"""`reglab class ...`: a lab per student from a roster, each its own session."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import TextIO

from lab.classroom.room import ClassBoard, Classroom, roster_name
from lab.classroom.roster import load_roster
from lab.cli.output import print_outcomes, print_table
from lab.common.errors import ExitStatus, LabError
from lab.common.progress import Progress
from lab.model.results import Status

DOCKER_CLASS_REFUSED = (
    "refusing to start a class on the docker provider: its machines run with every capability, no seccomp or "
    "AppArmor profile and the host's cgroups writable, and students have sudo in them, so every student would be "
    "root on this host. Use `provider: incus` (unprivileged system containers; set it up with "
    "`REGLAB_PROVIDER=incus reglab setup-host`) or libvirt VMs; or, if every student may be root here, say so "
    "with `reglab class up ROSTER --students-are-root-on-this-host`")


def class_provider(base_lab: Path) -> str:
    """What a class's labs boot with: REGLAB_PROVIDER, else the base lab's `provider`; `auto` is Incus where
    it answers (a class must not make students root on this host), else what `auto` is for one lab."""
    from lab.machines import hostsetup
    from lab.model import labfile
    from lab.model.labfile import DEFAULTS

    provider = os.environ.get("REGLAB_PROVIDER") or labfile.read_lab_file(base_lab).get("provider") \
        or DEFAULTS["provider"]
    if provider != "auto":
        return str(provider)
    return "incus" if hostsetup.incus_answers() else hostsetup.usable_provider()


def class_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> ExitStatus:
    """`reglab class ACTION`: one lab per student, from the lab file as the class's base."""
    progress = Progress(err, quiet=args.quiet)
    action = args.class_command
    try:
        if action == "up":
            students = load_roster(args.roster)
            pool = None
            if args.pool:
                try:
                    pool = ipaddress.IPv4Network(args.pool)
                except ValueError as exc:
                    raise LabError(f"--pool: expected a private IPv4 network like 10.77.0.0/16 ({exc})") from None
            room = Classroom(args.lab, args.name or roster_name(args.roster), progress)
            provider = class_provider(args.lab)
            booted = [s for s in students if s.machines is None]  # the others' machines are given over SSH
            if booted and provider == "docker" and not args.students_are_root_on_this_host:
                raise LabError(DOCKER_CLASS_REFUSED)
            room.enrol(students, pool, provider)
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
            rows = [("STUDENT", "LAB", "SUBNET", "REGISTRY", "CLIENT", "MEMBER")]
            for outcome in room.status():
                states = outcome.value or {}
                member = outcome.member
                where = sorted({w for _, w in states.values() if w})  # the cluster member(s) of its machines
                rows.append((member.id, f"{room.name}-{member.id}", str(member.subnet or "given (ssh)"),
                             states.get("registry", (outcome.first_line or "?", ""))[0],
                             states.get("client", ("?", ""))[0], ",".join(where) or "-"))
            if all(row[-1] == "-" for row in rows[1:]):
                rows = [row[:-1] for row in rows]  # no cluster: no member column
            print_table(rows, out)
            return ExitStatus.OK
        if action == "check":
            rows = room.check(room.members, None if args.all else args.step, args.jobs, args.timeout)
            paths, everything = room.record(rows)  # one step's check: the other steps' results stay
            print(room.summary(everything), file=out)
            print(f"gradebook: {paths['csv']} (also {paths['xml'].name})", file=out)
            return ExitStatus.OK if rows and all(r.result.status is Status.PASS for r in rows) else ExitStatus.FAILED
        if action == "reset":
            room.reset(room.member(args.student))
            print(f"{args.student}: lab reset to the state after provisioning", file=out)
            return ExitStatus.OK
        if action == "down":
            outcomes = room.down()
            print_outcomes(outcomes, "lab down", out)
            return ExitStatus.OK if all(o.ok for o in outcomes) else ExitStatus.FAILED
        if action == "bundle":
            member = room.member(args.student)
            text = room.bundle(member)
            from lab.portal.run import LINK_FILE, new_link

            if args.new_link:
                new_link(room, member.id)
            link_file = room.dir / "students" / member.id / LINK_FILE
            if link_file.is_file():
                text += f"\nportal: {link_file.read_text().strip()}\n"
            print(text, file=out)
            return ExitStatus.OK
        if action == "serve" and args.listen:
            from lab.portal import run as portal
            from lab.portal.serve import parse_listen

            portal.run(room, parse_listen(args.listen), cert=args.cert, key=args.key, every=args.every,
                       stuck_after=args.stuck_after * 60, ssh_port=args.ssh_port,
                       say=lambda line: print(line, file=out, flush=True))
            return ExitStatus.OK
        if action == "serve":
            if args.cert or args.key:
                raise LabError("--cert and --key go with --listen ADDR:PORT (the portal over HTTPS)")
            from lab.classroom.dashboard import serve

            board = ClassBoard(room)
            serve(board, port=args.port, every=args.every, redact=board.redactor.redact,
                  ready=lambda url: print(f"dashboard of class {room.name}: {url} (Ctrl-C stops it)", file=out,
                                          flush=True))
            return ExitStatus.OK
    except KeyboardInterrupt:
        print("reglab: interrupted. Labs may still be booting or running: `reglab class status` shows them, "
              "`reglab class down` removes them.", file=err)
        return ExitStatus.INTERRUPTED
    raise LabError(f"unknown class action {action!r}")
