"""reglab's boxes in Vagrant and in libvirt's storage pool: added through their catalogue with
their version, listed, and older versions removed (700 MB each).

Vagrant itself runs in one place, `TimedVagrant` (lab.machines.providers.vagrant:
python-vagrant with a bound on every call and a log). That module sits above
this one, so the callers hand one in; all this module asks of it is
`BoxCommands`.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from lab.common.errors import LabFailure
from lab.machines.boxes.build import BoxResult
from lab.machines.host import Runner

Say = Callable[[str], None]

VAGRANT_TIMEOUT = 900  # adding a box copies 700 MB; removing one, from libvirt's pool too
BOX_LIST_TIMEOUT = 120


class BoxCommands(Protocol):
    """`vagrant box` as reglab runs it: bounded and logged; a failure is a LabFailure."""

    def box_list(self) -> Iterable[Any]:
        """python-vagrant's Box tuples: name, provider, version."""
        ...

    def box_add_catalog(self, catalog: Path, provider: str) -> None: ...

    def box_remove_version(self, name: str, provider: str, version: str) -> None:
        """Fails while a machine still uses that version."""
        ...


def installed(vagrant: BoxCommands) -> set[tuple[str, str, str]]:
    """Every box Vagrant has: {(name, provider, version)}."""
    return {(box.name, box.provider, box.version) for box in vagrant.box_list()}


def add_box(result: BoxResult, say: Say, vagrant: BoxCommands, providers: Iterable[str] | None = None) -> list[str]:
    """`vagrant box add` each box through the catalogue, so Vagrant knows its version; skip ones it has."""
    have = installed(vagrant)
    added = []
    for provider in providers or result.boxes:
        if (result.name, provider, result.version) in have:
            say(f"{result.name} {result.version} ({provider}) is already in Vagrant")
            continue
        began = time.monotonic()
        vagrant.box_add_catalog(result.catalog, provider)
        result.timings[f"add-{provider}"] = round(time.monotonic() - began, 1)
        say(f"added {result.name} {result.version} ({provider}) to Vagrant in {result.timings[f'add-{provider}']}s")
        added.append(provider)
    if added:
        prune(result, have, added, vagrant, Runner(result.catalog.parent.parent / "logs" / "libvirt-pool.log"), say)
    return added


def libvirt_volume(name: str, version: str) -> str:
    """The copy of a box that vagrant-libvirt uploads into libvirt's default storage pool."""
    return f"{name.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_{version}_box.img"


def prune(result: BoxResult, have: set[tuple[str, str, str]], providers: Iterable[str], vagrant: BoxCommands,
          run: Runner, say: Say) -> None:
    """Remove older versions of reglab's box (700 MB each): from Vagrant, and libvirt's copy from its pool.

    NOTE: never forced: a version a VM still uses stays, and says so.
    """
    for name, provider, version in sorted(have):
        if name != result.name or provider not in providers or version == result.version:
            continue
        try:
            vagrant.box_remove_version(name, provider, version)
        except LabFailure:
            say(f"kept {name} {version} ({provider}): a machine may still use it")
            continue
        if provider == "libvirt" and shutil.which("virsh"):
            with contextlib.suppress(LabFailure):
                run(["virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default",
                     libvirt_volume(name, version)], timeout=120)
        say(f"removed the older {name} {version} ({provider})")
