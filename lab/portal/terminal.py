"""Terminals in the browser: an SSH session on a student's own machine, recorded, and watched live.

The browser's xterm.js speaks to the portal over a websocket; the portal holds
an SSH session (paramiko, with the student's own key from their bundle) on
one of the student's machines and passes bytes both ways: keys and pastes in,
output out, and the terminal's size. Each session is recorded as an
asciicast v2 file (`portal/sessions/STUDENT/TIME-MACHINE.cast`, 0600) with
each output's time, redacted with the lab's secrets; what the student types is
not recorded (a password typed at a prompt is input), only what the machine
shows. The instructor may watch a live session (read-only: a copy of the
output, no way to type) and replay a recorded one.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from lab.common.files import private_dir

CONNECT_SECONDS = 15
MAX_SIZE = (500, 200)  # columns, rows a browser may ask for
CARRY = 1024  # characters of output held back until the next chunk: longer than any secret's form
SESSION_NAME = re.compile(r"[0-9]{8}T[0-9]{6}Z-[a-z][a-z0-9-]{0,30}(-[0-9]+)?\.cast")


class Channel(Protocol):
    """What a terminal needs of an SSH channel (paramiko's Channel has it)."""

    def send(self, data: bytes) -> int: ...

    def recv(self, size: int) -> bytes: ...

    def resize_pty(self, width: int, height: int) -> None: ...

    def close(self) -> None: ...


class Terminals(Protocol):
    """Where a student's terminals come from."""

    def machines(self, student: str) -> list[str]: ...

    def open(self, student: str, machine: str, cols: int, rows: int) -> Channel:
        """An interactive shell on the student's machine, with a terminal of that size."""
        ...

    def redact(self, student: str, text: str) -> str: ...

    def unfinished(self, student: str, text: str) -> int:
        """How many of the last characters of `text` could begin one of the student's secrets."""
        ...


class StreamRedactor:
    """Redacts a stream that comes in chunks, so that a secret cut across two chunks is still masked.

    Each chunk is redacted together with the last `carry` characters of the stream before it
    (held back, not yet given out), and only the part before a cut that no match crosses is
    given out: `redact(head) + redact(tail) == redact(head + tail)`. A pause in the output
    (`flush`) gives out what is held, except its end while that could begin a secret (`unfinished`:
    how many of the last characters are a secret's beginning), so an echo typed key by key is
    masked once it is whole. `end` gives out everything.
    """

    def __init__(self, redact: Callable[[str], str], unfinished: Callable[[str], int] | None = None,
                 carry: int = CARRY) -> None:
        self._redact = redact
        self._unfinished = unfinished
        self._carry = carry
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        whole = self._redact(text)
        cut = len(text) - self._carry
        while cut > 0:
            head = self._redact(text[:cut])
            if head + self._redact(text[cut:]) == whole:
                self._held = text[cut:]
                return head
            cut -= self._carry
        if len(text) > 32 * self._carry:  # no clean cut in a long stretch: give it out whole, redacted
            self._held = ""
            return whole
        self._held = text
        return ""

    def flush(self) -> str:
        keep = min(self._unfinished(self._held), len(self._held)) if self._unfinished and self._held else 0
        out, self._held = self._held[:len(self._held) - keep], self._held[len(self._held) - keep:]
        return self._redact(out) if out else ""

    def end(self) -> str:
        out, self._held = self._held, ""
        return self._redact(out) if out else ""


class Recording:
    """One terminal session as asciicast v2: a header line, then `[seconds, "o"|"r", text]` lines."""

    def __init__(self, path: Path, cols: int, rows: int, title: str, clock: Callable[[], float] = time.monotonic) \
            -> None:
        self.path = path
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file = open(fd, "w", encoding="utf-8")  # noqa: SIM115  closed by close()
        header = {"version": 2, "width": cols, "height": rows, "timestamp": int(time.time()), "title": title}
        self._write(json.dumps(header))

    def _write(self, line: str) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def output(self, text: str) -> None:
        self._write(json.dumps([round(self._clock() - self._start, 6), "o", text]))

    def resize(self, cols: int, rows: int) -> None:
        self._write(json.dumps([round(self._clock() - self._start, 6), "r", f"{cols}x{rows}"]))

    def close(self) -> None:
        with self._lock:
            self._file.close()


def parse_cast(text: str) -> tuple[dict, list[tuple[float, str, str]]]:
    """An asciicast v2 file's header and events. Pure."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty recording")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("version") != 2:
        raise ValueError("not an asciicast v2 recording")
    events = []
    for line in lines[1:]:
        when, kind, data = json.loads(line)
        events.append((float(when), str(kind), str(data)))
    return header, events


class Hub:
    """Live sessions and who watches them: each watcher gets a copy of the output, nothing else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[tuple[str, str], list[queue.Queue]] = {}
        self._live: dict[tuple[str, str], int] = {}

    def started(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._live[key] = self._live.get(key, 0) + 1

    def ended(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._live[key] = self._live.get(key, 1) - 1
            if self._live[key] <= 0:
                del self._live[key]

    def live(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._live)

    def publish(self, key: tuple[str, str], text: str) -> None:
        with self._lock:
            watchers = list(self._watchers.get(key, []))
        for watcher in watchers:
            try:
                watcher.put_nowait(text)
            except queue.Full:  # a watcher that does not keep up loses output, never slows the student
                pass

    def watch(self, key: tuple[str, str]) -> queue.Queue:
        watcher: queue.Queue = queue.Queue(maxsize=1000)
        with self._lock:
            self._watchers.setdefault(key, []).append(watcher)
        return watcher

    def unwatch(self, key: tuple[str, str], watcher: queue.Queue) -> None:
        with self._lock:
            if watcher in self._watchers.get(key, []):
                self._watchers[key].remove(watcher)


def sessions_dir(root: Path, student: str) -> Path:
    return private_dir(root / student)


def new_recording_path(root: Path, student: str, machine: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = sessions_dir(root, student)
    path = folder / f"{stamp}-{machine}.cast"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{machine}-{n}.cast"
    return path


@dataclass
class Bridge:
    """One browser terminal joined to one SSH channel until either side ends."""

    channel: Channel
    recording: Recording
    hub: Hub
    key: tuple[str, str]
    redact: Callable[[str], str]
    unfinished: Callable[[str], int] | None = None

    def _show(self, shown: str) -> None:
        """Redacted output to the recording and the instructor's live view."""
        if shown:
            self.recording.output(shown)
            self.hub.publish(self.key, shown)

    def pump_output(self, send: Callable[[str], None], closed: threading.Event) -> None:
        """Channel -> browser (and the recording, and the watchers, redacted across chunks), until the
        channel ends. The student's own browser gets their output at once, as it comes."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        stream = StreamRedactor(self.redact, self.unfinished)
        try:
            while not closed.is_set():
                try:
                    data = self.channel.recv(32768)
                except TimeoutError:
                    self._show(stream.flush())
                    continue
                if not data:
                    break
                text = decoder.decode(data)
                if not text:
                    continue
                self._show(stream.feed(text))
                send(text)
        except Exception:  # noqa: BLE001  the browser went away: the session ends
            pass
        finally:
            with contextlib.suppress(Exception):
                self._show(stream.end())
            closed.set()

    def handle(self, message: str) -> None:
        """Browser -> channel: `{"type": "input", "data": ...}` or `{"type": "resize", "cols": C, "rows": R}`."""
        try:
            data = json.loads(message)
        except (ValueError, TypeError):
            return
        if not isinstance(data, dict):
            return
        if data.get("type") == "input" and isinstance(data.get("data"), str):
            self.channel.send(data["data"].encode())
        elif data.get("type") == "resize":
            cols, rows = data.get("cols"), data.get("rows")
            if isinstance(cols, int) and isinstance(rows, int) and 1 <= cols <= MAX_SIZE[0] \
                    and 1 <= rows <= MAX_SIZE[1]:
                self.channel.resize_pty(cols, rows)
                self.recording.resize(cols, rows)
