"""The platforms a lab's machines run: a Debian release, as data.

One place says what each platform is: its Debian suite and major version
(what the docker provider's node image, the libvirt box and the lab's own
images are built from), the versions of the tutorial's tools its packages
carry, and what the `docker-compose` command is there. Every builder (the
node image, the box, an Incus image) asks this table and spells out no
suite itself, so a new provider reuses it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Platform:
    name: str  # as the lab file says it: debian12
    suite: str  # the Debian suite its machines and images are built from
    major: str  # Debian's major version: the `-debian13` of an honest tag
    # The tutorial's tools as this suite packages them (Debian package -> upstream version), for the README
    # and the reports; what a machine really installed is read from it (provision.package_versions).
    tools: dict[str, str] = field(default_factory=dict, hash=False)
    # What `docker-compose` is on this platform, in a sentence (the command name stays `docker-compose`).
    compose: str = ""
    # Debian packages provisioning installs here besides the family's (lab/machines/osfamily.py), and why.
    extra_packages: tuple[str, ...] = ()
    extra_why: str = ""
    # Debian packages the VM box and the Incus machine image add here to their own lists
    # (lab/machines/boxes/rootfs.py, container.py), and why.
    box_packages: tuple[str, ...] = ()
    box_why: str = ""

    @property
    def title(self) -> str:
        return f"Debian {self.major} ({self.suite})"


PLATFORMS: dict[str, Platform] = {
    "debian12": Platform(
        "debian12", "bookworm", "12",
        {"docker.io": "20.10.24", "docker-compose": "1.29.2", "nginx": "1.22.1", "docker-registry": "2.8.2"},
        "Compose v1: Debian's Python docker-compose 1.29.2; it still reads the tutorial's file format 1",
    ),
    "debian13": Platform(
        "debian13", "trixie", "13",
        {"docker.io": "26.1.5", "docker-compose": "2.26.1", "nginx": "1.26.3", "docker-registry": "2.8.3"},
        "Compose v2: Debian's docker-compose 2.26.1 package is the Go plugin (`docker compose`), also "
        "installed as `docker-compose`; `docker-compose up` is Compose v2's `up`, which refuses the "
        "tutorial's file format 1 and warns that `version:` is obsolete",
        ("docker-cli",),
        "Debian 13 splits the `docker` command out of docker.io into docker-cli, which docker.io only "
        "recommends (provisioning installs no recommends)",
        ("linux-sysctl-defaults",),
        "Debian 13's ping has no cap_net_raw of its own: it relies on net.ipv4.ping_group_range from "
        "linux-sysctl-defaults, which iputils-ping only recommends (the box and the Incus image install no "
        "recommends); without it `ping` as a user fails with `missing cap_net_raw+p capability or setuid?` "
        "(e2e-libvirt)",
    ),
}

# What a lab file without `platform:` runs: Debian 13, today's stable, since the modern edition passes every
# step on it (tests/e2e/test_platforms.py).
DEFAULT_PLATFORM = "debian13"


def for_suite(suite: str) -> Platform | None:
    """The platform a machine of this Debian suite runs (its VERSION_CODENAME), if reglab knows it."""
    return next((p for p in PLATFORMS.values() if p.suite == suite), None)


def platform(name: str) -> Platform:
    """The platform of that name (the lab file's value is checked against PLATFORMS before this)."""
    return PLATFORMS[name]
