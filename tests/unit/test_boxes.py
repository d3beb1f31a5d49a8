"""Vagrant boxes built from Debian packages (issue 8, items 1 and 5): the pure parts, the
cache, and the cleanup of loop devices, all without root, mmdebstrap or Vagrant."""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import shlex
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.common.errors import LabError, LabFailure
from lab.machines import boxes, digests
from lab.machines.boxes import boxfile, build, cache, disk, rootfs, store
from lab.model import labfile
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS

ROOT = Path(__file__).resolve().parents[2]
KEY = (ROOT / "lab/machines/images/vagrant.pub").read_text()
UUID = "3f1c0d2e-8a4b-4c6d-9e0f-112233445566"
OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
VBOX = "{http://www.virtualbox.org/ovf/machine}"
# RubyGems' Gem::Version::ANCHORED_VERSION_PATTERN, which Vagrant uses for box versions.
GEM_VERSION = re.compile(r"\A\s*([0-9]+(?>\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)?\s*\Z")


# --- the files inside the machine ------------------------------------------------------


def test_fstab_mounts_root_by_the_given_uuid():
    assert re.search(rf"^UUID={UUID}\s+/\s+ext4\s+\S+\s+0\s+1$", disk.fstab(UUID), re.M)


def test_extlinux_conf_boots_the_kernel_with_a_serial_console_and_eth0():
    text = disk.extlinux_conf(UUID, "/boot/vmlinuz-6.1.0-9-amd64", "/boot/initrd.img-6.1.0-9-amd64")
    append = re.search(r"^\s*APPEND (.*)$", text, re.M).group(1).split()
    assert f"root=UUID={UUID}" in append
    assert "console=ttyS0,115200n8" in append and "net.ifnames=0" in append
    assert re.search(r"^\s*LINUX /boot/vmlinuz-6.1.0-9-amd64$", text, re.M)
    assert re.search(r"^\s*INITRD /boot/initrd.img-6.1.0-9-amd64$", text, re.M)
    assert text.splitlines()[0] == "SERIAL 0 115200"


def test_first_boot_makes_ssh_host_keys_before_sshd_starts():
    lines = rootfs.hostkeys_dropin().splitlines()
    service = lines.index("[Service]")
    # The empty ExecStartPre= clears Debian's own list, so the keys come first.
    assert lines[service + 1:service + 4] == [
        "ExecStartPre=", "ExecStartPre=/usr/bin/ssh-keygen -A", "ExecStartPre=/usr/sbin/sshd -t"]


def test_guest_files_give_vagrant_its_key_and_sudo_and_stop_initrd_rebuilds():
    files = rootfs.guest_files(KEY)
    assert files["/home/vagrant/.ssh/authorized_keys"] == (0o600, KEY.strip() + "\n")
    assert files["/etc/sudoers.d/vagrant"] == (0o440, "vagrant ALL=(ALL) NOPASSWD:ALL\n")
    assert "update_initramfs=no" in files["/etc/initramfs-tools/update-initramfs.conf"][1].split()
    assert "/etc/systemd/system/ssh.service.d/reglab-hostkeys.conf" in files
    interfaces = files["/etc/network/interfaces"][1]
    assert re.search(r"^allow-hotplug eth0$", interfaces, re.M)
    assert re.search(r"^iface eth0 inet dhcp$", interfaces, re.M)


def test_customize_script_installs_each_file_with_its_mode_and_leaves_no_identity(tmp_path):
    stage = str(tmp_path / "a stage; with spaces")
    files = rootfs.guest_files(KEY)
    script = rootfs.customize_script(stage, files)
    assert f"stage={shlex.quote(stage)}" in script
    for number, (path, (mode, _)) in enumerate(sorted(files.items())):
        assert f'install -D -m {mode:04o} "$stage/files/{number}" "$root"{path}' in script
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in script
    assert ': > "$root/etc/machine-id"' in script
    # The user exists before its key is handed to it.
    assert script.index("useradd") < script.index("chown -R vagrant:vagrant /home/vagrant/.ssh")
    checked = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


# --- box metadata, OVF, version ----------------------------------------------------------


def test_libvirt_and_virtualbox_metadata():
    assert boxfile.libvirt_metadata(20) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 20}
    assert boxfile.virtualbox_metadata() == {"provider": "virtualbox"}


