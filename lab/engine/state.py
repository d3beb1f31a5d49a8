"""What reglab knows about one lab between runs, and who may change it.

`.lab/NAME/state.json` holds the edition, the resolved images, each step's last
result and the identity of each machine those results describe. It is
rewritten atomically after every change. A machine whose identity changed
(destroyed by hand and booted anew) takes the step results with it: the
state never claims a step passed on a machine that no longer exists.

`LabLock` is one lock per lab (`.lab/NAME/lock`): two reglab processes on one lab
wait for each other instead of interleaving their writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.common.errors import LabFailure
from lab.common.files import atomic_write
from lab.machines.images import LabImages
from lab.model.results import Status, StepResult


class State:
    """`.lab/NAME/state.json`; a file that is not one of ours is set aside, never trusted or fatal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = self._fresh()
        self.warning: str | None = None
        self._lock = threading.Lock()
        self._held = 0  # inside `saved_once`: saves wait for its end
        self._pending = False
        if path.exists():
            text = path.read_bytes()  # unreadable (a folder, no permission): the CLI names the path, exit 2
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict) and isinstance(data.get("steps"), dict):
                self.data = data
                self.data.setdefault("machines", {})
            else:
                aside = path.with_name(f"{path.name}.corrupt")
                os.replace(path, aside)
                self.warning = (f"{path} was not a reglab state file; set aside as {aside.name}, "
                                f"step results forgotten")

    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {"steps": {}, "machines": {}}

    def save(self) -> None:
        with self._lock:
            if self._held:
                self._pending = True
                return
            self._pending = False
            atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True), 0o600)

    @contextlib.contextmanager
    def saved_once(self) -> Iterator[None]:
        """Meanwhile the file is written once, at the end (also on an error), not at each change: a
        check of every step recorded eleven results, each written and synced to disk on its own."""
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                write = self._held == 0 and self._pending
            if write:
                self.save()

    def has_results(self) -> bool:
        """Whether any step has a result (which a machine made anew would make stale)."""
        return bool(self.data["steps"])

    def step_status(self, step_id: str) -> str:
        return self.data["steps"].get(step_id, {}).get("status", Status.NOT_RUN.value)

    def record(self, result: StepResult) -> None:
        self.data["steps"][result.step_id] = {
            "status": result.status.value,
            "duration": result.duration,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.save()

    def forget_steps(self) -> None:
        self.data["steps"] = {}
        self.save()

    def identify(self, machine: str, identity: str, involved: Iterable[str]) -> str | None:
        """Record which machine `machine` is; when it was another, forget the results of the
        steps `involved` with it. Returns a sentence for the user when something was forgotten.
        """
        known = self.data["machines"].get(machine)
        if known == identity:
            return None
        self.data["machines"][machine] = identity
        forget = [step for step in involved if step in self.data["steps"]]
        if known is None and not forget and not self.data.get("provisioned"):
            self.save()
            return None
        for step in forget:
            del self.data["steps"][step]
        self.data["provisioned"] = False
        self.save()
        return (f"machine {machine} is not the one the saved results describe (destroyed, or made anew); "
                f"forgot the results of {', '.join(forget) or 'no step'}")

    @property
    def images(self) -> LabImages | None:
        found = self.data.get("images")
        return LabImages(**found) if found else None

    @images.setter
    def images(self, images: LabImages) -> None:
        self.data["images"] = dict(images)
        self.save()


class LabLock:
    """An exclusive lock on one lab, held for a whole reglab command; released when the process ends.

    NOTE: re-entrant within a thread (the e2e tests call the CLI in-process
    on the lab their session uses; flock alone would make a process wait for
    itself), never across threads: a class's check of a lab and the next
    one, each in its own thread, must not overlap.
    """

    _held: dict[Path, int] = {}  # the lab's lock file -> the thread holding it
    _guard = threading.Lock()

    def __init__(self, state_dir: Path) -> None:
        self.path = (state_dir / "lock").resolve()
        self._fd: int | None = None
        self._shared = False

    def acquire(self, timeout: float, say: Callable[[str], None]) -> None:
        with LabLock._guard:
            if LabLock._held.get(self.path) == threading.get_ident():
                self._shared = True
                return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another reglab"
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabFailure(f"the lab is in use by {holder} for more than {timeout:.0f}s; "
                                     f"try again when it has finished") from None
                if not told:
                    say(f"waiting for {holder}, which is using this lab")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"reglab pid {os.getpid()} ({' '.join(sys.argv[1:3]) or 'python'})".encode(), 0)
        self._fd = fd
        with LabLock._guard:
            LabLock._held[self.path] = threading.get_ident()

    def release(self) -> None:
        """Give the lock back; a lock shared with an outer holder in this process stays with it."""
        if self._fd is not None:
            with LabLock._guard:
                LabLock._held.pop(self.path, None)
            os.close(self._fd)
            self._fd = None
