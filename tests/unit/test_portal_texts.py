"""The student's page shows the tutorial's own text with their values: substituted, never evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_text_is_data import hostile, tutorial_copy

from lab.engine.session import Session
from lab.engine.teaching import tutorial_text


def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: Path | None = None) -> Session:
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    for name in ("REGLAB_PROVIDER", "REGLAB_EDITION", "REGLAB_IMAGES", "REGLAB_LAB", "REGLAB_SCENARIO"):
        monkeypatch.delenv(name, raising=False)
    lab = tmp_path / "lab.yml"
    lab.write_text("provider: docker\ndomain: ada.myregistrydomain.com\nusers: [{name: ada, password: Pw-1234567}]\n"
                   "machines: {registry: {ip: 10.77.3.10}, client: {ip: 10.77.3.11}}\n"
                   + (f"scenario: {scenario}\nedition: as-written\n" if scenario else ""))
    return Session.from_file(lab, lock=False)


def test_the_hosts_step_is_written_with_the_students_address_and_domain(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = tutorial_text(session(tmp_path, monkeypatch), "hosts")
    assert "10.77.3.10 ada.myregistrydomain.com" in text
    assert "<Machine IP>" not in text and "192.168.33.10" not in text


def test_no_password_is_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = session(tmp_path, monkeypatch)
    texts = "\n".join(tutorial_text(lab, step.id) for step in lab.scenario.steps)
    assert "Pw-1234567" not in texts
    assert "YOUR-REGISTRY-PASSWORD" in texts or "PASSWORD" in texts


def test_template_syntax_in_the_tutorials_text_is_shown_not_run(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "MARKER"
    line = hostile(marker)
    path = tutorial_copy(tmp_path, line, reviewed=True)
    text = tutorial_text(session(tmp_path, monkeypatch, path), "local-registry")
    assert not marker.exists(), "the tutorial's text ran on the host"
    assert line in text
