"""A class of N on one cluster member against the same class over two (issue 21).

`REGLAB_PLATFORM=debian12 flock /tmp/reglab-incus.lock tox -e bench --
benchmarks/test_incus_cluster_benchmark.py` (REGLAB_BENCH_LABS, default 4).
Not part of the timed e2e. On the two-member cluster the e2e test makes
(tests/e2e/incus_cluster.py), through the real CLI as an instructor types it:

- one member: m2 is set `scheduler.instance=manual` (Incus places nothing
  there unless asked), so the cluster puts every lab on m1;
- two members: the setting unset, the cluster spreads the labs.

Measured in each case: `reglab class up ROSTER --jobs N` from start to exit
(every lab booted from the machine image, provisioned, its key granted: no
warm starts on a remote), `reglab class check hosts` of all N, and `class
down`. NOTE: both members are containers on this one 2-core host, so two
members share the same CPU: this measures what the cluster's placement and
the per-member work cost, not the added capacity of a second machine.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import incus_cluster as made  # noqa: E402

pytestmark = pytest.mark.e2e

LABS = int(os.environ.get("REGLAB_BENCH_LABS", "4"))
CLASS = "benchclu"
POOL = "10.76.128.0/17"
REGLAB = str(Path(sys.executable).parent / "reglab")


def _reglab(base: Path, *args: str, timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run([REGLAB, "--lab", str(base), "-q", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ)
    return time.monotonic() - started, done


def _placed() -> dict[str, int]:
    found: dict[str, int] = {}
    for item in json.loads(made.run("incus", "list", f"{made.REMOTE}:", "--format", "json") or "[]"):
        found[item["location"]] = found.get(item["location"], 0) + 1
    return found


def test_a_class_on_one_member_against_the_same_class_over_two(tmp_path, monkeypatch):
    conf = tmp_path / "incus-client"
    monkeypatch.setenv("INCUS_CONF", str(conf))
    base = tmp_path / "lab.yml"
    base.write_text(yaml.safe_dump({"provider": "incus", "incus": {"remote": made.REMOTE}}))
    roster = tmp_path / f"{CLASS}.csv"
    roster.write_text("id,name\n" + "".join(f"s{i},Student {i}\n" for i in range(LABS)))
    rows = []
    with made.cluster(conf):
        for case in ("one member", "two members"):
            if case == "one member":
                made.run("incus", "cluster", "set", f"{made.REMOTE}:m2", "scheduler.instance=manual")
            else:
                made.run("incus", "cluster", "unset", f"{made.REMOTE}:m2", "scheduler.instance")
            try:
                up, done = _reglab(base, "class", "up", str(roster), "--pool", POOL, "--jobs", str(LABS))
                assert done.returncode == 0, done.stdout + done.stderr
                placed = _placed()
                check, done = _reglab(base, "class", "check", "hosts")
                assert done.returncode in (0, 1), done.stdout + done.stderr  # `hosts` is not solved: it fails
            finally:
                down, done = _reglab(base, "class", "--name", CLASS, "down")
            assert done.returncode == 0, done.stdout + done.stderr
            rows.append((case, placed, up, check, down))
    print(f"\nclass of {LABS} on the test's cluster (2 nested members on one 2-core host)")
    for case, placed, up, check, down in rows:
        print(f"{case:12} machines per member {placed}: class up {up:.0f} s, class check {check:.1f} s, "
              f"class down {down:.0f} s")
    assert len(rows[0][1]) == 1 and len(rows[1][1]) == 2, rows
