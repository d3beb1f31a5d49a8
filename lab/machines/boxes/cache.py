"""Where boxes are made and kept: the cache folder, its keys, and work folders that are never
removed while something is still mounted in them.

NOTE: root builds boxes and writes through what it finds in the cache, so
as root the cache is used only when nobody else can have put anything there
(`trusted_folder`), and a cached root file system or box is reused only when
its sha256 matches the one recorded when it was built, in a folder outside
the cache that only root can write (`DIGESTS`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.common.errors import LabError, LabFailure
from lab.machines import digests
from lab.model.lab import Lab

# What root built, by digest: outside every user's cache, in a folder only root can write.
DIGESTS = digests.ROOT_STORE


def boxes_dir(lab: Lab) -> Path:
    return lab.cache_dir / "boxes"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest(text: str) -> str:
    """A short hash of `text`: what cache keys, versions and MACs are made from."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mounts_under(folder: Path, mountinfo: str) -> list[str]:
    """Mount points at or below `folder`, from /proc/self/mountinfo text (octal escapes decoded)."""
    base = str(folder.resolve())
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == base or point.startswith(base + "/"):
                found.append(point)
    return found


@contextmanager
def workdir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards unless something is still mounted in it.

    NOTE: removing a folder with a mount inside deletes what is mounted
    (a bind-mounted /dev or /sys of the host): such a folder is left in
    place and named instead.
    """
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            mountinfo = ""
        mounted = mounts_under(path, mountinfo)
        if mounted:
            raise LabFailure(f"left {path} in place: {', '.join(mounted)} still mounted there; "
                             f"unmount it (umount -R), then remove the folder")
        shutil.rmtree(path)



def trusted_folder(path: Path, uid: int | None = None) -> Path:
    """`path` (made 0700 if missing) when nobody but `uid` (default: us) and root can change what is in it.

    Every folder from / down to it must belong to `uid` or root and be
    writable by nobody else; a sticky folder (/tmp) is allowed above it,
    since others cannot rename what is ours there. Otherwise a LabError says
    which folder and what to do: root must not build from files another user
    can plant (a tarball with a symlink makes root write through it).
    """
    uid = os.geteuid() if uid is None else uid
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        real = path.resolve(strict=True)
    except OSError as exc:
        raise LabError(f"{path}: cannot use it as the box cache: {exc.strerror}") from None
    for folder in [real, *real.parents]:
        info = os.lstat(folder)
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (uid, 0):
            raise LabError(f"{folder} belongs to uid {info.st_uid}, so files in {path} cannot be trusted by root; "
                           f"build boxes with a cache only root can write (`sudo env REGLAB_CACHE=/var/cache/reglab "
                           f"reglab box build`)")
        if mode & 0o022 and not (folder != real and mode & stat.S_ISVTX):
            raise LabError(f"others can write to {folder} (mode {mode:04o}), so files in {path} cannot be trusted "
                           f"by root; `chmod go-w {folder}` or use a cache only root can write")
    return path