def test_ovf_is_well_formed_with_the_disk_on_sata_a_nat_nic_and_the_vagrantfiles_mac():
    mac = boxfile.mac_address("abc")
    text = boxfile.ovf("reglab-debian12", 21474836480, mac, UUID, "9b2f6a40-1c3d-4e5f-8a9b-0c1d2e3f4a5b")
    root = ET.fromstring(text.encode())
    files = root.findall(f"{OVF}References/{OVF}File")
    assert [f.get(f"{OVF}href") for f in files] == [boxfile.VMDK_NAME]
    disk = root.find(f"{OVF}DiskSection/{OVF}Disk")
    assert disk.get(f"{OVF}fileRef") == files[0].get(f"{OVF}id")
    assert disk.get(f"{OVF}capacity") == "21474836480"
    assert disk.get(f"{OVF}format").endswith("#streamOptimized")
    systems = root.findall(f"{OVF}VirtualSystem")
    assert len(systems) == 1
    items = {i.find(f"{RASD}InstanceID").text: i for i in systems[0].iter(f"{OVF}Item")}
    by_type = {i.find(f"{RASD}ResourceType").text: i for i in items.values()}
    controller, hard_disk, nic = by_type["20"], by_type["17"], by_type["10"]
    assert controller.find(f"{RASD}ResourceSubType").text == "AHCI"
    assert hard_disk.find(f"{RASD}Parent").text == controller.find(f"{RASD}InstanceID").text
    assert hard_disk.find(f"{RASD}HostResource").text.endswith("/" + disk.get(f"{OVF}diskId"))
    assert nic.find(f"{RASD}Connection").text == "NAT"
    assert by_type["4"].find(f"{RASD}VirtualQuantity").text == str(boxfile.MEMORY_MB)
    assert by_type["3"].find(f"{RASD}VirtualQuantity").text == str(boxfile.CPUS)
    machine = systems[0].find(f"{VBOX}Machine")
    adapter = machine.find(f"{OVF}Hardware/{OVF}Network/{OVF}Adapter")
    assert adapter.get("MACAddress") == mac and adapter.find(f"{OVF}NAT") is not None
    image = machine.find(f".//{OVF}AttachedDevice/{OVF}Image")
    assert image.get("uuid") == "{" + disk.get(f"{VBOX}uuid") + "}"
    assert f'config.vm.base_mac = "{mac}"' in boxfile.virtualbox_vagrantfile(mac)


def test_mac_is_virtualbox_range_twelve_hex_digits():
    mac = boxfile.mac_address("some recipe")
    assert re.fullmatch(r"080027[0-9A-F]{6}", mac)
    assert mac != boxfile.mac_address("another recipe")


def test_version_is_a_valid_vagrant_version_that_names_the_day():
    day = datetime.datetime(2026, 11, 29, 6, 16, 47)
    version = build.box_version(day, "984a207219b82ab7", "2026-11-29T06:16:47Z")
    assert GEM_VERSION.match(version)
    assert re.fullmatch(r"13\.20261129\.\d+", version)  # the default platform's Debian major
    assert re.fullmatch(r"12\.20261129\.\d+", build.box_version(day, "984a207219b82ab7", "2026-11-29T06:16:47Z", "12"))


def test_a_rebuilt_root_file_system_is_a_new_version_and_the_same_one_is_not():
    day = datetime.datetime(2026, 11, 29)
    first = build.box_version(day, "k", "2026-11-29T06:16:47Z")
    assert first == build.box_version(day, "k", "2026-11-29T06:16:47Z")
    assert first != build.box_version(day, "k", "2026-11-29T09:00:00Z")
    assert first != build.box_version(day, "other", "2026-11-29T06:16:47Z")


def test_catalog_lists_each_provider_with_a_file_url_and_checksum(tmp_path):
    box = tmp_path / "libvirt.box"
    found = boxfile.catalog("reglab/debian12", "12.20261129.1", {"libvirt": (box, "ab" * 32)}, "d")
    assert found["name"] == "reglab/debian12"
    [version] = found["versions"]
    assert version["version"] == "12.20261129.1"
    assert version["providers"] == [{"name": "libvirt", "url": box.as_uri(), "checksum_type": "sha256",
                                     "checksum": "ab" * 32}]


def test_box_info_names_the_kernel_systemd_sshd_and_sudo_versions():
    packages = {"linux-image-amd64": "6.1.176-1", "linux-image-6.1.0-50-amd64": "6.1.176-1",
                "systemd": "252.39-1", "openssh-server": "1:9.2p1-2", "sudo": "1.9.13p3-1", "bash": "5.2"}
    info = build.box_info(provider="libvirt", version="12.1.2", key="k",
                          rootfs={"recipe": "r", "suite": "bookworm", "mirror": "http://mirror.example/debian",
                                  "built": "2026-11-29T06:16:47Z", "packages": packages},
                          fs_uuid=UUID, kernel="6.1.0-50-amd64", built="2026-11-29T06:17:01Z")
    assert info["versions"] == {k: v for k, v in packages.items() if k != "bash"}
    assert info["packages"]["bash"] == "5.2"
    assert (info["mirror"], info["recipe"], info["rootfs_recipe"]) == ("http://mirror.example/debian", "k", "r")
    assert f"root=UUID={UUID}" in info["kernel_command_line"]


def test_dpkg_query_output_is_parsed_into_versions():
    assert rootfs.parse_packages("sudo\t1.9.13p3-1\nbroken line\nsystemd\t252.39-1\n") == {
        "sudo": "1.9.13p3-1", "systemd": "252.39-1"}


