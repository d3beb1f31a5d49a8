"""The class's SSH gateway: OpenSSH's own `sshd`, on a port of its own, as the one way in to the labs.

Students' machines sit on networks only the class host reaches. Each
student's bundle reaches them with `ProxyJump` through this gateway: one
unprivileged account (`reglab-gw` when reglab runs as root, else reglab's own
user), public keys only, and per key exactly the student's machines:

    restrict,port-forwarding,permitopen="10.77.1.10:22",permitopen="10.77.1.11:22",command="/bin/false" KEY

`restrict` takes away the terminal, agent and X11 forwarding and ~/.ssh/rc;
`port-forwarding` gives back forwarding, which `permitopen` limits to the
student's two machines, port 22; the forced command answers any shell or
command with nothing. The server's configuration repeats each limit for
every key (no TTY, no remote or socket forwarding, no tunnel, no sftp, one
user), so a key line written wrong still opens nothing more.

The configuration and keys are pure functions of the class (tested without
sshd); `Gateway` runs sshd in the foreground as a child and ends it with the
portal.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.common.errors import LabError
from lab.common.files import atomic_write, private_dir, write_private
from lab.common.polling import poll

SSHD = Path("/usr/sbin/sshd")
ACCOUNT = "reglab-gw"  # the gateway's one account when reglab runs as root
NOLOGIN = "/usr/sbin/nologin"
RUNTIME = Path("/run/reglab-gateway")  # where the account can read its keys (the class folder is 0700)
GATEWAY_HOST = "reglab-gateway"  # the gateway's Host name in a student's ssh_config
START_SECONDS = 10
_KEY_LINE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")


@dataclass(frozen=True)
class Machine:
    """A Host block of a student's ssh_config: what ssh calls it and where it is."""

    name: str
    host: str
    port: int
    lines: tuple[str, ...]  # the block's other lines, as written


@dataclass(frozen=True)
class Entry:
    """One student at the gateway: their public key and the machines it may reach."""

    student: str
    public_key: str
    targets: tuple[str, ...]  # "HOST:PORT"


def parse_ssh_config(text: str) -> list[Machine]:
    """The Host blocks of a bundle's ssh_config (reglab's own format: `Host NAME`, then indented keys). Pure."""
    machines: list[Machine] = []
    name, host, port, lines = "", "", 22, []
    for raw in [*text.splitlines(), "Host"]:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "Host":
            if name and name != GATEWAY_HOST:
                machines.append(Machine(name, host, port, tuple(lines)))
            name, host, port, lines = value.strip(), "", 22, []
        elif key == "HostName":
            host = value.strip()
        elif key == "Port":
            port = int(value)
        elif key != "ProxyJump":
            lines.append(line)
    return [m for m in machines if m.host]


def key_line(entry: Entry) -> str:
    """The authorized_keys line of one student: forwarding to their machines' SSH ports, nothing else. Pure."""
    key = entry.public_key.strip()
    if not _KEY_LINE.fullmatch(key) or '"' in key:
        raise LabError(f"{entry.student}: not an OpenSSH public key line: {key[:40]!r}")
    for target in entry.targets:
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}", target):
            raise LabError(f"{entry.student}: not a HOST:PORT for permitopen: {target!r}")
    opens = ",".join(f'permitopen="{target}"' for target in entry.targets)
    return f'restrict,port-forwarding,{opens},command="/bin/false" {key}'


def authorized_keys(entries: Sequence[Entry]) -> str:
    return "".join(f"# {e.student}\n{key_line(e)}\n" for e in entries)


def sshd_config(*, listen: str, port: int, user: str, host_key: Path, keys_file: Path,
                targets: Sequence[str], strict_modes: bool) -> str:
    """The gateway's sshd_config: one user, keys only, local forwarding to the listed targets only. Pure."""
    shown = f"[{listen}]" if ":" in listen else listen
    return "\n".join([
        "# reglab's class gateway: written by reglab, replaced on each start",
        f"ListenAddress {shown}:{port}",
        f"HostKey {host_key}",
        "PidFile none",
        f"AuthorizedKeysFile {keys_file}",
        "AuthorizedPrincipalsFile none",
        f"AllowUsers {user}",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitRootLogin no",
        "PermitEmptyPasswords no",
        "UsePAM no",
        f"StrictModes {'yes' if strict_modes else 'no'}",
        "AllowTcpForwarding local",
        f"PermitOpen {' '.join(targets) if targets else 'none'}",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "PermitTTY no",
        "PermitUserRC no",
        "PermitUserEnvironment no",
        "ForceCommand /bin/false",
        "MaxAuthTries 3",
        "MaxSessions 4",
        "MaxStartups 10:30:100",
        "LoginGraceTime 20",
        "ClientAliveInterval 30",
        "ClientAliveCountMax 4",
        "LogLevel VERBOSE",
        "",
    ])


