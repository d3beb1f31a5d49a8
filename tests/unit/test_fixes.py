"""The scenario's `fixes:` (lab/tutorial/fixes.py): each bad entry one error naming it; the fixed text built."""

from __future__ import annotations

from typing import Any

import pytest

from lab.common.errors import Invalid
from lab.tutorial.fixes import Fix, fixed_text, parse_fixes
from lab.tutorial.text import code_blocks

TEXT = "# T\n\n```\ndocker pull x/test-images\nls\n```\nafter\n\n```\nnginx:\n  image: a\n```\n"
BLOCKS = code_blocks(TEXT)
GOOD = {"block": 1, "lines": 1, "was": "docker pull x/test-images", "text": "docker pull x/test-image",
        "step": "pull", "causes": ["name-not-pushed"]}


def test_a_good_fix_is_read() -> None:
    (fix,) = parse_fixes([GOOD], BLOCKS)
    assert fix == Fix(1, 1, 1, "docker pull x/test-images", "docker pull x/test-image", "pull", ("name-not-pushed",))


@pytest.mark.parametrize(("change", "where", "words"), [
    ({"block": 9}, "fixes[0].block", "expected a block number 1-2"),
    ({"lines": "two"}, "fixes[0].lines", "expected a line number"),
    ({"was": ""}, "fixes[0].was", "missing"),
    ({"causes": []}, "fixes[0].causes", "cause ids"),
    ({"colour": "red"}, "fixes[0].colour", "unknown key"),
    ({"stdin": "PASSWORD"}, "fixes[0].run", "go together"),
])
def test_a_bad_fix_is_one_error_naming_it(change: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_fixes([{**GOOD, **change}], BLOCKS)
    assert info.value.path == where and words in info.value.problem


def test_overlapping_fixes_are_refused() -> None:
    with pytest.raises(Invalid, match="overlaps"):
        parse_fixes([GOOD, {**GOOD, "lines": "1-2", "was": "docker pull x/test-images\nls"}], BLOCKS)


def test_the_fixed_text_replaces_the_lines_and_quotes_the_note_after_the_block() -> None:
    (fix,) = parse_fixes([GOOD], BLOCKS)
    fixed = fixed_text(TEXT, [fix], {fix: "pull what was pushed"})
    assert fixed == ("# T\n\n```\ndocker pull x/test-image\nls\n```\n\n> pull what was pushed\n\nafter\n\n"
                     "```\nnginx:\n  image: a\n```\n")


def test_a_stale_fix_writes_no_fixed_text() -> None:
    (fix,) = parse_fixes([GOOD], BLOCKS)
    with pytest.raises(ValueError, match="step 'pull': the fix of block 1, line 1 is stale"):
        fixed_text(TEXT.replace("test-images", "images"), [fix], {})
