"""Issue 9, item 1: a lab is an instance.

A second lab, its file outside the checkout, boots beside the session's lab
from the same checkout; `reglab down` of it leaves the session's lab running.
A lab that takes the session lab's name is refused before booting.
"""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.e2e


def test_a_second_lab_from_anywhere_runs_beside_the_first_and_goes_alone(lab_session, reglab, lab_cli, tmp_path):
    if lab_session.lab.provider != "docker":
        pytest.fail("this test boots a second lab on the docker provider; the session's lab is "
                    f"{lab_session.lab.provider}")
    other = tmp_path / "elsewhere" / "other.yml"
    other.parent.mkdir()
    other.write_text(yaml.safe_dump({
        "name": "otherlab", "provider": "docker", "images": {"source": lab_session.lab.images.source},
        "machines": {"registry": {"ip": "192.168.79.10"}, "client": {"ip": "192.168.79.11"}}}))
    try:
        status, out, err = lab_cli(other, "up")
        assert status == 0, out + err
        state = other.parent / ".lab" / "otherlab"
        assert (state / "vagrant").is_dir() and (state / "logs" / "vagrant.log").is_file()
        assert not (other.parent / "Vagrantfile").exists()  # the Vagrantfile came with reglab
        status, out, err = lab_cli(other, "ssh", "registry", "--", "hostname")
        assert status == 0, out + err
    finally:
        status, out, err = lab_cli(other, "down")
    assert status == 0, out + err
    mine = reglab("status")
    assert mine.out.count(" running ") == 2, mine.out  # the session's lab was left alone

    # The session lab's name from another folder: refused, naming the lab that has it.
    clash = tmp_path / "clash" / "lab.yml"
    clash.parent.mkdir()
    clash.write_text(yaml.safe_dump({
        "name": lab_session.lab.name, "provider": "docker",
        "machines": {"registry": {"ip": "192.168.80.10"}, "client": {"ip": "192.168.80.11"}}}))
    status, out, err = lab_cli(clash, "up")
    assert status == 2, out + err
    assert f"the lab name {lab_session.lab.name!r} is already used by the lab in {lab_session.lab.root}" in err, err
    assert reglab("status").out.count(" running ") == 2
