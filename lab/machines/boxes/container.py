"""The Incus machines' image: the box's Debian root file system, made for a system container.

The same mmdebstrap build as the VM box (`rootfs`), with what a container
needs instead of a kernel and a boot loader: systemd-networkd on eth0 (DHCP
from the lab's bridge, which hands each machine its fixed address), udev (or
networkd leaves eth0 pending), Docker told to use overlay2, and a unit that unmounts the cgroup v1
hierarchies the container may not write (on hosts with cgroup v1, LXC
mounts some without delegating them, and Docker inside then cannot start a
container). No key and no host key is in it: the lab's key is pushed into
each machine through Incus, and each machine makes its own host keys on
first boot. Docker itself is not baked in here: provisioning installs it, and
the warm image (`incus publish` of a provisioned machine) carries it.
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

from lab.machines import digests
from lab.machines.boxes.cache import digest, workdir
from lab.machines.boxes.rootfs import BUILD_SCRIPT_VERSION, Say, build_rootfs, customize_script, hostkeys_dropin
from lab.machines.host import Runner
from lab.model.lab import Lab
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS, Platform

HOSTNAME = "reglab"
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "openssh-server", "sudo", "iproute2", "iputils-ping",
    "netbase", "ca-certificates", "procps", "less", "kmod",
)


def image_packages(platform: Platform) -> tuple[str, ...]:
    """The image's packages on `platform`: the list above and what that Debian release adds to the box too
    (lab/model/platforms.py), so both are the same Debian. NOTE: Debian 13's linux-sysctl-defaults cannot set its
    ping range in a container; the Incus provider sets one itself (providers/incus.py, PING_GROUPS)."""
    return PACKAGES + platform.box_packages


UNITS = ("ssh.service", "systemd-networkd.service", "reglab-cgroups.service")
IMPORT_TIMEOUT = 600

CGROUPS_SCRIPT = """#!/bin/sh
# reglab: unmount every cgroup v1 hierarchy this container may not write (LXC mounts some it does not
# delegate on cgroup v1 hosts; Docker then fails creating its cgroup there). Nothing to do on cgroup v2.
awk '$3 == "cgroup" {print $2}' /proc/self/mounts | while read -r point; do
    probe="$point/reglab-probe.$$"
    if mkdir "$probe" 2>/dev/null; then
        rmdir "$probe"
    else
        umount -l "$point" && echo "reglab: unmounted $point (not delegated to this container)"
    fi
done
exit 0
"""

CGROUPS_UNIT = """[Unit]
Description=reglab: unmount cgroup v1 hierarchies not delegated to this container
DefaultDependencies=no
After=local-fs.target
Before=containerd.service docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/reglab-cgroups

[Install]
WantedBy=multi-user.target
"""


def guest_files() -> dict[str, tuple[int, str]]:
    """Files written into the container's root file system: path -> (mode, text). Pure."""
    return {
        "/etc/systemd/network/10-eth0.network": (0o644, "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"),
        "/etc/hostname": (0o644, f"{HOSTNAME}\n"),
        "/etc/hosts": (0o644, f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n\n"
                              "::1\tlocalhost ip6-localhost ip6-loopback\n"),
        "/etc/sudoers.d/vagrant": (0o440, "vagrant ALL=(ALL) NOPASSWD:ALL\n"),
        "/etc/systemd/system/ssh.service.d/reglab-hostkeys.conf": (0o644, hostkeys_dropin()),
        "/usr/local/sbin/reglab-cgroups": (0o755, CGROUPS_SCRIPT),
        "/etc/systemd/system/reglab-cgroups.service": (0o644, CGROUPS_UNIT),
        # Docker would pick btrfs on a btrfs pool: its subvolumes cannot be snapshotted unprivileged once a
        # published image has made them plain folders ("Failed to create btrfs snapshot"). overlay2 works
        # in an unprivileged container (Linux 5.11 and later) on any pool.
        "/etc/docker/daemon.json": (0o644, '{\n  "storage-driver": "overlay2"\n}\n'),
    }


def recipe_key(platform: Platform = PLATFORMS[DEFAULT_PLATFORM]) -> str:
    """The image's key: suite, packages, files and build steps. Not the mirror, not the date. Pure."""
    files = guest_files()
    recipe = {
        "script": BUILD_SCRIPT_VERSION,
        "kind": "incus-container",
        "suite": platform.suite,
        "packages": sorted(image_packages(platform)),
        "customize": customize_script("STAGE", files, UNITS),
        "files": {path: [mode, text] for path, (mode, text) in sorted(files.items())},
    }
    return digest(json.dumps(recipe, sort_keys=True))


def alias(key: str, platform: Platform = PLATFORMS[DEFAULT_PLATFORM]) -> str:
    return f"reglab-{platform.name}-{key}"


def metadata_yaml(key: str, created: int, platform: Platform = PLATFORMS[DEFAULT_PLATFORM]) -> str:
    """Incus's image metadata (a split image: this and the root file system). Pure."""
    return (
        "architecture: x86_64\n"
        f"creation_date: {created}\n"
        "properties:\n"
        f"  description: reglab Debian {platform.major} machine ({key}), built from Debian packages\n"
        "  os: debian\n"
        f"  release: {platform.suite}\n"
    )


def build(lab: Lab, run: Runner, say: Say) -> tuple[Path, Path, str]:
    """The root file system tarball (built once per recipe, kept in the cache) and its metadata tarball."""
    key = recipe_key(lab.debian)
    folder = lab.cache_dir / "incus"
    cached = folder / f"rootfs-{key}.tar"
    if cached.exists() and not digests.recorded(cached, digests.user_store()):
        # Not the file the host built (changed since, or built before digests were kept): built again.
        say(f"{cached.name} is not the one built here (its digest differs): building it again")
        cached.unlink()
    rootfs, _, fresh = build_rootfs(lab, key, "", run, say, image_packages(lab.debian), guest_files(), UNITS,
                                    cache=folder)
    if fresh:
        digests.record(rootfs, digests.user_store())
        say(f"built the Incus machine image's root file system ({rootfs.name})")
    meta = folder / f"metadata-{key}.tar"
    if not meta.exists():
        with workdir(folder, ".meta-") as stage:
            (stage / "metadata.yaml").write_text(metadata_yaml(key, int(time.time()), lab.debian))
            partial = stage / "metadata.tar"
            with tarfile.open(partial, "w") as tar:
                tar.add(stage / "metadata.yaml", arcname="metadata.yaml")
            partial.replace(meta)
    return meta, rootfs, key
