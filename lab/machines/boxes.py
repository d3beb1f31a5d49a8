"""Vagrant boxes made here from Debian packages: `reglab box build`.

No Vagrant Cloud and no cloud image: the root file system comes from the
Debian mirror the host already uses (`lab.machines.hostapt`), through its apt proxy,
and everything else is assembled on the host. One recipe gives two boxes:

- libvirt: a qcow2 disk (`box.img`), `metadata.json` with its virtual size,
  a Vagrantfile;
- VirtualBox: a streamOptimized VMDK, `box.ovf` describing one VM (SATA
  disk, NAT NIC), `metadata.json`, a Vagrantfile with the OVF's MAC.

Each box carries `reglab.json`: what was built, from which package versions,
from which mirror, when, and the recipe hash. Results are cached in
`~/.cache/reglab/boxes/` in two layers, keyed by recipe and never by mirror:
the root file system (`rootfs-KEY.tar`, the slow part) and the boxes made
from it (`KEY/`), so a second build is instant and a change to the disk
layout does not fetch packages again.

The parts that only compute text (configuration files, OVF, metadata,
version, cache keys) are pure functions; the parts that run host tools need
root (loop devices, mount) and always give back their loop devices, mounts
and temporary folders.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.common.errors import LabError, LabFailure
from lab.common.files import atomic_write
from lab.common.polling import poll
from lab.machines import hostapt
from lab.machines.host import Runner
from lab.model.labfile import BUILT_BOX_NAME, Lab

Say = Callable[[str], None]

# Bump when the build steps change in a way the texts below do not show: it is part of the cache key.
BUILD_SCRIPT_VERSION = 1
SUITE = "bookworm"
DEBIAN_MAJOR = "12"
BOX_NAME = BUILT_BOX_NAME  # what `boxes.debian: build` in the lab file boots
PROVIDERS = ("libvirt", "virtualbox")
# What the box is made of. systemd, sshd and sudo are what Vagrant needs; ifupdown and dhclient
# bring up eth0; dbus lets hostnamectl work; rsync lets Vagrant's rsync synced folders work.
PACKAGES = (
    "linux-image-amd64", "initramfs-tools", "systemd-sysv", "dbus", "udev", "e2fsprogs", "kmod",
    "openssh-server", "sudo", "ifupdown", "isc-dhcp-client", "iproute2", "iputils-ping", "netbase",
    "ca-certificates", "procps", "less", "rsync",
    # Debian's kernel turns AppArmor on; Docker then refuses to start containers without apparmor_parser.
    "apparmor",
)
# The package versions reglab.json names first; all the others are listed too.
KEY_PACKAGES = ("linux-image-amd64", "systemd", "openssh-server", "sudo", "ifupdown", "isc-dhcp-client")
DISK_GB = 20
MEMORY_MB = 1024
CPUS = 2
HOSTNAME = "reglab"
KERNEL_OPTIONS = "ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0"
VMDK_NAME = "box-disk001.vmdk"
MBR_BIN = Path("/usr/lib/EXTLINUX/mbr.bin")
VAGRANT_PUB = Path(__file__).parent / "images" / "vagrant.pub"

# Host tools the build runs, and the Debian package each comes from.
TOOLS = {
    "mmdebstrap": "mmdebstrap", "sfdisk": "fdisk", "losetup": "mount", "partx": "util-linux",
    "blkid": "util-linux", "mkfs.ext4": "e2fsprogs", "mount": "mount", "umount": "mount",
    "extlinux": "extlinux", "qemu-img": "qemu-utils", "tar": "tar",
}
MMDEBSTRAP_TIMEOUT = 1800
CONVERT_TIMEOUT = 900
VAGRANT_TIMEOUT = 900

RHEL_MESSAGE = (
    "--os rhel: reglab cannot build a RHEL-family box yet. It needs a Rocky or Alma Linux mirror and a "
    "dnf-based bootstrap (dnf --installroot), and no RHEL-family packages are reachable from this host; "
    "use a ready-made box in `boxes.rhel` of the lab file instead"
)


# --- what goes into the box: pure text ------------------------------------------------


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


def customize_script(stage: str, files: Mapping[str, tuple[int, str]]) -> str:
    """The mmdebstrap customize hook: `sh SCRIPT ROOT`. Files come from `stage/files/N`."""
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
        'chroot "$root" systemctl enable ssh.service networking.service',
        # Made on first boot, so every machine has its own.
        'rm -f "$root"/etc/ssh/ssh_host_*',
        ': > "$root/etc/machine-id"',
        'if [ -d "$root/var/lib/dbus" ]; then ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"; fi',
        # The build host's resolver means nothing in a machine; dhclient writes its own.
        'rm -f "$root/etc/resolv.conf"',
        "chroot \"$root\" dpkg-query -W -f '${Package}\\t${Version}\\n' > \"$stage/packages.tsv\"",
    ]
    return "\n".join(lines) + "\n"


def sfdisk_script() -> str:
    """One bootable Linux partition over the whole disk, MBR (EXTLINUX's mbr.bin boots it)."""
    return "label: dos\nunit: sectors\n\nstart=2048, type=83, bootable\n"


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
    return _digest(json.dumps(recipe, sort_keys=True))


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
    return _digest(json.dumps(layout, sort_keys=True))


def box_version(built: datetime.datetime, key: str, rootfs_built: str) -> str:
    """`12.YYYYMMDD.N`: Debian's major, the day the packages were fetched, then a number
    from the recipe and that build, so a rebuilt root file system is a new version.

    Digits and dots only: a valid Vagrant (RubyGems) version.
    """
    number = int(_digest(f"{key}/{rootfs_built}")[:7], 16)
    return f"{DEBIAN_MAJOR}.{built:%Y%m%d}.{number}"


def mac_address(key: str) -> str:
    """A MAC in VirtualBox's range (08:00:27), fixed per recipe, as Vagrant's base_mac spells it."""
    return "080027" + _digest(f"mac/{key}")[:6].upper()


def libvirt_metadata(virtual_size_gb: int) -> dict[str, Any]:
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_size_gb}


