"""Issue 12 on real machines: warm and fresh starts both pass every step.

The test session's lab started one way (fresh where no warm image matched,
which saved one; warm where one did): this test destroys the machines and
boots them the other way, so every run walks both paths.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _starts(lab) -> dict[str, dict]:  # noqa: ANN001
    return json.loads((lab.state_dir / "state.json").read_text()).get("starts", {})


def _own(machine, command: str) -> str:  # noqa: ANN001
    return machine.sudo(command, timeout=60).stdout.strip()


def test_the_other_start_passes_every_step_and_machines_are_their_own(lab_session, reglab):
    lab = lab_session.lab
    store = lab_session.warm_store()
    if store is None:
        pytest.fail(f"no warm starts for this lab ({lab.provider}, boxes.{lab.os}: not built here)")
    before = _starts(lab)
    assert before["registry"]["kind"] == before["client"]["kind"], before
    session_start = before["registry"]["kind"]
    # Whichever way the session started, a warm machine for this key exists now.
    key = lab_session.warm_key(before["registry"]["base"])
    found = store.find(key)
    assert found, f"no warm machine for key {key.value} after the session's {session_start} start ({before})"
    metadata = store.metadata(found)
    assert metadata["key"] == key.value and metadata["packages"].get("docker.io"), metadata
    if lab.provider == "docker":
        # Nothing of the machine it was saved from, in any layer (issue 17, item 5). While the session's
        # machines are the ones saved (a fresh start), their own host key is looked for byte for byte too.
        own = _source_host_key(lab_session, metadata) if session_start == "fresh" else []
        own += [u.password.encode() for u in lab.users if u.password]
        _no_identity_in_any_layer(found, own, lab.state_dir.parent / "warm-save")
    elif lab.provider == "incus":
        # Incus: the published image, exported as Incus keeps it, holds no identity file with content and,
        # while the session's machines are the ones saved, none of the source's host key (issue 17).
        own = _source_host_key(lab_session, metadata) if session_start == "fresh" else []
        own += [u.password.encode() for u in lab.users if u.password]
        _no_identity_in_incus_image(found, own, lab.state_dir.parent / "warm-save")
    elif lab.provider == "libvirt" and session_start == "fresh":
        # libvirt: the box's disk, block by block, holds none of the source VM's host key (zeroed, trimmed).
        source = lab_session.provider.connect(_saved_from(lab, metadata))
        own = [_own(source, "cat /etc/ssh/ssh_host_ed25519_key").encode()]
        own += [u.password.encode() for u in lab.users if u.password]
        home = Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")
        disk = home / "boxes" / found.replace("/", "-VAGRANTSLASH-") / "1.0.0" / "libvirt" / "box.img"
        assert disk.is_file(), disk
        assert not _holds_any(disk, own), f"{disk} holds the source VM's host key or a lab password"

    other = "fresh" if session_start == "warm" else "warm"
    assert reglab("down").status == 0
    up = reglab(*(["--fresh"] if other == "fresh" else []), "up")
    assert up.status == 0, up.out + up.err
    after = _starts(lab)
    assert {after["registry"]["kind"], after["client"]["kind"]} == {other}, after
    status = reglab("status").out
    assert (f"warm ({found})" in status) if other == "warm" else ("fresh" in status and "warm (" not in status), status

    provision = reglab("provision")
    assert provision.status == 0, provision.err
    if other == "warm":
        # `up` loaded the lab's images (not in the image): nothing is left to do.
        assert provision.out.splitlines() == ["registry: nothing to change", "client: nothing to change"], \
            provision.out
    else:
        assert provision.out.count(": installed ") == 2, provision.out  # from nothing, both
    solve = reglab("solve", "--all")
    assert solve.status == 0, solve.out + solve.err
    assert "11 passed, 0 failed" in solve.out

    # Both machines came from one image, yet each made its own host keys, machine-id and Docker ID.
    registry, client = (lab_session.provider.connect(name) for name in ("registry", "client"))
    for what, command in (("SSH host key", "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"),
                          ("machine-id", "cat /etc/machine-id"),
                          ("Docker daemon ID", "docker info -f '{{.ID}}'"),
                          ("reglab identity", "cat /var/lib/reglab/machine-id")):
        mine, theirs = _own(registry, command), _own(client, command)
        assert mine and theirs and mine != theirs, f"{what}: registry {mine!r}, client {theirs!r}"


IDENTITY = re.compile(r"(^|/)(etc/ssh/ssh_host_[a-z0-9]+_key(\.pub)?|etc/docker/key\.json|var/lib/reglab/machine-id"
                      r"|etc/machine-id|var/lib/dbus/machine-id|root/\.bash_history"
                      r"|home/vagrant/\.bash_history)$")


def _identity_in(archive: tarfile.TarFile, where: str, needles: list[bytes]) -> list[str]:
    """Members of a tar (an image layer, an Incus image) that are identity files with content, an htpasswd,
    or hold any of `needles`."""
    found = []
    for member in archive:
        if not member.isfile():
            continue
        data = archive.extractfile(member).read() if member.size < (64 << 20) else b""
        name = member.name.removeprefix("rootfs/")
        htpasswd = "htpasswd" in name.rsplit("/", 1)[-1] and not name.startswith("usr/")
        if (IDENTITY.search(name) or htpasswd) and data.strip():
            found.append(f"{where}: {member.name} ({member.size} bytes)")
        found += [f"{where}: {member.name} holds a source secret" for n in needles if n and n in data]
    return found


def _no_identity_in_any_layer(image: str, needles: list[bytes], work: Path) -> None:
    """`docker save` the image and read every layer: no host key, machine-id, Docker key, htpasswd or
    history with content, and none of `needles` (a source key's bytes, the lab's passwords) anywhere."""
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "image.tar"
    subprocess.run(["docker", "save", "-o", saved, image], check=True, timeout=600)
    found, layers = [], 0
    try:
        with tarfile.open(saved) as outer:
            for entry in outer.getmembers():
                if not entry.name.endswith(".tar"):  # layer.tar (and blobs/sha256/* in newer Dockers)
                    continue
                layers += 1
                with tarfile.open(fileobj=outer.extractfile(entry)) as layer:
                    found += _identity_in(layer, entry.name, needles)
    finally:
        saved.unlink(missing_ok=True)
    assert layers > 1, f"{image}: docker save held {layers} layers"
    assert not found, "\n".join(found)


def _no_identity_in_incus_image(alias: str, needles: list[bytes], work: Path) -> None:
    """`incus image export` the warm image and read its root file system as the tar Incus keeps."""
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=work))
    try:
        subprocess.run(["incus", "image", "export", alias, f"{folder}/"], check=True, timeout=600,
                       capture_output=True)
        exported = sorted(folder.iterdir())
        assert exported, f"incus image export {alias} wrote nothing"
        found, files = [], 0
        for path in exported:
            with tarfile.open(path) as archive:
                members = archive.getmembers()
                files += sum(m.isfile() for m in members)
                found += _identity_in(archive, path.name, needles)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert files > 1000, f"{alias}: the exported image held {files} files; not a machine's root"
    assert not found, "\n".join(found)


def _source_host_key(lab_session, metadata: dict) -> list[bytes]:  # noqa: ANN001
    """The host key of the session's machine the warm image was saved from (a fresh start saves its own;
    a warm start may have found one another lab saved, whose machines are gone)."""
    source = lab_session.provider.connect(_saved_from(lab_session.lab, metadata))
    return [_own(source, "cat /etc/ssh/ssh_host_ed25519_key").encode()]


def _saved_from(lab, metadata: dict) -> str:  # noqa: ANN001
    """The machine a warm image was saved from: its container or domain is LAB-MACHINE."""
    name = str(metadata.get("saved_from", "")).removeprefix(f"{lab.name}-")
    assert name in [m.name for m in lab.machines], metadata.get("saved_from")
    return name


def _holds_any(path: Path, needles: list[bytes]) -> bool:
    """Whether any of `needles` is in the file, read in chunks that overlap by the longest needle."""
    overlap = max(len(n) for n in needles)
    tail = b""
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(64 << 20), b""):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-overlap:]
    return False
