"""`vagrant validate` on a copy of the project's Vagrantfile and lab.yml, for each provider.

Vagrant runs for real here (validate only: no box, no VM, no container, no
network), in a tmp copy of the project with its own VAGRANT_HOME. The runs start
together and the tests wait for their own, so the file costs one validate's time.

Whatever the host has, the same runs happen:
- virtualbox: `vagrant validate` first asks the provider whether it is usable,
  which runs `VBoxManage --version`. A stand-in VBoxManage that answers only
  `--version` is put first on PATH, so the VirtualBox provider's config
  (vb.memory, vb.cpus, vb.name) is validated for real with or without
  VirtualBox (or with one whose kernel module is not loaded).
- docker: the same for `docker version`, Vagrant's whole usability probe: a
  stand-in docker answers it, so a host with no Docker client, a broken one or
  no daemon running validates the docker provider's config all the same.
- libvirt: without the vagrant-libvirt plugin Vagrant cannot know the provider
  at all, and `--ignore-provider` alone does not help, because the Vagrantfile
  sets VAGRANT_DEFAULT_PROVIDER=libvirt. The test then checks that the plugin is
  the only problem, and that the Vagrantfile evaluates with REGLAB_PROVIDER=libvirt
  under `validate --ignore-provider` with VAGRANT_DEFAULT_PROVIDER=docker
  (which the Vagrantfile's `||=` keeps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
VAGRANT = shutil.which("vagrant")

if VAGRANT is None:
    pytest.skip(
        "vagrant is not on PATH; install it (apt-get install --no-install-recommends vagrant) "
        "to validate the Vagrantfile",
        allow_module_level=True,
    )


def _vagrant_answers() -> str | None:
    """Why the vagrant on PATH cannot be used (a stub, a broken install), or None."""
    try:
        done = subprocess.run([VAGRANT, "--version"], capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL, env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if done.returncode != 0 or not done.stdout.startswith("Vagrant "):
        return f"exited {done.returncode}: {(done.stdout + done.stderr).strip()[:200]}"
    return None

FAKE_VBOXMANAGE = """#!/bin/sh
# Stand-in for VirtualBox's VBoxManage: answers the usability probe and nothing else.
case "$1" in
  --version) echo 7.0.14r161095 ;;
  *) echo "fake VBoxManage: unexpected call: $*" >&2; exit 1 ;;
esac
"""

FAKE_DOCKER = """#!/bin/sh
# Stand-in for the Docker client: answers Vagrant's usability probe and nothing else.
case "$1" in
  version) echo "Client: Docker Engine - Community"; echo " Version: 28.2.2" ;;
  *) echo "fake docker: unexpected call: $*" >&2; exit 1 ;;
esac
"""

TIMEOUT = 120


@dataclass
class Run:
    name: str
    command: list[str]
    process: subprocess.Popen[str]
    _output: str | None = None
    _code: int | None = None

    def result(self) -> tuple[int, str]:
        if self._code is None:
            try:
                out, _ = self.process.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, _ = self.process.communicate()
            self._output, self._code = out, self.process.returncode
        assert self._output is not None and self._code is not None
        return self._code, self._output

    def describe(self) -> str:
        code, out = self.result()
        return f"{self.name}: `{' '.join(self.command)}` exited {code}:\n{out}"


def _environment(home: Path, **extra: str) -> dict[str, str]:
    # Nothing of the user's Vagrant or lab settings leaks in (REGLAB_LAB would
    # even point the Vagrantfile at another lab file).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "REGLAB_"))}
    env.update(
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_NO_COLOR="1",
        VAGRANT_HOME=str(home / "vh"),
    )
    env.update(extra)
    return env


def _start(root: Path, name: str, args: list[str], lab_text: str | None = None, **env: str) -> Run:
    work = root / name
    work.mkdir()
    # The top-level Vagrantfile (plain `vagrant`) loads the one that ships with reglab.
    shutil.copy(PROJECT / "Vagrantfile", work / "Vagrantfile")
    (work / "lab" / "machines").mkdir(parents=True)
    shutil.copy(PROJECT / "lab" / "machines" / "Vagrantfile", work / "lab" / "machines" / "Vagrantfile")
    if lab_text is None:
        shutil.copy(PROJECT / "lab.yml", work / "lab.yml")
    else:
        (work / "lab.yml").write_text(lab_text)
    command = [VAGRANT, "validate", *args]
    process = subprocess.Popen(
        command,
        cwd=work,
        env=_environment(work, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Run(name, command, process)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    broken = _vagrant_answers()
    if broken is not None:
        pytest.skip(f"`{VAGRANT} --version` does not answer as Vagrant ({broken}); nothing to validate with")
    root = tmp_path_factory.mktemp("vagrantfile")
    # The providers' tools are stand-ins, first on PATH: what the host has installed does not count.
    fake = root / "fake-bin"
    fake.mkdir()
    for name, text in (("VBoxManage", FAKE_VBOXMANAGE), ("docker", FAKE_DOCKER)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    path = f"{fake}{os.pathsep}{os.environ.get('PATH', '')}"
    started = [
        _start(root, "docker", [], REGLAB_PROVIDER="docker", PATH=path),
        _start(root, "virtualbox", [], REGLAB_PROVIDER="virtualbox", PATH=path),
        _start(root, "libvirt", [], REGLAB_PROVIDER="libvirt", PATH=path),
        _start(
            root,
            "libvirt-ignore-provider",
            ["--ignore-provider"],
            REGLAB_PROVIDER="libvirt",
            VAGRANT_DEFAULT_PROVIDER="docker",
            PATH=path,
        ),
        _start(
            root,
            "docker-bad-lab",
            [],
            lab_text="machines:\n  registry: {ip: 192.168.33.10}\n  client: {}\n",
            REGLAB_PROVIDER="docker",
            PATH=path,
        ),
    ]
    by_name = {run.name: run for run in started}
    try:
        yield by_name
    finally:
        for run in started:
            if run.process.poll() is None:
                run.process.kill()
            run.result()


@pytest.mark.parametrize("provider", ["docker", "virtualbox", "libvirt"])
def test_vagrantfile_validates(runs: dict[str, Run], provider: str) -> None:
    code, out = runs[provider].result()
    if provider == "libvirt" and code != 0:
        # The vagrant-libvirt plugin is not installed: that must be the only problem...
        assert "The provider 'libvirt' could not be found" in out, runs[provider].describe()
        # ...and the Vagrantfile itself evaluates and validates with REGLAB_PROVIDER=libvirt.
        fallback = runs["libvirt-ignore-provider"]
        code, out = fallback.result()
        assert code == 0, fallback.describe()
        assert "Ignoring provider config" in out
    assert code == 0, runs[provider].describe()
    assert "validated successfully" in out


def test_a_broken_lab_file_fails_validation(runs: dict[str, Run]) -> None:
    # Proves validate really evaluates the Vagrantfile against the copied lab.yml.
    code, out = runs["docker-bad-lab"].result()
    assert code != 0, runs["docker-bad-lab"].describe()
    assert "lab.yml: machines.client.ip: expected an IPv4 address" in out  # one line, no Ruby traceback
    assert "Traceback" not in out and ".rb:" not in out


def test_no_machine_gets_a_writable_mount_of_the_host_cache() -> None:
    text = (Path(__file__).resolve().parents[2] / "lab" / "machines" / "Vagrantfile").read_text()
    assert "synced_folder cache_dir" not in text  # a synced folder is read-write
    assert '"#{cache_dir}:/var/cache/reglab:ro"' in text
