"""Warm starts: machines that boot already provisioned, while the provisioning plan is unchanged.

After a machine has been provisioned from nothing, what it became is saved as
a machine image and later machines boot from it: for the docker provider a
Docker image of the machine, for libvirt VMs a box made from a copy of the
VM's disk (taken live with `virsh blockcopy`, so the VM goes on). The image is keyed by everything that decides what
provisioning makes: the base image, the OS family, the provisioning plan and
the code that carries it out, and the Debian package index the packages came
from. Any change gives another key, and a machine booted from a key that is
not there is provisioned from nothing (and saved again).

Nothing of one machine is baked in: SSH host keys, the machine-id, reglab's
machine identity and the Docker daemon's key are set aside in tmpfs before
the machine is copied (`docker commit`, `virsh blockcopy`) and put back
after, so they are in no layer of the image; on a VM they are overwritten
with zeros first and the file system's free blocks are discarded, so no
freed block of the copied disk holds them (each boot makes its own), Vagrant's per-machine key gives way to its
insecure key again, and the network Vagrant configured is left out. On the
docker provider /var/lib/docker (a volume, not part of the image) starts
empty: the lab's images are loaded from the host cache at each boot; a VM's
disk keeps them, and provisioning reloads them if their IDs changed.
Passwords and the lab's PKI live in the steps, which have not run yet.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.common.errors import LabFailure
from lab.machines import incus
from lab.machines.boxes import boxfile, rootfs, store
from lab.machines.host import Runner
from lab.machines.images import RECIPE_LABEL
from lab.machines.provision import debian_suite
from lab.machines.remote import Host, Machine

WARM_REPO = "reglab/warm"
KEY_LABEL = "org.reglab.warm.key"
CREATED_LABEL = "org.reglab.warm.created"
METADATA_IN_IMAGE = "/etc/reglab/warm.json"
KEEP_DAYS = 14  # other warm images older than this are removed when one is saved...
KEEP_OTHERS = 1  # ...and all but this many of the newest others
# The code that carries the plan out: a change to it is a change of plan.
PLAN_CODE = (Path(__file__).parent / "provision.py", Path(__file__).parent / "osfamily.py")

# What one machine made for itself and the next must make anew, on both providers.
# Docker's own ID: /etc/docker/key.json up to Docker 20.10 (Debian 12), /var/lib/docker/engine-id from Docker 23
# (Debian 13's 26.1): two machines from one warm image must not share it (e2e-libvirt on Debian 13 saw they did).
FORGET_MACHINE = ("rm -f /etc/ssh/ssh_host_* /etc/docker/key.json /var/lib/docker/engine-id /var/lib/reglab/machine-id"
                  " && : > /etc/machine-id")
# Part of every warm key: bump when what a saved machine holds changes (2: its identity in no layer).
SAVE_VERSION = 3  # 3: Docker's engine-id forgotten too
GENERALIZE = " && ".join([
    FORGET_MACHINE,
    # systemd falls back on D-Bus's copy when /etc/machine-id is empty: a link to it, as Debian makes.
    # (The VM box is built with that link.)
    "rm -f /var/lib/dbus/machine-id && ln -s /etc/machine-id /var/lib/dbus/machine-id",
    "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/journal/*"
    " /root/.bash_history /home/vagrant/.bash_history /etc/docker/certs.d",
])


@dataclass(frozen=True)
class WarmKey:
    """A key and what it was made of (kept in the image's metadata)."""

    value: str
    family: str
    parts: Mapping[str, Any]

    @property
    def tag(self) -> str:
        return f"{WARM_REPO}:{self.family}-{self.value}"


def files_digest(paths: list[Path] | tuple[Path, ...]) -> str:
    """Names and contents of files, in the order given; "" for none."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16] if paths else ""


def code_digest(paths: tuple[Path, ...] = PLAN_CODE) -> str:
    return files_digest(paths)


def archive_digest(lists_dir: Path) -> str:
    """The package index the machines install from, by its signed Release files.

    A Release file names the hash of every package list, and so of every
    package version: the same Release files, the same packages. No lists yet
    (nothing was ever provisioned here): an empty string, a key of its own.
    """
    return files_digest(sorted(p for p in lists_dir.glob("*Release") if p.is_file()) if lists_dir.is_dir() else [])


def warm_key(provider: str, base: str, family: str, plan: Mapping[str, Any], archive: str,
             code: str | None = None) -> WarmKey:
    """The key of what provisioning makes: the same inputs, the same machine."""
    parts = {
        "provider": provider,
        "base": base,
        "family": family,
        "plan": plan,
        "archive": archive,
        "code": code if code is not None else code_digest(),
        "save": SAVE_VERSION,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return WarmKey(hashlib.sha256(text.encode()).hexdigest()[:16], family, parts)


def dockerfile(partial: str, key: WarmKey) -> str:
    """The recipe that turns a committed machine into a warm image: generalized, labelled."""
    return (
        f"FROM {partial}\n"
        f"RUN {GENERALIZE}\n"
        "COPY warm.json " + METADATA_IN_IMAGE + "\n"
        "COPY vagrant.pub /home/vagrant/.ssh/authorized_keys\n"
        "RUN chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys"
        " && chmod 0600 /home/vagrant/.ssh/authorized_keys\n"
        # Labels of the machine's image and container came along with the commit: the recipe label
        # would pass this image off as the node image it was made from (lab.images finds images by it).
        f"LABEL {RECIPE_LABEL}= org.reglab.lab= org.reglab.machine= "
        f"{KEY_LABEL}={key.value} {CREATED_LABEL}={int(time.time())}\n"
    )


class DockerWarm:
    """Warm images for the docker provider, in the host's Docker daemon."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def label(self, tag: str, name: str) -> str:
        """One label of an image; "" when the image or the label is not there."""
        found = self.host.run(
            f"docker image inspect -f '{{{{index .Config.Labels \"{name}\"}}}}' {shlex.quote(tag)}", warn=True)
        return found.stdout.strip() if found.ok else ""

    def find(self, key: WarmKey) -> str | None:
        return key.tag if self.label(key.tag, KEY_LABEL) == key.value else None

    def metadata(self, tag: str) -> dict[str, Any]:
        """What a warm image records about itself (for `reglab status` and the reports)."""
        out = self.host.run(f"docker run --rm --entrypoint /bin/cat {shlex.quote(tag)} {METADATA_IN_IMAGE}",
                            warn=True, timeout=60)
        try:
            return json.loads(out.stdout) if out.ok else {}
        except ValueError:
            return {}

    def archive_of(self, machine: Machine, cache: Path) -> str:  # noqa: ARG002 - one interface for all
        """The package index this machine installed from: its own copy of the suite's InRelease (the host's
        cache is read-only in the machines: they keep no shared package lists there)."""
        out = machine.sudo(f"cat /var/lib/apt/lists/*_dists_{debian_suite(machine)}_InRelease", warn=True, hide=True)
        return release_digest(out.stdout.encode()) if out.ok else ""

    def save(self, container: str, machine: Machine, key: WarmKey, packages: Mapping[str, str],
             images: list[str]) -> str:
        """Commit a freshly provisioned machine and make it a warm image under the key's tag."""
        partial = f"{WARM_REPO}-partial:{key.value}"
        metadata = {
            "key": key.value,
            **key.parts,
            "packages": dict(packages),
            "lab_images": images,
            "lab_images_note": "not in the image: /var/lib/docker is a volume; loaded from the host cache at boot",
            "saved_from": container,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # Its own files out of the way (into /run, a tmpfs no commit copies) for the moment of the commit:
        # removed only in a later layer, they would stay readable in this one (`docker save`).
        machine.sudo(set_aside(CONTAINER_OWN_FILES), timeout=120)
        try:
            # --pause: the machine is frozen for the moment of the commit, so the copy is consistent.
            self.host.run(f"docker commit --pause=true {shlex.quote(container)} {partial}", timeout=600)
        finally:
            machine.sudo(PUT_BACK, timeout=120)
        try:
            with tempfile.TemporaryDirectory(prefix="warm-") as ctx:
                (Path(ctx) / "Dockerfile").write_text(dockerfile(partial, key))
                (Path(ctx) / "warm.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
                shutil.copy(rootfs.VAGRANT_PUB, Path(ctx) / "vagrant.pub")
                self.host.run(["docker", "build", "-q", "-t", key.tag, ctx], timeout=600)
        finally:
            self.host.run(f"docker rmi {partial}", warn=True, timeout=120)
        self.prune(key.tag)
        return key.tag

    def prune(self, keep: str) -> list[str]:
        """Warm images of other keys (a plan or base that changed leaves them, 700 MB each): the newest
        KEEP_OTHERS stay for KEEP_DAYS (another lab on this host may still use its plan), the rest go."""
        out = self.host.run(
            f"docker images {WARM_REPO} --format '{{{{.Repository}}}}:{{{{.Tag}}}}'", warn=True
        ).stdout.split()
        created = {}
        for tag in out:
            if tag == keep or tag.endswith(":<none>"):
                continue
            label = self.label(tag, CREATED_LABEL)
            created[tag] = int(label) if label.isdigit() else 0
        removed = []
        for tag in stale(created, time.time()):
            if self.host.run(f"docker rmi {shlex.quote(tag)}", warn=True, timeout=120).ok:
                removed.append(tag)
        return removed


def stale(created: Mapping[str, int], now: float, keep_others: int = KEEP_OTHERS,
          keep_days: int = KEEP_DAYS) -> list[str]:
    """Which of the other warm images to remove: all but the newest `keep_others` younger than `keep_days`."""
    newest_first = sorted(created, key=lambda tag: created[tag], reverse=True)
    cutoff = now - keep_days * 86400
    return [tag for i, tag in enumerate(newest_first) if i >= keep_others or created[tag] < cutoff]


# --- libvirt VMs ------------------------------------------------------------------------

WARM_BOX_VERSION = "1.0.0"  # one version per box name: the key is in the name
LIBVIRT_URI = "qemu:///system"
STASH = "/run/reglab-warm"  # tmpfs: what the machine keeps of its own never reaches the copy
# A machine's own files, set aside while it is copied, then put back.
CONTAINER_OWN_FILES = ("etc/ssh/ssh_host_*", "etc/machine-id", "var/lib/reglab/machine-id", "etc/docker/key.json",
                       "var/lib/docker/engine-id", "root/.bash_history", "home/vagrant/.bash_history")
OWN_FILES = ("etc/ssh/ssh_host_*", "etc/machine-id", "var/lib/reglab/machine-id", "etc/docker/key.json",
             "var/lib/docker/engine-id", "home/vagrant/.ssh/authorized_keys", "etc/network/interfaces", "var/lib/dhcp")
# Files whose bytes must not stay in a freed block of a VM's disk: overwritten in place before removal.
SECRET_FILES = ("/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_*_key.pub", "/etc/machine-id",
                "/var/lib/reglab/machine-id", "/etc/docker/key.json", "/var/lib/docker/engine-id")
RELEASE_TIMEOUT = 20
COPY_TIMEOUT = 1200


def release_digest(text: bytes) -> str:
    """One suite's InRelease, as a VM's apt read it or as the mirror serves it now."""
    return hashlib.sha256(text).hexdigest()[:16] if text else ""


def mirror_release(mirror: str, suite: str, proxy: str | None, timeout: float = RELEASE_TIMEOUT) -> bytes:
    """The suite's InRelease from the mirror the box installs from (through the host's apt proxy); b"" if
    it does not answer (then no warm box can be known to match, and the machines start fresh)."""
    # No apt proxy: the environment's proxy settings, as apt and mmdebstrap would use.
    proxies = {"http": proxy, "https": proxy} if proxy else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(f"{mirror.rstrip('/')}/dists/{suite}/InRelease", timeout=timeout) as response:
            return response.read(4 << 20)
    except (OSError, urllib.error.URLError, ValueError):
        return b""


RESTORE_VM = f"cd / && tar -xpf {STASH}/own.tar && rm -rf {STASH} && sync"
RESTORE_UNIT = "reglab-warm-restore"
RESTORE_AFTER_S = 300


def _stash(own_files: tuple[str, ...]) -> list[str]:
    """Shell lines that tar the machine's own files into tmpfs and arm the timer that puts them back."""
    own = " ".join(own_files)
    heal = shlex.quote(f"test -f {STASH}/own.tar && {RESTORE_VM}")
    return [
        "set -e",
        f"rm -rf {STASH}",
        f"mkdir -m 0700 {STASH}",
        "cd /",
        f"tar -cpf {STASH}/own.tar $(ls -d {own} 2>/dev/null)",
        f"systemctl stop {RESTORE_UNIT}.timer 2>/dev/null || true",
        f"systemd-run --quiet --collect --unit={RESTORE_UNIT} --on-active={RESTORE_AFTER_S} sh -c {heal}",
    ]


def set_aside(own_files: tuple[str, ...]) -> str:
    """The machine's own files into a tar in tmpfs, then removed, so a copy taken now holds none of them.

    NOTE: until they are put back, the machine accepts no new SSH connection
    (no host keys): a timer in it puts them back by itself after
    RESTORE_AFTER_S if reglab cannot (interrupted, connection lost).
    """
    return "; ".join([
        *_stash(own_files),
        FORGET_MACHINE,
        "rm -f /root/.bash_history /home/vagrant/.bash_history",
        "sync",
    ])


def zero_fill(paths: tuple[str, ...]) -> str:
    """Overwrite each existing file with zeros in place (its blocks, not a new file), as a shell line."""
    return (f"for f in {' '.join(paths)}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] || continue; "
            'dd if=/dev/zero of="$f" bs=4096 count=$(( ($(stat -c %s "$f") + 4095) / 4096 )) '
            "conv=notrunc,fsync status=none; done")


def generalize_vm(public_key: str) -> str:
    """Set the VM's own files aside (in tmpfs) and leave what any new machine would have; then sync.

    Their blocks are zeroed before they are removed, and the free blocks
    discarded (`fstrim`, with the disk attached with discard=unmap), so
    the copied disk holds none of their bytes.
    NOTE: until they are put back, the VM accepts no new SSH connection (no
    host keys): a timer in the VM puts them back by itself after
    RESTORE_AFTER_S if reglab cannot (interrupted, connection lost).
    """
    return "; ".join([
        *_stash(OWN_FILES),
        zero_fill(SECRET_FILES),
        FORGET_MACHINE,
        "rm -rf /var/lib/dhcp/*",
        # Vagrant writes the private network between these markers on every boot.
        "sed -i '/^#VAGRANT-BEGIN/,/^#VAGRANT-END/d' /etc/network/interfaces",
        f"printf '%s\\n' {shlex.quote(public_key.strip())} > /home/vagrant/.ssh/authorized_keys",
        "sync",
        # Freed blocks read back as zeros once discarded (the Vagrantfile attaches the disk with discard).
        "fstrim -v / || true",
    ])


PUT_BACK = f"{RESTORE_VM} && (systemctl stop {RESTORE_UNIT}.timer 2>/dev/null || true)"
PUT_BACK_VM = PUT_BACK


def parse_domblklist(text: str) -> str:
    """`virsh domblklist --details` -> the first disk's target (vda)."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == "disk":
            return words[2]
    raise ValueError("no disk in the domain")


def warm_box_name(key: WarmKey) -> str:
    return f"reglab/warm-{key.family}-{key.value}"


class LibvirtWarm:
    """Warm boxes for libvirt VMs, in Vagrant's box store (and libvirt's copy in its pool)."""

    def __init__(self, cache: Path, say: Callable[[str], None], vagrant: store.BoxCommands) -> None:
        """`vagrant`: the provider's TimedVagrant for `vagrant box` (this module is below the providers)."""
        self.folder = cache / "boxes" / "warm"
        self.say = say
        self.vagrant = vagrant
        self.run = Runner(cache / "boxes" / "logs" / "warm.log")

    def boxes(self) -> set[tuple[str, str, str]]:
        return store.installed(self.vagrant)

    def archive_of(self, machine: Machine, cache: Path) -> str:  # noqa: ARG002 - one interface for both
        """The package index this VM installed from: its own copy of the suite's InRelease."""
        out = machine.sudo(f"cat /var/lib/apt/lists/*_dists_{debian_suite(machine)}_InRelease", warn=True, hide=True)
        return release_digest(out.stdout.encode()) if out.ok else ""

    def find(self, key: WarmKey) -> str | None:
        name = warm_box_name(key)
        return name if (name, "libvirt", WARM_BOX_VERSION) in self.boxes() else None

    def save(self, domain: str, machine: Machine, key: WarmKey, packages: Mapping[str, str],
             images: list[str]) -> str:
        """Copy the running VM's disk as it is now (its own files set aside), make it a box, add it."""
        name = warm_box_name(key)
        work = self.folder / key.value
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        disk = work / "box.img"
        target = self.run(["virsh", "-c", LIBVIRT_URI, "domblklist", domain, "--details"]).stdout
        try:
            device = parse_domblklist(target)
        except ValueError:
            raise LabFailure(f"{domain}: no disk found to copy (virsh domblklist)") from None
        began = time.monotonic()
        machine.sudo(generalize_vm(rootfs.VAGRANT_PUB.read_text()), timeout=120)
        try:
            # --finish: stop once the copy is in step with the disk: a consistent copy of this moment.
            self.run(["virsh", "-c", LIBVIRT_URI, "blockcopy", domain, device, "--dest", disk, "--format",
                      "qcow2", "--transient-job", "--finish", "--timeout", str(COPY_TIMEOUT)],
                     timeout=COPY_TIMEOUT + 60)
        finally:
            machine.sudo(PUT_BACK_VM, timeout=120)
        self.say(f"copied {domain}'s disk in {time.monotonic() - began:.0f}s")
        metadata = {
            "key": key.value, **key.parts, "packages": dict(packages), "lab_images": images,
            "saved_from": domain, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        size_gb = -(-boxfile.virtual_size(disk, self.run) // 1024**3)
        box_file = work / "libvirt.box"
        digest = boxfile.write_box(box_file, {
            "metadata.json": json.dumps(boxfile.libvirt_metadata(size_gb)) + "\n",
            "Vagrantfile": boxfile.libvirt_vagrantfile(),
            "reglab.json": json.dumps(metadata, indent=2, sort_keys=True) + "\n",
            "box.img": disk,
        })
        disk.unlink()
        catalog = work / "catalog.json"
        catalog.write_text(json.dumps(boxfile.catalog(name, WARM_BOX_VERSION, {"libvirt": (box_file, digest)},
                                                    "a reglab machine after provisioning (warm start)"), indent=2))
        self.vagrant.box_add_catalog(catalog, "libvirt")
        (work / "reglab.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        box_file.unlink()  # Vagrant has its own copy now
        self.prune(name)
        return name

    def metadata(self, name: str) -> dict[str, Any]:
        key = name.rsplit("-", 1)[-1]
        path = self.folder / key / "reglab.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def prune(self, keep: str) -> list[str]:
        """Other warm boxes (a plan that changed leaves them): from Vagrant, and libvirt's copy from its pool."""
        removed = []
        for name, provider, version in sorted(self.boxes()):
            if not name.startswith("reglab/warm-") or name == keep or provider != "libvirt":
                continue
            try:
                self.vagrant.box_remove_version(name, provider, version)
            except LabFailure:
                self.say(f"kept {name}: a machine may still use it")
                continue
            self.run(["virsh", "-c", LIBVIRT_URI, "vol-delete", "--pool", "default",
                      store.libvirt_volume(name, version)], check=False)
            shutil.rmtree(self.folder / name.rsplit("-", 1)[-1], ignore_errors=True)
            removed.append(name)
        return removed


# --- Incus system containers ------------------------------------------------------------------

INCUS_SAVE_TIMEOUT = 900


def warm_alias(key: WarmKey) -> str:
    """An Incus image alias for a warm machine (aliases are names: no slash)."""
    return f"reglab-warm-{key.family}-{key.value}"


class IncusWarm:
    """Warm images for Incus machines: `incus publish` of a generalised copy of a provisioned machine.

    NOTE: the machine the lab goes on with is never touched: a copy of it is
    made without its network device (so it never takes the lab's address),
    started only to forget what is its own (FORGET_MACHINE and the rest of
    GENERALIZE, the lab's key), stopped, published and deleted. Docker and
    the lab's images stay in the image: that is what makes a warm start fast.
    """

    def __init__(self, client: incus.Incus, say: Callable[[str], None], cache: Path) -> None:
        self.incus = client
        self.say = say
        self.folder = cache / "incus" / "warm"  # what each warm image records, readable without starting it

    def _images(self) -> list[incus.Image]:
        return incus.images(self.incus.json("image", "list"))

    def archive_of(self, machine: Machine, cache: Path) -> str:  # noqa: ARG002 - one interface for all
        """The package index this machine installed from: its own copy of the suite's InRelease."""
        out = machine.sudo(f"cat /var/lib/apt/lists/*_dists_{debian_suite(machine)}_InRelease", warn=True, hide=True)
        return release_digest(out.stdout.encode()) if out.ok else ""

    def find(self, key: WarmKey) -> str | None:
        found = incus.by_alias(self._images(), warm_alias(key))
        return warm_alias(key) if found and found.properties.get(incus.WARM_KEY) == key.value else None

    def save(self, container: str, machine: Machine, key: WarmKey, packages: Mapping[str, str],  # noqa: ARG002
             images: list[str]) -> str:
        alias = warm_alias(key)
        copy = f"{container}-warm"
        metadata = {
            "key": key.value, **key.parts, "packages": dict(packages), "lab_images": images,
            "saved_from": container, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.incus("delete", "--force", copy, check=False)
        self.incus("copy", container, copy, "--instance-only", timeout=INCUS_SAVE_TIMEOUT)
        try:
            self.incus("config", "device", "remove", copy, "eth0")
            self.incus("config", "set", copy, f"{incus.KIND_KEY}=warm-copy")
            self.incus("start", copy)
            forget = " && ".join([GENERALIZE, "rm -f /home/vagrant/.ssh/authorized_keys /etc/resolv.conf",
                                  f"mkdir -p {posix_dir(METADATA_IN_IMAGE)}", f"cat > {METADATA_IN_IMAGE}"])
            self.incus("exec", copy, "--", "sh", "-c", forget,
                       stdin=json.dumps(metadata, indent=2, sort_keys=True) + "\n", timeout=120)
            self.incus("stop", copy, timeout=120)
            self.incus("publish", copy, "--alias", alias, "--compression", "none",
                       f"{incus.KIND_KEY}=warm", f"{incus.WARM_KEY}={key.value}",
                       f"{incus.CREATED_KEY}={int(time.time())}", timeout=INCUS_SAVE_TIMEOUT)
        finally:
            self.incus("delete", "--force", copy, check=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{alias}.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        self.prune(alias)
        return alias

    def metadata(self, alias: str) -> dict[str, Any]:
        """What the warm image records (also in it, at METADATA_IN_IMAGE); {} when it is not known here."""
        if incus.by_alias(self._images(), alias) is None:
            return {}
        try:
            return json.loads((self.folder / f"{alias}.json").read_text())
        except (OSError, ValueError):
            return {}

    def prune(self, keep: str) -> list[str]:
        """Other warm images (a plan that changed leaves them): as for Docker's, by age and number."""
        created = {}
        fingerprints = {}
        for image in self._images():
            if image.properties.get(incus.KIND_KEY) != "warm" or keep in image.aliases:
                continue
            name = image.aliases[0] if image.aliases else image.fingerprint
            stamp = image.properties.get(incus.CREATED_KEY, "0")
            created[name] = int(stamp) if stamp.isdigit() else 0
            fingerprints[name] = image.fingerprint
        removed = []
        for name in stale(created, time.time()):
            if self.incus.ok("image", "delete", fingerprints[name]):
                (self.folder / f"{name}.json").unlink(missing_ok=True)
                removed.append(name)
        return removed


def posix_dir(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"
