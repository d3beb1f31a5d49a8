"""The session's warm-start decisions, with a fake store: which start each machine gets, and
which machine is saved. No machine, no Docker: the store and the state are fakes."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from lab.common.progress import Progress
from lab.engine.session import Session
from lab.machines.provision import Provisioned
from lab.machines.warm import WarmKey


class FakeStore:
    def __init__(self, have: set[str]) -> None:
        self.have = set(have)
        self.saved: list[tuple[str, str]] = []

    def find(self, key: WarmKey) -> str | None:
        return f"warm-{key.value}" if key.value in self.have else None

    def archive_of(self, machine, cache) -> str:  # noqa: ANN001, ARG002
        return "index-now"

    def save(self, name, machine, key, packages, images) -> str:  # noqa: ANN001, ARG002
        self.saved.append((name, key.value))
        self.have.add(key.value)
        return f"warm-{key.value}"


def fake_session(store: FakeStore, start: str = "warm", steps: dict | None = None,
                 plan_version: str = "plan-1") -> SimpleNamespace:
    out = io.StringIO()
    state = SimpleNamespace(data={"steps": steps or {}}, images=None, save=lambda: None)
    session = SimpleNamespace(
        lab=SimpleNamespace(provider="docker", start=start, name="reglab", cache_dir=None),
        provider=SimpleNamespace(booted_from=[], boot_from=None),
        state=state,
        progress=Progress(out),
        scenario=SimpleNamespace(steps=[SimpleNamespace(id="hosts", machines=lambda: ["registry", "client"])]),
        warm_store=lambda: store,
        context=lambda: SimpleNamespace(machine=lambda name: SimpleNamespace(
            name=name, sudo=lambda command, warn=False: SimpleNamespace(stdout="docker.io 20.10.24\n"))),
        out=out,
    )
    session.provider.boot_from = session.provider.booted_from.append
    # The key: base, plan and package index, as Session.warm_key makes it (here without hashing).
    session.warm_key = lambda base, archive=None: WarmKey(
        f"{base}/{plan_version}/{archive or 'index-now'}", "debian", {"archive": archive or "index-now"})
    return session


def test_a_matching_key_boots_warm_and_says_so() -> None:
    store = FakeStore({"node-1/plan-1/index-now"})
    session = fake_session(store)
    assert Session.choose_start(session, "node-1", ["registry", "client"]) == ["registry", "client"]
    assert session.provider.booted_from == ["warm-node-1/plan-1/index-now"]
    assert {r["kind"] for r in session.state.data["starts"].values()} == {"warm"}
    assert "warm start for registry, client: from warm-node-1/plan-1/index-now" in session.out.getvalue()


@pytest.mark.parametrize(
    ("base", "plan_version", "start", "why"),
    [
        ("node-2", "plan-1", "warm", "no warm machine for this base"),  # the node image was rebuilt
        ("node-1", "plan-2", "warm", "no warm machine for this base"),  # the plan changed
        ("node-1", "plan-1", "fresh", "asked for"),  # --fresh
    ],
    ids=["new-base", "changed-plan", "fresh-asked"],
)
def test_a_changed_key_or_fresh_boots_from_the_plain_image(base, plan_version, start, why) -> None:  # noqa: ANN001
    store = FakeStore({"node-1/plan-1/index-now"})
    session = fake_session(store, start=start, plan_version=plan_version)
    assert Session.choose_start(session, base, ["client"]) == []
    assert session.provider.booted_from == []  # up() already made the plain node image the one to boot
    record = session.state.data["starts"]["client"]
    assert record["kind"] == "fresh" and why in record["why"]


def test_a_fresh_machine_provisioned_from_nothing_is_saved_once() -> None:
    store = FakeStore(set())
    session = fake_session(store, start="fresh")
    Session.choose_start(session, "node-1", ["registry", "client"])
    done = [Provisioned("registry", "debian", ["installed docker.io", "started docker"]),
            Provisioned("client", "debian", ["installed docker.io", "started docker"])]
    assert Session.save_warm(session, done) == "warm-node-1/plan-1/index-now"
    assert store.saved == [("reglab-registry", "node-1/plan-1/index-now")]  # one machine serves both
    assert Session.save_warm(session, done) is None  # the key has its warm machine now
    assert len(store.saved) == 1


@pytest.mark.parametrize(
    ("kind", "changes", "steps"),
    [
        ("warm", ["installed docker.io"], {}),  # booted warm: nothing new to save
        ("fresh", ["loaded reglab/nginx"], {}),  # provisioned before: what else happened to it is unknown
        ("fresh", ["installed docker.io"], {"hosts": {"status": "pass"}}),  # a step ran on it
    ],
    ids=["booted-warm", "not-from-nothing", "steps-ran"],
)
def test_only_an_untouched_machine_provisioned_from_nothing_is_saved(kind, changes, steps) -> None:  # noqa: ANN001
    store = FakeStore(set())
    session = fake_session(store, steps=steps)
    session.state.data["starts"] = {"registry": {"kind": kind, "base": "node-1"}}
    assert Session.save_warm(session, [Provisioned("registry", "debian", changes)]) is None
    assert store.saved == []
