"""Where boxes are made and kept: the cache folder, its keys, and work folders that are never
removed while something is still mounted in them."""

from __future__ import annotations

import datetime
import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.common.errors import LabFailure
from lab.model.lab import Lab


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

