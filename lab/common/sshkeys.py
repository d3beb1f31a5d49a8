"""SSH keys reglab makes: a student's key to their own machines, a test's key to the machines it made.

One chore, one helper: an ed25519 key in OpenSSH format, its private half
0600 from its first byte (lab.files.write_private), its public line returned.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.common.files import write_private


def new_key(path: Path, comment: str = "") -> str:
    """Write a new private key at `path` (0600) and `path.pub`; return the public line."""
    key = Ed25519PrivateKey.generate()
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {comment}".strip()
    write_private(Path(f"{path}.pub"), line + "\n")
    return line