def virtualbox_metadata() -> dict[str, Any]:
    return {"provider": "virtualbox"}


def libvirt_vagrantfile() -> str:
    return (
        "# reglab/debian12 for vagrant-libvirt: virtio disk and NIC (eth0), serial console on ttyS0\n"
        'Vagrant.configure("2") do |config|\n'
        '  config.vm.synced_folder ".", "/vagrant", type: "rsync"\n'
        "  config.vm.provider :libvirt do |lv|\n"
        '    lv.disk_bus = "virtio"\n'
        '    lv.nic_model_type = "virtio"\n'
        "  end\n"
        "end\n"
    )


def virtualbox_vagrantfile(mac: str) -> str:
    """base_mac: Vagrant gives the NAT NIC this MAC, the one box.ovf names."""
    return (
        "# reglab/debian12 for VirtualBox: no guest additions, so /vagrant is synced with rsync\n"
        'Vagrant.configure("2") do |config|\n'
        f'  config.vm.base_mac = "{mac}"\n'
        '  config.vm.synced_folder ".", "/vagrant", type: "rsync"\n'
        "end\n"
    )


def ovf(name: str, capacity_bytes: int, mac: str, disk_uuid: str, machine_uuid: str,
        memory_mb: int = MEMORY_MB, cpus: int = CPUS) -> str:
    """The OVF 1.0 description VirtualBox imports: one VM, the VMDK on a SATA (AHCI)
    controller, one NAT NIC (Intel PRO/1000), memory and CPUs.

    The `vbox:Machine` part is what VirtualBox's own exports carry; VirtualBox
    reads the MAC and the disk's attachment from it, the rest from the DMTF part.
    """
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" \
xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{VMDK_NAME}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity_bytes}" ovf:diskId="vmdisk1" ovf:fileRef="file1" \
ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="{disk_uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT">
      <Description>Logical network used by this appliance.</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian_64</Description>
      <vbox:OSType ovf:required="false">Debian_64</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{cpus} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>{memory_mb} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory_mb} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mb}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.16-linux" uuid="{{{machine_uuid}}}" name="{name}" \
OSType="Debian_64">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>
      <Hardware>
        <CPU count="{cpus}"/>
        <Memory RAMSize="{memory_mb}"/>
        <Boot>
          <Order position="1" device="HardDisk"/>
          <Order position="2" device="None"/>
          <Order position="3" device="None"/>
          <Order position="4" device="None"/>
        </Boot>
        <Network>
          <Adapter slot="0" enabled="true" MACAddress="{mac}" type="82540EM">
            <NAT/>
          </Adapter>
        </Network>
        <UART>
          <Port slot="0" enabled="false" IOBase="0x3f8" IRQ="4" hostMode="Disconnected"/>
        </UART>
        <AudioAdapter enabled="false"/>
      </Hardware>
      <StorageControllers>
        <StorageController name="SATA Controller" type="AHCI" PortCount="1" useHostIOCache="false" \
