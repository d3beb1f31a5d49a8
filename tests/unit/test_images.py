"""Unit tests for lab.images: version tags, the shipped Dockerfiles, and image resolution without Docker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.machines.images import RECIPES, VERSION_FILE, Builder, LabImages, upstream_version
from lab.model import manifest
from lab.model.lab import Lab, default_scenario
from lab.model.labfile import load

PROJECT = Path(__file__).resolve().parents[2]
# The tutorial's images: their recipes live in its scenario folder, not in lab/.
TUTORIAL_IMAGES = manifest.load(default_scenario()).images
DOCKERFILES = sorted([*RECIPES.glob("*.Dockerfile"), *(spec.recipe for spec in TUTORIAL_IMAGES.values())])


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("2.8.2+ds1-1", "2.8.2"),
        ("1.22.1-9+deb12u11", "1.22.1"),
        ("1:2.8.2+ds1-1+b5", "2.8.2"),
        ("20.10.24+dfsg1-1+deb12u1", "20.10.24"),
        ("3.0", "3.0"),
        ("2.0~rc1-1", "2.0"),
    ],
)
def test_upstream_version(debian: str, upstream: str) -> None:
    assert upstream_version(debian) == upstream


def test_upstream_version_is_tag_safe() -> None:
    """Whatever dpkg says, the result goes into an image tag: only [A-Za-z0-9_.-]."""
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", upstream_version("1:1.2.3 weird/ver-1"))


# --- the shipped Dockerfiles ------------------------------------------------------


def _instructions(path: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _installed(path: Path) -> list[str]:
    packages = []
    for line in _instructions(path):
        for found in re.findall(r"apt-get install ([^&]*)", line):
            packages += [word for word in found.split() if not word.startswith("-")]
    return packages


def test_the_recipes_are_shipped() -> None:
    assert {p.name for p in RECIPES.glob("*.Dockerfile")} == {"node.Dockerfile"}  # the harness's own
    assert {spec.recipe.relative_to(PROJECT).as_posix() for spec in TUTORIAL_IMAGES.values()} == {
        "lab/scenarios/tutorial/images/registry.Dockerfile", "lab/scenarios/tutorial/images/nginx.Dockerfile",
        "lab/scenarios/tutorial/images/busybox.Dockerfile",
    }
    assert all(spec.recipe.is_file() and all(f.is_file() for f in spec.files) for spec in TUTORIAL_IMAGES.values())


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_from_the_base_argument(path: Path) -> None:
    """Builder passes `--build-arg BASE=...`: every recipe builds FROM it (or from scratch, with
    only what a stage built FROM it made)."""
    lines = _instructions(path)
    assert lines[0] == "ARG BASE"
    assert lines[1].split()[:2] == ["FROM", "${BASE}"]
    assert all(line.split()[1] in ("${BASE}", "scratch") for line in lines if line.upper().startswith("FROM "))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_shipped_files(path: Path) -> None:
    for line in _instructions(path):
        if line.startswith(("COPY", "ADD")) and "--from=" not in line:
            sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
            assert all((path.parent / s).is_file() for s in sources), line


def test_node_image_has_a_vagrant_user_with_passwordless_sudo() -> None:
    text = " ".join(_instructions(RECIPES / "node.Dockerfile"))
    assert re.search(r"useradd\b[^&]*\bvagrant\b", text)
    assert "vagrant ALL=(ALL) NOPASSWD:ALL" in text
    assert "/etc/sudoers.d/vagrant" in text
    assert "chmod 0440 /etc/sudoers.d/vagrant" in text
    assert "sudo" in _installed(RECIPES / "node.Dockerfile")
    assert "COPY --chown=vagrant:vagrant vagrant.pub /home/vagrant/.ssh/authorized_keys" in text


def test_node_image_installs_no_docker() -> None:
    """Provisioning installs Docker as it would on a VM; a preinstalled one would hide its bugs."""
    packages = _installed(RECIPES / "node.Dockerfile")
    assert "openssh-server" in packages
    assert not [p for p in packages if "docker" in p or p in ("containerd", "runc", "podman")], packages


@pytest.mark.parametrize(
    ("role", "package", "name"),
    [("registry", "docker-registry", "reglab/docker-registry"), ("proxy", "nginx", "reglab/nginx"),
     ("base", "busybox-static", "reglab/busybox")],
)
def test_packaged_images_install_their_package_and_record_its_version(role: str, package: str, name: str) -> None:
    """The tag is read from VERSION_FILE, so the recipe must write the version of that very package."""
    spec = TUTORIAL_IMAGES[role]
    assert spec.name == name
    assert package in _installed(spec.recipe)
    text = " ".join(_instructions(spec.recipe))
    assert f"dpkg-query -W -f '${{Version}}' {package} >" in text
    assert VERSION_FILE.lstrip("/") in text


# --- Builder.lab_images without Docker ----------------------------------------------


class NoDocker:
    """A Host whose every command fails the test: pull and preload must not build anything."""

    def run(self, command: str, **kwargs: object) -> None:
        raise AssertionError(f"Builder ran a host command: {command}")


def _lab(tmp_path: Path, text: str) -> Lab:
    path = tmp_path / "lab.yml"
    path.write_text(text)
    return load(path, environ={})


@pytest.mark.parametrize("source", ["pull", "preload"])
def test_lab_images_are_the_lab_files_references(tmp_path: Path, source: str) -> None:
    lab = _lab(tmp_path, (PROJECT / "lab.yml").read_text().replace("source: auto", f"source: {source}"))
    assert lab.images.source == source
    images = Builder(lab, NoDocker()).lab_images()
    assert images == LabImages(registry="registry:2", proxy="nginx:1.27", base="debian:bookworm")
    assert images.all() == ["registry:2", "nginx:1.27", "debian:bookworm"]


def test_lab_images_follow_the_lab_file(tmp_path: Path) -> None:
    lab = _lab(tmp_path, "images:\n  source: pull\n  registry: registry:2.8.3\n  proxy: nginx:1.25\n"
                         "  base: debian:bookworm-slim\n")
    images = Builder(lab, NoDocker()).lab_images()
    assert images == LabImages(registry="registry:2.8.3", proxy="nginx:1.25", base="debian:bookworm-slim")


def test_recipe_hash_depends_on_every_part(tmp_path: Path) -> None:
    builder = Builder(_lab(tmp_path, ""), NoDocker())
    one = builder.recipe_hash("FROM x", b"sha256:1")
    assert one == builder.recipe_hash("FROM x", b"sha256:1")
    assert one != builder.recipe_hash("FROM x", b"sha256:2")
    assert len(one) == 16


class FakeDocker:
    """A Host that knows which images exist and whether Docker Hub answers, and records commands."""

    def __init__(self, local: set[str], hub: bool) -> None:
        self.local = local
        self.hub = hub
        self.commands: list[str] = []

    def run(self, command: str, **kwargs: object):
        from types import SimpleNamespace
        self.commands.append(command)
        ref = command.split()[-1].strip("'")
        if command.startswith("docker image inspect"):
            return SimpleNamespace(ok=ref in self.local, stdout="")
        if command.startswith("docker pull"):
            return SimpleNamespace(ok=self.hub, stdout="")
        if command.startswith("docker images --filter"):
            return SimpleNamespace(ok=True, stdout="")
        raise AssertionError(f"unexpected host command: {command}")


def test_auto_builds_when_docker_hub_does_not_answer(tmp_path: Path) -> None:
    builder = Builder(_lab(tmp_path, ""), FakeDocker(set(), hub=False))
    assert builder.source() == "build"
    assert not any(c.startswith("docker pull") and "debian" in c for c in builder.host.commands[1:])


def test_auto_preloads_where_the_host_has_or_can_pull_the_images(tmp_path: Path) -> None:
    host = FakeDocker({"registry:2"}, hub=True)
    builder = Builder(_lab(tmp_path, ""), host)
    assert builder.source() == "preload"
    assert builder.lab_images() == LabImages(registry="registry:2", proxy="nginx:1.27", base="debian:bookworm")
    assert not any(c.startswith("docker pull") and "registry:2" in c for c in host.commands)


def test_auto_is_decided_once(tmp_path: Path) -> None:
    host = FakeDocker(set(), hub=False)
    builder = Builder(_lab(tmp_path, ""), host)
    builder.source()
    count = len(host.commands)
    assert builder.source() == "build" and len(host.commands) == count


class SavingDocker:
    """`docker save -o PATH` writes a file; records the temporary names used."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def run(self, command: str, **kwargs: object):
        import shlex
        from types import SimpleNamespace
        words = shlex.split(command)
        if words[:3] == ["docker", "image", "inspect"]:
            return SimpleNamespace(ok=True, stdout="sha256:a\nsha256:b\nsha256:c\n")
        if words[:2] == ["docker", "save"]:
            Path(words[3]).write_bytes(b"tar")
            self.saved.append(words[3])
            return SimpleNamespace(ok=True, stdout="")
        raise AssertionError(command)


