"""Issue 12 on real machines: warm and fresh starts both pass every step.

The test session's lab started one way (fresh where no warm image matched,
which saved one; warm where one did): this test destroys the machines and
boots them the other way, so every run walks both paths.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def _starts(lab) -> dict[str, dict]:  # noqa: ANN001
    return json.loads((lab.state_dir / "state.json").read_text()).get("starts", {})


def _own(machine, command: str) -> str:  # noqa: ANN001
    return machine.sudo(command, timeout=60).stdout.strip()


def test_the_other_start_passes_every_step_and_machines_are_their_own(lab_session, reglab):
    lab = lab_session.lab
    store = lab_session.warm_store()
    if store is None:
        pytest.fail(f"no warm starts for this lab ({lab.provider}, boxes.{lab.os}: not built here)")
    before = _starts(lab)
    assert before["registry"]["kind"] == before["client"]["kind"], before
    session_start = before["registry"]["kind"]
    # Whichever way the session started, a warm machine for this key exists now.
    key = lab_session.warm_key(before["registry"]["base"])
    found = store.find(key)
    assert found, f"no warm machine for key {key.value} after the session's {session_start} start ({before})"
    metadata = store.metadata(found)
    assert metadata["key"] == key.value and metadata["packages"].get("docker.io"), metadata

    other = "fresh" if session_start == "warm" else "warm"
    assert reglab("down").status == 0
    up = reglab(*(["--fresh"] if other == "fresh" else []), "up")
    assert up.status == 0, up.out + up.err
    after = _starts(lab)
    assert {after["registry"]["kind"], after["client"]["kind"]} == {other}, after
    status = reglab("status").out
    assert (f"warm ({found})" in status) if other == "warm" else ("fresh" in status and "warm (" not in status), status

    provision = reglab("provision")
    assert provision.status == 0, provision.err
    if other == "warm":
        # `up` loaded the lab's images (not in the image): nothing is left to do.
        assert provision.out.splitlines() == ["registry: nothing to change", "client: nothing to change"], \
            provision.out
    else:
        assert provision.out.count(": installed ") == 2, provision.out  # from nothing, both
    solve = reglab("solve", "--all")
    assert solve.status == 0, solve.out + solve.err
    assert "11 passed, 0 failed" in solve.out

    # Both machines came from one image, yet each made its own host keys, machine-id and Docker ID.
    registry, client = (lab_session.provider.connect(name) for name in ("registry", "client"))
    for what, command in (("SSH host key", "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"),
                          ("machine-id", "cat /etc/machine-id"),
                          ("Docker daemon ID", "docker info -f '{{.ID}}'"),
                          ("reglab identity", "cat /var/lib/reglab/machine-id")):
        mine, theirs = _own(registry, command), _own(client, command)
        assert mine and theirs and mine != theirs, f"{what}: registry {mine!r}, client {theirs!r}"
