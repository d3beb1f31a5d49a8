"""Images made on the host: the machine image for the docker provider (the
harness's own recipe, here in `lab/machines/images/`), and the images a scenario
declares (`lab.images` of its file: lab/model/manifest.py), built from Debian
packages by the recipes in the scenario's folder.

Every image is tagged with what it really is (`reglab/nginx:1.26.3-debian13`,
never `nginx:1.9`) and labelled with a hash of its recipe, so a recipe that
did not change is never built twice. Images for the machines are saved once
into the host cache (`~/.cache/reglab/machines/images/`) and loaded from there by every machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lab.common.errors import LabError, RemoteError
from lab.common.files import replaced_whole
from lab.machines import digests, hostapt
from lab.machines.remote import Host
from lab.model.lab import Lab
from lab.model.manifest import Named

RECIPES = Path(__file__).parent / "images"  # the harness's own: the machine image
RECIPE_LABEL = "org.reglab.recipe"
CACHE_DIR_IN_MACHINE = "/var/cache/reglab"

# Each recipe of a scenario's image writes its package's Debian version to VERSION_FILE, read for the tag.
VERSION_FILE = "/etc/reglab-package-version"
# What makes a container of the node image a machine (systemd as PID 1, a Docker daemon inside):
# lab/machines/Vagrantfile's docker provider arguments, for machines made without Vagrant (tests, benchmarks).
MACHINE_ARGS = (
    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", "/var/lib/docker",
    "--stop-signal", "SIGRTMIN+3",
)
# Bundles not used for this long are removed when a new one is made (other labs may use the rest).
BUNDLE_KEEP_DAYS = 14


class LabImages(Named):
    """The image references the lab's files use, by the scenario's names, once resolved for a source."""

    def all(self) -> list[str]:
        return list(self.values())


def base_tag(suite: str) -> str:
    """The debootstrapped Debian of a suite, as the host's daemon holds it."""
    return f"reglab/debian:{suite}-debootstrap"


def node_tag(platform: str) -> str:
    """The docker provider's machine image of a platform (the Vagrantfile's default agrees)."""
    return f"reglab/node:{platform}"


