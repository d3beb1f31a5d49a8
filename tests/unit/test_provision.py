"""Unit tests for lab.provision: the OS family of a machine, and both machines provisioned at once.

The machines are fakes: nothing here connects anywhere.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from lab.common.errors import LabError, RemoteError
from lab.common.progress import Progress
from lab.machines.images import LabImages
from lab.machines.osfamily import DEBIAN
from lab.machines.provision import detect_family, provision

IMAGES = LabImages(registry="registry:2", proxy="nginx:1.27", base="debian:bookworm")
ALPINE = 'NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="Alpine Linux v3.19"\n'


class FakeMachine:
    """Answers `cat /etc/os-release`; `delay` seconds late, or never until abandoned."""

    def __init__(self, name: str, os_release: str = "ID=debian\n", delay: float = 0.0,
                 error: str | None = None) -> None:
        self.name = name
        self.os_release = os_release
        self.delay = delay
        self.error = error
        self.abandoned = threading.Event()
        self.finished = threading.Event()

    def run(self, command: str, **_kwargs: object) -> SimpleNamespace:
        try:
            if self.error:
                raise RemoteError(self.error)
            if self.abandoned.wait(self.delay):
                raise RemoteError(f"{self.name}: not used any more, reglab was interrupted")
            return SimpleNamespace(stdout=self.os_release, ok=True)
        finally:
            self.finished.set()

    def sudo(self, command: str, **_kwargs: object) -> SimpleNamespace:
        raise RemoteError(f"{self.name}: stop here")  # what follows detection is not under test

    def abandon(self) -> None:
        self.abandoned.set()


def test_detect_family_of_an_unknown_os_is_a_lab_error_naming_the_machine() -> None:
    with pytest.raises(LabError) as info:
        detect_family(FakeMachine("client", ALPINE))  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("client: unsupported OS 'Alpine Linux v3.19' (ID=alpine)")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_detect_family_of_debian() -> None:
    assert detect_family(FakeMachine("registry")) is DEBIAN  # type: ignore[arg-type]


def test_ctrl_c_during_provision_returns_at_once_and_abandons_both_machines(
    ctrl_c: Callable[[float], None],
) -> None:
    """Waiting for the pool would wait for both machines to finish: minutes of apt."""
    machines = [FakeMachine("registry", delay=5), FakeMachine("client", delay=5)]
    ctrl_c(0.2)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        provision(machines, IMAGES, None, Progress(io.StringIO()))  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.5
    assert all(m.abandoned.is_set() for m in machines)
    assert all(m.finished.wait(1) for m in machines)  # their threads end too, at once


def test_a_failure_on_one_machine_lets_the_other_finish_first() -> None:
    slow = FakeMachine("client", delay=0.3)
    with pytest.raises(RemoteError, match="registry: broken"):
        provision([FakeMachine("registry", error="registry: broken"), slow],  # type: ignore[list-item]
                  IMAGES, None, Progress(io.StringIO()))
    assert slow.finished.is_set()
    assert not slow.abandoned.is_set()


class ImageMachine:
    """A machine whose Docker has images with the given IDs (None: not there)."""

    name = "registry"

    def __init__(self, ids: list[str] | None) -> None:
        self.ids = ids
        self.commands: list[str] = []

    def sudo(self, command: str, warn: bool = False, timeout: int | None = None):  # noqa: ANN201, ARG002
        self.commands.append(command)
        if command.startswith("docker image inspect"):
            ok = self.ids is not None
            return SimpleNamespace(ok=ok, stdout="\n".join(self.ids or []) + "\n")
        return SimpleNamespace(ok=True, stdout="")


@pytest.mark.parametrize(
    ("there", "loads"),
    [
        (["sha256:1", "sha256:2", "sha256:3"], False),  # the same builds: nothing to load
        (["sha256:1", "sha256:9", "sha256:3"], True),  # a machine booted warm from an older disk
        (None, True),  # not there at all
    ],
    ids=["same-ids", "other-build", "missing"],
)
def test_images_are_loaded_unless_the_same_builds_are_there(tmp_path, there, loads) -> None:  # noqa: ANN001
    from lab.machines.provision import load_images

    machine = ImageMachine(there)
    changes = load_images(machine, IMAGES, tmp_path / "images-x.tar", ["sha256:1", "sha256:2", "sha256:3"])
    loaded = [c for c in machine.commands if c.startswith("docker load")]
    assert bool(loaded) is loads, machine.commands
    assert bool(changes) is loads


class SharedMachine:
    """A shared machine with no reglab cache folder: the bundle must go over SFTP. `registry:2` is there."""

    name = "registry"

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []
        self.puts: list[str] = []

    def sudo(self, command: str, **_kwargs: object) -> SimpleNamespace:
        self.commands.append(("root", command))
        if command.startswith("docker image inspect -f"):
            return SimpleNamespace(ok=False, stdout="")
        if command.startswith("for i in"):  # the tags not there yet
            return SimpleNamespace(ok=True, stdout="nginx:1.27\ndebian:bookworm\n")
        if command.startswith("test -r"):
            return SimpleNamespace(ok=False, stdout="")
        return SimpleNamespace(ok=True, stdout="")

    def run(self, command: str, **_kwargs: object) -> SimpleNamespace:
        self.commands.append(("user", command))
        return SimpleNamespace(ok=True, stdout="/tmp/tmp.Xq3aZ9kPm\n" if command == "mktemp -d" else "")

    def put(self, local: str, remote: str, **_kwargs: object) -> None:
        self.puts.append(remote)


def test_a_bundle_copied_over_sftp_goes_to_a_private_folder_and_the_tags_it_adds_are_recorded(tmp_path) -> None:
    """Never a predictable /tmp name another user of a shared machine could plant first; and only
    the tags the load added (not the school's own registry:2) are recorded for `down` to untag."""
    from lab.machines.provision import LOADED_RECORD, load_images

    machine = SharedMachine()
    load_images(machine, IMAGES, tmp_path / "images-abc.tar")  # type: ignore[arg-type]
    assert machine.puts == ["/tmp/tmp.Xq3aZ9kPm/images-abc.tar"]
    assert ("user", "mktemp -d") in machine.commands
    assert ("root", "docker load -q -i /tmp/tmp.Xq3aZ9kPm/images-abc.tar") in machine.commands
    assert ("user", "rm -rf /tmp/tmp.Xq3aZ9kPm") in machine.commands
    record = [c for who, c in machine.commands if LOADED_RECORD in c]
    assert len(record) == 1 and "nginx:1.27 debian:bookworm" in record[0] and "registry:2" not in record[0], record
