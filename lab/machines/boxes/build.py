"""`reglab box build`: the root file system, the disk, and a box per provider, made on this host.

Results are cached in `~/.cache/reglab/boxes/` in two layers, keyed by
recipe and never by mirror: the root file system (`rootfs-KEY.tar`, the
slow part) and the boxes made from it (`KEY/`), so a second build is
instant and a change to the disk layout does not fetch packages again.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.common.errors import LabError, LabFailure
from lab.common.files import atomic_write
from lab.machines import digests
from lab.machines.boxes import cache
from lab.machines.boxes.boxfile import (
    PROVIDERS,
    catalog,
    libvirt_metadata,
    libvirt_vagrantfile,
    make_box,
    ovf,
    virtualbox_vagrantfile,
)
from lab.machines.boxes.cache import boxes_dir, digest, now, trusted_folder, workdir
from lab.machines.boxes.disk import (
    DISK_GB,
    MBR_BIN,
    assemble_disk,
    extlinux_conf,
    fstab,
    kernel_command_line,
    sfdisk_script,
)
from lab.machines.boxes.rootfs import (
    BUILD_SCRIPT_VERSION,
    DEBIAN_MAJOR,
    VAGRANT_PUB,
    box_packages,
    build_rootfs,
    key_versions,
    recipe_key,
)
from lab.machines.host import Runner
from lab.model.lab import BUILT_BOX_NAME, Lab, built_box_name
from lab.model.platforms import Platform

Say = Callable[[str], None]

BOX_NAME = BUILT_BOX_NAME  # what `boxes.debian: build` boots on debian12; built_box_name() for the others
# Host tools the build runs, and the Debian package each comes from.
TOOLS = {
    "mmdebstrap": "mmdebstrap", "sfdisk": "fdisk", "losetup": "mount", "partx": "util-linux",
    "blkid": "util-linux", "mkfs.ext4": "e2fsprogs", "mount": "mount", "umount": "mount",
    "extlinux": "extlinux", "qemu-img": "qemu-utils", "tar": "tar",
}

RHEL_MESSAGE = (
    "--os rhel: reglab cannot build a RHEL-family box yet. It needs a Rocky or Alma Linux mirror and a "
    "dnf-based bootstrap (dnf --installroot), and no RHEL-family packages are reachable from this host; "
    "use a ready-made box in `boxes.rhel` of the lab file instead"
)


def check_os(os_family: str) -> None:
    """Only Debian boxes can be built; say plainly what RHEL would need (exit 2)."""
    if os_family == "rhel":
        raise LabError(RHEL_MESSAGE)
    if os_family != "debian":
        raise LabError(f"--os {os_family}: expected debian (or rhel, which reglab cannot build yet)")


def providers_for(choice: str) -> tuple[str, ...]:
    if choice == "all":
        return PROVIDERS
    if choice not in PROVIDERS:
        raise LabError(f"--provider {choice}: expected one of {', '.join(PROVIDERS)} or all")
    return (choice,)


def box_key(rootfs_key: str) -> str:
    """The boxes' cache key: the root file system's, plus the disk and box layout."""
    placeholder = "00000000-0000-4000-8000-000000000000"
    layout = {
        "rootfs": rootfs_key,
        "disk_gb": DISK_GB,
        "sfdisk": sfdisk_script(),
        "fstab": fstab(placeholder),
        "extlinux": extlinux_conf(placeholder, "/boot/KERNEL", "/boot/INITRD"),
        "libvirt": [libvirt_vagrantfile(), libvirt_metadata(DISK_GB)],
        "virtualbox": [virtualbox_vagrantfile("080027000000"),
                       ovf("NAME", 1, "080027000000", placeholder, placeholder)],
    }
    return digest(json.dumps(layout, sort_keys=True))


def box_version(built: datetime.datetime, key: str, rootfs_built: str, major: str = DEBIAN_MAJOR) -> str:
    """`12.YYYYMMDD.N`: Debian's major, the day the packages were fetched, then a number
    from the recipe and that build, so a rebuilt root file system is a new version.

    Digits and dots only: a valid Vagrant (RubyGems) version.
    """
    number = int(digest(f"{key}/{rootfs_built}")[:7], 16)
    return f"{major}.{built:%Y%m%d}.{number}"


def box_info(*, provider: str, version: str, key: str, rootfs: Mapping[str, Any], fs_uuid: str,
             kernel: str, built: str, name: str = BOX_NAME) -> dict[str, Any]:
    """reglab.json: what a box is and what it was made from, like the lab images' tags."""
    packages = rootfs.get("packages", {})
    return {
        "name": name,
        "version": version,
        "provider": provider,
        "recipe": key,
        "rootfs_recipe": rootfs.get("recipe"),
        "suite": rootfs.get("suite"),
        "mirror": rootfs.get("mirror"),
        "rootfs_built": rootfs.get("built"),
        "built": built,
        "builder": f"reglab lab/machines/boxes/, build script {BUILD_SCRIPT_VERSION}",
        "kernel": kernel,
        "kernel_command_line": kernel_command_line(fs_uuid),
        "filesystem_uuid": fs_uuid,
        "versions": key_versions(packages),
        "packages": dict(sorted(packages.items())),
    }


@dataclass
class BoxResult:
    name: str
    version: str
    boxes: dict[str, Path]  # provider -> .box file
    catalog: Path
    info: dict[str, dict[str, Any]] = field(repr=False)  # provider -> reglab.json
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds; empty parts came from the cache
    cached: tuple[str, ...] = ()  # what came from the cache ("rootfs", providers)