def test_vagrant_box_list_is_parsed_per_provider_and_version(tmp_path, monkeypatch):
    out = ("1795933307,,ui,info,reglab/debian12 (libvirt%!(VAGRANT_COMMA) 12.20261129.47332481)\n"
           "1795933307,,box-name,reglab/debian12\n1795933307,,box-provider,libvirt\n"
           "1795933307,,box-version,12.20261129.47332481\n"
           "1795933307,,box-name,generic/debian12\n1795933307,,box-provider,virtualbox\n"
           "1795933307,,box-version,4.3.12\n")
    vagrant = FakeVagrant(tmp_path, monkeypatch, out)
    assert store.installed(vagrant.timed) == {("reglab/debian12", "libvirt", "12.20261129.47332481"),
                                              ("generic/debian12", "virtualbox", "4.3.12")}
    assert vagrant.calls() == [["vagrant", "box", "list", "--machine-readable"]]


# --- cache keys ------------------------------------------------------------------------------


def test_the_cache_key_changes_with_the_recipe(monkeypatch):
    key = rootfs.recipe_key(KEY)
    assert key == rootfs.recipe_key(KEY)
    assert key != rootfs.recipe_key(KEY, packages=(*rootfs.PACKAGES, "curl"))
    assert key != rootfs.recipe_key(KEY, suite="bookworm" if rootfs.SUITE == "trixie" else "trixie")
    assert key != rootfs.recipe_key(KEY.replace("insecure", "other"))
    monkeypatch.setattr(rootfs, "BUILD_SCRIPT_VERSION", rootfs.BUILD_SCRIPT_VERSION + 1)
    assert key != rootfs.recipe_key(KEY)


def test_the_box_key_follows_the_root_file_system_and_the_disk_layout(monkeypatch):
    key = build.box_key("rootfs-a")
    assert key != build.box_key("rootfs-b")
    monkeypatch.setattr(build, "DISK_GB", build.DISK_GB + 1)
    assert key != build.box_key("rootfs-a")


def lab_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: str) -> labfile.Lab:
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / f"lab-{len(mirror)}.yml"
    path.write_text(f"mirror: {mirror}\n")
    return labfile.load(path, environ={})


@pytest.fixture(autouse=True)
def digest_store(tmp_path, monkeypatch) -> Path:
    """Where root's builds record their digests: a folder of the test's, never /var/lib."""
    folder = tmp_path / "digests"
    monkeypatch.setattr(cache, "DIGESTS", folder)
    return folder


@pytest.mark.parametrize("as_root", [False, True])
def test_a_second_build_comes_from_the_cache_whatever_the_mirror(tmp_path, monkeypatch, as_root):
    """Boxes already made for this recipe are returned without root, mmdebstrap or any command
    (as root: the boxes built here, their digests recorded)."""
    monkeypatch.setattr(build, "_as_root", lambda: as_root)
    platform = PLATFORMS[DEFAULT_PLATFORM]
    folder = tmp_path / "cache" / "boxes" / build.box_key(rootfs.recipe_key(KEY, platform.suite,
                                                                            rootfs.box_packages(platform)))
    folder.mkdir(parents=True)
    (folder / "libvirt.box").write_bytes(b"box")
    (folder / "libvirt.json").write_text(json.dumps({"version": "12.20261129.5", "sha256": "cd" * 32}))
    if as_root:
        digests.record(folder / "libvirt.box", cache.DIGESTS)
        digests.record(folder / "libvirt.json", cache.DIGESTS)

    def no_command(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", no_command)
    monkeypatch.setattr(subprocess, "Popen", no_command)  # what host.Runner starts commands with
    monkeypatch.setattr(build, "require_host", lambda: no_command("require_host"))
    for mirror in ("http://one.example/debian", "http://two.example:3142/debian"):
        result = boxes.build_box(lab_with(tmp_path, monkeypatch, mirror), "libvirt", lambda m: None)
        assert result.boxes == {"libvirt": folder / "libvirt.box"}
        assert (result.version, result.cached, result.timings) == ("12.20261129.5", ("libvirt",), {})
    catalog = json.loads((folder / "catalog.json").read_text())
    assert catalog["versions"][0]["providers"][0]["url"] == (folder / "libvirt.box").as_uri()


# --- what is refused ----------------------------------------------------------------------------


def test_rhel_is_refused_with_what_it_would_need():
    with pytest.raises(LabError) as refused:
        boxes.check_os("rhel")
    assert all(word in str(refused.value) for word in ("Rocky", "Alma", "dnf", "mirror"))


def test_an_unknown_provider_is_bad_input():
    assert boxes.providers_for("all") == ("libvirt", "virtualbox")
    with pytest.raises(LabError, match="--provider vmware"):
        boxes.providers_for("vmware")


def test_building_without_root_says_so(monkeypatch):
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        build.require_host()


def test_missing_tools_are_named_by_their_debian_packages(monkeypatch):
    monkeypatch.setattr(build.os, "geteuid", lambda: 0)
    monkeypatch.setattr(build.shutil, "which", lambda tool: None if tool in ("sfdisk", "qemu-img") else tool)
    with pytest.raises(LabError, match=r"apt-get install --no-install-recommends .*fdisk.*qemu-utils"):
        build.require_host()


class FakeHost:
    """The host tools for assemble_disk: records each call, fails the one named."""

    def __init__(self, fail: str | None) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout=0, stdin=None, env=None, check=True):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        if argv[0] == "tar":
            root = Path(argv[argv.index("-C") + 1])
            (root / "boot").mkdir(parents=True)
            (root / "etc").mkdir()
            (root / "boot/vmlinuz-6.1.0-9-amd64").write_text("k")
            (root / "boot/initrd.img-6.1.0-9-amd64").write_text("i")
        if argv[0] == "mount":  # the file system made from that tree
            (Path(argv[-1]) / "boot/extlinux").mkdir(parents=True)
        if argv[0] == self.fail:
            raise LabFailure(f"{argv[0]} failed")
        out = ""
        if argv[0] == "losetup" and "--find" in argv:
            out = "/dev/loop9\n"
        elif argv[0] == "blkid":  # the file system has the UUID mkfs was given
            mkfs = next(c for c in self.calls if c[0] == "mkfs.ext4")
            out = mkfs[mkfs.index("-U") + 1] + "\n"
        return subprocess.CompletedProcess(argv, 0, out, "")


