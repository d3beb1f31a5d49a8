"""Issue 9: a class of four on one host, from one checkout.

`reglab class up` boots four labs in parallel from a roster. Each student's
key opens their own two machines and not another student's; one lab's
machines cannot reach another's. A step done in every lab and then broken
by hand in one shows as a failure for that student only: in the gradebook,
and on the dashboard in a real browser (Debian's Chromium, Playwright).
`reglab class down` leaves no container or network behind.
"""

from __future__ import annotations

import csv
import shlex
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from lab.classroom.dashboard import serve
from lab.classroom.room import ClassBoard, Classroom
from lab.common.progress import Progress

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
STUDENTS = ["ada", "bob", "cyd", "dee"]


def ssh(bundle: Path, machine: str, command: str, key: Path | None = None, host: str | None = None) -> int:
    """The system's ssh with a student's bundle; another student's key or machine when given."""
    args = ["ssh", "-F", str(bundle / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if key is not None:
        args += ["-o", f"IdentityFile={key}"]
    target = machine if host is None else host
    if host is not None:
        args += ["-o", "User=vagrant", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-i", str(key or bundle / "id_ed25519"), "-o", "IdentitiesOnly=yes"]
    return subprocess.run([*args, target, command], capture_output=True, timeout=60).returncode


def grades(room: Classroom) -> dict[tuple[str, str], str]:
    with (room.dir / "gradebook.csv").open(newline="") as handle:
        return {(row["student"], row["step"]): row["result"] for row in csv.DictReader(handle)}


@pytest.fixture
def classroom(lab_session, tmp_path, lab_cli):
    if lab_session.lab.provider != "docker":
        pytest.fail(f"the class test boots its labs on the docker provider, not {lab_session.lab.provider}")
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": "docker", "images": {"source": lab_session.lab.images.source}}))
    roster = tmp_path / "net101.csv"
    roster.write_text("id,name\n" + "".join(f"{s},{s.title()} Lovelace\n" for s in STUDENTS))
    try:
        yield base, roster
    finally:
        status, out, err = lab_cli(base, "class", "--name", "net101", "down")
        assert status == 0, out + err


def test_a_class_of_four_is_booted_isolated_graded_and_removed(classroom, lab_cli):
    base, roster = classroom
    # The docker provider makes each student root on this host: the class test says it knows.
    status, out, err = lab_cli(base, "class", "up", str(roster), "--jobs", "4", "--students-are-root-on-this-host")
    assert status == 0, out + err
    assert "lab up: 4 of 4 ok" in out, out
    room = Classroom.open(base, None, Progress(quiet=True))
    assert [m.id for m in room.members] == STUDENTS
    assert len({m.subnet for m in room.members}) == 4  # a /24 each
    bundles = {s: room.dir / "students" / s for s in STUDENTS}
    assert all((b / "id_ed25519").stat().st_mode & 0o777 == 0o600 for b in bundles.values())

    # Each student's key opens their own machines, not another student's.
    ada, bob = room.member("ada"), room.member("bob")
    assert ssh(bundles["ada"], "registry", "true") == 0
    assert ssh(bundles["ada"], "client", "true") == 0
    bob_registry = str(bob.subnet.network_address + 10)
    assert ssh(bundles["bob"], "registry", "true", host=bob_registry) == 0
    assert ssh(bundles["ada"], "registry", "true", key=bundles["ada"] / "id_ed25519", host=bob_registry) == 255

    # One lab's machines cannot reach another's: ada's client reaches her registry, not bob's.
    probe = "timeout 5 bash -c '</dev/tcp/{}/22' && echo open || echo closed"
    ada_registry = str(ada.subnet.network_address + 10)
    assert _on(bundles["ada"], "client", probe.format(ada_registry)) == "open"
    assert _on(bundles["ada"], "client", probe.format(bob_registry)) == "closed"
    bob_bridge = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "net101-bob-registry"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    assert bob_bridge and _on(bundles["ada"], "client", probe.format(bob_bridge)) == "closed", bob_bridge
    # ...because bridged traffic meets iptables here (else `class up` refuses: issue 17, item 4).
    assert Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"

    # Rules that name old addresses (as after a dockerd restart) are made again by the next command.
    # Both labs' rules go stale (each lab's rules drop its machines' traffic both ways), so the two meet...
    ada_bridge = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "net101-ada-registry"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    _stale_rules("reglab-lab:net101-ada", "172.17.255.254")
    _stale_rules("reglab-lab:net101-bob", "172.17.255.253")
    assert _on(bundles["ada"], "client", probe.format(bob_bridge)) == "open", "stale rules still held"
    # ...until ada runs a command: her lab's rules are made for her machines' addresses now.
    lab_cli(room.member("ada").lab_file, "check", "hosts")  # not solved yet (exit 1); the rules are what counts
    rules = subprocess.run(["iptables", "-w", "10", "-S", "DOCKER-USER"], capture_output=True, text=True,
                           timeout=30).stdout
    assert f"-s {ada_bridge}/32" in rules and "172.17.255.254" not in rules, rules
    assert _on(bundles["ada"], "client", probe.format(bob_bridge)) == "closed", bob_bridge
    lab_cli(room.member("bob").lab_file, "check", "hosts")
    assert "172.17.255.253" not in subprocess.run(["iptables", "-w", "10", "-S", "DOCKER-USER"], capture_output=True,
                                                  text=True, timeout=30).stdout

    # Every student does the `hosts` step; the class check passes it for all.
    for student in STUDENTS:
        status, out, err = lab_cli(room.member(student).lab_file, "solve", "hosts")
        assert status == 0, out + err
    status, out, err = lab_cli(base, "class", "check", "hosts")
    assert status == 0, out + err
    assert all(grades(room)[(s, "hosts")] == "pass" for s in STUDENTS)

    # The dashboard, in a real browser: every row; bob breaks his step by hand; Check now shows it.
    stop = threading.Event()
    urls: list[str] = []
    ready = threading.Event()
    server = threading.Thread(target=serve, args=(ClassBoard(room),),
                              kwargs={"ready": lambda url: (urls.append(url), ready.set()), "stop": stop},
                              daemon=True)
    server.start()
    try:
        assert ready.wait(30), "the dashboard did not start"
        _browse(urls[0], lambda: _break_hosts(bundles["bob"]))
    finally:
        stop.set()
        server.join(30)
    book = grades(room)
    assert book[("bob", "hosts")] == "fail"
    assert all(book[(s, "hosts")] == "pass" for s in STUDENTS if s != "bob"), book
    status, out, err = lab_cli(base, "class", "check", "hosts")
    assert status == 1 and "bob" in out, out + err

    status, out, err = lab_cli(base, "class", "down")
    assert status == 0, out + err
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=org.reglab.lab"], capture_output=True,
                          text=True, timeout=30).stdout.split()
    names = subprocess.run(["docker", "inspect", "-f", "{{.Name}}", *left], capture_output=True, text=True,
                           timeout=30).stdout if left else ""
    assert "net101-" not in names, names
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                              timeout=30).stdout
    assert not [n for n in networks.split() if any(str(m.subnet) in n for m in room.members)], networks


def _stale_rules(tag: str, old_address: str) -> None:
    """A lab's DOCKER-USER rules swapped for ones naming an address its machines no longer have."""
    rules = subprocess.run(["iptables", "-w", "10", "-S", "DOCKER-USER"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.splitlines()
    ours = [r for r in rules if r.startswith("-A ") and tag in r]
    assert ours, rules
    for rule in ours:
        subprocess.run(["iptables", "-w", "10", "-D", *shlex.split(rule)[1:]], check=True, timeout=30)
    for side in ("-s", "-d"):
        subprocess.run(["iptables", "-w", "10", "-I", "DOCKER-USER", "-i", "docker0", "-o", "docker0", side,
                        old_address, "-m", "comment", "--comment", tag, "-j", "DROP"], check=True, timeout=30)


def _on(bundle: Path, machine: str, command: str, sudo: bool = False) -> str:
    wrapped = f"sudo sh -c {shlex.quote(command)}" if sudo else command
    done = subprocess.run(["ssh", "-F", str(bundle / "ssh_config"), "-o", "BatchMode=yes", machine, wrapped],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def _break_hosts(bundle: Path) -> None:
    """What a student might do by mistake: the registry's line gone from the client's /etc/hosts.

    NOTE: /etc/hosts is a bind mount in a container, so it is rewritten in place (sed -i renames)."""
    _on(bundle, "client", "grep -v myregistrydomain.com /etc/hosts > /tmp/hosts; cat /tmp/hosts > /etc/hosts",
        sudo=True)
    assert _on(bundle, "client", "grep -c myregistrydomain.com /etc/hosts; true") == "0"


def _browse(url: str, break_step) -> None:  # noqa: ANN001
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed; `python -m lab.machines.hostsetup --browser` installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            for student in STUDENTS:
                expect(page.locator(f'[data-student="{student}"][data-step="hosts"]')).to_have_attribute(
                    "data-status", "pass")
            break_step()
            page.get_by_role("button", name="Check now", exact=True).click()
            cell = page.locator('[data-student="bob"][data-step="hosts"]')
            expect(cell).to_have_attribute("data-status", "fail", timeout=120_000)
            title = cell.get_attribute("title") or ""
            assert "bob.myregistrydomain.com resolves to the registry machine" in title, title
            expect(page.locator('[data-student="ada"][data-step="hosts"]')).to_have_attribute("data-status", "pass")
        finally:
            browser.close()
