"""The provider interface: what the rest of reglab may ask of where machines come from.

Each provider (lab.machines.providers.vagrant, .ssh) implements `Provider`;
lab.machines.providers.for_lab picks one by the lab file's name for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lab.common.errors import RemoteError
from lab.common.polling import poll
from lab.machines.remote import Host, Machine

if TYPE_CHECKING:
    from lab.machines.warm import DockerWarm, LibvirtWarm

Say = Callable[[str], None]


@dataclass(frozen=True)
class MachineStatus:
    name: str
    provider: str
    state: str  # running, not_created, stopped... as the provider says; `running` is the one that counts
    ip: str
    where: str = ""  # the cluster member it runs on, where the provider has members (incus on a cluster)


class Provider(Protocol):
    """What the rest of reglab may ask of a provider."""

    name: str  # what `reglab status` shows: docker, libvirt, virtualbox, ssh
    makes_machines: bool  # True: reglab made them and `down` destroys them; False: given, only cleaned
    host: Host  # commands on this host (image builds, docker), logged and bounded
    names: list[str]
    log_dir: Path

    def check_host(self) -> None:
        """Fail before booting, with what to do, when this host cannot use the provider."""

    def prepare(self, say: Say, phase: Callable) -> str | None:
        """What the machines boot from, made ready (an image or box built here); its identity for
        warm starts, or None where machines do not boot from anything reglab knows."""

    def leftovers(self, states: dict[str, str]) -> list[str]:
        """Remove what an earlier lab of this name left that would block booting; say what."""

    def warm_store(self) -> DockerWarm | LibvirtWarm | None:
        """Where provisioned machines are kept to boot warm, or None."""

    def archive_now(self) -> str:
        """The package index a fresh provision would install from now (for the warm key)."""

    def boot_from(self, image: str) -> None:
        """Boot machines created from now on from this warm image or box."""

    def up(self, names: Sequence[str] = ()) -> list[Machine]:
        """The machines running and answering SSH."""

    def status(self) -> list[MachineStatus]: ...

    def notes(self) -> list[str]:
        """Lines `reglab status` prints under the table (how the machines run)."""

    def running(self) -> list[str]: ...

    def ssh_config(self) -> Path:
        """An ssh_config with one Host per machine, written by this process (for `ssh -F`)."""

    def connect(self, name: str) -> Machine: ...

    def forget_connections(self) -> None:
        """Drop cached SSH details (a machine that did not answer may have moved); ask again next time."""

    def down(self) -> list[str]:
        """Take away what reglab made; return what was removed, in words."""

    def isolation(self) -> str | None:
        """Why this lab's machines are not kept apart from other labs' made on this host, or None."""

    def keep_apart(self) -> list[str]:
        """Make the lab's isolation hold for the machines as they are now (addresses change); say what."""


def wait_for_ssh(machine: Machine, timeout: int) -> None:
    """Poll until the machine runs a command, within a bound."""
    errors: list[RemoteError] = []

    def attempt() -> bool:
        try:
            machine.run("true", timeout=20)
            return True
        except RemoteError as exc:
            errors.append(exc)
            with contextlib.suppress(Exception):
                machine.close()
            return False

    if not poll(attempt, timeout):
        raise RemoteError(f"{machine.name}: SSH did not answer within {timeout}s ({errors[-1]})")
