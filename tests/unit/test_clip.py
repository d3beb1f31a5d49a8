"""Clipping by lines and by characters (issue 19: one line can be any length)."""

from __future__ import annotations

from lab.common import clip


def test_tail_keeps_the_last_lines_with_a_note() -> None:
    text = "\n".join(f"line {i}" for i in range(50))
    assert clip.tail(text, 3) == "... (47 lines before)\nline 47\nline 48\nline 49"


def test_tail_clips_one_long_line_by_characters_too() -> None:
    text = "a" * 200_000 + "END"
    clipped = clip.tail(text, 30)
    assert clipped == f"... ({200_003 - clip.MAX_CHARS} characters before)\n" + text[-clip.MAX_CHARS:]


def test_both_notes_when_both_limits_are_passed() -> None:
    clipped = clip.tail("\n".join(["x" * 100] * 10), 5, chars=50)
    assert clipped.splitlines()[0] == "... (5 lines before; 454 characters before)"
    assert len(clipped.splitlines()[1]) == 50


def test_chars_leaves_short_text_alone() -> None:
    assert clip.chars("short") == "short"
    assert clip.chars("abcdef", 2) == "... (4 characters before)\nef"
