"""Passwords: generated once when lab.yml gives none, kept owner-only, redacted everywhere.

NOTE: every string that may leave the process (logs, errors, reports) goes
through `Redactor.redact`; the set of secrets is the lab's users' passwords
plus any private key material registered at run time.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from lab.config import DuplicateKeyError, Lab, StrictLoader, User, password_problem
from lab.errors import ConfigError
from lab.files import private_dir, write_private

MASK = "********"
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def resolve_passwords(lab: Lab) -> Lab:
    """Fill in missing passwords from `.lab/secrets.yml`, generating them once.

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
        text = path.read_bytes().decode("utf-8")
        stored = yaml.load(text, Loader=StrictLoader)  # a SafeLoader: no arbitrary objects
    except DuplicateKeyError as exc:
        raise ConfigError(source, exc.key_path, f"expected each user once, got {exc.key!r} again at line "
                          f"{exc.line} (first at line {exc.first_line}); remove one") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "expected UTF-8 text; remove it to generate new passwords") from None
    except yaml.YAMLError:
        raise ConfigError(source, "", "not valid YAML; remove it to generate new passwords") from None
    if stored is None:
        return {}
    if not isinstance(stored, dict):
        raise ConfigError(source, "", "expected a mapping of user name to password")
    return stored


class Redactor:
    """Replaces every known secret (and its base64 forms) with a mask."""

    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets_)

    @classmethod
    def for_users(cls, users: Iterable[User]) -> Redactor:
        redactor = cls()
        for user in users:
            if user.password:
                redactor.add(user.password)
                # `docker login` stores user:password base64-encoded in config.json.
                redactor.add(base64.b64encode(f"{user.name}:{user.password}".encode()).decode())
        return redactor

    def add(self, *values: str) -> None:
        for value in values:
            if value and len(value) >= 4:
                self._secrets.add(value)

    def redact(self, text: str) -> str:
        if not text:
            return text
        text = _KEY_BLOCK.sub("-----PRIVATE KEY REDACTED-----", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text
