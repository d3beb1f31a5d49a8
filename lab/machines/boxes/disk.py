"""The box's disk: a raw image with an MBR, EXTLINUX, and one bootable ext4 partition holding
the root file system.

What it is configured with (fstab, the boot menu, the partition table) is
pure text; `assemble_disk` needs root (a loop device, mount) and always gives
back the loop device and the mount it took.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.common.errors import LabFailure
from lab.common.files import write_beneath
from lab.common.polling import poll
from lab.machines.host import Runner

DISK_GB = 20
KERNEL_OPTIONS = "ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0"
MBR_BIN = Path("/usr/lib/EXTLINUX/mbr.bin")
CONVERT_TIMEOUT = 900


def fstab(fs_uuid: str) -> str:
    return (
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n"
    )


def kernel_command_line(fs_uuid: str) -> str:
    """Root by UUID, the console on the serial port too (a boot can be read from a log), eth0 for the NIC."""
    return f"root=UUID={fs_uuid} {KERNEL_OPTIONS}"


def extlinux_conf(fs_uuid: str, kernel: str, initrd: str) -> str:
    """EXTLINUX boots the one kernel the box has, by its path from the file system's root."""
    return (
        "SERIAL 0 115200\n"
        "DEFAULT debian\n"
        "PROMPT 0\n"
        "TIMEOUT 10\n"
        "\n"
        "LABEL debian\n"
        f"  LINUX {kernel}\n"
        f"  INITRD {initrd}\n"
        f"  APPEND {kernel_command_line(fs_uuid)}\n"
    )


def sfdisk_script() -> str:
    """One bootable Linux partition over the whole disk, MBR (EXTLINUX's mbr.bin boots it)."""
    return "label: dos\nunit: sectors\n\nstart=2048, type=83, bootable\n"


def _real_folder(path: Path) -> None:
    """A folder root writes into must be one, not a link to somewhere else (the host's /boot)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise LabFailure(f"{path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise LabFailure(f"{path} is a link or not a folder in the root file system; refusing to write through it")


def _find_boot_files(root: Path) -> tuple[str, str]:
    _real_folder(root / "boot")
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise LabFailure(f"expected one kernel in the root file system's /boot, found {len(kernels)}")
    release = kernels[0].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{release}"
    if not initrd.exists():
        raise LabFailure(f"the root file system has no initrd for kernel {release}")
    return f"/boot/{kernels[0].name}", f"/boot/{initrd.name}"


@dataclass(frozen=True)
class Disk:
    raw: Path
    fs_uuid: str
    kernel: str


def assemble_disk(rootfs: Path, work: Path, run: Runner, extra_files: Mapping[str, str]) -> Disk:
    """A raw disk: MBR with EXTLINUX, one bootable ext4 partition holding the root file system.

    The file system's UUID is chosen here, written into fstab and the boot
    configuration, given to mkfs, and read back from the made file system.
    """
    root = work / "root"
    root.mkdir()
    run(["tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-f", rootfs, "-C", root],
        timeout=CONVERT_TIMEOUT)
    kernel, initrd = _find_boot_files(root)
    fs_uuid = str(uuid.uuid4())
    # Never through a link the tarball holds: these writes run as root.
    write_beneath(root, "etc/fstab", fstab(fs_uuid))
    write_beneath(root, "boot/extlinux/extlinux.conf", extlinux_conf(fs_uuid, kernel, initrd))
    for path, text in extra_files.items():
        write_beneath(root, path, text)
    raw = work / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(DISK_GB * 1024**3)
    run(["sfdisk", "--quiet", raw], stdin=sfdisk_script())
    loop = run(["losetup", "--find", "--show", raw]).stdout.strip()
    mounted = None
    try:
        run(["partx", "-a", loop])
        partition = f"{loop}p1"
        if not poll(lambda: Path(partition).exists(), 10, 0.2):
            raise LabFailure(f"{partition} did not appear after `partx -a {loop}`")
        run(["mkfs.ext4", "-q", "-F", "-O", "^64bit", "-U", fs_uuid, "-L", "reglab-root", "-d", root, partition],
            timeout=CONVERT_TIMEOUT)
        made = run(["blkid", "-s", "UUID", "-o", "value", partition]).stdout.strip()
        if made != fs_uuid:
            raise LabFailure(f"the file system was made with UUID {made!r}, not {fs_uuid} as fstab says")
        mounted = work / "mnt"
        mounted.mkdir()
        run(["mount", partition, mounted])
        _real_folder(mounted / "boot")
        _real_folder(mounted / "boot/extlinux")
        run(["extlinux", "--install", mounted / "boot/extlinux"])
    finally:
        if mounted is not None:
            run(["umount", mounted], check=False)
        run(["partx", "-d", loop], check=False)
        run(["losetup", "-d", loop], check=False)
    mbr = MBR_BIN.read_bytes()[:440]
    with open(raw, "r+b") as handle:
        handle.write(mbr)
    shutil.rmtree(root)
    return Disk(raw, fs_uuid, kernel.removeprefix("/boot/vmlinuz-"))