Bootable="true">
          <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
            <Image uuid="{{{disk_uuid}}}"/>
          </AttachedDevice>
        </StorageController>
      </StorageControllers>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>
"""


def box_info(*, provider: str, version: str, key: str, rootfs: Mapping[str, Any], fs_uuid: str,
             kernel: str, built: str) -> dict[str, Any]:
    """reglab.json: what a box is and what it was made from, like the lab images' tags."""
    packages = rootfs.get("packages", {})
    return {
        "name": BOX_NAME,
        "version": version,
        "provider": provider,
        "recipe": key,
        "rootfs_recipe": rootfs.get("recipe"),
        "suite": rootfs.get("suite"),
        "mirror": rootfs.get("mirror"),
        "rootfs_built": rootfs.get("built"),
        "built": built,
        "builder": f"reglab lab/machines/boxes.py, build script {BUILD_SCRIPT_VERSION}",
        "kernel": kernel,
        "kernel_command_line": kernel_command_line(fs_uuid),
        "filesystem_uuid": fs_uuid,
        "versions": key_versions(packages),
        "packages": dict(sorted(packages.items())),
    }


def catalog(name: str, version: str, boxes: Mapping[str, tuple[Path, str]], description: str) -> dict[str, Any]:
    """A Vagrant box catalogue (metadata JSON): what lets a local .box be added with a version."""
    return {
        "name": name,
        "description": description,
        "versions": [{
            "version": version,
            "providers": [
                {"name": provider, "url": path.resolve().as_uri(), "checksum_type": "sha256", "checksum": digest}
                for provider, (path, digest) in sorted(boxes.items())
            ],
        }],
    }


def parse_box_list(machine_readable: str) -> set[tuple[str, str, str]]:
    """`vagrant box list --machine-readable` -> {(name, provider, version)}."""
    found: set[tuple[str, str, str]] = set()
    name = provider = None
    for line in machine_readable.splitlines():
        fields = line.split(",", 3)
        if len(fields) < 4:
            continue
        kind, value = fields[2], fields[3]
        if kind == "box-name":
            name, provider = value, None
        elif kind == "box-provider":
            provider = value
        elif kind == "box-version" and name and provider:
            found.add((name, provider, value))
    return found


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- running the host tools -----------------------------------------------------------


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


def mounts_under(folder: Path, mountinfo: str) -> list[str]:
    """Mount points at or below `folder`, from /proc/self/mountinfo text (octal escapes decoded)."""
    base = str(folder.resolve())
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == base or point.startswith(base + "/"):
                found.append(point)
    return found


