"""What the host built, by sha256, kept where no machine can write: a cached file is used only when it
still is what was built.

Machines see the cache (a docker-provider machine mounts it, root writes
through it), so the digest of each file the host makes is recorded outside
it, one record per file, named by the cache folder it is in. Two stores: the
user's own (`user_store`, `$XDG_STATE_HOME/reglab/digests`) for images and
bundles, and root's (`ROOT_STORE`, which only root can write) for the boxes
and root file systems that root builds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lab.common.files import atomic_write, private_dir

ROOT_STORE = Path("/var/lib/reglab/box-digests")


def user_store(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """$XDG_STATE_HOME/reglab/digests, else ~/.local/state/reglab/digests: never in the cache."""
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "reglab" / "digests"


def sha256(path: Path) -> str:
    with open(path, "rb", buffering=0) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _record_path(path: Path, store: Path) -> Path:
    """One record per cached file, named by the folder it is in (two caches may hold the same name)."""
    folder = hashlib.sha256(str(Path(path).parent.resolve()).encode()).hexdigest()[:16]
    return store / folder / f"{Path(path).name}.sha256"


def record(path: Path, store: Path) -> str:
    """Remember the sha256 of a file just made; return it."""
    found = sha256(path)
    target = _record_path(path, private_dir(store))
    private_dir(target.parent)
    atomic_write(target, found + "\n", 0o600)
    return found


def recorded(path: Path, store: Path) -> bool:
    """True when `path` is the file made here: its sha256 is the one recorded when it was made."""
    try:
        wanted = _record_path(path, store).read_text().strip()
        return bool(wanted) and sha256(path) == wanted
    except OSError:
        return False
