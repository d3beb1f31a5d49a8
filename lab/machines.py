"""The lab's machines: Vagrant lifecycle through python-vagrant.

python-vagrant runs and parses Vagrant; this module adds what a lab needs
around it: a time bound on every Vagrant call, a log under `.lab/logs/`,
the provider's preconditions checked before booting, and a `down` that
leaves no container or network behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import vagrant

from lab.config import Lab
from lab.credentials import Redactor
from lab.errors import LabError, RemoteError
from lab.remote import Host, Machine, machine_logger

VBOX_NETWORKS = Path("/etc/vbox/networks.conf")
VBOX_DEFAULT_RANGE = ipaddress.ip_network("192.168.56.0/21")


@dataclass(frozen=True)
class MachineStatus:
    name: str
    provider: str
    state: str
    ip: str


class TimedVagrant(vagrant.Vagrant):
    """python-vagrant with a timeout on every call and output to a log file."""

    def __init__(self, root: Path, env: dict[str, str], log_path: Path, timeout: int) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.timeout = timeout
        cm = vagrant.make_file_cm(str(log_path), mode="a")
        super().__init__(root=str(root), env=env, out_cm=cm, err_cm=cm)

    def _call_vagrant_command(self, args):  # noqa: ANN001 - python-vagrant's signature
        command = self._make_vagrant_command(args)
        with self.out_cm() as out_fh, self.err_cm() as err_fh:
            out_fh.write(f"\n$ {' '.join(command)}\n")
            out_fh.flush()
            self._wait(subprocess.Popen(command, cwd=self.root, stdout=out_fh, stderr=err_fh,
                                        env=self.env, start_new_session=True), command)

    def _run_vagrant_command(self, args):  # noqa: ANN001
        command = self._make_vagrant_command(args)
        with self.err_cm() as err_fh:
            proc = subprocess.Popen(command, cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                    stderr=err_fh, start_new_session=True)
            out = self._wait(proc, command)
        return out.decode()

    def _wait(self, proc: subprocess.Popen, command: list[str]) -> bytes:
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise RemoteError(
                f"`vagrant {' '.join(command[1:])}` did not finish within {self.timeout}s; "
                f"see {self.log_path}"
            ) from None
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
            raise
        if proc.returncode != 0:
            raise RemoteError(
                f"`vagrant {' '.join(command[1:])}` failed (exit {proc.returncode}):"
                f"\n  {_tail(self.log_path)}\n  full log: {self.log_path}"
            )
        return out or b""


class Lifecycle:
    """Boot, inspect, reach and destroy the lab's machines."""

    def __init__(self, lab: Lab, redactor: Redactor) -> None:
        self.lab = lab
        self.redactor = redactor
        self.log_dir = lab.state_dir / "logs"
        self.ssh_config_path = lab.state_dir / "ssh_config"
        env = dict(os.environ)
        env.update(
            REGLAB_LAB=str(lab.source),
            REGLAB_PROVIDER=lab.provider,
            VAGRANT_DEFAULT_PROVIDER=lab.provider,
            VAGRANT_CHECKPOINT_DISABLE="1",
            VAGRANT_NO_COLOR="1",
        )
        self.vagrant = TimedVagrant(lab.root, env, self.log_dir / "vagrant.log", lab.timeouts.boot)
        self.host = Host(machine_logger(self.log_dir, "host"), redactor, lab.timeouts.command)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.lab.machines]

    def check_host(self) -> None:
        """Fail before booting when this host cannot run the provider."""
        if shutil.which("vagrant") is None:
            raise LabError(
                "vagrant is not installed; on Debian or Ubuntu: apt-get install --no-install-recommends vagrant"
            )
        if self.lab.provider == "docker":
            if shutil.which("docker") is None:
                raise LabError("docker is not installed; on Debian or Ubuntu: apt-get install docker.io")
            if not self.host.run("docker info", warn=True, timeout=30).ok:
                raise LabError("the Docker daemon does not answer (`docker info` failed); start it first")
        if self.lab.provider == "virtualbox":
            problem = vbox_range_problem(
                [m.ip for m in self.lab.machines],
                VBOX_NETWORKS.read_text() if VBOX_NETWORKS.exists() else None,
            )
            if problem:
                raise LabError(problem)

    def up(self, names: Sequence[str] = ()) -> list[Machine]:
        self.check_host()
        targets = list(names) or self.names
        if len(targets) == len(self.names):
            self.vagrant.up(provider=self.lab.provider)  # all at once: the docker provider boots in parallel
        else:
            for name in targets:
                self.vagrant.up(vm_name=name, provider=self.lab.provider)
        self.write_ssh_config()
        machines = [self.connect(name) for name in targets]
        for machine in machines:
            wait_for_ssh(machine, self.lab.timeouts.boot)
        return machines

    def status(self) -> list[MachineStatus]:
        ips = {m.name: m.ip for m in self.lab.machines}
        return [
            MachineStatus(s.name, s.provider or self.lab.provider, s.state, ips.get(s.name, "?"))
            for s in self.vagrant.status()
        ]

    def running(self) -> list[str]:
        return [s.name for s in self.status() if s.state == "running"]

    def write_ssh_config(self) -> Path:
        text = self.vagrant.ssh_config()
        self.ssh_config_path.parent.mkdir(parents=True, exist_ok=True)
        self.ssh_config_path.write_text(text)
        return self.ssh_config_path

    def connect(self, name: str) -> Machine:
        if name not in self.names:
            raise LabError(f"no machine {name!r} in {self.lab.source}; machines: {', '.join(self.names)}")
        if not self.ssh_config_path.exists():
            self.write_ssh_config()
        return Machine(
            name,
            self.ssh_config_path,
            machine_logger(self.log_dir, name),
            self.redactor,
            self.lab.timeouts.command,
        )

    def down(self) -> list[str]:
        """Destroy the machines and what the provider made for them; keep caches."""
        self.vagrant.destroy()
        self.ssh_config_path.unlink(missing_ok=True)
        if self.lab.provider == "docker":
            return self.remove_docker_leftovers()
        return []

    def remove_docker_leftovers(self) -> list[str]:
        """Containers labelled with this lab, and Vagrant's network on the lab's subnet."""
        removed = []
        label = f"label=org.reglab.lab={self.lab.name}"
        ids = self.host.run(f"docker ps -aq --filter {label}", warn=True).stdout.split()
        if ids:
            self.host.run("docker rm -f -v " + " ".join(ids))
            removed += [f"container {i}" for i in ids]
        network = f"vagrant_network_{self.lab.network}"
        exists = self.host.run(f"docker network inspect {network!r}", warn=True).ok
        if exists:
            self.host.run(f"docker network rm {network!r}")
            removed.append(f"network {network}")
        return removed


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to Vagrant and what it started; SIGKILL if it has not gone in 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_ssh(machine: Machine, timeout: int) -> None:
    """Poll until the machine runs a command, within a bound."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            machine.run("true", timeout=20)
            return
        except RemoteError as exc:
            if time.monotonic() > deadline:
                raise RemoteError(f"{machine.name}: SSH did not answer within {timeout}s ({exc})") from None
            with contextlib.suppress(Exception):
                machine.close()
            time.sleep(1)


def vbox_range_problem(ips: Sequence[str], networks_conf: str | None) -> str | None:
    """Why VirtualBox (6.1.28+) will refuse these host-only IPs, or None.

    Pure: takes the text of /etc/vbox/networks.conf (None when absent).
    """
    allowed = [VBOX_DEFAULT_RANGE]
    if networks_conf is not None:
        allowed = []
        for line in networks_conf.splitlines():
            words = line.split()
            if words and words[0] == "*":
                for word in words[1:]:
                    with contextlib.suppress(ValueError):
                        allowed.append(ipaddress.ip_network(word, strict=False))
    outside = [ip for ip in ips if not any(ipaddress.ip_address(ip) in net for net in allowed)]
    if not outside:
        return None
    subnet = ipaddress.ip_network(f"{outside[0]}/24", strict=False)
    return (
        f"VirtualBox allows host-only addresses only in {', '.join(map(str, allowed)) or 'no range'}, "
        f"so it will refuse {', '.join(outside)} (The IP address configured for the host-only network "
        f"is not within the allowed ranges). Fix: add the line `* {subnet} 192.168.56.0/21` to "
        f"{VBOX_NETWORKS}, or give the machines IPs in 192.168.56.0/21 in lab.yml."
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  ".join(text)