def upstream_version(debian_version: str) -> str:
    """'1:2.8.2+ds1-1+b5' -> '2.8.2': the upstream part, as a tag-safe string."""
    version = debian_version.split(":", 1)[-1]
    version = version.rsplit("-", 1)[0] if "-" in version else version
    version = re.split(r"[+~]", version, maxsplit=1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", version)


class Builder:
    def __init__(self, lab: Lab, host: Host) -> None:
        self.lab = lab
        self.host = host
        self.cache = lab.cache_dir
        self._source: str | None = None

    def exists(self, ref: str) -> bool:
        return self.host.run(f"docker image inspect {ref}", warn=True).ok

    def recipe_hash(self, *parts: str | bytes) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.encode() if isinstance(part, str) else part)
        return digest.hexdigest()[:16]

    def labelled(self, recipe: str) -> str | None:
        """The tag of an image already built from this exact recipe, if any."""
        out = self.host.run(
            f"docker images --filter label={RECIPE_LABEL}={recipe} --format '{{{{.Repository}}}}:{{{{.Tag}}}}'",
            warn=True,
        ).stdout.split()
        tags = [t for t in out if not t.endswith(":<none>")]
        return tags[0] if tags else None

    def base(self, source: str = "auto") -> str:
        """A minimal Debian of the lab's platform: `debian:SUITE` when asked for, else debootstrap.

        `auto` uses a local `debian:SUITE` when the daemon has it and
        otherwise debootstraps from the Debian mirror of the lab file or of
        the host's apt configuration: it never probes Docker Hub.
        """
        suite = self.lab.debian.suite
        base_ref = base_tag(suite)
        if source == "hub" or (source == "auto" and self.exists(f"debian:{suite}")):
            if source == "hub":
                self.host.run(f"docker pull debian:{suite}", timeout=600)
            return f"debian:{suite}"
        if self.exists(base_ref):
            return base_ref
        if shutil.which("debootstrap") is None:
            raise LabError("debootstrap is not installed; on Debian or Ubuntu: apt-get install debootstrap")
        mirror = hostapt.mirror_for(suite, self.lab.mirror)
        proxy = hostapt.host_proxy()
        env = {"http_proxy": proxy} if proxy else {}
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=self.cache) as tmp:
            rootfs = Path(tmp) / suite
            q = shlex.quote
            self.host.run(
                f"debootstrap --variant=minbase --include=ca-certificates {suite} {q(str(rootfs))} {q(mirror)}",
                timeout=900, env=env,
            )
            # What Docker's own Debian images do: no daemons started by package
            # scripts, no caches in the image.
            (rootfs / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
            (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)
            for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/cache/apt/*.bin"):
                for path in rootfs.glob(pattern):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            message = q(f"debootstrap --variant=minbase {suite} {mirror}")
            self.host.run(
                f"tar -C {q(str(rootfs))} -c . | docker import -c 'CMD [\"/bin/bash\"]' -m {message} - {base_ref}",
                timeout=600,
            )
        return base_ref

    def build(self, dockerfile: Path, base: str, tag: str | None, context_files: Sequence[Path] = ()) -> str:
        """Build a recipe FROM base unless an image of the same recipe exists.

        NOTE: the recipe's hash is of the bytes of the recipe and its files (and the base's ID),
        never of where they are: a recipe moved unchanged keeps its images.
        """
        recipe_text = dockerfile.read_bytes()
        files = [f.read_bytes() for f in context_files]
        base_id = self.image_id(base)
        recipe = self.recipe_hash(recipe_text, base_id, *files)
        found = self.labelled(recipe)
        if found:
            return found
        # NOTE: --no-cache: the recipe label is the cache; Docker's legacy builder
        # reused a stale `COPY --from` layer across recipes once.
        with tempfile.TemporaryDirectory(prefix="build-") as ctx:
            for path in (dockerfile, *context_files):
                shutil.copy(path, Path(ctx) / path.name)
            temp_tag = tag or f"reglab/building:{recipe}"
            # A list of arguments: the temporary folder's path (TMPDIR may hold a space) stays one argument.
            self.host.run(["docker", "build", "-q", "--no-cache", "--build-arg", f"BASE={base}",
                           "--label", f"{RECIPE_LABEL}={recipe}", "-t", temp_tag, "-f", Path(ctx) / dockerfile.name,
                           ctx], timeout=900)
        return temp_tag

    def node(self, source: str = "auto") -> str:
        """The machine image that Vagrant's docker provider boots."""
        tag = node_tag(self.lab.platform)
        built = self.build(RECIPES / "node.Dockerfile", self.base(source), None, [RECIPES / "vagrant.pub"])
        if built != tag:
            self.host.run(f"docker tag {built} {tag}")
            if built.startswith("reglab/building:"):
                self.host.run(f"docker rmi {built}")
        return tag

    def packaged(self, role: str) -> str:
        """A scenario's image from one Debian package, tagged with that package's version."""
        spec = self.lab.manifest.images[role]
        if spec.recipe is None or spec.name is None:
            raise LabError(f"the scenario's image {role!r} has no recipe ({self.lab.manifest.path}: "
                           f"lab.images.{role}), so `images.source: build` cannot make it; use pull or preload")
        name = spec.name
        built = self.build(spec.recipe, self.base(), None, spec.files)
        if not built.startswith("reglab/building:"):
            return built
        version = self.host.run(f"docker run --rm --entrypoint /bin/cat {built} {VERSION_FILE}").stdout.strip()
        tag = f"{name}:{upstream_version(version)}-debian{self.lab.debian.major}"
        self.host.run(f"docker tag {built} {tag}")
        self.host.run(f"docker rmi {built}")
        return tag

    def source(self) -> str:
        """The lab's image source, with `auto` decided: preload where Docker Hub answers, else build.

        The machines never pull from Docker Hub unless the lab says `pull`:
        anonymous pulls are rate-limited, and two machines pull every image.
        """
        if self.lab.images.source != "auto":
            return self.lab.images.source
        if self._source is None:
            wanted = list(self.lab.images.refs().values())
            self._source = "preload" if all(self.exists(ref) or self._pulled(ref) for ref in wanted) else "build"
        return self._source

    def _pulled(self, ref: str) -> bool:
        try:
            return self.host.run(f"docker pull -q {shlex.quote(ref)}", warn=True, timeout=120).ok
        except RemoteError:
            return False

    def lab_images(self) -> LabImages:
        """The images the lab's files name, built here when the source is `build`."""
        refs = self.lab.images.refs()
        if self.source() != "build":
            return LabImages(**refs)
        return LabImages(**{role: self.packaged(role) for role in refs})

    def image_ids(self, images: LabImages) -> list[str]:
        """The host's IDs of the lab's images, in the order of `images.all()` (one inspect for all)."""
        refs = " ".join(shlex.quote(r) for r in images.all())
        return self.host.run("docker image inspect -f '{{.Id}}' " + refs).stdout.split()

    def image_id(self, ref: str) -> str:
        """The host's ID of one image: what a recipe is built on, a warm key's base."""
        return self.host.run(f"docker image inspect -f '{{{{.Id}}}}' {shlex.quote(ref)}").stdout.strip()

    def bundle(self, images: LabImages) -> Path:
        """One tarball of the lab's images (shared layers once), made once per set of IDs.

        NOTE: several labs may share the cache: each writes its own temporary
        file, the rename is atomic, and only bundles unused for
        BUNDLE_KEEP_DAYS are removed.
        """
        if self.source() == "preload":
            for ref in images.all():
                if not self.exists(ref):
                    self.host.run(f"docker pull {shlex.quote(ref)}", timeout=900)
        refs = " ".join(shlex.quote(r) for r in images.all())
        ids = self.image_ids(images)
        name = f"images-{self.recipe_hash(*sorted(ids), *images.all())}.tar"
        target = self.cache / "images" / name
        if target.exists() and digests.recorded(target, digests.user_store()):
            os.utime(target)  # in use: keeps it from being cleaned up by another lab
            return target
        # NOTE: one whose digest is not the one kept when it was made (changed since, or made before digests
        # were kept, when machines could write the cache) is made again, never handed to a machine.
        with replaced_whole(target) as partial:
            self.host.run(f"docker save -o {shlex.quote(str(partial))} {refs}", timeout=600)
        digests.record(target, digests.user_store())
        cutoff = time.time() - BUNDLE_KEEP_DAYS * 86400
        for old in target.parent.glob("images-*.tar"):
            if old != target and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        return target