def student_ssh_config(machines: Sequence[Machine], gateway: str, port: int, user: str, key: Path,
                       known_hosts: Path) -> str:
    """A bundle's ssh_config: the gateway, then each machine reached through it (`ProxyJump`). Pure."""
    shown = f"[{gateway}]" if ":" in gateway else gateway
    blocks = ["\n".join([f"Host {GATEWAY_HOST}", f"  HostName {gateway}", f"  Port {port}", f"  User {user}",
                         f"  IdentityFile {key}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {known_hosts}",
                         "  StrictHostKeyChecking yes", f"  # the class host's gateway, {shown}:{port}"])]
    for machine in machines:
        blocks.append("\n".join([f"Host {machine.name}", f"  HostName {machine.host}", f"  Port {machine.port}",
                                 *(f"  {line}" for line in machine.lines), f"  ProxyJump {GATEWAY_HOST}"]))
    return "\n\n".join(blocks) + "\n"


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {' '.join(public_key.split()[:2])}\n"


class Gateway:
    """The class's sshd: configured in `folder` (the class's portal/gateway/), run as a child of reglab."""

    def __init__(self, folder: Path, listen: str, port: int, class_name: str) -> None:
        self.folder = folder
        self.listen = listen
        self.port = port
        self.root = os.geteuid() == 0
        self.user = ACCOUNT if self.root else pwd.getpwuid(os.geteuid()).pw_name
        self.runtime = RUNTIME / f"{class_name}-{port}" if self.root else folder
        self.process: subprocess.Popen | None = None

    @property
    def host_key(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"

    def public_host_key(self) -> str:
        return (self.folder / "ssh_host_ed25519_key.pub").read_text().strip()

    def _account(self) -> None:
        """The gateway's account, made once if reglab runs as root: no password, no shell, no home."""
        try:
            pwd.getpwnam(self.user)
            return
        except KeyError:
            pass
        # NOTE: password "*" (none can match) rather than useradd's "!" (locked): sshd refuses a locked account
        # even for keys when it runs without PAM.
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--password", "*",
                        "--shell", NOLOGIN, "--comment", "reglab class gateway (forwarding only)", self.user],
                       check=True, capture_output=True, timeout=30)

    def start(self, entries: Sequence[Entry]) -> None:
        if not SSHD.exists():
            raise LabError("the SSH gateway needs OpenSSH's server: `apt-get install --no-install-recommends "
                           "openssh-server` (reglab starts its own sshd; the system's need not run)")
        private_dir(self.folder)
        if not self.host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "reglab-gateway", "-f",
                            str(self.host_key)], check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        targets = sorted({t for e in entries for t in e.targets})
        if self.root:
            self._account()
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
            self.runtime.mkdir(mode=0o755, parents=True, exist_ok=True)
            keys = self.runtime / "authorized_keys"
            atomic_write(keys, authorized_keys(entries), 0o644)  # public keys only; the account must read it
        else:
            keys = write_private(self.folder / "authorized_keys", authorized_keys(entries))
        config = write_private(self.folder / "sshd_config",
                               sshd_config(listen=self.listen, port=self.port, user=self.user,
                                           host_key=self.host_key, keys_file=keys, targets=targets,
                                           strict_modes=self.root))
        test = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
        if test.returncode != 0:
            raise LabError(f"the gateway's sshd_config was refused: {test.stderr.strip()}")
        log = (self.folder / "sshd.log").open("ab")
        try:
            self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        if not poll(self._listening, START_SECONDS, 0.1):
            self.stop()
            raise LabError(f"the gateway's sshd did not listen on {self.listen}:{self.port} within "
                           f"{START_SECONDS}s; see {self.folder / 'sshd.log'}")

    def _listening(self) -> bool:
        import socket

        if self.process is not None and self.process.poll() is not None:
            raise LabError(f"the gateway's sshd ended at once (exit {self.process.returncode}); "
                           f"see {self.folder / 'sshd.log'}")
        try:
            with socket.create_connection((self.listen, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """End sshd and every connection it forked (its own process group)."""
        if self.process is not None:
            for signal_number in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal_number)
                try:
                    self.process.wait(5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.process = None
        if self.root:
            shutil.rmtree(self.runtime, ignore_errors=True)
