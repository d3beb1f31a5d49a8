"""Warm images: a key that changes with everything that decides what provisioning makes."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pytest

from lab.cli.main import main
from lab.machines import warm
from lab.machines.osfamily import DEBIAN, RHEL
from lab.machines.provision import RESTART_DROPIN, plan
from lab.machines.warm import archive_digest, code_digest, dockerfile, warm_key
from lab.model import labfile

BASE = "sha256:" + "a" * 64


def key(**changes):  # noqa: ANN003, ANN201
    parts = {"provider": "docker", "base": BASE, "family": "debian", "plan": plan(DEBIAN), "archive": "r1",
             "code": "c1"}
    parts.update(changes)
    return warm_key(**parts)


def test_the_same_inputs_give_the_same_key() -> None:
    assert key().value == key().value
    assert key().tag == f"reglab/warm:debian-{key().value}"


@pytest.mark.parametrize(
    "changes",
    [
        {"base": "sha256:" + "b" * 64},
        {"provider": "libvirt"},
        {"family": "rhel", "plan": plan(RHEL)},
        {"archive": "r2"},  # another package index: other package versions
        {"archive": ""},  # no package index known yet
        {"code": "c2"},  # the code that carries the plan out changed
    ],
    ids=["base", "provider", "family", "package-index", "no-index", "code"],
)
def test_a_change_of_any_input_changes_the_key(changes) -> None:  # noqa: ANN001
    assert key(**changes).value != key().value


def test_a_changed_plan_changes_the_key() -> None:
    changed = plan(DEBIAN)
    changed["packages"] = [*changed["packages"], "jq"]
    assert key(plan=changed).value != key().value
    other_family = dataclasses.replace(DEBIAN, packages={**DEBIAN.packages, "curl": "curl-minimal"})
    assert key(plan=plan(other_family)).value != key().value
    dropin = plan(DEBIAN)
    dropin["files"] = {RESTART_DROPIN: "[Unit]\nStartLimitIntervalSec=60\n"}
    assert key(plan=dropin).value != key().value


def test_the_plan_names_what_provisioning_installs_and_writes() -> None:
    p = plan(DEBIAN)
    assert p["packages"] == ["docker.io", "docker-compose", "apache2-utils", "curl", "openssl"]
    assert RESTART_DROPIN in p["files"]
    assert p["services"] == ["docker"]


def test_a_changed_package_version_changes_the_archive_digest(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    assert archive_digest(lists) == ""  # nothing provisioned here yet
    lists.mkdir()
    release = lists / "deb.example_debian_dists_bookworm_InRelease"
    release.write_text("Date: Sat, 08 Nov 2026\nSHA256:\n 1111 4567 main/binary-amd64/Packages\n")
    (lists / "deb.example_debian_dists_bookworm_main_binary-amd64_Packages").write_text("Package: curl\n")
    first = archive_digest(lists)
    assert first
    assert archive_digest(lists) == first
    # A point release: new Packages lists, so a new Release file naming their hashes.
    release.write_text("Date: Sat, 15 Nov 2026\nSHA256:\n 2222 4570 main/binary-amd64/Packages\n")
    second = archive_digest(lists)
    assert second != first
    assert key(archive=first).value != key(archive=second).value
    (lists / "partial").mkdir()  # apt's download folder is not part of the index
    assert archive_digest(lists) == second


def test_the_code_digest_follows_the_provisioning_code(tmp_path: Path) -> None:
    one = tmp_path / "provision.py"
    one.write_text("NEEDS = ('docker',)\n")
    before = code_digest((one,))
    one.write_text("NEEDS = ('docker', 'jq')\n")
    assert code_digest((one,)) != before
    assert len(code_digest()) == 16


def test_the_warm_recipe_removes_what_each_machine_makes_for_itself() -> None:
    text = dockerfile("reglab/warm-partial:abc", key())
    assert text.startswith("FROM reglab/warm-partial:abc\n")
    for made_per_machine in ("/etc/ssh/ssh_host_*", ": > /etc/machine-id", "/var/lib/reglab/machine-id",
                             "/etc/docker/key.json", "/var/lib/docker/engine-id", "/var/lib/apt/lists/*"):
        assert made_per_machine in text
    # Seen: two warm machines had one machine-id, taken from D-Bus's copy of it at boot.
    assert "rm -f /var/lib/dbus/machine-id && ln -s /etc/machine-id /var/lib/dbus/machine-id" in text
    # Vagrant replaced its insecure key with one of this machine's: the next machine needs the insecure one.
    assert "COPY vagrant.pub /home/vagrant/.ssh/authorized_keys" in text
    assert "chmod 0600 /home/vagrant/.ssh/authorized_keys" in text
    assert f"{warm.KEY_LABEL}={key().value}" in text
    # Seen: the commit kept the node image's recipe label, and the next `reglab up` took the warm
    # image for the node image (tagging it reglab/node): fresh starts were warm. The label is emptied.
    assert "LABEL org.reglab.recipe= org.reglab.lab= org.reglab.machine= " in text


def test_start_is_warm_unless_asked_fresh(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text("provider: docker\n")
    assert labfile.load(lab_file, environ={}).start == "warm"
    assert labfile.load(lab_file, environ={"REGLAB_START": "fresh"}).start == "fresh"
    lab_file.write_text("provider: docker\nstart: fresh\n")
    assert labfile.load(lab_file, environ={}).start == "fresh"
    assert labfile.load(lab_file, environ={}, overrides={"start": "warm"}).start == "warm"


def test_a_bad_start_is_refused_naming_where(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text("provider: docker\nstart: hot\n")
    with pytest.raises(labfile.ConfigError, match="start: expected one of warm, fresh, got 'hot'"):
        labfile.load(lab_file, environ={})
    lab_file.write_text("provider: docker\n")
    with pytest.raises(labfile.ConfigError, match="REGLAB_START.*expected one of warm, fresh"):
        labfile.load(lab_file, environ={"REGLAB_START": "hot"})
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(lab_file), "--fresh", "--fresh-please", "status"], stdout=out, stderr=err) == 2


def test_a_vm_sets_its_own_files_aside_before_its_disk_is_copied() -> None:
    script = warm.generalize_vm("ssh-ed25519 AAAA vagrant insecure public key")
    # Set aside in tmpfs (never on the disk being copied), then removed.
    assert f"tar -cpf {warm.STASH}/own.tar" in script and warm.STASH.startswith("/run/")
    for own in ("etc/ssh/ssh_host_*", "etc/machine-id", "var/lib/reglab/machine-id", "etc/network/interfaces",
                "home/vagrant/.ssh/authorized_keys"):
        assert own in script
    assert "rm -f /etc/ssh/ssh_host_*" in script and ": > /etc/machine-id" in script
    assert "/^#VAGRANT-BEGIN/,/^#VAGRANT-END/d" in script  # the lab network Vagrant wrote for this machine
    assert "'ssh-ed25519 AAAA vagrant insecure public key' > /home/vagrant/.ssh/authorized_keys" in script
    assert script.startswith("set -e") and script.endswith("sync; fstrim -v / || true")
    assert warm.RESTORE_VM.startswith(f"cd / && tar -xpf {warm.STASH}/own.tar")


def test_the_disk_to_copy_is_read_from_domblklist() -> None:
    text = (" Type   Device   Target   Source\n"
            "------------------------------------------------------------------\n"
            " file   disk     vda      /var/lib/libvirt/images/reglab-registry.img\n"
            " file   cdrom    sda      -\n")
    assert warm.parse_domblklist(text) == "vda"
    with pytest.raises(ValueError):
        warm.parse_domblklist(" Type   Device   Target   Source\n")


def test_the_mirror_release_is_read_over_http_and_an_unanswering_mirror_gives_nothing(monkeypatch) -> None:  # noqa: ANN001
    import http.server
    import threading

    body = b"-----BEGIN PGP SIGNED MESSAGE-----\nOrigin: Debian\nSuite: stable\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            if self.path == "/debian/dists/bookworm/InRelease":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)  # loopback only
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        mirror = f"http://127.0.0.1:{server.server_port}/debian"
        assert warm.mirror_release(mirror, "bookworm", None, timeout=5) == body
        assert warm.mirror_release(mirror, "trixie", None, timeout=5) == b""  # 404
        assert warm.release_digest(body) == warm.release_digest(body) != ""
        assert warm.release_digest(b"") == ""
    finally:
        server.shutdown()
    assert warm.mirror_release(mirror, "bookworm", None, timeout=2) == b""  # nothing listens any more


def test_the_node_image_leaves_the_machine_id_to_each_machine() -> None:
    """Seen: both fresh machines had the machine-id made when the node image was built."""
    recipe = (Path(warm.__file__).parent / "images" / "node.Dockerfile").read_text()
    assert ": > /etc/machine-id" in recipe
    assert "rm -f /var/lib/dbus/machine-id && ln -s /etc/machine-id /var/lib/dbus/machine-id" in recipe


def test_old_warm_images_go_when_a_new_one_is_saved() -> None:
    day = 86400
    now = 100 * day
    created = {"reglab/warm:debian-a": now - 1 * day, "reglab/warm:debian-b": now - 2 * day,
               "reglab/warm:debian-c": now - 20 * day, "reglab/warm:debian-d": 0}
    assert warm.stale(created, now) == ["reglab/warm:debian-b", "reglab/warm:debian-c", "reglab/warm:debian-d"]
    assert warm.stale({"reglab/warm:debian-c": now - 20 * day}, now) == ["reglab/warm:debian-c"]
    assert warm.stale({"reglab/warm:debian-a": now - day}, now) == []
    assert warm.stale({}, now) == []


FAKE_DOCKER = """#!/bin/sh
# Records each call's arguments, one a line; for a build, also what its context folder holds.
printf '%s\\n' --- "$@" >> "$RECORD"
if [ "$1" = build ]; then for last; do :; done; ls "$last" > "$RECORD.context"; fi
"""


class RecordingMachine:
    """A machine whose sudo commands go to the fake docker's record, in order with its calls."""

    def __init__(self, record: Path) -> None:
        self.record = record

    def sudo(self, command: str, **kwargs) -> None:  # noqa: ANN003
        with self.record.open("a") as handle:
            handle.write(f"---\nsudo\n{command}\n")


