"""Provisioning: Docker, Compose, htpasswd, curl and openssl on every machine, and
the lab's images loaded into each Docker daemon.

Machines are provisioned in parallel. Packages are downloaded once: on a
Debian machine with the shared cache mounted, the first machine fetches the
package lists and .debs into `/var/cache/reglab/apt` under a lock and the
other installs from there. Each part checks before it changes, so a second
run changes nothing and says so.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.common.errors import RemoteError
from lab.common.parallel import on_each
from lab.common.progress import Progress
from lab.machines.images import CACHE_DIR_IN_MACHINE, LabImages
from lab.machines.osfamily import DEBIAN, Family, family_for
from lab.machines.remote import Machine
from lab.model.platforms import for_suite

NEEDS = ("docker", "compose", "htpasswd", "curl", "openssl")
APT_CACHE_ROOT = f"{CACHE_DIR_IN_MACHINE}/apt"  # one folder a Debian suite under it: lists of one never serve another
LISTS_MAX_AGE_MINUTES = 360
BUNDLE_TIMEOUT = 600  # copying the image bundle over SFTP, where no shared folder has it


@dataclass
class Provisioned:
    machine: str
    family: str
    changes: list[str] = field(default_factory=list)


def detect_family(machine: Machine) -> Family:
    return family_for(machine.name, machine.run("cat /etc/os-release").stdout)


def apt_cache(suite: str) -> str:
    """The shared apt cache of one Debian suite, in a machine (the host's cache/apt/SUITE)."""
    return f"{APT_CACHE_ROOT}/{suite}"


def debian_suite(machine: Machine) -> str:
    """The machine's Debian suite (VERSION_CODENAME), which keys its share of the apt cache."""
    out = machine.sudo(". /etc/os-release && echo \"$VERSION_CODENAME\"", warn=True).stdout.strip()
    return out if out.isalnum() else "unknown"


def extra_packages(machine: Machine, family: Family) -> tuple[str, ...]:
    """What this machine's platform needs besides the family's packages (Debian 13: docker-cli)."""
    if family is not DEBIAN:
        return ()
    platform = for_suite(debian_suite(machine))
    return platform.extra_packages if platform else ()


def install_packages(machine: Machine, family: Family) -> list[str]:
    missing = machine.sudo(family.missing(NEEDS, extra_packages(machine, family))).stdout.split()
    if not missing:
        return []
    shared = family is DEBIAN and machine.sudo(f"test -d {CACHE_DIR_IN_MACHINE} -a -w {CACHE_DIR_IN_MACHINE}",
                                               warn=True).ok
    cache = apt_cache(debian_suite(machine)) if shared else ""
    names = " ".join(shlex.quote(p) for p in missing)
    if shared:
        apt = f"-o Dir::State::Lists={cache}/lists -o Dir::Cache::Archives={cache}/archives"
        # One machine at a time downloads into the shared cache; the next finds it there.
        machine.sudo(
            f"mkdir -p {cache}/lists/partial {cache}/archives/partial && "
            f"flock {cache}/.lock sh -c '"
            f"if [ -z \"$(find {cache}/lists -maxdepth 1 -name \"*_Packages*\" "
            f"-mmin -{LISTS_MAX_AGE_MINUTES})\" ]; "
            f"then apt-get {apt} update -q; fi && "
            f"DEBIAN_FRONTEND=noninteractive apt-get {apt} install -y -q --download-only "
            f"--no-install-recommends {names}'",
            timeout=900,
        )
        # Installing from a private copy lets both machines run dpkg at once.
        machine.sudo(
            f"cp -a {cache}/lists/. /var/lib/apt/lists/ && "
            f"cp -a {cache}/archives/*.deb /var/cache/apt/archives/ && "
            f"{family.install_command(missing)} && rm -f /var/cache/apt/archives/*.deb",
            timeout=900,
        )
    else:
        machine.sudo(f"{family.prepare} && {family.install_command(missing)}", timeout=900)
    return [f"installed {' '.join(missing)}"]


# Steps restart docker (after trusting the CA), and so do resets: on a fast host that
# runs into the unit's start limit ("start of the service was attempted too often").
RESTART_DROPIN = "/etc/systemd/system/docker.service.d/reglab-restarts.conf"
RESTART_DROPIN_TEXT = (
    "[Unit]\n# reglab: labs restart docker often; never refuse a start\nStartLimitIntervalSec=0\n"
    # Docker 26 (Debian 13) refuses to start a container where it cannot turn IPv6 off on the container's
    # interface, as in a docker-provider machine: "failed to disable IPv6 on container's interface eth0, set
    # env var DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 to ignore this error". Docker 20.10 ignores the variable.
    "[Service]\n# reglab: Docker 26 in a machine without IPv6 control\n"
    "Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n"
)


def plan(family: Family, extra: tuple[str, ...] = ()) -> dict[str, object]:
    """What provisioning makes of a machine of this family (and its platform's `extra` packages), as data:
    a warm image's key is made from it (with this module's code), so a changed plan is never served a stale image."""
    return {
        "needs": list(NEEDS),
        "packages": [*family.package_names(NEEDS), *extra],
        "install": family.install_template,
        "files": {RESTART_DROPIN: RESTART_DROPIN_TEXT},
        "services": ["docker"],
    }


def package_versions(machine: Machine, family: Family) -> dict[str, str]:
    """The versions of the plan's packages on a machine, for a warm image's metadata and the reports."""
    names = " ".join(shlex.quote(p) for p in [*family.package_names(NEEDS), *extra_packages(machine, family)])
    query = (f"dpkg-query -W -f '${{Package}} ${{Version}}\\n' {names}" if family is DEBIAN
             else f"rpm -q --qf '%{{NAME}} %{{VERSION}}-%{{RELEASE}}\\n' {names}")
    out = machine.sudo(query, warn=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def allow_restarts(machine: Machine) -> list[str]:
    """A systemd drop-in that lifts docker's start limit on lab machines."""
    text = shlex.quote(RESTART_DROPIN_TEXT)
    if machine.sudo(f"printf %s {text} | cmp -s - {RESTART_DROPIN}", warn=True).ok:
        return []
    # A running docker takes the drop-in's environment only when restarted.
    machine.sudo(f"mkdir -p {RESTART_DROPIN.rsplit('/', 1)[0]} && printf %s {text} > {RESTART_DROPIN} && "
                 "systemctl daemon-reload && systemctl reset-failed docker.service docker.socket 2>/dev/null; "
                 "if systemctl is-active --quiet docker; then systemctl restart docker; fi; true", timeout=120)
    return ["let docker restart without a start limit, and start containers without IPv6 control"]


def start_docker(machine: Machine) -> list[str]:
    changes = allow_restarts(machine)
    if machine.sudo("systemctl is-active --quiet docker", warn=True).ok:
        return changes
    changes.append("started docker")
    machine.sudo("systemctl enable --now docker", timeout=120)
    machine.sudo("for i in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done; docker info",
                 timeout=90)
    return changes


# The tags reglab's own loads added to a machine (absent before), one a line: on machines given over
# SSH, `reglab down` untags only these, never a tag the school had (lab.engine.cleanup).
LOADED_RECORD = "/var/lib/reglab/loaded-images"


def load_images(machine: Machine, images: LabImages, bundle: Path | None, ids: list[str] | None = None) -> list[str]:
    """Load the lab's images from the shared cache (or over SFTP where there is none).

    With `ids` (the host's image IDs), images of the same name but another
    build (a machine booted warm from an older disk) are loaded again. A
    bundle copied over SFTP goes into a folder `mktemp -d` made for the login
    user (0700), never a predictable name in /tmp that another user of a
    shared machine could plant first. The tags the load adds are recorded.
    """
    refs = " ".join(shlex.quote(i) for i in images.all())
    if bundle is None:
        return []
    there = machine.sudo(f"docker image inspect -f '{{{{.Id}}}}' {refs}", warn=True)
    if there.ok and (ids is None or there.stdout.split() == ids):
        return []
    absent = machine.sudo(f'for i in {refs}; do docker image inspect "$i" >/dev/null 2>&1 || echo "$i"; done',
                          warn=True).stdout.split()
    shared = f"{CACHE_DIR_IN_MACHINE}/images/{bundle.name}"
    private = None
    if not machine.sudo(f"test -r {shared}", warn=True).ok:
        private = machine.run("mktemp -d").stdout.strip()
        if not re.fullmatch(r"/[A-Za-z0-9._/-]+", private):
            raise RemoteError(f"{machine.name}: mktemp -d gave {private!r}, not a folder path")
        shared = f"{private}/{bundle.name}"
        machine.put(str(bundle), shared, timeout=BUNDLE_TIMEOUT)
    try:
        machine.sudo(f"docker load -q -i {shlex.quote(shared)}", timeout=600)
    finally:
        if private is not None:
            machine.run(f"rm -rf {shlex.quote(private)}", warn=True)
    if absent:
        machine.sudo(f"mkdir -p -m 700 {posixpath.dirname(LOADED_RECORD)} && "
                     f"printf '%s\\n' {' '.join(shlex.quote(i) for i in absent)} >> {LOADED_RECORD}")
    return [f"loaded {', '.join(images.all())}"]


def provision_one(machine: Machine, images: LabImages, bundle: Path | None, progress: Progress,
                  family_of: Callable[[Machine], Family] = detect_family,
                  ids: list[str] | None = None) -> Provisioned:
    family = family_of(machine)
    done = Provisioned(machine.name, family.name)
    progress.say(f"{machine.name}: {family.name} family; installing what is missing of {', '.join(NEEDS)}")
    done.changes += install_packages(machine, family)
    done.changes += start_docker(machine)
    done.changes += load_images(machine, images, bundle, ids)
    progress.say(f"{machine.name}: {'; '.join(done.changes) if done.changes else 'nothing to change'}")
    return done


def provision(machines: list[Machine], images: LabImages, bundle: Path | None, progress: Progress,
              family_of: Callable[[Machine], Family] = detect_family,
              ids: list[str] | None = None) -> list[Provisioned]:
    """Both machines at once: their work is independent. `family_of` is how a machine's
    OS family is known (a session passes the one it already read).

    A failure on one machine lets the other finish (half an apt install is
    worse than a whole one). A Ctrl-C does not wait: the machines'
    connections are closed, which ends what the threads wait on, and the
    machines refuse any further command.
    """
    return on_each(machines, lambda machine: provision_one(machine, images, bundle, progress, family_of, ids))
