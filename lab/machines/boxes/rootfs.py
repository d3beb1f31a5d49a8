"""The box's root file system, from Debian packages with mmdebstrap.

The packages come from the Debian mirror the host already uses
(`lab.machines.hostapt`), through its apt proxy. What goes in beside them
(a vagrant user, the network, SSH host keys made on each machine's first
boot) is pure text, and so is the cache key (`recipe_key`): suite, packages
and build steps, never the mirror. `build_rootfs` runs mmdebstrap in a mount
namespace of its own and keeps the result in the cache as `rootfs-KEY.tar`,
with what it holds (`rootfs-KEY.json`) beside it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.common.errors import LabFailure
from lab.common.files import atomic_write
from lab.machines import digests, hostapt
from lab.machines.boxes import cache as box_cache
from lab.machines.boxes.cache import boxes_dir, digest, now, workdir
from lab.machines.host import Runner
from lab.model.lab import Lab
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS, Platform

Say = Callable[[str], None]

# Bump when the build steps change in a way the texts below do not show: it is part of the cache key.
BUILD_SCRIPT_VERSION = 1
# The default platform's (a lab's own is lab.debian: lab/model/platforms.py).
SUITE = PLATFORMS[DEFAULT_PLATFORM].suite
DEBIAN_MAJOR = PLATFORMS[DEFAULT_PLATFORM].major
# What the box is made of. systemd, sshd and sudo are what Vagrant needs; ifupdown and dhclient
# bring up eth0; dbus lets hostnamectl work; rsync lets Vagrant's rsync synced folders work.
PACKAGES = (
    "linux-image-amd64", "initramfs-tools", "systemd-sysv", "dbus", "udev", "e2fsprogs", "kmod",
    "openssh-server", "sudo", "ifupdown", "isc-dhcp-client", "iproute2", "iputils-ping", "netbase",
    "ca-certificates", "procps", "less", "rsync",
    # Debian's kernel turns AppArmor on; Docker then refuses to start containers without apparmor_parser.
    "apparmor",
)


def box_packages(platform: Platform) -> tuple[str, ...]:
    """The box's packages on `platform`: the list above and what that Debian release needs besides."""
    return PACKAGES + platform.box_packages


# The package versions reglab.json names first; all the others are listed too.
KEY_PACKAGES = ("linux-image-amd64", "systemd", "openssh-server", "sudo", "ifupdown", "isc-dhcp-client")
HOSTNAME = "reglab"
VAGRANT_PUB = Path(__file__).resolve().parents[1] / "images" / "vagrant.pub"  # lab/machines/images/
MMDEBSTRAP_TIMEOUT = 1800


def interfaces() -> str:
    """DHCP on the first NIC; `net.ifnames=0` names it eth0 under QEMU and VirtualBox alike.

    Vagrant appends its private networks (eth1...) to this file itself.
    """
    return (
        "source /etc/network/interfaces.d/*\n"
        "\n"
        "auto lo\n"
        "iface lo inet loopback\n"
        "\n"
        "allow-hotplug eth0\n"
        "iface eth0 inet dhcp\n"
    )


def hostkeys_dropin() -> str:
    """The box ships without SSH host keys: each machine makes its own before sshd starts."""
    return (
        "# reglab: SSH host keys are made on first boot, so no two machines share them\n"
        "[Service]\n"
        "ExecStartPre=\n"
        "ExecStartPre=/usr/bin/ssh-keygen -A\n"
        "ExecStartPre=/usr/sbin/sshd -t\n"
    )


def guest_files(public_key: str) -> dict[str, tuple[int, str]]:
    """Files written into the root file system: path -> (mode, text)."""
    return {
        "/etc/network/interfaces": (0o644, interfaces()),
        "/etc/hostname": (0o644, f"{HOSTNAME}\n"),
        "/etc/hosts": (0o644, f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n\n"
                              "::1\tlocalhost ip6-localhost ip6-loopback\n"),
        "/etc/sudoers.d/vagrant": (0o440, "vagrant ALL=(ALL) NOPASSWD:ALL\n"),
        "/etc/systemd/system/ssh.service.d/reglab-hostkeys.conf": (0o644, hostkeys_dropin()),
        # After the kernel's own initrd is made: nothing rebuilds it later, which under
        # software emulation takes minutes.
        "/etc/initramfs-tools/update-initramfs.conf": (0o644, "update_initramfs=no\nbackup_initramfs=no\n"),
        "/home/vagrant/.ssh/authorized_keys": (0o600, public_key.strip() + "\n"),
    }


VM_UNITS = ("ssh.service", "networking.service")


