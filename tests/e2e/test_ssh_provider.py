"""Issue 10 on machines reglab did not boot: `provider: ssh`.

The test makes two plain machines itself, without Vagrant: containers of the
node image (systemd, sshd, a Docker daemon inside) started with `docker run`
on a network it creates, with an account of its own that has a key and, at
first, no sudo. It writes a lab file with `provider: ssh` pointing at them and
runs the whole tutorial; then `reglab down`, and the machines must still run
and hold nothing of the lab, while what the "school" had on them stays: its own
`registry` container from its own `registry:2` (data in its volume), and one with
no restart policy, both still running with their data after `reset`, `class down`
and `down`. The lab lives in a folder with a space and a `%` in its name, which
the system's ssh must read from reglab's ssh_config and a student's bundle; and
after `class down` no student key is left in any account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import yaml

from lab.common.sshkeys import new_key
from lab.machines.images import MACHINE_ARGS  # what makes a container a machine here
from lab.machines.provision import RESTART_DROPIN

pytestmark = pytest.mark.e2e

SUBNET = "192.168.77"
MACHINES = {"registry": f"{SUBNET}.10", "client": f"{SUBNET}.11"}
USER = "teacher"
# The session's REGLAB_PROVIDER (docker here) would override the lab file's provider; a class (no option)
# decides per student (given machines: ssh).
AS_SSH = ("--provider", "ssh")


def docker(*args: str, timeout: int = 120, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def on(container: str, command: str, timeout: int = 120, check: bool = True) -> str:
    return docker("exec", container, "sh", "-c", command, timeout=timeout, check=check)


@pytest.fixture
def given_machines(lab_session, tmp_path):
    """Two plain machines on a network of the test's own; removed afterwards whatever happens."""
    node = lab_session.builder.node()
    tag = f"reglab-e2e-ssh-{os.getpid()}"
    names = {role: f"{tag}-{role}" for role in MACHINES}
    docker("network", "create", "--subnet", f"{SUBNET}.0/24", "--gateway", f"{SUBNET}.1", tag)
    try:
        for role, ip in MACHINES.items():
            docker("run", "-d", "--name", names[role], "--hostname", role, "--network", tag, "--ip", ip,
                   *MACHINE_ARGS, node, "/sbin/init")
        public = new_key(tmp_path / "teacher_key")
        for container in names.values():
            deadline = time.monotonic() + 120
            while on(container, "systemctl is-active ssh", check=False) != "active":
                assert time.monotonic() < deadline, f"{container}: sshd did not start"
                time.sleep(1)
            on(container, f"useradd -m -s /bin/bash {USER} && install -d -m 0700 -o {USER} -g {USER} "
                          f"/home/{USER}/.ssh && echo '{public}' > /home/{USER}/.ssh/authorized_keys && "
                          f"chown {USER}: /home/{USER}/.ssh/authorized_keys && chmod 600 "
                          f"/home/{USER}/.ssh/authorized_keys")
        yield names
    finally:
        for container in names.values():
            docker("rm", "-f", "-v", container, check=False)
        docker("network", "rm", tag, check=False)


