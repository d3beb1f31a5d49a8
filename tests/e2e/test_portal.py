"""Issue 19: students in from their own laptops, through the class portal and the SSH gateway.

A class of two (ada, bob) on the docker provider, its own name and pool. A "student laptop" is a network
namespace this test makes, joined to the host by a veth pair on a /30 of its own: it reaches the class
host's address there and nothing else (no route to the labs' networks). The portal listens on that
address over HTTPS (the class's CA) and the SSH gateway beside it.

From the laptop: the system `ssh` with ada's bundle reaches her two machines through the gateway, and is
refused for bob's machines, for another port of her own and for a shell on the host. Chromium (Debian's,
Playwright), trusting the class CA, gets nothing without a link; with ada's link it shows her page, her
terminals take the `hosts` step's commands, Check passes it; a cross-site POST is refused; three failed
checks of her current step show its three hints in order. The instructor's page shows the step passed,
the time on step, and replays the terminal session.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from lab.classroom.room import Classroom
from lab.common.polling import poll
from lab.common.progress import Progress
from lab.engine.session import load_lab
from lab.portal import run as portal
from lab.portal.serve import Listen

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CLASS = "portalgw"
POOL = "10.77.236.0/23"
NETNS = "rgl-laptop"
HOST_IF, LAPTOP_IF = "rglp-h", "rglp-n"
HOST_IP, LAPTOP_IP = "10.83.236.1", "10.83.236.2"
PORTAL_PORT, SSH_PORT, OTHER_SITE_PORT = 8443, 2222, 8999
STUDENTS = ["ada", "bob"]


def sh(*args: str, timeout: int = 60, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture
def laptop():
    """A network namespace that reaches the class host's HOST_IP and nothing else."""
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)
    sh("ip", "netns", "add", NETNS)
    try:
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", LAPTOP_IF)
        sh("ip", "link", "set", LAPTOP_IF, "netns", NETNS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{LAPTOP_IP}/30", "dev", LAPTOP_IF)
        sh("ip", "netns", "exec", NETNS, "ip", "link", "set", LAPTOP_IF, "up")
        sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
        yield NETNS
    finally:
        sh("ip", "link", "del", HOST_IF, check=False)
        sh("ip", "netns", "del", NETNS, check=False)


@pytest.fixture
def classroom(tmp_path, lab_cli, laptop):
    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/certutil").exists():
        pytest.fail("needs Debian's chromium and libnss3-tools (certutil): "
                    "`apt-get install --no-install-recommends chromium libnss3-tools`")
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": "docker"}))
    roster = tmp_path / f"{CLASS}.csv"
    roster.write_text("id\n" + "".join(f"{s}\n" for s in STUDENTS))
    try:
        status, out, err = lab_cli(base, "class", "--name", CLASS, "up", str(roster), "--pool", POOL, "--jobs", "2",
                                      "--students-are-root-on-this-host")
        assert status == 0, out + err
        yield Classroom.open(base, CLASS, Progress(quiet=True))
    finally:
        status, out, err = lab_cli(base, "class", "--name", CLASS, "down")
        assert status == 0, out + err


def laptop_ssh(config: Path, *args: str) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", NETNS, "ssh", "-F", str(config), "-o", "BatchMode=yes", "-o",
              "ConnectTimeout=10", *args, timeout=90, check=False)