def test_the_machine_is_committed_with_its_own_files_set_aside_and_they_are_put_back(tmp_path, monkeypatch) -> None:
    """Seen in `docker save` of a warm image: the commit held the machine's SSH host private keys,
    machine-id and Docker key, which the Dockerfile's later RUN only hid. They are gone before the commit."""
    from lab.machines.remote import Host, machine_logger
    from lab.model.credentials import Redactor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    log = machine_logger(tmp_path / "logs", "host")
    try:
        warm.DockerWarm(Host(log, Redactor([]), timeout=30)).save("lab-registry", RecordingMachine(record),
                                                                  key(), {}, [])
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
    calls = [c.splitlines() for c in record.read_text().split("---\n") if c]
    order = [c[0] if c[0] != "sudo" else ("set aside" if "own.tar $(ls" in c[1] else "put back") for c in calls]
    assert order[:4] == ["set aside", "commit", "put back", "build"], order
    aside = calls[0][1]
    for own in ("etc/ssh/ssh_host_*", "etc/machine-id", "var/lib/reglab/machine-id", "etc/docker/key.json",
                "var/lib/docker/engine-id"):
        assert own in aside
    assert warm.FORGET_MACHINE in aside and f"{warm.STASH}/own.tar" in aside and warm.STASH.startswith("/run/")
    assert calls[2][1] == warm.PUT_BACK


