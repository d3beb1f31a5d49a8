"""What this host needs to run the lab, installed where it can be and named where not.

`tox -e e2e` runs this first. On a Debian or Ubuntu host (as root, or with
passwordless sudo) it installs Vagrant, Docker and debootstrap with apt and
starts the Docker daemon when nothing else does; elsewhere it says exactly
what to install, and exits 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.osfamily import parse_os_release

APT_PACKAGES = {"vagrant": "vagrant", "docker": "docker.io", "debootstrap": "debootstrap", "ssh": "openssh-client"}
DOCKER_WAIT = 60


def usable_provider() -> str:
    """VirtualBox or libvirt where they work on this host, else docker."""
    if shutil.which("VBoxManage") and _ok(["VBoxManage", "list", "hostonlyifs"]):
        return "virtualbox"
    if shutil.which("virsh") and _ok(["virsh", "-c", "qemu:///system", "version"]) and \
            _ok(["vagrant", "plugin", "list"], contains="vagrant-libvirt"):
        return "libvirt"
    return "docker"


def _ok(command: list[str], contains: str | None = None) -> bool:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and (contains is None or contains in done.stdout)


def missing_tools(provider: str) -> list[str]:
    needed = ["vagrant", "ssh"] + (["docker", "debootstrap"] if provider == "docker" else [])
    return [tool for tool in needed if shutil.which(tool) is None]


def debian_like() -> bool:
    try:
        release = parse_os_release(Path("/etc/os-release").read_text())
    except OSError:
        return False
    return any(i in ("debian", "ubuntu") for i in (release.id, *release.id_like))


def as_root(command: list[str]) -> list[str]:
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


def docker_answers() -> bool:
    return _ok(["docker", "info"])


def start_docker(log: Path) -> None:
    """systemd where it runs, else the daemon by hand (containers and CI have no systemd)."""
    if Path("/run/systemd/system").exists():
        subprocess.run(as_root(["systemctl", "start", "docker"]), check=False, timeout=120)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            subprocess.Popen(as_root(["dockerd"]), stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + DOCKER_WAIT
    while not docker_answers():
        if time.monotonic() > deadline:
            raise SystemExit(f"reglab: error: the Docker daemon did not answer within {DOCKER_WAIT}s; see {log}")
        time.sleep(1)


def main() -> int:
    provider = os.environ.get("REGLAB_PROVIDER", "auto")
    if provider == "auto":
        provider = usable_provider()
    missing = missing_tools(provider)
    if missing:
        packages = [APT_PACKAGES[t] for t in missing]
        can_install = debian_like() and (os.geteuid() == 0 or _ok(["sudo", "-n", "true"]))
        if not can_install:
            print(f"reglab: error: this host lacks {', '.join(missing)}. Install "
                  + ", ".join(packages) + " (on Debian or Ubuntu: apt-get install --no-install-recommends "
                  + " ".join(packages) + "; elsewhere: Vagrant from vagrantup.com and Docker Engine)",
                  file=sys.stderr)
            return 2
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print(f"reglab: installing {' '.join(packages)} with apt", flush=True)
        subprocess.run(as_root(["apt-get", "update", "-q"]), check=True, env=env, timeout=600)
        subprocess.run(as_root(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]),
                       check=True, env=env, timeout=1200)
    if provider == "docker" and not docker_answers():
        print("reglab: starting the Docker daemon", flush=True)
        start_docker(Path(".lab/logs/dockerd.log"))
    print(f"reglab: host ready for the {provider} provider", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
