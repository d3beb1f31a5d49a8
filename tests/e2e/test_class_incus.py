"""Issue 17: a class of four on Incus, isolated, graded and removed, with no root option.

test_class.py's class, on unprivileged Incus containers: `reglab class up`
accepts it without `--students-are-root-on-this-host`. Each student's key
opens their own two machines and not another student's; one student's
client reaches neither another student's machines nor the host's address on
their bridge; a step done by all and broken by hand in one lab fails for that
student only; root in a student's machine is an unmapped uid on the host;
`class down` leaves no container, network, image or firewall rule of the
class (the shared base and warm images stay: other labs start from them).

Its pool (10.82.0.0/16) and class name keep it apart from the docker class
(net101 on 10.77.0.0/16) and from the e2e-incus labs (10.78.33/34.0/24).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.classroom.room import Classroom
from lab.common.progress import Progress
from lab.machines import incus

pytestmark = pytest.mark.e2e

STUDENTS = ["ada", "bob", "cyd", "dee"]
CLASS = "incus101"
POOL = "10.82.0.0/16"
MARK = "31337.26"  # `sleep MARK`: started with sudo in bob's client, found again on the host


def _ssh(bundle: Path, machine: str, command: str, key: Path | None = None, host: str | None = None) -> int:
    """The system's ssh with a student's bundle; another student's key or machine when given."""
    args = ["ssh", "-F", str(bundle / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if host is not None:
        args += ["-o", "User=vagrant", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-i", str(key or bundle / "id_ed25519"), "-o", "IdentitiesOnly=yes"]
    elif key is not None:
        args += ["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes"]
    return subprocess.run([*args, host or machine, command], capture_output=True, timeout=60).returncode


def _on(bundle: Path, machine: str, command: str, sudo: bool = False) -> str:
    wrapped = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
    done = subprocess.run(["ssh", "-F", str(bundle / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                           machine, wrapped], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def _incus_json(*args: str):  # noqa: ANN202
    out = subprocess.run(["incus", *args, "--format", "json"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _grades(room: Classroom) -> dict[tuple[str, str], str]:
    import csv

    with (room.dir / "gradebook.csv").open(newline="") as handle:
        return {(row["student"], row["step"]): row["result"] for row in csv.DictReader(handle)}


def _host_pids(mark: str) -> list[str]:
    """The host's pids of `sleep MARK`, whatever namespace they run in."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", mark.encode()]:
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.fixture
def classroom(lab_session, tmp_path, lab_cli):
    if lab_session.lab.provider != "incus":
        pytest.fail(f"test_class_incus.py boots its class on incus, not {lab_session.lab.provider} "
                    "(tox -e e2e-incus sets REGLAB_PROVIDER=incus)")
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": "incus", "images": {"source": lab_session.lab.images.source}}))
    roster = tmp_path / f"{CLASS}.csv"
    roster.write_text("id,name\n" + "".join(f"{s},{s.title()} Hopper\n" for s in STUDENTS))
    try:
        yield base, roster
    finally:
        status, out, err = lab_cli(base, "class", "--name", CLASS, "down")
        assert status == 0, out + err


def test_a_class_of_four_on_incus_is_booted_isolated_graded_and_removed(classroom, lab_cli):
    base, roster = classroom
    # No root option: a class on Incus is accepted as it is.
    status, out, err = lab_cli(base, "class", "up", str(roster), "--pool", POOL, "--jobs", "4")
    assert status == 0, out + err
    assert "lab up: 4 of 4 ok" in out, out
    room = Classroom.open(base, None, Progress(quiet=True))
    assert [m.id for m in room.members] == STUDENTS
    subnets = {m.id: m.subnet for m in room.members}
    assert len(set(subnets.values())) == 4 and all(str(s).startswith("10.82.") for s in subnets.values()), subnets
    bundles = {s: room.dir / "students" / s for s in STUDENTS}
    assert all((b / "id_ed25519").stat().st_mode & 0o777 == 0o600 for b in bundles.values())
    registry = {s: str(subnets[s].network_address + 10) for s in STUDENTS}
    client = {s: str(subnets[s].network_address + 11) for s in STUDENTS}

    # Each student's key opens their own registry and client, and is refused by another's.
    for student in STUDENTS:
        assert _ssh(bundles[student], "registry", "true") == 0, student
        assert _ssh(bundles[student], "client", "true") == 0, student
    assert _ssh(bundles["bob"], "registry", "true", host=registry["bob"]) == 0  # the check can tell a good key
    for other in ("bob", "cyd"):
        for ip in (registry[other], client[other]):
            assert _ssh(bundles["ada"], "", "true", key=bundles["ada"] / "id_ed25519", host=ip) == 255, ip

    # From ada's client: her registry answers; no other student's machine, nor the host on their bridge.
    probe = "timeout 5 bash -c '</dev/tcp/{}/22' && echo open || echo closed"
    assert _on(bundles["ada"], "client", probe.format(registry["ada"])) == "open"
    for other in ("bob", "cyd", "dee"):
        for ip in (registry[other], client[other], str(subnets[other].network_address + 1)):
            assert _on(bundles["ada"], "client", probe.format(ip)) == "closed", f"ada's client reaches {ip}"

    # Every student does `hosts`; the class check passes it for all four.
    for student in STUDENTS:
        status, out, err = lab_cli(room.member(student).lab_file, "solve", "hosts")
        assert status == 0, out + err
    status, out, err = lab_cli(base, "class", "check", "hosts")
    assert status == 0, out + err
    assert all(_grades(room)[(s, "hosts")] == "pass" for s in STUDENTS), _grades(room)

    # bob breaks his step by hand: only his row turns to fail.
    _on(bundles["bob"], "client", "grep -v myregistrydomain.com /etc/hosts > /tmp/hosts; cat /tmp/hosts > /etc/hosts",
        sudo=True)
    assert _on(bundles["bob"], "client", "grep -c myregistrydomain.com /etc/hosts; true") == "0"
    status, out, err = lab_cli(base, "class", "check", "hosts")
    assert status == 1 and "bob" in out, out + err
    book = _grades(room)
    assert book[("bob", "hosts")] == "fail", book
    assert all(book[(s, "hosts")] == "pass" for s in STUDENTS if s != "bob"), book

    # Root in a student's machine is not root on the host.
    assert not _host_pids(MARK), "a sleep of this test's mark runs already"
    _on(bundles["bob"], "client", f"nohup sleep {MARK} >/dev/null 2>&1 &", sudo=True)
    try:
        assert _on(bundles["bob"], "client", f"pgrep -u root -f 'sleep {MARK}' >/dev/null && echo root") == "root"
        found = _host_pids(MARK)
        assert len(found) == 1, found
        status_text = Path(f"/proc/{found[0]}/status").read_text()
        uids = [int(u) for u in re.search(r"^Uid:\s+(.*)$", status_text, re.M).group(1).split()]
        assert all(u >= 100000 for u in uids), f"sudo in bob's machine is uid {uids} on the host"
    finally:
        _on(bundles["bob"], "client", f"pkill -f 'sleep {MARK}'", sudo=True)

    # What each lab made, read before `class down` removes its files.
    from lab.engine.session import Session

    made = []
    for member in room.members:
        session = Session.from_file(member.lab_file, lock=False)
        made.append((str(session.lab.state_dir), session.provider.bridge))
    kept = {i["fingerprint"] for i in _incus_json("image", "list")
            if (i.get("properties") or {}).get(incus.KIND_KEY) in ("base", "warm")
            or (i.get("properties") or {}).get(incus.STATE_KEY) is None}

    status, out, err = lab_cli(base, "class", "down")
    assert status == 0, out + err
    states = {state for state, _ in made}
    bridges = {bridge for _, bridge in made}
    left = [i["name"] for i in _incus_json("list")
            if (i.get("config") or {}).get(incus.STATE_KEY) in states or i["name"].startswith(f"{CLASS}-")]
    assert not left, left
    networks = [n["name"] for n in _incus_json("network", "list")]
    assert not bridges & set(networks), networks
    images = [i["fingerprint"] for i in _incus_json("image", "list")
              if (i.get("properties") or {}).get(incus.STATE_KEY) in states or i["fingerprint"] not in kept]
    assert not images, images
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=60, check=True).stdout
    left_rules = [line for line in rules.splitlines()
                  if "10.82." in line or any(f"{incus.RULE_TAG}:{b}" in line for b in bridges)]
    assert not left_rules, left_rules
