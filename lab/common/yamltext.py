"""YAML read with libyaml where PyYAML has it: the scenario file is read on every `reglab check`.

NOTE: PyYAML's pure-Python loader took about 0.4 s of a student's 1 s check
to read the tutorial's scenario (700 lines) twice; libyaml's takes a tenth of
that. Both are safe loaders (no arbitrary objects) and build the same data
(tests/unit/test_yamltext.py holds that for every YAML file reglab ships).
"""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, with libyaml when PyYAML was built with it; raises yaml.YAMLError the same way."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader, C or Python
