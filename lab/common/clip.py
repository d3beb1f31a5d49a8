"""Clipping output for messages and reports: the end of it, where tools print their error.

NOTE: callers redact first and clip after (see `Redactor.redact`): clipping a
private key in half would leave lines that no pattern recognises.
"""

from __future__ import annotations


def tail(text: str, lines: int = 30) -> str:
    """The last `lines` lines, with a note of how many came before."""
    parts = text.strip().splitlines()
    if len(parts) <= lines:
        return "\n".join(parts)
    return "\n".join([f"... ({len(parts) - lines} lines before)", *parts[-lines:]])
