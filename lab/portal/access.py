"""Who may open the portal: the instructor's secret, each student's link, the sessions they become.

A link carries a token in its fragment (`/login#TOKEN`): a fragment never
reaches a server's log or another site's Referer header; the login page's
script posts it once and gets a session cookie. Only the SHA-256 of each
token is kept (`portal/access.json`, 0600): a copy of the class folder opens
nothing. A student's own link is also written, whole, into their bundle
(`students/ID/portal-link`, 0600), beside their key and password, because the
bundle is what the instructor hands them.

Sessions live in memory only: a restart asks everyone to open their link
again, and a session id is never on disk. Each session has its own CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.common.errors import LabError
from lab.common.files import write_private

INSTRUCTOR = ""  # the role of a session that is no student's
SESSION_SECONDS = 12 * 3600  # a session lasts a school day, then its link is needed again
TOKEN_BYTES = 32


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """Whose session: the instructor (`student == INSTRUCTOR`) or one student."""

    student: str

    @property
    def instructor(self) -> bool:
        return self.student == INSTRUCTOR


@dataclass
class Session:
    identity: Identity
    csrf: str
    expires: float


class Access:
    """The hashed tokens of one class (its `portal/access.json`) and the live sessions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # sha256(token) -> student id, "" for the instructor
        self._sessions: dict[str, Session] = {}  # sha256(session id) -> session
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                tokens = data["tokens"]
                if not isinstance(tokens, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in tokens.items()):
                    raise ValueError("tokens: expected a mapping of digests to student ids")
                self._tokens = dict(tokens)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise LabError(f"{path}: not the portal's access file ({exc}); remove it and give out new "
                               "links (`reglab class bundle ID --new-link`)") from None

    def _save(self) -> None:
        write_private(self.path, json.dumps({"tokens": self._tokens}, indent=1, sort_keys=True) + "\n")

    def _new(self, student: str) -> str:
        """A fresh token for `student` (INSTRUCTOR: the instructor), replacing every older one of theirs."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v != student}
            self._tokens[digest(token)] = student
            self._sessions = {k: s for k, s in self._sessions.items() if s.identity.student != student}
            self._save()
        return token

    def new_instructor_secret(self) -> str:
        return self._new(INSTRUCTOR)

    def new_student_token(self, student: str) -> str:
        if not student:
            raise LabError("a student's link needs the student's id")
        return self._new(student)

    def has_token(self, student: str) -> bool:
        with self._lock:
            return student in self._tokens.values()

    def login(self, token: str) -> tuple[str, Session] | None:
        """A new session (its id, and it) for a valid token; None for anything else."""
        if not isinstance(token, str) or not 20 <= len(token) <= 200:
            return None
        wanted = digest(token)
        with self._lock:
            student = next((who for known, who in self._tokens.items() if hmac.compare_digest(known, wanted)),
                           None)
            if student is None:
                return None
            session_id = secrets.token_urlsafe(TOKEN_BYTES)
            session = Session(Identity(student), secrets.token_urlsafe(TOKEN_BYTES), time.time() + SESSION_SECONDS)
            self._sessions[digest(session_id)] = session
            return session_id, session

    def session(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 200:
            return None
        with self._lock:
            key = digest(session_id)
            session = self._sessions.get(key)
            if session is None:
                return None
            if session.expires < time.time():
                del self._sessions[key]
                return None
            return session

    def logout(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(digest(session_id), None)


class RateLimit:
    """At most `count` events per `seconds` for each key (a client address, a student)."""

    def __init__(self, count: int, seconds: float, clock=time.monotonic) -> None:  # noqa: ANN001
        self.count = count
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, list[float]] = {}

    def allow(self, key: str, count: bool = True) -> bool:
        """Whether one more event of `key` is within the limit; `count=False` only asks, not counting it."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._seen.get(key, []) if now - t < self.seconds]
            if len(recent) >= self.count:
                self._seen[key] = recent
                return False
            if count:
                recent.append(now)
            self._seen[key] = recent
            if len(self._seen) > 10_000:  # many addresses: forget those with nothing recent
                self._seen = {k: v for k, v in self._seen.items() if v and now - v[-1] < self.seconds}
            return True

    def hit(self, key: str) -> None:
        """Count one event of `key` (a failed login)."""
        self.allow(key)