@pytest.mark.parametrize(("fail", "mounted"), [("mkfs.ext4", False), ("extlinux", True)])
def test_the_loop_device_is_always_detached(tmp_path, monkeypatch, fail, mounted):
    monkeypatch.setattr(disk, "poll", lambda *a, **k: True)
    host = FakeHost(fail)
    with pytest.raises(LabFailure, match=fail):
        disk.assemble_disk(tmp_path / "rootfs.tar", tmp_path, host, {})
    tools = [c[0] for c in host.calls]
    assert tools[-2:] == ["partx", "losetup"] and host.calls[-1] == ["losetup", "-d", "/dev/loop9"]
    assert ("umount" in tools) is mounted


def test_a_disk_gets_fstab_and_boot_configuration_for_the_file_system_made(tmp_path, monkeypatch):
    monkeypatch.setattr(disk, "poll", lambda *a, **k: True)
    monkeypatch.setattr(disk, "MBR_BIN", tmp_path / "mbr.bin")
    (tmp_path / "mbr.bin").write_bytes(b"\xeb" * 440)
    host = FakeHost(None)
    seen = {}
    real_rmtree = disk.shutil.rmtree

    def keep(path, *args, **kwargs):
        seen["fstab"] = (Path(path) / "etc/fstab").read_text()
        seen["extlinux"] = (Path(path) / "boot/extlinux/extlinux.conf").read_text()
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(disk.shutil, "rmtree", keep)
    made = disk.assemble_disk(tmp_path / "rootfs.tar", tmp_path, host, {"/etc/reglab-box.json": "{}\n"})
    mkfs = next(c for c in host.calls if c[0] == "mkfs.ext4")
    assert mkfs[mkfs.index("-U") + 1] == made.fs_uuid and "^64bit" in mkfs
    assert seen["fstab"] == disk.fstab(made.fs_uuid)
    assert f"root=UUID={made.fs_uuid}" in seen["extlinux"]
    assert made.kernel == "6.1.0-9-amd64"
    with open(made.raw, "rb") as raw:
        assert raw.read(440) == b"\xeb" * 440
    assert ["losetup", "-d", "/dev/loop9"] in host.calls


# --- a root build trusts nothing another user could have put in the cache (issue 17, item 6) ----------


def planted_rootfs(tmp_path: Path) -> tuple[Path, Path]:
    """A root file system tarball as an attacker would plant it: `etc` a link to a folder outside
    (standing for the host's /etc), with a kernel and an initrd so the build goes on."""
    tree, outside = tmp_path / "tree", tmp_path / "host-etc"
    (tree / "boot").mkdir(parents=True)
    outside.mkdir()
    (tree / "boot/vmlinuz-6.1.0-9-amd64").write_text("k")
    (tree / "boot/initrd.img-6.1.0-9-amd64").write_text("i")
    (tree / "etc").symlink_to(outside)
    tarball = tmp_path / "rootfs-planted.tar"
    subprocess.run(["tar", "-c", "-f", tarball, "-C", tree, "."], check=True)
    return tarball, outside


def only_tar(argv, timeout=0, stdin=None, env=None, check=True):
    """A stub runner: tar really runs (it unpacks the tarball); every other host tool is refused."""
    argv = [str(a) for a in argv]
    if argv[0] != "tar":
        raise LabFailure(f"stub: {argv[0]} refused")
    return subprocess.run(argv, capture_output=True, text=True, check=True)


