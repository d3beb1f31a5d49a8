"""Labs per host: a class of 8 on Incus against the same class on the docker provider.

`REGLAB_BENCH_PROVIDER=incus flock /tmp/reglab-incus.lock tox -e bench --
benchmarks/test_providers_benchmark.py` (or `=docker` under `flock
/tmp/reglab-e2e.lock`; REGLAB_BENCH_LABS, default 8; REGLAB_BENCH_JOBS, labs
booted at once, default all of them). Not part of the timed e2e. The same
case on each provider, through the real CLI as an instructor types it:

- boot: `reglab class up ROSTER --jobs J` from start to exit (every lab up,
  provisioned and its student's key granted; warm images as the host has them);
- memory per lab: the resident memory of every process in the lab's two
  machines (the sum of their RSS, the same count on both providers), and on
  Incus also the containers' memory cgroups (page cache included), as Incus
  reports;
- a student's wait: `reglab check --all` in the first lab, the real command
  (Python's start included), best of 2, while all the labs run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

PROVIDER = os.environ.get("REGLAB_BENCH_PROVIDER", "incus")
LABS = int(os.environ.get("REGLAB_BENCH_LABS", "8"))
JOBS = int(os.environ.get("REGLAB_BENCH_JOBS", str(LABS)))
# Class names and pools of their own: clear of the class tests (net101 on 10.77/16, incus101 on 10.82/16).
CLASS = {"incus": "benchincus", "docker": "benchdocker"}
POOL = {"incus": "10.80.0.0/16", "docker": "10.81.0.0/16"}
REGLAB = str(Path(sys.executable).parent / "reglab")


def _reglab(lab_file: Path, *args: str, timeout: float = 3600) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run([REGLAB, "--lab", str(lab_file), "-q", *args], capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def _rss_mib(command: list[str]) -> float:
    """The summed RSS of the processes `command` (a `ps` of a machine's processes) lists."""
    out = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    rss = [line.split()[-1] for line in out.splitlines() if line.split()]
    return sum(int(v) for v in rss if v.isdigit()) / 1024  # the last column; a header ("RSS") is skipped


def _machine_memory(lab: str, machine: str) -> tuple[float, float | None]:
    """(processes' RSS, cgroup memory or None) of one machine, in MiB."""
    if PROVIDER == "docker":
        return _rss_mib(["docker", "top", f"{lab}-{machine}", "-o", "pid,rss"]), None  # docker top needs the pid
    from lab.machines import incus

    name = incus.instance_name(lab, machine)
    state = json.loads(subprocess.run(["incus", "query", f"/1.0/instances/{name}/state"], capture_output=True,
                                      text=True, timeout=60, check=True).stdout)
    cgroup = (state.get("memory") or {}).get("usage")
    return (_rss_mib(["incus", "exec", name, "--", "ps", "-eo", "rss="]),
            cgroup / 2**20 if isinstance(cgroup, int) and cgroup > 0 else None)


def test_labs_per_host(benchmark, tmp_path):
    if PROVIDER not in CLASS:
        pytest.fail(f"REGLAB_BENCH_PROVIDER: expected incus or docker, got {PROVIDER!r}")
    name = CLASS[PROVIDER]
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": PROVIDER,
                                    "images": {"source": os.environ.get("REGLAB_IMAGES", "build")}}))
    roster = tmp_path / f"{name}.csv"
    students = [f"s{i:02d}" for i in range(1, LABS + 1)]
    roster.write_text("id\n" + "".join(f"{s}\n" for s in students))
    root = ["--students-are-root-on-this-host"] if PROVIDER == "docker" else []
    info: dict[str, object] = {"provider": PROVIDER, "labs": LABS, "jobs": JOBS}
    try:
        up = benchmark.pedantic(lambda: _reglab(base, "class", "up", str(roster), "--pool", POOL[PROVIDER],
                                                "--jobs", str(JOBS), *root), rounds=1, iterations=1)
        assert up[0] == 0, up[2]
        info["class_up_all_provisioned_s"] = round(up[1], 1)
        rss, cgroups = [], []
        for student in students:
            lab = f"{name}-{student}"
            both = [_machine_memory(lab, machine) for machine in ("registry", "client")]
            rss.append(sum(r for r, _ in both))
            if all(c is not None for _, c in both):
                cgroups.append(sum(c for _, c in both))
        assert all(r > 0 for r in rss), f"no memory counted for a lab's machines: {rss}"
        info["memory_per_lab_rss_mib"] = round(sum(rss) / LABS)
        if cgroups:
            info["memory_per_lab_cgroup_mib"] = round(sum(cgroups) / len(cgroups))
        first = base.parent / ".class" / name / "labs" / f"{students[0]}.yml"
        code, _, out = _reglab(first, "solve", "hosts")
        assert code == 0, out
        every = [_reglab(first, "check", "--all", timeout=600) for _ in range(2)]
        assert all(code in (0, 1) for code, _, _ in every), every[0][2]  # steps not done yet fail: that is fine
        info["check_all_busy_s"] = round(min(s for _, s, _ in every), 2)
    finally:
        code, seconds, out = _reglab(base, "class", "--name", name, "down")
        info["class_down_s"] = round(seconds, 1)
    assert code == 0, out
    benchmark.extra_info.update(info)
    print(f"\nlabs per host ({PROVIDER}):\n" + "\n".join(f"  {k:<28} {v}" for k, v in info.items()))
