"""OS families: what differs between a Debian and a RHEL machine, as command plans.

The tutorial is written for CentOS (yum, httpd-tools, update-ca-trust); the
docker provider's machines are Debian. Everything else in reglab asks this
module for the command and never spells out a package manager itself.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from lab.common.errors import LabError


@dataclass(frozen=True)
class OsRelease:
    id: str
    id_like: tuple[str, ...]
    version_id: str
    pretty_name: str
    codename: str = ""  # VERSION_CODENAME: bookworm, trixie...


def parse_os_release(text: str) -> OsRelease:
    """Parse /etc/os-release (shell-style KEY=value lines)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        values[key] = words[0] if words else ""
    return OsRelease(
        id=values.get("ID", "").lower(),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", values.get("ID", "unknown")),
        codename=values.get("VERSION_CODENAME", ""),
    )


@dataclass(frozen=True)
class Family:
    name: str
    packages: dict[str, str]  # what the lab needs -> this family's package name
    ca_anchor_dir: str
    ca_update: str
    install_template: str
    installed_check: str  # shell test that package "$p" is installed
    compose: str  # the Compose command this family's packages give
    prepare: str = "true"  # what must run once before installing (package lists, repos)

    def package_names(self, needs: tuple[str, ...]) -> list[str]:
        return [self.packages[need] for need in needs]

    def install(self, needs: tuple[str, ...]) -> str:
        return self.install_command(self.package_names(needs))

    def install_command(self, packages: list[str]) -> str:
        return self.install_template.format(packages=" ".join(shlex.quote(p) for p in packages))

    def missing(self, needs: tuple[str, ...], extra: tuple[str, ...] = ()) -> str:
        """A command that prints the packages not installed yet (the needs', then `extra`), one a line."""
        names = " ".join([*self.package_names(needs), *extra])
        return f"for p in {names}; do {self.installed_check} || echo \"$p\"; done"

    def ca_path(self, name: str) -> str:
        return f"{self.ca_anchor_dir}/{name}"

    def trust_ca(self, source: str, name: str) -> str:
        """Install a CA certificate into the system trust store."""
        return f"install -m 0644 {shlex.quote(source)} {shlex.quote(self.ca_path(name))} && {self.ca_update}"

    def untrust_ca(self, name: str) -> str:
        return f"rm -f {shlex.quote(self.ca_path(name))} && {self.ca_update}"


DEBIAN = Family(
    name="debian",
    packages={
        "docker": "docker.io",
        "compose": "docker-compose",
        "htpasswd": "apache2-utils",
        "curl": "curl",
        "openssl": "openssl",
        "python3": "python3",
    },
    # update-ca-certificates reads only files ending in .crt here.
    ca_anchor_dir="/usr/local/share/ca-certificates",
    ca_update="update-ca-certificates --fresh >/dev/null",
    install_template=(
        "export DEBIAN_FRONTEND=noninteractive; "
        # unsafe-io: no fsync per unpacked file; a lab machine trades that for half the install time.
        "apt-get -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-unsafe-io "
        "install -y --no-install-recommends {packages}"
    ),
    installed_check="dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'ok installed'",
    compose="docker-compose",
    # DPkg::Lock::Timeout waits for dpkg's lock, not for the package lists' lock that `update` takes: an
    # apt-get left running on the machine (provisioning interrupted by Ctrl-C) made the next `update`
    # fail at once ("Could not get lock /var/lib/apt/lists/lock"), so it is tried again for 2 minutes.
    prepare=("n=0; until apt-get -o DPkg::Lock::Timeout=120 update -q; do n=$((n+1)); "
             "[ $n -lt 24 ] || exit 100; sleep 5; done"),
)

RHEL = Family(
    name="rhel",
    packages={
        "docker": "docker-ce",
        "compose": "docker-compose-plugin",
        "htpasswd": "httpd-tools",
        "curl": "curl",
        "openssl": "openssl",
        "python3": "python3",
    },
    ca_anchor_dir="/etc/pki/ca-trust/source/anchors",
    ca_update="update-ca-trust extract",
    install_template="(command -v dnf >/dev/null && dnf install -y {packages}) || yum install -y {packages}",
    installed_check="rpm -q \"$p\" >/dev/null 2>&1",
    # Compose v1 is not packaged for RHEL 9; the plugin reads files with `services:`.
    compose="docker compose",
    prepare=(
        "(command -v dnf >/dev/null && dnf install -y dnf-plugins-core && "
        "dnf config-manager --add-repo https://download.docker.com/linux/centos/docker-ce.repo) || "
        "(yum install -y yum-utils && yum-config-manager --add-repo "
        "https://download.docker.com/linux/centos/docker-ce.repo)"
    ),
)

FAMILIES = {"debian": DEBIAN, "rhel": RHEL}


class UnsupportedOS(LabError, ValueError):
    """A machine whose OS reglab has no family for: the box, not reglab, has to change (exit 2)."""


def family_of(release: OsRelease) -> Family:
    """Debian, Ubuntu and their kin; RHEL, Rocky, Alma, CentOS, Fedora and theirs."""
    ids = (release.id, *release.id_like)
    if any(i in ("debian", "ubuntu") for i in ids):
        return DEBIAN
    if any(i in ("rhel", "centos", "fedora", "rocky", "almalinux") for i in ids):
        return RHEL
    raise UnsupportedOS(
        f"unsupported OS {release.pretty_name!r} (ID={release.id or 'none'}); reglab knows the Debian and RHEL "
        f"families: use a box of one of them (lab.yml key `os`: debian or rhel)"
    )


def family_for(machine: str, os_release: str) -> Family:
    """The family of the machine named `machine`, from its /etc/os-release text.

    NOTE: the one place an os-release becomes a family: provisioning and the
    engine both come here, so an unknown OS is the same error (exit 2) on either path.
    """
    try:
        return family_of(parse_os_release(os_release))
    except UnsupportedOS as exc:
        raise UnsupportedOS(f"{machine}: {exc}") from None