def test_a_planted_tarball_does_not_make_root_write_through_its_links(tmp_path):
    tarball, outside = planted_rootfs(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises((LabError, LabFailure), match="link"):
        disk.assemble_disk(tarball, work, only_tar, {"/etc/reglab-box.json": "{}\n"})
    assert list(outside.iterdir()) == []  # nothing written through `etc`


def test_boot_as_a_link_is_refused_before_anything_is_written(tmp_path):
    tree, outside = tmp_path / "tree", tmp_path / "host-boot"
    outside.mkdir()
    (outside / "vmlinuz-6.1.0-9-amd64").write_text("k")
    (outside / "initrd.img-6.1.0-9-amd64").write_text("i")
    (tree / "etc").mkdir(parents=True)
    (tree / "boot").symlink_to(outside)
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-c", "-f", tarball, "-C", tree, "."], check=True)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(LabFailure, match="link"):
        disk.assemble_disk(tarball, work, only_tar, {})
    assert sorted(p.name for p in outside.iterdir()) == ["initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-9-amd64"]


def test_a_cached_rootfs_is_used_only_when_its_digest_was_recorded_here(tmp_path, monkeypatch):
    lab = lab_with(tmp_path, monkeypatch, "http://deb.example/debian")
    folder = cache.boxes_dir(lab)
    folder.mkdir(parents=True)
    planted, _ = planted_rootfs(tmp_path)
    target = folder / "rootfs-KEY.tar"
    os.replace(planted, target)
    (folder / "rootfs-KEY.json").write_text(json.dumps({"built": "2026-12-01T00:00:00Z"}))
    monkeypatch.setattr(rootfs.hostapt, "mirror_for", lambda suite, mirror: mirror)
    monkeypatch.setattr(rootfs.hostapt, "host_proxy", lambda: None)

    def mmdebstrap(argv, **kwargs):
        raise LabFailure(f"stub: {argv[0]} ran")

    said = []
    with pytest.raises(LabFailure, match="mmdebstrap ran"):  # planted: built again, not used
        rootfs.build_rootfs(lab, "KEY", KEY, mmdebstrap, said.append)
    assert "not the one built here" in said[0]
    digests.record(target, cache.DIGESTS)
    digests.record(folder / "rootfs-KEY.json", cache.DIGESTS)
    assert rootfs.build_rootfs(lab, "KEY", KEY, mmdebstrap, said.append)[2] is False  # built here: reused
    with open(target, "ab") as handle:  # changed after it was built: not the one recorded
        handle.write(b"x")
    with pytest.raises(LabFailure, match="mmdebstrap ran"):
        rootfs.build_rootfs(lab, "KEY", KEY, mmdebstrap, said.append)


def test_a_cached_box_is_reused_by_root_only_when_its_digest_was_recorded_here(tmp_path):
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "libvirt.box").write_bytes(b"box")
    (folder / "libvirt.json").write_text("{}")
    assert build._made(folder, "libvirt") and not build._made(folder, "libvirt", as_root=True)
    digests.record(folder / "libvirt.box", cache.DIGESTS)
    digests.record(folder / "libvirt.json", cache.DIGESTS)
    assert build._made(folder, "libvirt", as_root=True)


def test_a_cache_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    assert cache.trusted_folder(folder / "boxes") == folder / "boxes"
    os.chmod(folder, 0o777)
    with pytest.raises(LabError, match=r"others can write to .*cache \(mode 0777\)"):
        cache.trusted_folder(folder / "boxes")
    os.chmod(folder, 0o1777)  # sticky above the cache: others cannot rename what is ours there
    assert cache.trusted_folder(folder / "boxes")
    with pytest.raises(LabError, match="others can write"):  # but the cache itself sticky and open: refused
        cache.trusted_folder(folder)


def test_a_cache_in_another_users_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    folder.mkdir(mode=0o700)
    real, home = os.lstat, folder.resolve()

    def owned_by_someone(path, *args, **kwargs):
        info = real(path, *args, **kwargs)
        if str(path) == str(home):
            values = list(info)
            values[stat.ST_UID] = 4242
            return os.stat_result(values)
        return info

    monkeypatch.setattr(cache.os, "lstat", owned_by_someone)
    with pytest.raises(LabError, match="belongs to uid 4242"):
        cache.trusted_folder(folder / ".cache" / "reglab" / "boxes")


def test_root_builds_only_from_a_trusted_cache(tmp_path, monkeypatch):
    lab = lab_with(tmp_path, monkeypatch, "http://deb.example/debian")
    os.chmod(tmp_path, 0o777)
    monkeypatch.setattr(build, "_as_root", lambda: True)
    with pytest.raises(LabError, match="others can write"):
        boxes.build_box(lab, "libvirt", lambda m: None)
    os.chmod(tmp_path, 0o700)


# --- boxes in Vagrant: `vagrant box` through the provider's TimedVagrant -------------------------------

FAKE_VAGRANT = """#!/bin/sh
# A fake `vagrant`: records each call's arguments (one a line) and, for `box remove`, what its stdin is;
# lists the boxes in $FAKE_LIST; refuses to remove a version named in $FAKE_IN_USE.
printf '%s\\n' --- "$(basename "$0")" "$@" >> "$FAKE_RECORD"
case "$1 $2" in
  "box list") cat "$FAKE_LIST" ;;
  "box remove")
    readlink /proc/self/fd/0 >> "$FAKE_RECORD.stdin"
    case " $* " in *" $FAKE_IN_USE "*) echo "box in use" >&2; exit 1 ;; esac ;;
esac
exit 0
"""


