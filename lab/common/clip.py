"""Clipping output for messages and reports: the end of it, where tools print their error.

NOTE: callers redact first and clip after (see `Redactor.redact`): clipping a
private key in half would leave lines that no pattern recognises.
"""

from __future__ import annotations

# Characters of output kept where it is stored (state, reports, the gradebook, the dashboard):
# one 200,000-character line from a student's machine once broke the gradebook's CSV reader.
MAX_CHARS = 8000


def tail(text: str, lines: int = 30, chars: int = MAX_CHARS) -> str:
    """The last `lines` lines and at most the last `chars` characters, with a note of what came before."""
    parts = text.strip().splitlines()
    notes = []
    if len(parts) > lines:
        notes.append(f"{len(parts) - lines} lines before")
        parts = parts[-lines:]
    kept = "\n".join(parts)
    if len(kept) > chars:
        notes.append(f"{len(kept) - chars} characters before")
        kept = kept[-chars:]
    return "\n".join([f"... ({'; '.join(notes)})", kept]) if notes else kept


def chars(text: str, limit: int = MAX_CHARS) -> str:
    """At most the last `limit` characters of `text`, with a note of how many came before."""
    if len(text) <= limit:
        return text
    return f"... ({len(text) - limit} characters before)\n" + text[-limit:]