def require_host() -> None:
    """Root and every tool, checked before anything starts, named with its Debian package."""
    if os.geteuid() != 0:
        raise LabError("building a box needs root (loop devices, mount, mmdebstrap): "
                       "run `sudo reglab box build`")
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if not MBR_BIN.exists():
        missing = sorted({*missing, "extlinux"})
    if missing:
        raise LabError(f"building a box needs host tools this host lacks; on Debian or Ubuntu: "
                       f"apt-get install --no-install-recommends {' '.join(missing)}")


def _as_root() -> bool:
    return os.geteuid() == 0


def _made(folder: Path, provider: str, as_root: bool = False) -> bool:
    """A box of this recipe in the cache; as root, only the one built here (its digests recorded)."""
    box, about = folder / f"{provider}.box", folder / f"{provider}.json"
    if not (box.exists() and about.exists()):
        return False
    return not as_root or (digests.recorded(box, cache.DIGESTS) and digests.recorded(about, cache.DIGESTS))


def build_box(lab: Lab, provider: str, say: Say, os_family: str = "debian") -> BoxResult:
    """The boxes for `provider` (libvirt, virtualbox or all), from the cache when the recipe is unchanged."""
    check_os(os_family)
    wanted = providers_for(provider)
    public_key = VAGRANT_PUB.read_text()
    debian = lab.debian
    name = built_box_name(debian.name)
    packages = box_packages(debian)
    rkey = recipe_key(public_key, debian.suite, packages)
    bkey = box_key(rkey)
    cache = boxes_dir(lab)
    as_root = _as_root()
    if as_root:  # root writes through what is there: only from a cache nobody else can write
        trusted_folder(cache)
    folder = cache / bkey
    result = BoxResult(name, "", {p: folder / f"{p}.box" for p in wanted}, folder / "catalog.json", {})
    missing = [p for p in wanted if not _made(folder, p, as_root)]
    result.cached = tuple(p for p in wanted if p not in missing)
    if missing:
        require_host()
        run = Runner(cache / "logs" / f"build-{bkey}.log")
        began = time.monotonic()
        rootfs, rootfs_info, fresh = build_rootfs(lab, rkey, public_key, run, say, packages)
        if fresh:
            result.timings["rootfs"] = round(time.monotonic() - began, 1)
            say(f"root file system built in {result.timings['rootfs']}s: {rootfs}")
        else:
            result.cached += ("rootfs",)
        built = datetime.datetime.strptime(rootfs_info["built"], "%Y-%m-%dT%H:%M:%SZ")
        version = box_version(built, bkey, rootfs_info["built"], debian.major)
        with workdir(cache, ".disk-") as work:
            began = time.monotonic()
            say("assembling the disk: partition, ext4, EXTLINUX")
            in_guest = {"name": name, "version": version, "recipe": bkey, "mirror": rootfs_info["mirror"],
                        "rootfs_built": rootfs_info["built"]}
            disk = assemble_disk(rootfs, work, run, {"/etc/reglab-box.json": json.dumps(in_guest, indent=2) + "\n"})
            result.timings["disk"] = round(time.monotonic() - began, 1)
            say(f"disk assembled in {result.timings['disk']}s (file system {disk.fs_uuid}, kernel {disk.kernel})")
            for made in missing:
                began = time.monotonic()
                info = box_info(provider=made, version=version, key=bkey, rootfs=rootfs_info,
                                fs_uuid=disk.fs_uuid, kernel=disk.kernel, built=now(), name=name)
                info["sha256"] = make_box(made, disk, work, result.boxes[made], info, bkey, run)
                atomic_write(folder / f"{made}.json", json.dumps(info, indent=2) + "\n")
                digests.record(result.boxes[made], cache.DIGESTS)
                digests.record(folder / f"{made}.json", cache.DIGESTS)
                result.timings[made] = round(time.monotonic() - began, 1)
                size = result.boxes[made].stat().st_size / 1024**2
                say(f"{made} box made in {result.timings[made]}s: {result.boxes[made]} ({size:.0f} MiB)")
    result.info = {p: json.loads((folder / f"{p}.json").read_text()) for p in wanted}
    versions = {info["version"] for info in result.info.values()}
    if len(versions) != 1:
        raise LabFailure(f"the cached boxes in {folder} disagree on their version ({', '.join(sorted(versions))}); "
                         f"remove that folder and build again")
    result.version = versions.pop()
    write_catalog(folder, result.version, debian)
    return result


def write_catalog(folder: Path, version: str, debian: Platform | None = None) -> Path:
    """catalog.json lists every provider's box made for this recipe (added by later builds too)."""
    found = {}
    for about in sorted(folder.glob("*.json")):
        if about.stem in PROVIDERS and (folder / f"{about.stem}.box").exists():
            info = json.loads(about.read_text())
            if info.get("version") == version:
                found[about.stem] = (folder / f"{about.stem}.box", info["sha256"])
    path = folder / "catalog.json"
    name, major = (built_box_name(debian.name), debian.major) if debian else (BOX_NAME, DEBIAN_MAJOR)
    text = json.dumps(catalog(name, version, found, f"Debian {major} made by reglab from Debian packages"),
                      indent=2) + "\n"
    atomic_write(path, text)
    return path