def box_listing(*boxes_: tuple[str, str, str]) -> str:
    return "".join(f"1,,box-name,{n}\n1,,box-provider,{p}\n1,,box-version,{v}\n" for n, p, v in boxes_)


class FakeVagrant:
    """The TimedVagrant `box_vagrant(lab)` makes, running a fake `vagrant` script."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str, in_use: str = "none") -> None:
        from lab.machines.providers.vagrant import box_vagrant

        self.record = tmp_path / "vagrant-calls"
        (tmp_path / "bin").mkdir(exist_ok=True)
        script = tmp_path / "bin" / "vagrant"
        script.write_text(FAKE_VAGRANT)
        script.chmod(0o755)
        (tmp_path / "listing").write_text(listing)
        for name, value in (("FAKE_RECORD", self.record), ("FAKE_LIST", tmp_path / "listing"),
                            ("FAKE_IN_USE", in_use)):
            monkeypatch.setenv(name, str(value))
        self.timed = box_vagrant(lab_with(tmp_path, monkeypatch, "http://mirror.example/debian"))
        self.timed._vagrant_exe = str(script)

    def calls(self) -> list[list[str]]:
        text = self.record.read_text() if self.record.exists() else ""
        return [c.splitlines() for c in text.split("---\n") if c]


def test_add_box_adds_through_the_catalogue_and_skips_what_vagrant_has(tmp_path, monkeypatch):
    vagrant = FakeVagrant(tmp_path, monkeypatch, box_listing(("reglab/debian12", "libvirt", "12.1.2")))
    catalog = tmp_path / "k" / "catalog.json"
    result = boxes.BoxResult("reglab/debian12", "12.1.2",
                             {"libvirt": tmp_path / "k/libvirt.box", "virtualbox": tmp_path / "k/virtualbox.box"},
                             catalog, {})
    assert boxes.add_box(result, lambda m: None, vagrant.timed) == ["virtualbox"]
    calls = vagrant.calls()
    assert calls[-1] == ["vagrant", "box", "add", "--provider", "virtualbox", str(catalog)]
    assert "$ " + vagrant.timed._vagrant_exe + " box add" in vagrant.timed.log_path.read_text()
    assert vagrant.timed.log_path == tmp_path / "cache" / "boxes" / "logs" / "vagrant-box.log"


def test_vagrant_not_installed_is_said_before_adding(tmp_path, monkeypatch):
    from lab.machines.providers.vagrant import VAGRANT_MISSING, box_vagrant

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = boxes.BoxResult("reglab/debian12", "12.1.2", {"libvirt": tmp_path / "libvirt.box"},
                             tmp_path / "catalog.json", {})
    with pytest.raises(LabError) as refused:
        boxes.add_box(result, lambda m: None, box_vagrant(lab_with(tmp_path, monkeypatch, "http://m.example/d")))
    assert str(refused.value) == VAGRANT_MISSING


def test_a_warm_box_is_found_and_older_ones_removed_unless_a_machine_uses_them(tmp_path, monkeypatch):
    """Warm boxes are listed, added and removed through the same TimedVagrant, never answering a question."""
    from lab.machines import warm

    vagrant = FakeVagrant(tmp_path, monkeypatch, box_listing(
        ("reglab/warm-debian-aaaa", "libvirt", "1.0.0"), ("reglab/warm-debian-bbbb", "libvirt", "1.0.0"),
        ("reglab/warm-debian-cccc", "libvirt", "1.0.0"), ("reglab/debian12", "libvirt", "12.1.2")),
        in_use="reglab/warm-debian-bbbb")
    virsh = tmp_path / "bin" / "virsh"
    virsh.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/virsh-calls\n')
    virsh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    said: list[str] = []
    store_ = warm.LibvirtWarm(tmp_path / "cache", said.append, vagrant.timed)
    key = warm.WarmKey("aaaa", "debian", {})
    assert store_.find(key) == "reglab/warm-debian-aaaa"
    assert store_.find(warm.WarmKey("dddd", "debian", {})) is None
    assert store_.prune("reglab/warm-debian-aaaa") == ["reglab/warm-debian-cccc"]
    removed = [c for c in vagrant.calls() if c[1:3] == ["box", "remove"]]
    assert [c[3] for c in removed] == ["reglab/warm-debian-bbbb", "reglab/warm-debian-cccc"]
    assert said == ["kept reglab/warm-debian-bbbb: a machine may still use it"]
    volume = (tmp_path / "virsh-calls").read_text().split()[-1]
    assert volume == "reglab-VAGRANTSLASH-warm-debian-cccc_vagrant_box_image_1.0.0_box.img"
    assert set((tmp_path / "vagrant-calls.stdin").read_text().split()) == {"/dev/null"}


# --- no mirror host names ---------------------------------------------------------------------------

# Built from parts, so this file does not contain what it looks for.
_DEBIAN = r"debian" + r"\.org"
MIRROR_HOSTS = re.compile(
    rf"\b(?:deb|ftp|ftp\.[a-z]{{2}}|security|httpredir|cdn-fastly\.deb|snapshot)\.{_DEBIAN}"
    r"|\b(?:[a-z]{2}\.)?archive\.ubuntu" + r"\.com|\bsecurity\.ubuntu" + r"\.com"
    r"|\b(?:dl\.rockylinux|repo\.almalinux)" + r"\.org|\bmirror(?:list)?\.centos" + r"\.org",
    re.I,
)


def test_no_code_or_test_names_a_mirror_host():
    """Mirrors come from the host's apt sources or the lab file, never from reglab itself."""
    files = [p for folder in ("lab", "tests", "scenarios", "benchmarks") for p in (ROOT / folder).rglob("*")
             if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".j2", ".md", ".Dockerfile", ".txt", "")]
    files += [ROOT / name for name in ("README.md", "Vagrantfile", "tox.ini", "pyproject.toml")]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files if p.exists()
             for m in MIRROR_HOSTS.finditer(p.read_text(errors="replace"))]
    assert found == []
    assert MIRROR_HOSTS.search("deb http://deb." + _DEBIAN.replace("\\", "") + "/debian bookworm main")


