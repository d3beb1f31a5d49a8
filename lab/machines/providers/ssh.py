"""Machines reglab did not boot, reached over SSH (`provider: ssh`).

A school's cloud, Terraform or lab PCs made them; `lab.yml` says, per
machine, where reglab logs in (`host`, `port`, `user`, `identity_file`) and
the address the other machine reaches it at (`ip`). `up` only proves each
machine answers and has passwordless sudo, and says exactly what is missing.
`down` never destroys a machine: the session removes what reglab put on it,
and this provider forgets its own files.

Host keys are trusted on first use and kept in the lab's `known_hosts`: a
machine whose key changes later is refused, by name, until its line is
removed there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.common.errors import LabError, RemoteError
from lab.common.files import atomic_write, write_private
from lab.common.parallel import on_each
from lab.machines.providers.base import MachineStatus, Say
from lab.machines.remote import Host, Machine, machine_logger
from lab.model.credentials import Redactor
from lab.model.lab import Lab

PROBE_TIMEOUT = 20  # seconds for one machine to answer `reglab status`


def config_value(value: object, openssh: bool = True) -> str:
    """A value as ssh_config reads it whole: in double quotes, so a space does not end it, and for
    OpenSSH each `%` doubled (OpenSSH reads `%h`, `%d`... in paths as tokens). Pure.

    A `"` or a line break cannot be written so that both OpenSSH and paramiko read it back: refused.
    """
    text = str(value)
    if any(c in text for c in '"\n\r'):
        raise LabError(f"{text!r}: a path with a double quote or a line break cannot go in an ssh_config; "
                       "move the lab to a folder without one")
    return '"' + (text.replace("%", "%%") if openssh else text) + '"'


def host_block(name: str, host: str, port: int, user: str | None, known_hosts: Path,
               identity: Path | None = None, openssh: bool = True, proxy: str | None = None) -> str:
    """One ssh_config Host block: host keys trusted on first use in `known_hosts`. Pure.

    `openssh=False` is the block reglab's own connections (paramiko, through fabric) read: paramiko
    knows no `%%`, so the key is handed to it directly (lab.machines.remote.Machine) and left out here.
    """
    lines = [
        f"Host {name}",
        f"  HostName {host}",
        f"  Port {port}",
        f"  User {user}",
        f"  UserKnownHostsFile {config_value(known_hosts, openssh)}",
        "  StrictHostKeyChecking accept-new",
    ]
    if identity is not None:
        lines += ([f"  IdentityFile {config_value(identity)}"] if openssh else []) + ["  IdentitiesOnly yes"]
    if proxy is not None:
        lines.append(f"  ProxyCommand {proxy}")
    return "\n".join(lines)


def ssh_config_text(lab: Lab, known_hosts: Path, openssh: bool = True) -> str:
    """One Host block per machine, from the lab file. Pure."""
    blocks = [host_block(m.name, m.host or m.ip, m.port, m.user, known_hosts, m.identity_file, openssh)
              for m in lab.machines]
    return "\n\n".join(blocks) + "\n"


def missing_sudo(user: str, result_stderr: str) -> str:
    """What to do when `sudo -n true` fails, from what sudo said. Pure."""
    said = result_stderr.strip().splitlines()[-1] if result_stderr.strip() else "no output"
    if "not found" in said:
        return f"sudo is not installed (it said: {said}); install sudo and give {user} passwordless sudo"
    return (f"{user} has no passwordless sudo (sudo said: {said}); add "
            f"`{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/")


class SSHProvider:
    """Machines given by address; reglab reaches them, never makes or destroys them."""

    name = "ssh"
    makes_machines = False

    def __init__(self, lab: Lab, redactor: Redactor, say: Say = print) -> None:
        self.lab = lab
        self.redactor = redactor
        self.say = say
        self.log_dir = lab.state_dir / "logs"
        self.ssh_config_path = lab.state_dir / "ssh_config"  # for OpenSSH: `reglab ssh`, people
        self.own_config_path = lab.state_dir / "ssh_config.paramiko"  # for reglab's own connections
        self.known_hosts = lab.state_dir / "known_hosts"
        self.host = Host(machine_logger(self.log_dir, "host"), redactor, lab.timeouts.command)
        self._machines: dict[str, Machine] = {}

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.lab.machines]

    def check_host(self) -> None:
        """Nothing to run here: fabric is the SSH client."""

    def prepare(self, say: Say, phase) -> str | None:  # noqa: ANN001, ARG002 - nothing to build
        return None

    def leftovers(self, states: dict[str, str]) -> list[str]:  # noqa: ARG002
        return []

    def warm_store(self) -> None:
        return None

    def archive_now(self) -> str:
        return ""

    def boot_from(self, image: str) -> None:
        raise LabError(f"machines given over SSH do not boot from images ({image})")

    def isolation(self) -> None:
        """Given machines are on the school's network: reglab makes no network to keep apart."""
        return None

    def keep_apart(self) -> list[str]:
        return []

    def notes(self) -> list[str]:
        return ["machines given over SSH: reglab did not make them and `reglab down` leaves them running"]

    # -- reaching the machines -------------------------------------------------------
    def ssh_config(self) -> Path:
        """Written from the lab file on every use (it is all there is to know); 0600."""
        if not self.known_hosts.exists():
            atomic_write(self.known_hosts, b"", mode=0o600)
        write_private(self.ssh_config_path, ssh_config_text(self.lab, self.known_hosts))
        return self.ssh_config_path

    def own_config(self) -> Path:
        """The same machines for paramiko (no `%%`; keys handed over directly); 0600."""
        self.ssh_config()
        write_private(self.own_config_path, ssh_config_text(self.lab, self.known_hosts, openssh=False))
        return self.own_config_path

    def connect(self, name: str) -> Machine:
        if name not in self.names:
            raise LabError(f"no machine {name!r} in {self.lab.source}; machines: {', '.join(self.names)}")
        if name not in self._machines:
            spec = self.lab.machine(name)
            self._machines[name] = Machine(name, self.own_config(), machine_logger(self.log_dir, name),
                                           self.redactor, self.lab.timeouts.command, known_hosts=self.known_hosts,
                                           identity=spec.identity_file, host_key=spec.host_key, say=self.say)
        return self._machines[name]

    def forget_connections(self) -> None:
        for machine in self._machines.values():
            machine.close()
        self._machines.clear()

    def _where(self, name: str) -> str:
        spec = self.lab.machine(name)
        return f"{spec.user}@{spec.host or spec.ip}:{spec.port}"

    # -- lifecycle -------------------------------------------------------------------
    def up(self, names: Sequence[str] = ()) -> list[Machine]:
        """Each machine answers over SSH and runs sudo without a password; else say what is missing."""
        targets = list(names) or self.names

        def ready(machine: Machine) -> str | None:
            name = machine.name
            try:
                result = machine.run("sudo -n true", warn=True, timeout=PROBE_TIMEOUT)
            except RemoteError as exc:
                return f"{name} ({self._where(name)}) does not answer over SSH: {exc}"
            if not result.ok:
                return f"{name} ({self._where(name)}): {missing_sudo(machine.user, result.stderr)}"
            return None

        problems = [p for p in on_each([self.connect(n) for n in targets], ready) if p]
        if problems:
            raise LabError("the machines given in " + str(self.lab.source) + " are not ready:\n  "
                           + "\n  ".join(problems))
        return [self.connect(name) for name in targets]

    def status(self) -> list[MachineStatus]:
        """running: answers over SSH now; unreachable: does not (within PROBE_TIMEOUT)."""

        def probe(machine: Machine) -> str:
            try:
                return "running" if machine.run("true", warn=True, timeout=PROBE_TIMEOUT).ok else "failing"
            except RemoteError:
                return "unreachable"

        states = on_each([self.connect(n) for n in self.names], probe)
        return [MachineStatus(name, self.name, state, self.lab.machine(name).ip)
                for name, state in zip(self.names, states, strict=True)]

    def running(self) -> list[str]:
        return [s.name for s in self.status() if s.state == "running"]

    def down(self) -> list[str]:
        """The machines stay; reglab forgets how it reached them (its ssh_config, their host keys)."""
        for machine in self._machines.values():
            machine.close()
        self._machines.clear()
        removed = []
        for path in (self.ssh_config_path, self.own_config_path, self.known_hosts):
            if path.exists():
                path.unlink()
                removed.append(f"{path.name} in {path.parent}")
        return removed
