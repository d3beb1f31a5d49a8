"""A lab as reglab holds it once its file is read: typed, validated values (lab.model.labfile reads and checks them)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.model.manifest import Manifest, Named
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS, Platform

VAGRANT_PROVIDERS = ("docker", "virtualbox", "libvirt")  # machines Vagrant boots


PROVIDERS = (*VAGRANT_PROVIDERS, "incus", "ssh")  # incus: system containers; ssh: machines made elsewhere


def built_box_name(platform: str) -> str:
    """The name `reglab box build` adds its Debian box under: one per platform (reglab/debian13)."""
    return f"reglab/{platform}"


BUILT_BOX_NAME = built_box_name("debian12")  # the Debian 12 box's name, as labs before `platform:` knew it


# modern: the flow that works today; as-written: the tutorial's own 2016 commands; fixed: the commands
# of the corrected text (tutorial.fixed.md: the as-written ones with each failing one replaced).
EDITIONS = ("modern", "as-written", "fixed")


IMAGE_SOURCES = ("auto", "pull", "preload", "build")


STARTS = ("warm", "fresh")


OS_FAMILIES = ("debian", "rhel")


SSH_PORT = 22  # reglab reaches the machines over it


@dataclass(frozen=True)
class MachineSpec:
    """A machine as the lab file describes it (the connection to it is lab.machines.remote.Machine).

    `ip` is where the other machine reaches it; the rest is for `provider: ssh`.
    """

    name: str
    ip: str
    host: str | None = None  # where reglab reaches it over SSH (default: ip)
    port: int = SSH_PORT
    user: str | None = None
    identity_file: Path | None = None
    host_key: str | None = None  # the SHA256:... fingerprint its host key must have (None: trust on first use)


class Ports(Named):
    """The ports the scenario declares, by name (`ports.proxy`), as the lab file sets them."""


@dataclass(frozen=True)
class User:
    name: str
    password: str | None  # None until secrets are resolved

    def __repr__(self) -> str:  # a password never reaches a log through repr
        return f"User(name={self.name!r}, password=***)"


class Images(Named):
    """`source` (pull, preload, build), and each image the scenario declares, by name (`images.proxy`)."""

    def refs(self) -> dict[str, str]:
        """The scenario's images, by name: everything but the source."""
        return {name: ref for name, ref in self.items() if name != "source"}


@dataclass(frozen=True)
class Box:
    """A Vagrant box: from the catalogue (name and version), a file or URL, or built here (`build`)."""

    name: str
    version: str | None = None
    url: str | None = None
    build: bool = False


@dataclass(frozen=True)
class Timeouts:
    command: int
    boot: int


@dataclass(frozen=True)
class Lab:
    source: Path
    name: str
    provider: str
    edition: str
    os: str
    domain: str
    machines: tuple[MachineSpec, ...]
    ports: Ports
    users: tuple[User, ...]
    images: Images
    boxes: dict[str, Box] = field(hash=False)
    timeouts: Timeouts
    mirror: str | None = None  # None: take it from the host's apt configuration
    platform: str = DEFAULT_PLATFORM  # the Debian release of the machines and images (lab/model/platforms.py)
    incus_remote: str | None = None  # provider: incus on an Incus remote (a cluster) by that name; None: this host
    start: str = "warm"  # warm: a saved provisioned image when its key matches; fresh: provision from nothing
    manifest: Manifest | None = field(default=None, hash=False)  # what the lab's scenario declares; set by load

    @property
    def debian(self) -> Platform:
        """What the lab's platform is: suite, major version, its tools."""
        return PLATFORMS[self.platform]

    @property
    def root(self) -> Path:
        """The lab file's folder, where its state folder is."""
        return self.source.parent

    @property
    def state_dir(self) -> Path:
        """This lab's own folder (state, logs, reports, secrets, PKI, Vagrant's machine data):
        `.lab/NAME` beside the lab file, so two labs of one folder never share one."""
        return self.root / ".lab" / self.name

    @property
    def cache_dir(self) -> Path:
        """Downloads and built bundles, shared by every checkout on this host (REGLAB_CACHE)."""
        return cache_dir(os.environ)

    def machine(self, name: str) -> MachineSpec:
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise KeyError(name)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(f"{self.machines[0].ip}/24", strict=False)


def cache_dir(environ: Mapping[str, str]) -> Path:
    """REGLAB_CACHE, else $XDG_CACHE_HOME/reglab, else ~/.cache/reglab; the Vagrantfile agrees."""
    if environ.get("REGLAB_CACHE"):
        return Path(environ["REGLAB_CACHE"])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reglab"


def default_scenario() -> Path:
    """The scenario reglab ships with: the tutorial's steps, beside the harness."""
    return Path(__file__).resolve().parent.parent / "scenarios" / "tutorial.yaml"