def test_bundles_use_unique_temporary_names_and_keep_other_labs_bundles(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache with space"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lab = _lab(tmp_path, "images:\n  source: build\n")
    other = tmp_path / "cache with space" / "images" / "images-0123456789abcdef.tar"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another lab's bundle")
    host = SavingDocker()
    target = Builder(lab, host).bundle(LabImages(registry="r:1", proxy="p:1", base="b:1"))
    assert target.read_bytes() == b"tar" and other.exists()
    assert host.saved[0] != str(target.with_suffix(".partial"))
    assert "cache with space" in host.saved[0]
    assert not list(target.parent.glob("*.partial"))


class RecordingDocker:
    """A Host that records each command as the list of arguments the shell gets, and what the build saw."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []
        self.context: list[str] = []

    def run(self, command, **kwargs: object):  # noqa: ANN001 - a string or a list of arguments
        import shlex
        from types import SimpleNamespace

        from lab.machines.remote import shell_text

        argv = shlex.split(shell_text(command))  # what the shell hands docker
        self.argvs.append(argv)
        if argv[:2] == ["docker", "build"]:
            self.context = sorted(p.name for p in Path(argv[-1]).iterdir())
            assert Path(argv[argv.index("-f") + 1]).is_file()
        return SimpleNamespace(ok=True, stdout="sha256:base\n" if "inspect" in argv else "")


def test_a_build_context_in_a_tmpdir_with_a_space_stays_one_argument(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    spaced = tmp_path / "tmp dir"
    spaced.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spaced))
    host = RecordingDocker()
    builder = Builder(_lab(tmp_path, ""), host)
    tag = builder.build(RECIPES / "node.Dockerfile", "debian:bookworm", None, [RECIPES / "vagrant.pub"])
    build = next(argv for argv in host.argvs if argv[:2] == ["docker", "build"])
    assert Path(build[-1]).parent == spaced and build[-1].startswith(f"{spaced}/build-")
    assert build[build.index("-f") + 1] == f"{build[-1]}/node.Dockerfile"
    assert build[build.index("-t") + 1] == tag and tag.startswith("reglab/building:")
    assert host.context == ["node.Dockerfile", "vagrant.pub"]


def test_a_bundle_changed_after_the_host_made_it_is_made_again_never_handed_on(tmp_path: Path, monkeypatch) -> None:
    from lab.machines import digests

    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lab = _lab(tmp_path, "images:\n  source: build\n")
    images = LabImages(registry="r:1", proxy="p:1", base="b:1")
    host = SavingDocker()
    target = Builder(lab, host).bundle(images)
    assert digests.recorded(target, digests.user_store()) and digests.user_store().is_relative_to(tmp_path / "state")
    assert not digests.user_store().is_relative_to(lab.cache_dir)  # kept where no machine sees it
    Builder(lab, host).bundle(images)
    assert len(host.saved) == 1  # unchanged: used as it is
    target.write_bytes(b"poisoned by a machine")
    assert not digests.recorded(target, digests.user_store())
    again = Builder(lab, host).bundle(images)
    assert len(host.saved) == 2 and again.read_bytes() == b"tar" and digests.recorded(again, digests.user_store())
