"""The `reglab` command line, declared: every command, option and bound, and argparse's errors as exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from lab.classroom import CHECK_TIMEOUT, JOBS
from lab.classroom.roster import MAX_STUDENTS
from lab.machines.boxes import PROVIDERS as BOX_PROVIDERS
from lab.model.lab import EDITIONS, IMAGE_SOURCES, OS_FAMILIES, PROVIDERS
from lab.model.platforms import PLATFORMS


class _Parser(argparse.ArgumentParser):
    """argparse writing to main()'s streams, so in-process callers see its messages."""

    out: TextIO = sys.stdout
    err: TextIO = sys.stderr

    def _print_message(self, message: str, file: TextIO | None = None) -> None:  # noqa: ARG002
        if message:
            (self.err if file is sys.stderr else self.out).write(message)


CHECK_TIMEOUT_MAX = 3600  # an hour: a lab that has not answered by then will not; also keeps waits finite


EVERY_MAX = 86400  # a day between re-checks of the dashboard


PORT_MAX = 65535


def whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, else argparse's usage error (exit 2).

    Checked where the option is read, so `--timeout 0` or `--jobs -1` never reaches
    a thread pool or a wait that would misbehave on it.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = what  # argparse's own messages name the type by it
    return parse


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
    parser.add_argument("--platform", metavar="PLATFORM[,PLATFORM]",
                        help=f"override the lab's platform ({', '.join(PLATFORMS)}); `run` takes several, "
                             "comma-separated: one lab per platform, and a matrix in the maintainer's report")
    parser.add_argument("--images", choices=IMAGE_SOURCES, help="where the lab's images come from")
    parser.add_argument("--fresh", action="store_true",
                        help="provision new machines from nothing, not from a warm image (REGLAB_START=fresh)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="write a commented lab.yml to start from (with --class, a class's too)")
    init.add_argument("folder", nargs="?", type=Path, default=Path("."), metavar="FOLDER",
                      help="where to write it (default: here)")
    init.add_argument("--class", dest="roster", metavar="ROSTER",
                      help="also a class's base lab file (class-lab.yml) and an example roster named ROSTER "
                           "(net101.csv, or .yml for YAML)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    setup = sub.add_parser("setup-host", help="install and start what this host needs for the lab's provider "
                           "(Debian or Ubuntu, as root or with passwordless sudo); elsewhere, say what to install")
    setup.add_argument("--browser", action="store_true",
                       help="also Debian's Chromium, for the dashboard's browser tests")
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
    run.add_argument("--jobs", type=whole_number(1, len(PLATFORMS), "a number of platform labs"),
                     help="with --platform A,B: how many platform labs run at once (default: every platform, "
                          "at most one per CPU and per free 1.5 GiB of memory on the docker provider)")
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
    class_up.add_argument("--jobs", type=whole_number(1, MAX_STUDENTS, "a number of labs"), default=JOBS,
                          help=f"labs booted at once, 1 to {MAX_STUDENTS} (default {JOBS})")
    class_up.add_argument("--students-are-root-on-this-host", action="store_true",
                          help="start a class on the docker provider anyway: its machines are privileged "
                               "containers and students have sudo in them, so each student is root on this host")
    class_sub.add_parser("status", help="each student's lab and its machines' state")
    class_check = class_sub.add_parser("check", help="grade every student's lab (observe-only); write the gradebook")
    target = class_check.add_mutually_exclusive_group(required=True)
    target.add_argument("step", nargs="?")
    target.add_argument("--all", action="store_true")
    class_check.add_argument("--jobs", type=whole_number(1, MAX_STUDENTS, "a number of labs"), default=8,
                             help=f"labs graded at once, 1 to {MAX_STUDENTS} (default 8)")
    class_check.add_argument("--timeout", type=whole_number(1, CHECK_TIMEOUT_MAX, "a whole number of seconds"),
                             default=CHECK_TIMEOUT,
                             help=f"seconds before an unanswering lab is a failed row, 1 to {CHECK_TIMEOUT_MAX} "
                                  f"(default {CHECK_TIMEOUT})")
    class_reset = class_sub.add_parser("reset", help="a student's lab back to the state after provisioning")
    class_reset.add_argument("student")
    class_sub.add_parser("down", help="destroy every lab of the class and the students' keys (the gradebook stays)")
    class_bundle = class_sub.add_parser("bundle", help="what to hand a student: ssh_config, key, registry login")
    class_bundle.add_argument("student")
    class_bundle.add_argument("--new-link", action="store_true",
                              help="give the student a new portal link (the old one stops working at once)")
    class_serve = class_sub.add_parser("serve", help="the class portal: the instructor's view and each student's "
                                                     "page (HTTPS off loopback)")
    class_serve.add_argument("--port", type=whole_number(0, PORT_MAX, "a TCP port"), default=8765,
                             help="the TCP port on 127.0.0.1, 0 for any free one (default 8765)")
    class_serve.add_argument("--every", type=whole_number(1, EVERY_MAX, "a whole number of seconds"),
                             help=f"re-check every N seconds, 1 to {EVERY_MAX} (default: on demand only)")
    class_serve.add_argument("--listen", metavar="ADDR:PORT",
                             help="serve the portal on this address, over HTTPS unless it is loopback (students "
                                  "log in with their links); without it, the dashboard on 127.0.0.1:--port")
    class_serve.add_argument("--cert", type=Path, help="with --listen: your own certificate (PEM) instead of one "
                                                       "from the class's CA")
    class_serve.add_argument("--key", type=Path, help="with --cert: its private key (PEM)")
    class_serve.add_argument("--ssh-port", type=whole_number(1, PORT_MAX, "a TCP port"),
                             help="with --listen: also run the class's SSH gateway (OpenSSH) on this port of the same "
                                  "address; the bundles' ssh_config then reach the machines through it")
    class_serve.add_argument("--stuck-after", type=whole_number(1, 24 * 60, "a whole number of minutes"), default=15,
                             help="with --listen: minutes on one step before a student is shown stuck (default 15)")
    image = sub.add_parser("image", help="build images on the host")
    image_sub = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    build = image_sub.add_parser("build", help="build an image: node (the machine image) or lab")
    build.add_argument("what", choices=("node", "lab"))
    build.add_argument("--from", dest="base_from", choices=("auto", "hub", "debootstrap"), default="auto",
                       help="node only: debian:SUITE from Docker Hub, or debootstrap from the Debian mirror")
    box = sub.add_parser("box", help="build Vagrant boxes on the host")
    box_sub = box.add_subparsers(dest="box_command", required=True, metavar="ACTION")
    box_build = box_sub.add_parser(
        "build", help="build the lab platform's Debian box from Debian packages (as root) and add it to Vagrant")
    box_build.add_argument("--provider", dest="box_provider", choices=(*BOX_PROVIDERS, "all"),
                           help="the box's provider (default: the lab's, when libvirt or virtualbox; else all)")
    box_build.add_argument("--os", dest="box_os", choices=OS_FAMILIES, help="default: the lab's `os`")
    box_build.add_argument("--no-add", dest="box_add", action="store_false", help="build only; no `vagrant box add`")
    return parser
