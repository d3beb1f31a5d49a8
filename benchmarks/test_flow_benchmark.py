"""The whole fixed flow, from booting machines to the server's pull, timed: a fresh
start (provisioned from nothing) and a warm start (booted from the saved image), on
each platform (Debian 12 and Debian 13 machines: their own packages, images and tools).

Run with `tox -e bench`. The baseline to beat is the same work typed as a plain
sequential script on two docker-provider machines here: about 190 s (install
45 s, image copies 30-45 s, push 30 s). Caches are warm as on a second run:
images built once on the host, packages downloaded once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.common.progress import Progress
from lab.engine.session import Session, load_lab
from lab.model.platforms import PLATFORMS

SEQUENTIAL_BASELINE_S = 190

pytestmark = pytest.mark.e2e


def _flow(benchmark, pytestconfig, start: str, platform: str) -> None:  # noqa: ANN001
    overrides = {"edition": "modern", "start": start, "platform": platform}
    # As reglab reads it: `provider: auto` (tox -e bench sets REGLAB_PROVIDER=auto) is what this host runs.
    lab = load_lab(Path(pytestconfig.rootpath) / "lab.yml", overrides)
    assert lab.platform == platform
    benchmark.extra_info["provider"] = lab.provider
    benchmark.extra_info["start"] = start
    benchmark.extra_info["platform"] = platform
    warm = Session(lab, Progress(quiet=True))
    warm.down()  # new machines, outside the timing
    # The host's caches as any second run finds them: images built, bundle saved
    # (the libvirt box is built, or found in the cache, inside `up`: its phase says which).
    if lab.provider == "docker":
        warm.builder.node()
    warm.prepare_images()
    session = Session(lab, Progress())
    try:
        result = benchmark.pedantic(session.run, rounds=1, iterations=1)
        assert result.passed, [(s.step_id, s.status.value, s.seen) for s in result.steps if s.status != "pass"]
        starts = {name: record["kind"] for name, record in session.state.data.get("starts", {}).items()}
        if lab.provider == "docker":
            assert set(starts.values()) == {start}, f"asked for a {start} start, got {starts}"
        steps = sum(s.duration for s in result.steps)
        benchmark.extra_info.update(session.progress.phases)
        benchmark.extra_info["steps"] = round(steps, 1)
        benchmark.extra_info["baseline_sequential_s"] = SEQUENTIAL_BASELINE_S
        total = benchmark.stats.stats.max
        lines = [f"{start} start, {lab.platform}:"]
        lines += [f"  {name:<30} {secs:6.1f}s" for name, secs in session.progress.phases.items()]
        lines.append(f"  {'steps (solve + check)':<30} {steps:6.1f}s")
        baseline = (f"({total / SEQUENTIAL_BASELINE_S:.2f} of the sequential script's ~{SEQUENTIAL_BASELINE_S}s)"
                    if lab.provider == "docker" else "")
        lines.append(f"  {'total, boot to server pull':<30} {total:6.1f}s  {baseline}")
        print("\n" + "\n".join(lines))
    finally:
        session.down()


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_fresh_start_boot_to_server_pull(benchmark, pytestconfig, platform):
    """Machines provisioned from nothing (and saved as a warm image where there was none)."""
    _flow(benchmark, pytestconfig, "fresh", platform)


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_warm_start_boot_to_server_pull(benchmark, pytestconfig, platform):
    """Machines booted from the warm image the fresh run left: provisioned already."""
    _flow(benchmark, pytestconfig, "warm", platform)
