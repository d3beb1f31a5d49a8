"""Unit tests for lab.common.yamltext: libyaml where there is one, the same data as PyYAML's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import lab
from lab.common import yamltext

ROOT = Path(lab.__file__).resolve().parent.parent
SHIPPED = sorted({*ROOT.glob("scenarios/**/*.yaml"), *ROOT.glob("scenarios/**/*.yml"),
                  *Path(lab.__file__).parent.glob("scenarios/**/*.y*ml"), ROOT / "lab.yml"})


def test_libyaml_is_used_where_pyyaml_has_it() -> None:
    assert yamltext.SafeLoader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_yaml_file_reads_the_same_as_with_pyyamls_safe_loader(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yamltext.safe_load(text) == yaml.safe_load(text)


def test_no_arbitrary_objects() -> None:
    with pytest.raises(yaml.YAMLError):
        yamltext.safe_load("!!python/object/apply:os.system ['true']")


def test_a_yaml_error_says_where() -> None:
    with pytest.raises(yaml.YAMLError) as info:
        yamltext.safe_load("a: [1, 2\nb: 3\n")
    assert getattr(info.value, "problem_mark", None) is not None