def test_students_work_from_their_laptops_through_the_portal_and_the_gateway(classroom, tmp_path):
    room = classroom
    said: list[str] = []
    stop = threading.Event()
    server = threading.Thread(target=portal.run, args=(room, Listen(HOST_IP, PORTAL_PORT)), daemon=True,
                              kwargs={"ssh_port": SSH_PORT, "say": said.append, "stop": stop})
    server.start()
    try:
        assert poll(lambda: any("instructor's link" in line for line in said), 60, 0.2), said
        base_url = f"https://{HOST_IP}:{PORTAL_PORT}"
        instructor_link = next(line for line in said if "instructor's link" in line).split(": ", 1)[1]
        bundles = {s: room.dir / "students" / s for s in STUDENTS}
        ada, bob = room.member("ada"), room.member("bob")
        ada_registry, bob_registry = str(ada.subnet.network_address + 10), str(bob.subnet.network_address + 10)

        # -- ssh from the laptop, through the gateway ------------------------------------------
        config = bundles["ada"] / "ssh_config"
        assert "ProxyJump reglab-gateway" in config.read_text()
        for machine in ("registry", "client"):
            done = laptop_ssh(config, machine, "hostname")
            assert done.returncode == 0, done.stderr
        direct = laptop_ssh(config, "-o", "ProxyJump=none", "registry", "true")
        assert direct.returncode == 255, "the laptop reaches the labs' network without the gateway"
        other = laptop_ssh(config, "-o", f"HostName={bob_registry}", "registry", "true")
        assert other.returncode == 255 and "prohibited" in other.stderr, other.stderr
        # bob's own ssh_config, with ada's key in place of his (ssh adds -o IdentityFile to the config's own)
        borrowed = tmp_path / "bob_config_with_ada_key"
        borrowed.write_text((bundles["bob"] / "ssh_config").read_text().replace(
            str(bundles["bob"] / "id_ed25519"), str(bundles["ada"] / "id_ed25519")))
        bob_via_ada_key = laptop_ssh(borrowed, "registry", "true")
        assert bob_via_ada_key.returncode == 255 and "prohibited" in bob_via_ada_key.stderr, bob_via_ada_key.stderr
        other_port = laptop_ssh(config, "-W", f"{ada_registry}:443", "reglab-gateway")
        assert other_port.returncode == 255 and "prohibited" in other_port.stderr, other_port.stderr
        shell = laptop_ssh(config, "reglab-gateway", "id")
        assert shell.returncode != 0 and "uid=" not in shell.stdout, shell.stdout
        tty = laptop_ssh(config, "-tt", "reglab-gateway")
        assert tty.returncode != 0 and "uid=" not in tty.stdout

        # -- the browser on the laptop ---------------------------------------------------------------
        home = tmp_path / "laptop-home"
        (home / ".pki" / "nssdb").mkdir(parents=True)
        sh("certutil", "-d", f"sql:{home}/.pki/nssdb", "-N", "--empty-password")
        sh("certutil", "-d", f"sql:{home}/.pki/nssdb", "-A", "-t", "C,,", "-n", "reglab class CA", "-i",
           str(bundles["ada"] / "ca.crt"))
        lab = load_lab(ada.lab_file)
        link = (bundles["ada"] / portal.LINK_FILE).read_text().strip()
        assert link.startswith(f"{base_url}/login#")
        plan = {"base": base_url, "link": link, "instructor_link": instructor_link, "student": "ada",
                "other_site": f"http://{LAPTOP_IP}:{OTHER_SITE_PORT}",
                "hosts_command": f"sudo sh -c \"echo '{ada_registry} {lab.domain}' >> /etc/hosts\""}
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        env = {**os.environ, "HOME": str(home)}
        done = subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, str(Path(__file__).with_name(
            "portal_browser.py")), str(tmp_path / "plan.json")], capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        stop.set()
        server.join(30)

    print(json.dumps(seen, indent=1))  # shown by pytest when an assertion below fails
    assert seen["elsewhere"] == [], seen["elsewhere"]
    assert seen["stranger_status"] == 401 and seen["stranger_api"] == 401
    assert "ada" not in seen["stranger_text"] and lab.domain not in seen["stranger_text"]
    assert "#" not in seen["address_bar"], "the link's token stays in the address bar"
    assert lab.domain in seen["client_screen"], seen["client_screen"]
    assert seen["cross_site_statuses"] == [403], seen["cross_site_statuses"]
    assert seen["hint_levels"] == [["1"], ["1", "2"], ["1", "2", "3"]], seen["hint_levels"]
    assert [re.sub(r"\s+", " ", text) for _, text in seen["hints"]] == [
        "Hint 1 (cause)", "Hint 2 (fix)", "Hint 3 (commands)"]
    assert seen["grid_current"].startswith(seen["current_step"])
    assert re.fullmatch(r"\d+ min", seen["grid_time"]), seen["grid_time"]
    assert int(seen["grid_hints"]) >= 3
    assert lab.domain in seen["replay_screen"], seen["replay_screen"]
    assert not seen["errors"], seen["errors"]
    # The hosts step, typed in the terminals, passes on the student's page and in the instructor's grid.
    # NOTE: needs every step graded on its own (issue 19 item 6): a check-only run that stops at the
    # first failed step (local-registry, not done here) leaves `hosts` "not-checked".
    assert seen["hosts_status"] == "pass"
    assert seen["current_step"] != "hosts"
    assert seen["grid_hosts"] == "pass"
    progress = (room.dir / "portal" / "progress.csv").read_text()
    assert "ada,hosts," in progress
    recordings = list((room.dir / "portal" / "sessions" / "ada").glob("*-client.cast"))
    # An echo may come in pieces: the screen is the events' output joined (asciicast v2: [time, "o", data]).
    screens = ["".join(e[2] for e in map(json.loads, r.read_text().splitlines()[1:]) if e[1] == "o")
               for r in recordings]
    assert recordings and any(lab.domain in screen for screen in screens), screens
