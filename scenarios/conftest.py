"""Collect every scenario file here as tests: one item per step, in order.

`pytest scenarios/` (and `tox -e e2e`) boots the lab, then solves and checks
each step on the real machines; a failed step skips the ones after it.
"""

from lab.pytest_plugin import ScenarioFile


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".yaml" and file_path.parent == parent.session.config.rootpath / "scenarios":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None
