"""The pytest plugin's lab: machines are destroyed whatever happened while it started (item 15)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab import pytest_plugin
from lab.common.errors import LabFailure


class FakeSession:
    downs = 0

    def __init__(self, lab, progress, lock=True) -> None:  # noqa: ANN001
        self.lab = lab
        self.progress = SimpleNamespace(phases={})

    def start(self) -> None:
        raise LabFailure("client: `apt-get install docker.io` exited 100")

    def down(self) -> list[str]:
        FakeSession.downs += 1
        return []


class FakeConfig:
    def __init__(self, tmp_path) -> None:  # noqa: ANN001
        self.options = {"--lab": str(tmp_path / "lab.yml"), "--edition": None, "--keep": False}
        self.pluginmanager = SimpleNamespace(get_plugin=lambda name: None)

    def getoption(self, name: str):  # noqa: ANN201
        return self.options[name]


def test_machines_are_destroyed_when_provisioning_fails(tmp_path, monkeypatch) -> None:
    """Seen: a failed boot or provision left both machines running, since nothing was recorded to destroy."""
    monkeypatch.setattr(pytest_plugin, "Session", FakeSession)
    monkeypatch.setattr(pytest_plugin, "load_lab", lambda path, overrides=None: SimpleNamespace(edition="modern"))
    FakeSession.downs = 0
    run = pytest_plugin.LabRun(FakeConfig(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="the lab could not start: client"):
        run.session()
    with pytest.raises(pytest.fail.Exception, match="could not start"):
        run.session()  # later tests fail at once with the same cause
    run.finish()
    assert FakeSession.downs == 1