def test_mount_points_below_a_folder_are_found_in_mountinfo(tmp_path):
    base = tmp_path / "work dir"
    mountinfo = (f"36 25 0:32 / {tmp_path}/work\\040dir/root/sys rw - sysfs sysfs rw\n"
                 f"37 25 0:33 / {tmp_path}/work\\040dir2 rw - tmpfs tmpfs rw\n"
                 "38 25 0:34 / /proc rw - proc proc rw\n")
    assert cache.mounts_under(base, mountinfo) == [f"{base}/root/sys"]


def test_a_work_folder_with_a_mount_inside_is_left_alone(tmp_path, monkeypatch):
    """rmtree through a leftover bind mount of /dev or /sys would delete the host's own."""
    monkeypatch.setattr(cache, "mounts_under", lambda folder, info: [f"{folder}/root/dev"])
    with pytest.raises(LabFailure, match="still mounted"), cache.workdir(tmp_path, ".disk-") as work:
        (work / "file").write_text("x")
    assert (work / "file").exists()
    monkeypatch.setattr(cache, "mounts_under", lambda folder, info: [])
    with cache.workdir(tmp_path, ".disk-") as work:
        (work / "file").write_text("x")
    assert not work.exists()


# --- reglab box build ------------------------------------------------------------------------------


def reglab(*argv: str) -> tuple[int, str, str]:
    from lab.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.fixture
