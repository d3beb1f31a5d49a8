"""reglab's boxes in Vagrant and in libvirt's storage pool: added through their catalogue with
their version, listed, and older versions removed (700 MB each)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable

from lab.common.errors import LabError, LabFailure
from lab.machines.boxes.build import BoxResult
from lab.machines.host import Runner

Say = Callable[[str], None]

VAGRANT_TIMEOUT = 900


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

