"""lab.sshkeys: a key ssh accepts, private from its first byte."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from lab.common.sshkeys import new_key


def test_a_new_key_is_private_loadable_and_its_public_line_returned(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        line = new_key(tmp_path / "id", "net101-ada")
    finally:
        os.umask(old)
    assert (tmp_path / "id").stat().st_mode & 0o777 == 0o600
    key = serialization.load_ssh_private_key((tmp_path / "id").read_bytes(), None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert line == public.decode() + " net101-ada"
    assert (tmp_path / "id.pub").read_text() == line + "\n"
