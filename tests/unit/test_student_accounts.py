"""A student's key on machines given over SSH: an account of the student's own, never the school's.

Sessions and machines are fakes; the shell that takes a key line out runs on a temporary file.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

from lab.classroom.room import Classroom, Member, student_account
from lab.classroom.roster import Student
from lab.common.progress import Progress
from lab.engine import cleanup
from lab.model import manifest
from lab.model.lab import default_scenario


class Recorder:
    def __init__(self, name: str) -> None:
        self.name, self.user, self.commands = name, "teacher", []

    def sudo(self, command: str, **_kwargs: object) -> SimpleNamespace:
        self.commands.append(command)
        return SimpleNamespace(ok=True, stdout="")


def fake_session(makes_machines: bool) -> SimpleNamespace:
    machines = {n: Recorder(n) for n in ("registry", "client")}
    specs = {n: SimpleNamespace(name=n, ip=ip, host=None, port=22) for n, ip in
             (("registry", "10.9.0.5"), ("client", "10.9.0.6"))}
    lab = SimpleNamespace(name="net101-ada", domain="ada.example", machines=list(specs.values()),
                          machine=specs.__getitem__, users=[SimpleNamespace(name="ada", password="pw")])
    ctx = SimpleNamespace(machine=machines.__getitem__)
    return SimpleNamespace(lab=lab, context=lambda: ctx, machines=machines,
                           provider=SimpleNamespace(makes_machines=makes_machines, names=list(machines)))


def classroom(tmp_path: Path) -> tuple[Classroom, Member]:
    (tmp_path / "lab.yml").write_text("provider: docker\n")
    room = Classroom(tmp_path / "lab.yml", "net101", Progress(io.StringIO()))
    given = {"registry": {"ip": "10.9.0.5", "user": "teacher"}, "client": {"ip": "10.9.0.6", "user": "teacher"}}
    return room, Member(Student("ada", machines=given), None, room.dir / "labs" / "ada.yml")


def test_on_given_machines_the_key_goes_to_the_students_own_account_never_the_schools(tmp_path: Path) -> None:
    room, member = classroom(tmp_path)
    session = fake_session(makes_machines=False)
    folder = Path(room.grant(member, session))
    public = (folder / "id_ed25519.pub").read_text().strip()
    for machine in session.machines.values():
        assert len(machine.commands) == 1
        assert machine.commands[0] == student_account("net101-ada", public)
        assert "teacher" not in machine.commands[0]  # nothing written to the school's account
    config = (folder / "ssh_config").read_text()
    assert config.count("  User net101-ada") == 2 and "teacher" not in config


def test_on_machines_reglab_made_the_key_goes_to_their_login_user(tmp_path: Path) -> None:
    room, member = classroom(tmp_path)
    session = fake_session(makes_machines=True)
    folder = Path(room.grant(member, session))
    assert all("~teacher/.ssh/authorized_keys" in m.commands[0] for m in session.machines.values())
    assert "  User teacher" in (folder / "ssh_config").read_text()


def test_the_students_account_is_marked_as_reglabs_and_an_account_of_the_schools_is_refused() -> None:
    command = student_account("net101-ada", "ssh-ed25519 AAAA x")
    mark = cleanup.account_mark("net101-ada")
    assert f"getent passwd net101-ada | cut -d: -f5 | grep -qxF '{mark}' || " in command
    assert "exit 3" in command and f"-c '{mark}' net101-ada" in command
    assert "visudo -cqf" in command and "/etc/sudoers.d/reglab-net101-ada" in command
    assert "runuser -u net101-ada" in command  # the key written as the student, not as root


def test_class_down_takes_exactly_the_students_key_line_out_of_the_login_account(tmp_path: Path) -> None:
    """Where a class made before student accounts left it: other keys, even ones that contain it, stay."""
    room, member = classroom(tmp_path)
    folder = Path(room.grant(member, fake_session(makes_machines=False)))
    public = (folder / "id_ed25519.pub").read_text().strip()
    session = fake_session(makes_machines=False)
    room.revoke_login_key(member, session)
    command = session.machines["registry"].commands[0]
    keys = tmp_path / "authorized_keys"
    keys.write_text(f"ssh-ed25519 SCHOOL teacher\n{public}\n# {public}\nssh-ed25519 OTHER x\n")
    script = command.replace("~teacher/.ssh/authorized_keys", str(keys))
    assert subprocess.run(["bash", "-c", script], capture_output=True).returncode == 0
    assert keys.read_text() == f"ssh-ed25519 SCHOOL teacher\n# {public}\nssh-ed25519 OTHER x\n"
    keys.write_text(f"{public}\n")  # the only line
    assert subprocess.run(["bash", "-c", script], capture_output=True).returncode == 0
    assert keys.read_text() == ""


def test_down_removes_the_account_only_if_it_is_reglabs(tmp_path: Path) -> None:
    """The removal command of lab.engine.cleanup, with getent, pkill, userdel and rm stand-ins on PATH."""
    command = next(c for c in cleanup.commands(
        SimpleNamespace(family=lambda n: SimpleNamespace(ca_anchor_dir="/x", ca_update="true"),
                        images=SimpleNamespace(all=lambda: ["reglab/a:1"]),
                        lab=SimpleNamespace(domain="ada.example", name="net101-ada",
                                            manifest=manifest.load(default_scenario()))),
        "registry", makes_machines=False, remove=True) if "userdel" in c)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    for tool in ("pkill", "userdel", "rm", "sleep"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for gecos, removed in (("reglab lab net101-ada", True), ("Ada Lovelace", False), (None, False)):
        line = "" if gecos is None else f"net101-ada:x:1001:1001:{gecos}:/home/net101-ada:/bin/bash"
        (bin_dir / "getent").write_text(f"#!/bin/sh\nprintf '%s' '{line}'\n[ -n '{line}' ]\n")
        (bin_dir / "getent").chmod(0o755)
        log.write_text("")
        assert subprocess.run(["bash", "-c", command], env=env, capture_output=True).returncode == 0
        done = log.read_text()
        assert ("userdel -r net101-ada" in done) is removed, (gecos, done)
        assert ("rm -f /etc/sudoers.d/reglab-net101-ada" in done) is removed
