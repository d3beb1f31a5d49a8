"""A terminal's output is redacted as a stream: a secret cut across two chunks is still masked.

SSH gives a shell's output in pieces of any size, and an echo typed key by key comes a character at a
time; the recording and the instructor's live view must never show a secret's pieces.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from lab.model.credentials import MASK, Redactor
from lab.portal import terminal
from lab.portal.terminal import Bridge, Hub, Recording, parse_cast

SECRET = "Tr0ub4dor-and-3-more"


class ChunkedChannel:
    """A channel that gives out the chunks it was given (None: a pause in the output), then ends."""

    def __init__(self, chunks: list[str | None]) -> None:
        self.chunks = list(chunks)

    def send(self, data: bytes) -> int:
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if chunk is None:
            raise TimeoutError
        return chunk.encode()

    def resize_pty(self, width: int, height: int) -> None:
        pass

    def close(self) -> None:
        pass


def pump(tmp_path: Path, chunks: list[str | None]) -> tuple[str, str, str]:
    """What the student's browser, the recording and a live watcher get of `chunks`."""
    redactor = Redactor([SECRET])
    hub = Hub()
    key = ("ada", "client")
    watcher = hub.watch(key)
    recording = Recording(tmp_path / "s.cast", 80, 24, "ada on client")
    bridge = Bridge(ChunkedChannel(chunks), recording, hub, key, redactor.redact)
    bridge.unfinished = getattr(redactor, "unfinished", None)  # (so that this test runs on older code)
    browser: list[str] = []
    bridge.pump_output(browser.append, threading.Event())
    recording.close()
    _, events = parse_cast((tmp_path / "s.cast").read_text())
    watched = []
    while True:
        try:
            watched.append(watcher.get_nowait())
        except queue.Empty:
            break
    return "".join(browser), "".join(e[2] for e in events if e[1] == "o"), "".join(watched)


def test_a_secret_cut_across_two_chunks_is_masked_in_the_recording_and_the_live_view(tmp_path):
    chunks = ["login ok, password is Tr0ub4d", "or-and-3-more\r\n$ "]
    browser, recorded, watched = pump(tmp_path, chunks)
    assert browser == "".join(chunks), "the student's own terminal shows their output as it comes"
    for shown in (recorded, watched):
        assert SECRET not in shown and "Tr0ub4d" not in shown and "or-and-3-more" not in shown, shown
        assert shown == f"login ok, password is {MASK}\r\n$ "


def test_a_secret_echoed_key_by_key_with_pauses_is_masked_once_whole(tmp_path):
    chunks: list[str | None] = ["$ htpasswd -Bbn ada "]
    for char in SECRET:
        chunks += [char, None]  # each key echoed alone, the shell then quiet for a moment
    chunks += ["\r\n", None, "ada:$2y$05$abc\r\n$ "]
    _, recorded, watched = pump(tmp_path, chunks)
    for shown in (recorded, watched):
        assert SECRET[:4] not in shown, shown
        assert shown.startswith(f"$ htpasswd -Bbn ada {MASK}\r\n"), shown


def test_output_without_secrets_comes_through_whole_and_in_order(tmp_path):
    chunks: list[str | None] = [f"line {n}\r\n" for n in range(300)] + [None, "$ "]
    browser, recorded, watched = pump(tmp_path, chunks)
    assert recorded == watched == browser


def test_a_pause_gives_out_what_is_held_but_a_secrets_beginning():
    stream = terminal.StreamRedactor(Redactor([SECRET]).redact, Redactor([SECRET]).unfinished, carry=16)
    assert stream.feed("hello ") == ""  # held: it could be followed by more
    assert stream.flush() == "hello "
    assert stream.feed("pw: Tr0u") == ""
    assert stream.flush() == "pw: "  # "Tr0u" could begin the secret
    assert stream.feed("b4dor-and-3-more done") == ""
    assert stream.flush() == f"{MASK} done"
    assert stream.end() == ""


def test_a_long_stream_is_given_out_before_its_end_with_a_secret_across_the_cut_whole():
    stream = terminal.StreamRedactor(Redactor([SECRET]).redact, carry=16)
    text = "x" * 40 + SECRET + "y" * 40
    out = "".join(stream.feed(text[i:i + 7]) for i in range(0, len(text), 7))
    assert out and len(out) < len(text), "most of it is given out before the end"
    assert SECRET[:3] not in out + stream.end()
    stream = terminal.StreamRedactor(Redactor([SECRET]).redact, carry=16)
    out = "".join(stream.feed(text[i:i + 7]) for i in range(0, len(text), 7)) + stream.end()
    assert out == "x" * 40 + MASK + "y" * 40


def test_unfinished_counts_the_longest_beginning_of_a_secret_at_the_end():
    redactor = Redactor([SECRET, "other-secret"])
    assert redactor.unfinished("abc Tr0ub") == 5
    assert redactor.unfinished("abc oth") == 3
    assert redactor.unfinished("abc ") == 0
    assert redactor.unfinished("") == 0
    assert redactor.unfinished(SECRET) < len(SECRET), "a whole secret is masked, not held"
