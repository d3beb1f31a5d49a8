"""Passwords: generated once when lab.yml gives none, kept owner-only, redacted everywhere.

NOTE: every string that may leave the process (logs, errors, reports) goes
through `Redactor.redact`; the set of secrets is the lab's users' passwords
(with their base64 and URL-encoded forms) plus the lines of any private key
registered at run time. Some secrets are masked by their shape alone, whoever
they belong to: private key blocks (even cut in half), htpasswd hashes and the
`auth` values of Docker's config.json.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from lab.common.errors import ConfigError
from lab.common.files import private_dir, write_private  # the one private writer; still importable from here
from lab.common.yamlfile import read_yaml
from lab.model.lab import Lab, User
from lab.model.labcheck import password_problem

MASK = "********"
KEY_MASK = "-----PRIVATE KEY REDACTED-----"

# A key block up to its END line or, when the text was cut before it, to the end of the text.
_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
# Lines of a PEM body: base64 only. A long line is body anywhere; the short last one only next to END.
_BODY_LINE = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_LAST_BODY_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_CRYPT = r"[./0-9A-Za-z]"
# htpasswd hashes with a shape no ordinary text has: apr1 (htpasswd's MD5), bcrypt, SHA-crypt, {SHA}.
_HASH = re.compile(
    rf"\$apr1\${_CRYPT}{{1,8}}\${_CRYPT}{{22}}(?!{_CRYPT})"
    rf"|\$2[abxy]?\$[0-9]{{2}}\${_CRYPT}{{53}}(?!{_CRYPT})"
    rf"|\$[56]\$(?:rounds=[0-9]{{1,9}}\$)?{_CRYPT}{{1,16}}\${_CRYPT}{{43}}(?:{_CRYPT}{{43}})?(?!{_CRYPT})"
    r"|\{SHA\}[A-Za-z0-9+/]{27}="
)
# Classic DES crypt is 13 plain characters: masked only as a whole `user:hash` line of an htpasswd file.
_DES_LINE = re.compile(rf"^([ \t]*[^\s:]+:){_CRYPT}{{13}}(?=[ \t]*\r?$)", re.M)
_PLAIN_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# Docker's config.json: `"auth": "<base64 of user:password>"` (also when quoted inside a JSON string).
_DOCKER_AUTH = re.compile(
    r'(\\?"(?:auth|identitytoken|registrytoken)\\?"\s*:\s*\\?")[A-Za-z0-9+/_.=-]+(?=\\?")', re.I
)
_BASIC_AUTH = re.compile(r"(\bAuthorization:\s*Basic\s+)[A-Za-z0-9+/]+=*", re.I)
# Forms of a secret shorter than this are not registered: they would mask ordinary text.
_MIN_DERIVED = 8
_MIN_KEY_LINE = 16


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def resolve_passwords(lab: Lab) -> Lab:
    """Fill in missing passwords from `.lab/NAME/secrets.yml`, generating them once.

    A stored password obeys the lab file's rules (`password_problem`): it goes
    into htpasswd and `docker login` just the same.
    """
    if all(user.password is not None for user in lab.users):
        return lab
    path = private_dir(lab.state_dir) / "secrets.yml"
    stored = _read_secrets(path)
    users = []
    changed = False
    for user in lab.users:
        if user.password is not None:
            users.append(user)
            continue
        if stored.get(user.name) is None:
            stored[user.name] = generate_password()
            changed = True
        problem = password_problem(stored[user.name])
        if problem:
            raise ConfigError(str(path), user.name, f"{problem}; correct it, or delete the line to generate a new one")
        users.append(replace(user, password=stored[user.name]))
    if changed:
        write_private(path, yaml.safe_dump(stored, default_flow_style=False))
    return replace(lab, users=tuple(users))


def _read_secrets(path: Path) -> dict[Any, Any]:
    """The stored passwords, from a regular file of ours (never through a link), or nothing."""
    source = str(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(source, "", "expected a file written by reglab, found a link or a folder; remove it")
    if info.st_mode & 0o077:
        os.chmod(path, 0o600)
    try:
        stored = read_yaml(path, "secrets file")
    except ConfigError as exc:
        raise ConfigError(exc.source, exc.path, f"{exc.problem}; remove it to generate new passwords") from None
    if stored is None:
        return {}
    if not isinstance(stored, dict):
        raise ConfigError(source, "", "expected a mapping of user name to password")
    return stored


class Redactor:
    """Replaces every known secret, and every secret-shaped string, with a mask.

    `redact` is idempotent (masked text is left as it is) and linear in the
    text, so the remote layer can pass every command's whole output through it.
    It is safe to `add` secrets from one thread while another redacts.
    """

    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._ordered: tuple[str, ...] | None = ()
        self.add(*secrets_)

    @classmethod
    def for_users(cls, users: Iterable[User]) -> Redactor:
        redactor = cls()
        for user in users:
            if user.password:
                redactor.add_user(user.name, user.password)
        return redactor

    def add_user(self, name: str, password: str) -> None:
        """A user's password, and the base64 `user:password` that `docker login` stores in config.json."""
        self.add(password)
        self._register(_base64_forms(f"{name}:{password}"))

    def add_lab(self, lab: Lab) -> None:
        """A lab's passwords, given in its lab file or stored in its secrets file, none generated
        (a class's gradebook and dashboard redact every lab's)."""
        stored = _read_secrets(lab.state_dir / "secrets.yml") if lab.state_dir.is_dir() else {}
        for user in lab.users:
            password = user.password or stored.get(user.name)
            if isinstance(password, str) and password:
                self.add_user(user.name, password)

    def add(self, *values: str) -> None:
        """Register secrets, with the base64 and URL-encoded forms they travel in."""
        for value in values:
            if value and len(value) >= 4 and value.strip("*"):
                self._register([value, *_base64_forms(value), *_url_forms(value)])

    def add_private_key(self, pem: bytes | str) -> None:
        """Register each base64 line of a PEM key, so any piece of it printed alone is masked."""
        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
        self._register(
            stripped for line in text.splitlines()
            if len(stripped := line.strip()) >= _MIN_KEY_LINE and _BODY_LINE.fullmatch(stripped)
        )

    def _register(self, values: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v.strip("*"))
            self._ordered = None

    def _longest_first(self) -> tuple[str, ...]:
        """The secrets, longest first so a secret that contains another is masked whole."""
        ordered = self._ordered
        if ordered is None:
            with self._lock:
                ordered = self._ordered = tuple(sorted(self._secrets, key=len, reverse=True))
        return ordered

    def unfinished(self, text: str) -> int:
        """How many of `text`'s last characters are the beginning of a secret (0: none): output to hold
        back until more comes, when a stream is redacted piece by piece."""
        longest = 0
        for secret in self._longest_first():
            for n in range(min(len(secret) - 1, len(text)), longest, -1):
                if text.endswith(secret[:n]):
                    longest = n
                    break
        return longest

    def redact(self, text: str) -> str:
        if not text:
            return text
        if "PRIVATE KEY-----" in text:
            text = _KEY_BLOCK.sub(KEY_MASK, text)
            text = _mask_orphan_key_ends(text)
        if "$" in text or "{SHA}" in text:
            text = _HASH.sub(MASK, text)
        text = _DES_LINE.sub(_mask_des, text)
        text = _DOCKER_AUTH.sub(rf"\g<1>{MASK}", text)
        text = _BASIC_AUTH.sub(rf"\g<1>{MASK}", text)
        for secret in self._longest_first():
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def _base64_forms(value: str) -> list[str]:
    """The base64 of `value` whole, and the part of it that any base64 stream holding it shows.

    Inside a longer stream (an Authorization header, a token) the encoding of
    `value` depends on where it starts modulo 3 bytes; for each start, the
    characters that encode `value`'s bytes alone are registered.
    """
    raw = value.encode()
    forms = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.append(encode(raw).decode())
        for shift, skip in ((0, 0), (1, 2), (2, 3)):
            whole_groups = (shift + len(raw)) // 3 * 4
            forms.append(encode(b"\0" * shift + raw).decode()[skip:whole_groups])
    return [form for form in forms if len(form) >= _MIN_DERIVED]


def _url_forms(value: str) -> list[str]:
    forms = {urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)} - {value}
    return [form for form in forms if len(form) >= _MIN_DERIVED]


def _mask_des(match: re.Match[str]) -> str:
    """`user:hash` with a 13-character DES hash, unless the value is a plain word or number."""
    value = match.group(0)[len(match.group(1)):]
    return match.group(0) if _PLAIN_WORD.fullmatch(value) else match.group(1) + MASK


def _mask_orphan_key_ends(text: str) -> str:
    """An END line left without its BEGIN (the text was cut): mask it and the key lines above it."""
    if not _KEY_END.search(text):
        return text
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        end = _KEY_END.search(line)
        if end is None:
            out.append(line)
            continue
        if not line[: end.start()].strip():
            if out and _LAST_BODY_LINE.fullmatch(out[-1].strip()):
                out.pop()
            while out and _BODY_LINE.fullmatch(out[-1].strip()):
                out.pop()
        out.append(line[: end.start()] + KEY_MASK + line[end.end():])
    return "".join(out)