def cli_lab(tmp_path, monkeypatch) -> Path:
    """A lab file, a cache in tmp_path, and no process at all."""
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    for name in ("REGLAB_PROVIDER", "REGLAB_MIRROR", "REGLAB_LAB"):
        monkeypatch.delenv(name, raising=False)

    def no_process(*args, **kwargs):
        raise AssertionError(f"a unit test started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    path = tmp_path / "lab.yml"
    path.write_text("provider: libvirt\n")
    return path


@pytest.fixture
def built(tmp_path, monkeypatch) -> dict:
    """build_box and add_box replaced: what they were asked, and a made box."""
    asked: dict = {}
    box = tmp_path / "k" / "libvirt.box"
    box.parent.mkdir()
    box.write_bytes(b"x" * 2048)

    def build_box(lab, provider, say, os_family="debian"):
        boxes.check_os(os_family)
        asked.update(provider=provider, os=os_family, mirror=lab.mirror)
        return boxes.BoxResult("reglab/debian12", "12.20261129.7", {"libvirt": box}, box.parent / "catalog.json",
                               {}, cached=("rootfs", "libvirt"))

    def add_box(result, say, vagrant):
        asked["added"] = result.version
        return ["libvirt"]

    monkeypatch.setattr(boxes, "build_box", build_box)
    monkeypatch.setattr(boxes, "add_box", add_box)
    return asked


def test_box_build_prints_the_box_and_adds_it_to_vagrant(cli_lab, built):
    code, out, err = reglab("--lab", str(cli_lab), "box", "build")
    assert code == 0, err
    assert built == {"provider": "libvirt", "os": "debian", "mirror": None, "added": "12.20261129.7"}
    assert "reglab/debian12 12.20261129.7 (libvirt): " in out and "(from the cache)" in out
    assert "added: libvirt" in out


def test_box_build_for_a_docker_lab_builds_both_and_no_add_skips_vagrant(cli_lab, built):
    cli_lab.write_text("provider: docker\n")
    code, _, err = reglab("--lab", str(cli_lab), "box", "build", "--no-add")
    assert code == 0, err
    assert built["provider"] == "all" and "added" not in built
    code, _, _ = reglab("--lab", str(cli_lab), "--provider", "docker", "box", "build", "--provider", "virtualbox",
                        "--no-add")
    assert (code, built["provider"]) == (0, "virtualbox")


def test_box_build_os_rhel_is_exit_2_with_what_it_needs(cli_lab, built):
    code, out, err = reglab("--lab", str(cli_lab), "box", "build", "--os", "rhel")
    assert code == 2
    assert err.startswith("reglab: error: --os rhel: ") and "Rocky" in err and "dnf" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_failed_box_build_is_exit_1_without_a_traceback(cli_lab, monkeypatch):
    def fails(*args, **kwargs):
        raise LabFailure("`mmdebstrap ...` failed (exit 1):\nE: cannot reach the mirror")

    monkeypatch.setattr(boxes, "build_box", fails)
    code, _, err = reglab("--lab", str(cli_lab), "box", "build")
    assert code == 1
    assert err.startswith("reglab: failed: `mmdebstrap") and "Traceback" not in err


@pytest.mark.parametrize("argv", [["box"], ["box", "build", "--provider", "docker"], ["box", "build", "--os", "suse"]])
def test_box_usage_errors_exit_2(cli_lab, argv):
    code, _, err = reglab("--lab", str(cli_lab), *argv)
    assert code == 2 and "usage: reglab" in err


def test_box_build_reports_a_bad_lab_file_first(cli_lab, built):
    cli_lab.write_text("provider: vmware\n")
    code, _, err = reglab("--lab", str(cli_lab), "box", "build")
    assert code == 2 and f"{cli_lab}: provider" in err and built == {}


def test_older_versions_of_reglabs_box_are_removed_from_vagrant_and_libvirts_pool(tmp_path, monkeypatch) -> None:
    """Each rebuild adds a 700 MB box; Vagrant and libvirt's pool would keep every old one."""
    # The pool is only cleaned where virsh is installed: say it is, whatever this host has.
    monkeypatch.setattr(store.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    vagrant = FakeVagrant(tmp_path, monkeypatch, "", in_use="12.1.1")
    virsh_calls: list[list[str]] = []

    def run(argv, timeout=0):  # noqa: ANN001, ANN202
        virsh_calls.append(list(argv))

    result = boxes.BoxResult("reglab/debian12", "12.3.3", {}, tmp_path / "catalog.json", {})
    have = {("reglab/debian12", "libvirt", "12.2.2"), ("reglab/debian12", "libvirt", "12.3.3"),
            ("reglab/debian12", "libvirt", "12.1.1"), ("reglab/debian12", "virtualbox", "12.2.2"),
            ("generic/debian12", "libvirt", "4.3.12")}
    said: list[str] = []
    store.prune(result, have, ["libvirt"], vagrant.timed, run, said.append)
    calls = vagrant.calls() + virsh_calls
    removed = [c for c in calls if c[1:3] == ["box", "remove"]]
    assert [c[c.index("--box-version") + 1] for c in removed] == ["12.1.1", "12.2.2"]
    assert all(c[2:4] != ["remove", "generic/debian12"] for c in calls)
    volumes = [c[-1] for c in calls if "vol-delete" in c]
    assert volumes == ["reglab-VAGRANTSLASH-debian12_vagrant_box_image_12.2.2_box.img"]
    assert any("kept reglab/debian12 12.1.1" in line for line in said)


def test_without_virsh_older_boxes_still_leave_vagrant_and_virsh_is_not_run(tmp_path, monkeypatch) -> None:
    """A host without virsh (no libvirt client installed) cannot clean the pool, and must not try."""
    vagrant = FakeVagrant(tmp_path, monkeypatch, "")
    monkeypatch.setattr(store.shutil, "which", lambda tool: None if tool == "virsh" else f"/usr/bin/{tool}")
    virsh_calls: list[list[str]] = []
    result = boxes.BoxResult("reglab/debian12", "12.3.3", {}, tmp_path / "catalog.json", {})
    have = {("reglab/debian12", "libvirt", "12.2.2"), ("reglab/debian12", "libvirt", "12.3.3")}
    store.prune(result, have, ["libvirt"], vagrant.timed, lambda argv, timeout=0: virsh_calls.append(list(argv)),
                lambda _: None)
    removed = [c for c in vagrant.calls() if c[1:3] == ["box", "remove"]]
    assert [c[c.index("--box-version") + 1] for c in removed] == ["12.2.2"]
    assert virsh_calls == []


def test_the_debian13_box_has_the_sysctl_defaults_its_ping_relies_on():
    """Debian 13's ping has no cap_net_raw: it needs net.ipv4.ping_group_range from linux-sysctl-defaults,
    which it only recommends (e2e-libvirt's ping between the VMs failed without it)."""
    assert "linux-sysctl-defaults" in rootfs.box_packages(PLATFORMS["debian13"])
    assert "linux-sysctl-defaults" not in rootfs.box_packages(PLATFORMS["debian12"])  # not in bookworm
    assert set(rootfs.PACKAGES) <= set(rootfs.box_packages(PLATFORMS["debian12"]))