@contextmanager
def workdir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards unless something is still mounted in it.

    NOTE: removing a folder with a mount inside deletes what is mounted
    (a bind-mounted /dev or /sys of the host): such a folder is left in
    place and named instead.
    """
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            mountinfo = ""
        mounted = mounts_under(path, mountinfo)
        if mounted:
            raise LabFailure(f"left {path} in place: {', '.join(mounted)} still mounted there; "
                             f"unmount it (umount -R), then remove the folder")
        shutil.rmtree(path)


def boxes_dir(lab: Lab) -> Path:
    return lab.cache_dir / "boxes"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_rootfs(lab: Lab, key: str, public_key: str, run: Runner, say: Say) -> tuple[Path, dict[str, Any], bool]:
    """The root file system as a tarball in the cache (`rootfs-KEY.tar`) with what it holds beside it;
    True when it was built now, False when it came from the cache."""
    cache = boxes_dir(lab)
    target = cache / f"rootfs-{key}.tar"
    about = cache / f"rootfs-{key}.json"
    if target.exists() and about.exists():
        return target, json.loads(about.read_text()), False
    mirror = hostapt.mirror_for(SUITE, lab.mirror)
    proxy = hostapt.host_proxy()
    say(f"fetching Debian {SUITE} packages from {mirror}" + (f" through {proxy}" if proxy else ""))
    with workdir(cache, ".rootfs-") as stage:
        files = guest_files(public_key)
        (stage / "files").mkdir()
        for number, (_, (_, text)) in enumerate(sorted(files.items())):
            (stage / "files" / str(number)).write_text(text)
        script = stage / "customize.sh"
        script.write_text(customize_script(str(stage), files))
        partial = stage / "rootfs.tar"
        (stage / "tmp").mkdir()
        env = {"TMPDIR": str(stage / "tmp")}
        if proxy:
            env["http_proxy"] = proxy
        # Its own mount namespace: what it mounts in the chroot goes away with it, even when killed.
        run(["mmdebstrap", "--mode=unshare", "--variant=minbase", "--format=tar",
             "--include=" + ",".join(PACKAGES),
             "--customize-hook=" + f'sh {shlex.quote(str(script))} "$1"',
             SUITE, partial, mirror], timeout=MMDEBSTRAP_TIMEOUT, env=env)
        packages = parse_packages((stage / "packages.tsv").read_text())
        missing = [p for p in PACKAGES if p not in packages]
        if missing:
            raise LabFailure(f"mmdebstrap finished but the root file system lacks {', '.join(missing)}")
        info = {"recipe": key, "suite": SUITE, "mirror": mirror, "built": _now(), "packages": packages}
        os.replace(partial, target)
        atomic_write(about, json.dumps(info, indent=2) + "\n")
    return target, info, True


def _find_boot_files(root: Path) -> tuple[str, str]:
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
    (root / "etc/fstab").write_text(fstab(fs_uuid))
    (root / "boot/extlinux").mkdir(parents=True, exist_ok=True)
    (root / "boot/extlinux/extlinux.conf").write_text(extlinux_conf(fs_uuid, kernel, initrd))
    for path, text in extra_files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
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


def _virtual_size(image: Path, run: Runner) -> int:
    return int(json.loads(run(["qemu-img", "info", "--output=json", image]).stdout)["virtual-size"])


def _write_box(target: Path, members: Mapping[str, Path | str]) -> str:
    """Tar the box's files (paths, or text for small ones) into `target` atomically; its sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as box:
            for name, content in members.items():
                if isinstance(content, Path):
                    box.add(content, arcname=name, recursive=False)
                else:
                    data = content.encode()
                    entry = tarfile.TarInfo(name)
                    entry.size, entry.mode, entry.mtime = len(data), 0o644, int(time.time())
                    box.addfile(entry, io.BytesIO(data))
        digest = hashlib.sha256()
        with open(partial, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return digest.hexdigest()


def make_box(provider: str, disk: Disk, work: Path, target: Path, info: dict[str, Any], key: str,
             run: Runner) -> str:
    """One provider's .box from the raw disk; returns its sha256."""
    about = json.dumps(info, indent=2) + "\n"
    if provider == "libvirt":
        image = work / "box.img"
        run(["qemu-img", "convert", "-O", "qcow2", disk.raw, image], timeout=CONVERT_TIMEOUT)
        size_gb = -(-_virtual_size(image, run) // 1024**3)
        members: dict[str, Path | str] = {
            "metadata.json": json.dumps(libvirt_metadata(size_gb)) + "\n",
            "Vagrantfile": libvirt_vagrantfile(),
            "reglab.json": about,
            "box.img": image,
        }
    else:
        vmdk = work / VMDK_NAME
        run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", disk.raw, vmdk],
            timeout=CONVERT_TIMEOUT)
        mac = mac_address(key)
        members = {
            "metadata.json": json.dumps(virtualbox_metadata()) + "\n",
            "Vagrantfile": virtualbox_vagrantfile(mac),
            "reglab.json": about,
            "box.ovf": ovf(f"reglab-debian{DEBIAN_MAJOR}", _virtual_size(vmdk, run), mac,
                           str(uuid.uuid4()), str(uuid.uuid4())),
            VMDK_NAME: vmdk,
        }
    try:
        return _write_box(target, members)
    finally:
        for path in members.values():
            if isinstance(path, Path):
                path.unlink(missing_ok=True)


def _made(folder: Path, provider: str) -> bool:
    return (folder / f"{provider}.box").exists() and (folder / f"{provider}.json").exists()


def build_box(lab: Lab, provider: str, say: Say, os_family: str = "debian") -> BoxResult:
    """The boxes for `provider` (libvirt, virtualbox or all), from the cache when the recipe is unchanged."""
    check_os(os_family)
    wanted = providers_for(provider)
    public_key = VAGRANT_PUB.read_text()
    rkey = recipe_key(public_key)
    bkey = box_key(rkey)
    cache = boxes_dir(lab)
    folder = cache / bkey
    result = BoxResult(BOX_NAME, "", {p: folder / f"{p}.box" for p in wanted}, folder / "catalog.json", {})
    missing = [p for p in wanted if not _made(folder, p)]
    result.cached = tuple(p for p in wanted if p not in missing)
    if missing:
        require_host()
        run = Runner(cache / "logs" / f"build-{bkey}.log")
        began = time.monotonic()
        rootfs, rootfs_info, fresh = build_rootfs(lab, rkey, public_key, run, say)
        if fresh:
            result.timings["rootfs"] = round(time.monotonic() - began, 1)
            say(f"root file system built in {result.timings['rootfs']}s: {rootfs}")
        else:
            result.cached += ("rootfs",)
        built = datetime.datetime.strptime(rootfs_info["built"], "%Y-%m-%dT%H:%M:%SZ")
        version = box_version(built, bkey, rootfs_info["built"])
        with workdir(cache, ".disk-") as work:
            began = time.monotonic()
            say("assembling the disk: partition, ext4, EXTLINUX")
            in_guest = {"name": BOX_NAME, "version": version, "recipe": bkey, "mirror": rootfs_info["mirror"],
                        "rootfs_built": rootfs_info["built"]}
            disk = assemble_disk(rootfs, work, run, {"/etc/reglab-box.json": json.dumps(in_guest, indent=2) + "\n"})
            result.timings["disk"] = round(time.monotonic() - began, 1)
            say(f"disk assembled in {result.timings['disk']}s (file system {disk.fs_uuid}, kernel {disk.kernel})")
            for name in missing:
                began = time.monotonic()
                info = box_info(provider=name, version=version, key=bkey, rootfs=rootfs_info,
                                fs_uuid=disk.fs_uuid, kernel=disk.kernel, built=_now())
                info["sha256"] = make_box(name, disk, work, result.boxes[name], info, bkey, run)
                atomic_write(folder / f"{name}.json", json.dumps(info, indent=2) + "\n")
                result.timings[name] = round(time.monotonic() - began, 1)
                size = result.boxes[name].stat().st_size / 1024**2
                say(f"{name} box made in {result.timings[name]}s: {result.boxes[name]} ({size:.0f} MiB)")
    result.info = {p: json.loads((folder / f"{p}.json").read_text()) for p in wanted}
    versions = {info["version"] for info in result.info.values()}
    if len(versions) != 1:
        raise LabFailure(f"the cached boxes in {folder} disagree on their version ({', '.join(sorted(versions))}); "
                         f"remove that folder and build again")
    result.version = versions.pop()
    write_catalog(folder, result.version)
    return result


def write_catalog(folder: Path, version: str) -> Path:
    """catalog.json lists every provider's box made for this recipe (added by later builds too)."""
    found = {}
    for about in sorted(folder.glob("*.json")):
        if about.stem in PROVIDERS and (folder / f"{about.stem}.box").exists():
            info = json.loads(about.read_text())
            if info.get("version") == version:
                found[about.stem] = (folder / f"{about.stem}.box", info["sha256"])
    path = folder / "catalog.json"
    text = json.dumps(catalog(BOX_NAME, version, found, f"Debian {DEBIAN_MAJOR} made by reglab from Debian packages"),
                      indent=2) + "\n"
    atomic_write(path, text)
    return path


def add_box(result: BoxResult, say: Say, providers: Iterable[str] | None = None,
            vagrant: str = "vagrant") -> list[str]:
    """`vagrant box add` each box through the catalogue, so Vagrant knows its version; skip ones it has."""
    if shutil.which(vagrant) is None:
        raise LabError("vagrant is not installed; on Debian or Ubuntu: apt-get install --no-install-recommends vagrant")
    run = Runner(result.catalog.parent.parent / "logs" / "vagrant-box-add.log")
    have = parse_box_list(run([vagrant, "box", "list", "--machine-readable"], timeout=120).stdout)
    added = []
    for provider in providers or result.boxes:
        if (result.name, provider, result.version) in have:
            say(f"{result.name} {result.version} ({provider}) is already in Vagrant")
            continue
        began = time.monotonic()
        run([vagrant, "box", "add", "--provider", provider, result.catalog], timeout=VAGRANT_TIMEOUT)
        result.timings[f"add-{provider}"] = round(time.monotonic() - began, 1)
        say(f"added {result.name} {result.version} ({provider}) to Vagrant in {result.timings[f'add-{provider}']}s")
        added.append(provider)
    if added:
        prune(result, have, added, run, say, vagrant)
    return added


def libvirt_volume(name: str, version: str) -> str:
    """The copy of a box that vagrant-libvirt uploads into libvirt's default storage pool."""
    return f"{name.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_{version}_box.img"


def prune(result: BoxResult, have: set[tuple[str, str, str]], providers: Iterable[str], run: Runner, say: Say,
          vagrant: str = "vagrant") -> None:
    """Remove older versions of reglab's box (700 MB each): from Vagrant, and libvirt's copy from its pool.

    NOTE: never forced: a version a VM still uses stays, and says so.
    """
    for name, provider, version in sorted(have):
        if name != result.name or provider not in providers or version == result.version:
            continue
        try:
            run([vagrant, "box", "remove", name, "--provider", provider, "--box-version", version],
                timeout=VAGRANT_TIMEOUT)
        except LabFailure:
            say(f"kept {name} {version} ({provider}): a machine may still use it")
            continue
        if provider == "libvirt" and shutil.which("virsh"):
            with contextlib.suppress(LabFailure):
                run(["virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default",
                     libvirt_volume(name, version)], timeout=120)
        say(f"removed the older {name} {version} ({provider})")