def customize_script(stage: str, files: Mapping[str, tuple[int, str]], units: Sequence[str] = VM_UNITS) -> str:
    """The mmdebstrap customize hook: `sh SCRIPT ROOT`. Files come from `stage/files/N`; `units` are enabled."""
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        "# reglab box: run by mmdebstrap after every package is installed; $1 is the root file system",
        "set -eu",
        'root="$1"',
        f"stage={q(stage)}",
        'chroot "$root" useradd --create-home --user-group --shell /bin/bash vagrant',
        'install -d -m 0700 "$root/home/vagrant/.ssh"',
    ]
    for number, (path, (mode, _)) in enumerate(sorted(files.items())):
        lines.append(f'install -D -m {mode:04o} "$stage/files/{number}" "$root"{q(path)}')
    lines += [
        'chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh',
        'chroot "$root" systemctl enable ' + " ".join(q(u) for u in units),
        # Made on first boot, so every machine has its own.
        'rm -f "$root"/etc/ssh/ssh_host_*',
        ': > "$root/etc/machine-id"',
        'if [ -d "$root/var/lib/dbus" ]; then ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"; fi',
        # The build host's resolver means nothing in a machine; dhclient writes its own.
        'rm -f "$root/etc/resolv.conf"',
        "chroot \"$root\" dpkg-query -W -f '${Package}\\t${Version}\\n' > \"$stage/packages.tsv\"",
    ]
    return "\n".join(lines) + "\n"


def parse_packages(tsv: str) -> dict[str, str]:
    """`dpkg-query -W` output (package TAB version) -> {package: version}."""
    found = {}
    for line in tsv.splitlines():
        name, sep, version = line.partition("\t")
        if sep and name and version:
            found[name] = version
    return found


def key_versions(packages: Mapping[str, str]) -> dict[str, str]:
    """The versions worth naming: the kernel image really installed, systemd, sshd, sudo..."""
    chosen = {name: packages[name] for name in KEY_PACKAGES if name in packages}
    kernels = sorted(n for n in packages if re.fullmatch(r"linux-image-\d.*", n))
    for name in kernels:
        chosen[name] = packages[name]
    return chosen


def recipe_key(public_key: str, suite: str = SUITE, packages: Sequence[str] = PACKAGES) -> str:
    """The root file system's cache key: suite, packages, the build steps. Not the mirror.

    The same packages from another mirror are the same box; the date it was
    built and the mirror are recorded in reglab.json instead.
    """
    files = guest_files(public_key)
    recipe = {
        "script": BUILD_SCRIPT_VERSION,
        "suite": suite,
        "packages": sorted(packages),
        "customize": customize_script("STAGE", files),
        "files": {path: [mode, text] for path, (mode, text) in sorted(files.items())},
    }
    return digest(json.dumps(recipe, sort_keys=True))


def build_rootfs(lab: Lab, key: str, public_key: str, run: Runner, say: Say,
                 packages: Sequence[str] = PACKAGES, files: Mapping[str, tuple[int, str]] | None = None,
                 units: Sequence[str] = VM_UNITS, cache: Path | None = None) -> tuple[Path, dict[str, Any], bool]:
    """The root file system as a tarball in the cache (`rootfs-KEY.tar`) with what it holds beside it;
    True when it was built now, False when it came from the cache. The VM box's recipe unless another
    (`packages`, `files`, `units`: an Incus machine's) and another `cache` folder are given.

    One in the cache is used only when it is the one built here (its digest
    recorded outside the cache, `digests.record`): root writes through it.
    """
    cache = cache or boxes_dir(lab)
    target = cache / f"rootfs-{key}.tar"
    about = cache / f"rootfs-{key}.json"
    if target.exists() and about.exists():
        if digests.recorded(target, box_cache.DIGESTS) and digests.recorded(about, box_cache.DIGESTS):
            return target, json.loads(about.read_text()), False
        say(f"{target.name} in {cache} is not the one built here (no digest recorded, or another): "
            "building it again")
    suite = lab.debian.suite
    mirror = hostapt.mirror_for(suite, lab.mirror)
    proxy = hostapt.host_proxy()
    say(f"fetching Debian {suite} packages from {mirror}" + (f" through {proxy}" if proxy else ""))
    with workdir(cache, ".rootfs-") as stage:
        files = guest_files(public_key) if files is None else files
        (stage / "files").mkdir()
        for number, (_, (_, text)) in enumerate(sorted(files.items())):
            (stage / "files" / str(number)).write_text(text)
        script = stage / "customize.sh"
        script.write_text(customize_script(str(stage), files, units))
        partial = stage / "rootfs.tar"
        (stage / "tmp").mkdir()
        env = {"TMPDIR": str(stage / "tmp")}
        if proxy:
            env["http_proxy"] = proxy
        # Its own mount namespace: what it mounts in the chroot goes away with it, even when killed.
        run(["mmdebstrap", "--mode=unshare", "--variant=minbase", "--format=tar",
             "--include=" + ",".join(packages),
             "--customize-hook=" + f'sh {shlex.quote(str(script))} "$1"',
             suite, partial, mirror], timeout=MMDEBSTRAP_TIMEOUT, env=env)
        installed = parse_packages((stage / "packages.tsv").read_text())
        missing = [p for p in packages if p not in installed]
        if missing:
            raise LabFailure(f"mmdebstrap finished but the root file system lacks {', '.join(missing)}")
        info = {"recipe": key, "suite": suite, "mirror": mirror, "built": now(), "packages": installed}
        os.replace(partial, target)
        atomic_write(about, json.dumps(info, indent=2) + "\n")
        digests.record(target, box_cache.DIGESTS)
        digests.record(about, box_cache.DIGESTS)
    return target, info, True

