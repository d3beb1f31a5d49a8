"""lab.files: atomic writes with their mode from the start, and the lab's private folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lab.common.errors import LabError
from lab.common.files import atomic_write, private_dir, write_beneath, write_private


def test_atomic_write_sets_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private(tmp_path / "secret", "pw")
        report = atomic_write(tmp_path / "report.md", "text")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(report.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "secret"]


def test_atomic_write_replaces_a_planted_link_instead_of_following_it(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "secrets.yml").symlink_to(target)
    write_private(tmp_path / "secrets.yml", "pw")
    assert target.read_text() == "untouched"
    assert not (tmp_path / "secrets.yml").is_symlink()


def test_private_dir_is_made_0700_and_tightened(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = private_dir(tmp_path / ".lab")
    finally:
        os.umask(old)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    (tmp_path / "loose").mkdir(mode=0o755)
    os.chmod(tmp_path / "loose", 0o755)
    assert stat.S_IMODE(private_dir(tmp_path / "loose").stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_private_dir_refuses_a_folder_others_can_write(tmp_path: Path, mode: int) -> None:
    """Files planted there (an ssh_config with a ProxyCommand) would be trusted as reglab's."""
    folder = tmp_path / ".lab"
    folder.mkdir()
    os.chmod(folder, mode)
    with pytest.raises(LabError, match=r"others can write to it .*`chmod 700 "):
        private_dir(folder)


def test_private_dir_refuses_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / ".lab").symlink_to(tmp_path / "real")
    with pytest.raises(LabError, match="a link or a file"):
        private_dir(tmp_path / ".lab")


def test_replaced_whole_swaps_in_what_the_tool_wrote_or_leaves_nothing(tmp_path) -> None:
    import pytest

    from lab.common.files import replaced_whole

    target = tmp_path / "images" / "bundle.tar"
    with replaced_whole(target) as partial:
        partial.write_bytes(b"whole")
        assert not target.exists()  # nobody sees half a file
    assert target.read_bytes() == b"whole" and oct(target.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RuntimeError), replaced_whole(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("docker save failed")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in target.parent.iterdir()] == ["bundle.tar"]  # no partial left behind


def test_write_beneath_makes_folders_and_the_file_inside_the_tree(tmp_path):
    made = write_beneath(tmp_path, "/boot/extlinux/extlinux.conf", "x\n", 0o600)
    assert made == tmp_path / "boot/extlinux/extlinux.conf" and made.read_text() == "x\n"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    write_beneath(tmp_path, "boot/extlinux/extlinux.conf", "y\n")  # an existing file: replaced
    assert made.read_text() == "y\n"


@pytest.mark.parametrize("how", ["folder-link", "file-link", "hard-link", "dotdot"])
def test_write_beneath_never_writes_through_a_link_or_out_of_the_tree(tmp_path, how):
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    tree.mkdir()
    outside.mkdir()
    (outside / "fstab").write_text("host\n")
    path = "etc/fstab"
    if how == "folder-link":
        (tree / "etc").symlink_to(outside)
    elif how == "file-link":
        (tree / "etc").mkdir()
        (tree / "etc/fstab").symlink_to(outside / "fstab")
    elif how == "hard-link":
        (tree / "etc").mkdir()
        os.link(outside / "fstab", tree / "etc/fstab")
    else:
        path = "../outside/fstab"
    with pytest.raises((LabError, ValueError)):
        write_beneath(tree, path, "planted\n")
    assert (outside / "fstab").read_text() == "host\n"
    assert sorted(p.name for p in outside.iterdir()) == ["fstab"]
