"""Files the lab writes on the host: atomically, with their mode from the first byte.

NOTE: every write of reglab's own files goes through `atomic_write`, so two
reglab processes never share a temporary name, a reader never sees half a
file, and a planted symlink at the target or temporary name is replaced,
never followed. `private_dir` is the one place that makes and vets the
lab's state directory (`.lab`), which holds secrets and keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lab.common.errors import LabError


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write `data` to `path` through a unique temporary file in the same folder.

    The temporary file is created exclusively (O_EXCL, never following a link)
    with `mode` already set, so a secret is never readable by others, not even
    for a moment; `os.replace` then swaps it in whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def replaced_whole(target: Path, mode: int = 0o644) -> Iterator[Path]:
    """A partial file beside `target` for a tool to write (docker save, tar); swapped in whole, with
    `mode`, when the block ends well, and gone when it does not. For files too big for atomic_write."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        yield Path(partial)
        os.chmod(partial, mode)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def write_private(path: Path, data: str | bytes) -> Path:
    """A file only its owner can read (passwords, keys), 0600 from the moment it exists."""
    return atomic_write(path, data, 0o600)


def private_dir(path: Path) -> Path:
    """Make `path` (and use it) only as a folder of ours that nobody else can write.

    Created 0700; an existing one that is a symlink, belongs to another user
    or is group- or world-writable is refused: files planted there (an
    ssh_config with a ProxyCommand, a secrets file) would be trusted as ours.
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise LabError(f"{path}: cannot create the lab's state folder: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise LabError(f"{path}: expected a folder, found a link or a file; remove it and run again")
    if info.st_uid != os.geteuid():
        raise LabError(f"{path}: belongs to another user (uid {info.st_uid}); remove it or use another lab")
    if info.st_mode & 0o022:
        raise LabError(
            f"{path}: others can write to it (mode {stat.S_IMODE(info.st_mode):04o}), so its files cannot be "
            f"trusted; check its contents, then `chmod 700 {path}`"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_beneath(root: Path, relative: str, data: str | bytes, mode: int = 0o644) -> Path:
    """Write a file at `relative` inside `root`, making its folders, never through a link.

    NOTE: for trees unpacked from a tarball (a box's root file system): a
    symlink planted there (`etc -> /etc`) would make root write on the host.
    Each folder is opened beneath the last with O_NOFOLLOW, and the file too,
    so a link anywhere on the way is an error, never followed.
    """
    parts = [p for p in Path(relative).parts if p not in ("/", "")]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"{relative!r}: expected a path inside the tree")
    raw = data.encode() if isinstance(data, str) else data
    here = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=here)
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=here)
            except OSError as exc:
                raise LabError(f"{root}: {relative}: {part} is a link or not a folder ({exc.strerror}); "
                               "not written through it") from None
            os.close(here)
            here = below
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=here)
        except OSError as exc:
            raise LabError(f"{root}: {relative} is a link or cannot be written ({exc.strerror}); "
                           "not written through it") from None
        with os.fdopen(fd, "wb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link is another file's too
                raise LabError(f"{root}: {relative} is not a plain file of its own; not written through it")
            os.ftruncate(fd, 0)
            os.fchmod(fd, mode)
            handle.write(raw)
    finally:
        os.close(here)
    return Path(root) / Path(*parts)


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[bool]:
    """An exclusive flock on `path` (made 0600 if missing, never through a link), held while the block runs.

    Yields False when the lock was not had within `timeout`, for the caller to say whose work it waited
    on. Each holder opens the file anew, so two threads of one process exclude each other too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.02)
        yield True
    finally:
        os.close(fd)