def system_ssh(config, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    """The system's OpenSSH client with one ssh_config and nothing of the user's own."""
    assert shutil.which("ssh"), "the system's ssh client is needed here (apt-get install openssh-client)"
    return subprocess.run(["ssh", "-F", str(config), "-n", "-o", "BatchMode=yes", *args],
                          capture_output=True, text=True, timeout=60)


def school_containers(container: str, base_image: str) -> None:
    """What a school runs beside the lab: its own `registry:2` (not the lab's image, nothing of reglab's
    in it), a container of it named `registry` with data in its volume, one with no restart policy."""
    on(container, f"docker create --name school-src {base_image} /bin/sh >/dev/null && "
                  "docker export school-src | docker import -c 'VOLUME /var/lib/registry' "
                  "-c 'CMD [\"/bin/sh\", \"-c\", \"sleep 1000000\"]' - registry:2 >/dev/null && "
                  "docker rm school-src >/dev/null && "
                  "docker run -d --name registry --restart always registry:2 >/dev/null && "
                  "docker run -d --name school-web registry:2 >/dev/null && "
                  "docker exec registry sh -c 'echo school-data > /var/lib/registry/keep'")


def school_containers_kept(container: str, when: str) -> None:
    for name in ("registry", "school-web"):
        running = docker("exec", container, "docker", "inspect", "-f", "{{.State.Running}}", name, check=False)
        assert running == "true", f"after {when}, the school's {name} is not running: {running!r}"
    data = on(container, "docker exec registry cat /var/lib/registry/keep", check=False)
    assert data == "school-data", f"after {when}, the school's registry lost its data: {data!r}"


def test_the_whole_tutorial_runs_on_given_machines_and_down_leaves_them_running_and_clean(
        lab_session, given_machines, tmp_path, lab_cli, capfd):
    folder = tmp_path / "school lab %d"  # a space and an OpenSSH token in every path reglab writes
    folder.mkdir()
    shutil.copy(tmp_path / "teacher_key", folder / "teacher_key")
    (folder / "teacher_key").chmod(0o600)
    lab_file = folder / "lab.yml"
    lab_file.write_text(yaml.safe_dump({
        "name": "givenlab",
        "provider": "ssh",
        "images": {"source": lab_session.lab.images.source},
        "machines": {role: {"ip": ip, "user": USER, "identity_file": "teacher_key"}
                     for role, ip in MACHINES.items()},
    }))

    # No sudo yet: `up` says exactly that, for each machine, and how to give it.
    status, out, err = lab_cli(lab_file, *AS_SSH, "up")
    assert status == 2, out + err
    for role, ip in MACHINES.items():
        assert f"{role} ({USER}@{ip}:22): {USER} has no passwordless sudo" in err, err
    assert f"{USER} ALL=(ALL) NOPASSWD: ALL" in err
    for container in given_machines.values():
        on(container, f"echo '{USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{USER} && "
                      f"chmod 440 /etc/sudoers.d/{USER}")

    status, out, err = lab_cli(lab_file, *AS_SSH, "run")
    assert status == 0, out + err
    assert "modern: 11 passed, 0 failed, 0 not run" in out, out
    status, out, err = lab_cli(lab_file, *AS_SSH, "status")
    assert status == 0 and out.count(" ssh ") == 2 and out.count(" running ") == 2, out
    state = folder / ".lab" / "givenlab"
    known = (state / "known_hosts").read_text()
    assert all(f"{ip} ssh-" in known for ip in MACHINES.values()), known  # both keys kept (trust on first use)
    for role in MACHINES:  # each first-use key's fingerprint said once, as OpenSSH prints it
        log = (state / "logs" / f"{role}.log").read_text()
        assert log.count("trusted on first use") == 1 and f"{role}: host key ssh-ed25519 SHA256:" in log, log[-2000:]

    # The lab's folder has a space and a `%`: reglab's own connections and the system's ssh both get there.
    capfd.readouterr()
    status, out, err = lab_cli(lab_file, *AS_SSH, "ssh", "registry", "--", "whoami")
    shown = capfd.readouterr().out  # the command's own output goes to the terminal
    assert status == 0 and shown.strip().splitlines()[-1] == USER, shown + out + err
    done = system_ssh(state / "ssh_config", "registry", "whoami")  # what `reglab ssh registry` runs
    assert done.returncode == 0 and done.stdout.strip() == USER, done.stderr
    # A pinned host key that is not the machine's: refused before logging in, by name.
    pinned = yaml.safe_load(lab_file.read_text())
    pinned["machines"]["client"]["host_key"] = "SHA256:" + "A" * 43
    pinned_file = folder / "pinned.yml"
    pinned_file.write_text(yaml.safe_dump({**pinned, "name": "pinnedlab"}))
    status, out, err = lab_cli(pinned_file, *AS_SSH, "ssh", "client", "--", "true")
    assert status == 1 and "the lab file pins SHA256:AAAA" in err and "refused before logging in" in err, out + err

    # What the school keeps on its machines, which reset and down must leave alone.
    registry = given_machines["registry"]
    on(registry, "echo '10.9.9.9 school.example' >> /etc/hosts && echo keep > /root/school-data && "
                 "tar -cf - -T /dev/null | docker import - school/empty:1 >/dev/null && "
                 "docker create --name school-keep school/empty:1 /nothing >/dev/null")

    # Reset works as on Vagrant machines: the steps are undone, and can be done again.
    status, out, err = lab_cli(lab_file, *AS_SSH, "reset")
    assert status == 0, out + err
    status, out, err = lab_cli(lab_file, *AS_SSH, "check", "hosts")
    assert status == 1, out + err
    status, out, err = lab_cli(lab_file, *AS_SSH, "solve", "--all")
    assert status == 0 and "11 passed, 0 failed" in out, out + err

    # The school's own registry and a container without a restart policy survive a reset, data and all.
    base_image = lab_session.state.images.base
    school_containers(registry, base_image)
    status, out, err = lab_cli(lab_file, *AS_SSH, "reset")
    assert status == 0, out + err
    school_containers_kept(registry, "reset")

    # A class whose students' machines are given over SSH, one of them on a host that does not answer:
    # graded in parallel, the unreachable one a failed row within its timeout, not a stalled class.
    roster = folder / "given.yml"
    roster.write_text(yaml.safe_dump([
        {"id": "ada", "machines": {role: {"ip": ip, "user": USER, "identity_file": "teacher_key"}
                                   for role, ip in MACHINES.items()}},
        {"id": "bob", "machines": {role: {"ip": f"{SUBNET}.{99 + i}", "user": USER, "identity_file": "teacher_key"}
                                   for i, role in enumerate(MACHINES)}},
    ]))
    base = folder / "class-base.yml"
    base.write_text(yaml.safe_dump({"images": {"source": lab_session.lab.images.source}}))
    status, out, err = lab_cli(base, "class", "up", str(roster))
    assert status == 1, out + err
    assert "ada" in out and "lab up: 1 of 2 ok, 1 failed" in out, out
    # ada's key opens an account of her own (with sudo, as the tutorial needs), through her bundle's
    # ssh_config (in a folder with a space and a `%`) and the system's ssh; never the school's account.
    bundle = folder / ".class" / "given" / "students" / "ada"
    public = (bundle / "id_ed25519.pub").read_text().split()[1]
    for role in MACHINES:
        done = system_ssh(bundle / "ssh_config", role, "whoami && sudo -n true && echo sudo-ok")
        assert done.returncode == 0 and done.stdout.split() == ["given-ada", "sudo-ok"], done.stdout + done.stderr
    for container in given_machines.values():
        assert on(container, f"grep -c {public} /home/{USER}/.ssh/authorized_keys", check=False) == "0"
    started = time.monotonic()
    status, out, err = lab_cli(base, "class", "check", "--all", "--timeout", "40")
    took = time.monotonic() - started
    assert status == 1, out + err
    rows = (folder / ".class" / "given" / "gradebook.csv").read_text().splitlines()
    assert sum(",unreachable," in r for r in rows if r.startswith("bob,")) == 11, rows
    assert not any(",unreachable," in r for r in rows if r.startswith("ada,")), rows
    assert took < 40 + 30, f"the class check took {took:.0f}s with one host unreachable"
    status, out, err = lab_cli(base, "class", "down")
    assert status == 1 and "bob" in out, out + err  # bob's machines cannot be cleaned: said, not hidden
    for container in given_machines.values():  # no student key in any account, and her account gone
        found = on(container, f"grep -rlF {public} /root /home /etc/ssh 2>/dev/null; getent passwd given-ada; true")
        assert found == "", f"{container} still holds ada's key or account: {found!r}"
    school_containers_kept(registry, "class down")

    status, out, err = lab_cli(lab_file, *AS_SSH, "down")
    assert status == 0, out + err
    assert "machines left running" in out, out
    school_containers_kept(registry, "down")
    for role, container in given_machines.items():
        assert docker("inspect", "-f", "{{.State.Running}}", container) == "true", f"{role} was stopped"
        left = on(container, "docker ps -a --format '{{.Names}}'; docker image ls --format '{{.Repository}}'; "
                             f"ls -d {lab_session.lab.manifest.workdir} /var/lib/reglab {RESTART_DROPIN} "
                             "/usr/local/share/ca-certificates/devdockerCA.crt /root/devdockerCA.crt 2>/dev/null; "
                             "grep myregistrydomain.com /etc/hosts; true")
        expected = ["registry", "school-keep", "school-web", "registry", "school/empty"] if role == "registry" else []
        assert sorted(left.split()[:3]) + left.split()[3:] == expected, f"{role} still holds: {left!r}"
    assert on(registry, "cat /root/school-data; grep -c school.example /etc/hosts") == "keep\n1"
    assert not (state / "known_hosts").exists()