def test_a_vms_own_files_are_zeroed_and_free_blocks_discarded_before_the_copy() -> None:
    script = warm.generalize_vm("ssh-ed25519 AAAA key")
    zero, forget = script.index("dd if=/dev/zero"), script.index(warm.FORGET_MACHINE)
    assert zero < forget < script.index("fstrim")
    assert "/etc/ssh/ssh_host_*_key" in script[:forget] and "conv=notrunc" in script
    # Docker 23 and later (Debian 13) keep the daemon's ID here; two VMs from one warm box shared it.
    assert "/var/lib/docker/engine-id" in script[:forget] and "/var/lib/docker/engine-id" in warm.FORGET_MACHINE
    vagrantfile = (Path(warm.__file__).parent / "Vagrantfile").read_text()
    assert 'lv.disk_driver :discard => "unmap"' in vagrantfile


def test_zero_fill_overwrites_a_file_in_place_and_skips_links(tmp_path: Path) -> None:
    import subprocess

    secret, target = tmp_path / "ssh_host_ed25519_key", tmp_path / "elsewhere"
    secret.write_bytes(b"PRIVATE KEY BYTES" * 300)
    target.write_text("not mine\n")
    (tmp_path / "link_key").symlink_to(target)
    inode = secret.stat().st_ino
    subprocess.run(["sh", "-c", "set -e; " + warm.zero_fill((f"{tmp_path}/*_key", str(tmp_path / "gone")))],
                   check=True, timeout=30)
    data = secret.read_bytes()
    assert secret.stat().st_ino == inode and len(data) >= 5100 and set(data) == {0}
    assert target.read_text() == "not mine\n"


def test_a_warm_image_builds_from_a_tmpdir_with_a_space(tmp_path: Path, monkeypatch) -> None:
    """The build context is a temporary folder: a TMPDIR with a space must stay one argument of `docker build`."""
    import tempfile

    from lab.machines.remote import Host, machine_logger
    from lab.model.credentials import Redactor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    spaced = tmp_path / "tmp dir"
    spaced.mkdir()
    record = tmp_path / "record"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.setattr(tempfile, "tempdir", str(spaced))
    log = machine_logger(tmp_path / "logs", "host")
    try:
        tag = warm.DockerWarm(Host(log, Redactor([]), timeout=30)).save("lab-registry", RecordingMachine(record),
                                                                         key(), {}, [])
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
    calls = [c.splitlines() for c in record.read_text().split("---\n") if c]
    build = next(c for c in calls if c[0] == "build")
    assert build[:4] == ["build", "-q", "-t", tag]
    assert len(build) == 5 and build[4].startswith(f"{spaced}/warm-")
    assert (tmp_path / "record.context").read_text().split() == ["Dockerfile", "vagrant.pub", "warm.json"]
