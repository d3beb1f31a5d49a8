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
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import yaml

from lab.config import Lab, User
from lab.errors import ConfigError

MASK = "********"
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner alone, created 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp with looser bits is tightened before the secret goes in
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def resolve_passwords(lab: Lab) -> Lab:
    """Fill in missing passwords from `.lab/secrets.yml`, generating them once."""
    path = lab.state_dir / "secrets.yml"
    stored: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        try:
            stored = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(str(path), "", "not valid YAML; remove it to generate new passwords") from None
        if not isinstance(stored, dict):
            raise ConfigError(str(path), "", "expected a mapping of user name to password")
    users = []
    changed = False
    for user in lab.users:
        if user.password is not None:
            users.append(user)
            continue
        if not isinstance(stored.get(user.name), str) or not stored[user.name]:
            stored[user.name] = generate_password()
            changed = True
        users.append(replace(user, password=str(stored[user.name])))
    if changed:
        write_private(path, yaml.safe_dump(stored, default_flow_style=False))
    return replace(lab, users=tuple(users))


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
