"""The scenario against the tutorial's own text (scenarios/tutorial.md), with no machine.

Each step cites the code blocks it covers; `left_out` names the shell blocks
no step covers. When the tutorial's text changes, these tests fail and name
the step whose blocks changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.common.errors import ConfigError
from lab.model.lab import EDITIONS
from lab.model.scenario import Scenario, default_path, load, parse
from lab.tutorial.text import TUTORIAL, Cite, block_id, classify, code_blocks, digest, drift

TEXT = TUTORIAL.read_text()


def scenario_of(data: dict[str, Any]) -> Scenario:
    return parse(data, Path("mini.yaml"), "modern")


def cite(block: int, text: str, first: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"block": block, "first": first if first is not None else text.splitlines()[0], "sha256": digest(text),
            **extra}


def step(step_id: str, *cites: dict[str, Any]) -> dict[str, Any]:
    return {"id": step_id, "title": "T", "section": "S", "tutorial": list(cites)}


# --- the shipped scenario against the shipped copy -------------------------------------------


@pytest.mark.parametrize("edition", EDITIONS)
def test_shipped_scenario_and_tutorial_text_agree(edition: str) -> None:
    problems = drift(load(default_path(), edition), TEXT)
    assert problems == [], "\n".join(problems)


def test_every_shell_block_is_cited_or_left_out_with_a_reason() -> None:
    """Counted here without `drift`, so a bug in it cannot hide an uncovered command."""
    scenario = load(default_path(), "modern")
    cited = {c.block for s in scenario.steps for c in s.tutorial}
    left_out = {c.block: c.why for c in scenario.left_out}
    shell = [b for b in code_blocks(TEXT) if b.kind == "shell"]
    assert shell, "the tutorial has shell blocks"
    missing = [f"{b.number}: {b.first}" for b in shell if b.number not in cited and b.number not in left_out]
    assert missing == []
    assert all(why.strip() for why in left_out.values())
    assert not cited & set(left_out), "a block is either covered or left out, not both"


def test_every_step_cites_the_tutorial() -> None:
    assert [s.id for s in load(default_path(), "modern").steps if not s.tutorial] == []


def test_the_copy_names_its_source() -> None:
    source = (TUTORIAL.parent / "tutorial.source.md").read_text()
    assert "000_5e830c92901f323a.txt" in source
    assert "2026-11-29" in source


# --- drift: a changed tutorial fails, naming the step ----------------------------------------


def test_a_changed_command_fails_naming_the_step_that_cites_it() -> None:
    changed = TEXT.replace("docker run -d -p 5000:5000", "docker run -d -p 5001:5000", 1)
    assert changed != TEXT
    problems = drift(load(default_path(), "modern"), changed)
    assert len(problems) == 1, problems
    assert "step 'local-registry'" in problems[0]
    assert "cites block 1:" in problems[0]
    assert "was 'docker run -d -p 5000:5000 --name registry registry:2'" in problems[0]
    assert "now 'docker run -d -p 5001:5000 --name registry registry:2'" in problems[0]


def test_a_new_shell_block_nobody_covers_is_named() -> None:
    problems = drift(load(default_path(), "modern"), TEXT + "\n### More\n```\ndocker system prune -af\n```\n")
    assert len(problems) == 1, problems
    assert "block 62" in problems[0] and "'More'" in problems[0] and "docker system prune -af" in problems[0]


def test_a_new_block_that_is_not_shell_needs_no_citation() -> None:
    assert drift(load(default_path(), "modern"), TEXT + "\n```\nregistry:\n  image: registry:2\n```\n") == []


def test_an_inserted_block_says_where_the_cited_text_went() -> None:
    text = "```\nkey: value\n```\n```\ndocker run x\n```\n"
    scenario = scenario_of({"steps": [step("run", cite(2, "docker run x"))]})
    assert drift(scenario, text) == []
    problems = drift(scenario, "```\nnew: block\n```\n" + text)
    assert any("step 'run' cites block 2" in p and "now number 3" in p for p in problems), problems


def test_a_block_past_the_end_is_named() -> None:
    scenario = scenario_of({"steps": [step("gone", cite(3, "docker ps"))]})
    gone, uncovered = drift(scenario, "```\ndocker ps\n```\n")
    assert gone == ("step 'gone' cites block 3 ('docker ps'), but the tutorial has 1 code blocks; "
                    "a block with its text is now number 1")
    assert uncovered.startswith("block 1 (line 2, '': 'docker ps') is a shell block that no step cites")


def test_the_first_line_must_be_copied_exactly() -> None:
    scenario = scenario_of({"steps": [step("a", cite(1, "docker ps", first="docker  ps"))]})
    [problem] = drift(scenario, "```\ndocker ps\n```\n")
    assert "step 'a'" in problem and "first line is 'docker ps'" in problem


def test_a_changed_left_out_block_is_named() -> None:
    scenario = scenario_of({"steps": [], "left_out": [cite(1, "vim a.yml", why="an editor")]})
    [problem] = drift(scenario, "```\nvim b.yml\n```\n")
    assert problem.startswith("left_out cites block 1: the block changed at line 2: was 'vim a.yml'")
    assert "now 'vim b.yml'" in problem


def test_a_block_both_covered_and_left_out_is_refused() -> None:
    scenario = scenario_of({"steps": [step("a", cite(1, "docker ps"))],
                            "left_out": [cite(1, "docker ps", why="no")]})
    assert drift(scenario, "```\ndocker ps\n```\n") == ["block 1 is cited by a step and also listed in left_out"]


# --- the parser ------------------------------------------------------------------------------

SAMPLE = "\n".join([
    "# Title  ",
    "intro",
    "### Setting up  ###",
    "```  ",
    "docker run -d registry   ",
    "```  ",
    "text",
    "#### ON CLIENT:",
    "```yaml",
    "registry:",
    "  image: registry:2",
    "```",
    "```",
    ".",
    "├── Docker",
    "```",
]) + "\n"


def test_fences_with_trailing_spaces_open_and_close_blocks() -> None:
    blocks = code_blocks(SAMPLE)
    assert [b.number for b in blocks] == [1, 2, 3]
    assert blocks[0].text == "docker run -d registry"  # trailing spaces stripped
    assert blocks[0].line == 5


def test_section_is_the_nearest_heading_without_hashes_or_spaces() -> None:
    assert [b.section for b in code_blocks(SAMPLE)] == ["Setting up", "ON CLIENT:", "ON CLIENT:"]


def test_a_hash_line_inside_a_block_is_not_a_heading() -> None:
    [first, second] = code_blocks("## A\n```\n# SSL\nssl on;\n```\n```\nx\n```\n")
    assert first.text == "# SSL\nssl on;"
    assert second.section == "A"


def test_a_block_left_open_runs_to_the_end() -> None:
    [block] = code_blocks("```\nls\nls -l\n")
    assert block.text == "ls\nls -l"


def test_kinds_of_the_sample() -> None:
    assert [b.kind for b in code_blocks(SAMPLE)] == ["shell", "other", "other"]


@pytest.mark.parametrize("text", [
    "docker run -d -p 5000:5000 --name registry registry:2",
    "$ anything at a prompt",
    "sudo service docker restart",
    "vagrant up; vagrant ssh",
    "yum install httpd-tools\nmkdir data",
    "update-ca-trust force-enable\ncp devdockerCA.crt /etc/pki/ca-trust/source/anchors/",
    "# a comment first\nopenssl genrsa -out domain.key 2048",
])
def test_commands_a_user_types_are_shell(text: str) -> None:
    assert classify(text) == "shell"


@pytest.mark.parametrize("text", [
    "registry:\n  image: registry:2\n  ports:\n    - 127.0.0.1:5000:5000",
    "server {\n  listen 443;\n  # ssl on;\n}",
    "# SSL\nssl on;\nssl_certificate /etc/nginx/conf.d/domain.crt;",
    ".\n├── Docker\n│   └── Vagrantfile",
    "<Machine IP> myregistrydomain.com",
    "latest: digest: sha256:5ea1 size: 8008",
    '"Login Succeeded"',
    "",
])
def test_file_contents_trees_and_output_are_other(text: str) -> None:
    assert classify(text) == "other"


def test_a_fence_language_decides_the_kind() -> None:
    assert [b.kind for b in code_blocks("```bash\nmake\n```\n```nginx\ncurl x\n```\n")] == ["shell", "other"]


def test_block_id_changes_with_the_text_only() -> None:
    [a, b, c] = code_blocks("```\ndocker ps\n```\n## Else\n```\ndocker ps\n```\n```\ndocker ps -a\n```\n")
    assert block_id(a) == f"1-{a.digest}"
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 16


# --- the scenario's keys ---------------------------------------------------------------------


def test_a_step_carries_its_citations(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"steps": [step("a", cite(1, "docker ps", why="note"))],
                                    "left_out": [cite(2, "vim x", why="an editor")]}))
    scenario = load(path, "as-written")
    assert scenario.steps[0].tutorial == (Cite(1, "docker ps", digest("docker ps"), "note"),)
    assert scenario.left_out == (Cite(2, "vim x", digest("vim x"), "an editor"),)


def test_citations_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"steps": [{"id": "a", "title": "T", "section": "S"}]}))
    scenario = load(path, "modern")
    assert (scenario.steps[0].tutorial, scenario.left_out) == ((), ())


GOOD = {"block": 1, "first": "docker ps", "sha256": digest("docker ps")}


@pytest.mark.parametrize(("where", "value", "key_path", "words"), [
    ("step", "docker ps", "steps[0] (a).tutorial", "expected a list"),
    ("step", ["docker ps"], "steps[0] (a).tutorial[0]", "expected a mapping"),
    ("step", [{**GOOD, "block": 0}], "steps[0] (a).tutorial[0].block", "block's number"),
    ("step", [{**GOOD, "block": "1"}], "steps[0] (a).tutorial[0].block", "block's number"),
    ("step", [{**GOOD, "block": True}], "steps[0] (a).tutorial[0].block", "block's number"),
    ("step", [{**GOOD, "first": " "}], "steps[0] (a).tutorial[0].first", "first line"),
    ("step", [{**GOOD, "sha256": "abc"}], "steps[0] (a).tutorial[0].sha256", "first 16 hex digits"),
    ("step", [{**GOOD, "sha256": GOOD["sha256"].upper()}], "steps[0] (a).tutorial[0].sha256", "16 hex"),
    ("step", [{**GOOD, "line": 6}], "steps[0] (a).tutorial[0].line", "unknown key"),
    ("step", [{**GOOD, "why": ""}], "steps[0] (a).tutorial[0].why", "the reason"),
    ("left_out", [GOOD], "left_out[0].why", "the reason"),
    ("left_out", {"block": 1}, "left_out", "expected a list"),
])
def test_bad_citations_are_config_errors(tmp_path: Path, where: str, value: Any, key_path: str, words: str) -> None:
    data: dict[str, Any] = {"steps": [{"id": "a", "title": "T", "section": "S"}]}
    if where == "step":
        data["steps"][0]["tutorial"] = value
    else:
        data["left_out"] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load(path, "modern")
    message = str(info.value)
    assert message.startswith(f"{path}: {key_path}:"), message
    assert words in message


# --- the fixed text (issue 20): drift both ways --------------------------------------------------


def test_a_change_that_makes_a_fixed_command_stale_is_named_with_its_step() -> None:
    scenario = load(default_path(), "fixed")
    old = ("openssl x509 -req -in dev-docker-registry.com.csr -CA devdockerCA.crt -CAkey devdockerCA.key "
           "-CAcreateserial -out domain.crt -days 10000")
    assert TEXT.count(old) == 1
    problems = drift(scenario, TEXT.replace(old, old + " -sha256"))
    stale = [p for p in problems if "is stale" in p]
    assert len(stale) == 1, problems
    assert stale[0].startswith("step 'tls': the fix of block 41, line 1 is stale: the text now reads")


def test_a_fix_whose_lines_moved_inside_an_unchanged_step_is_stale_too() -> None:
    """A fix checked on its own (no citation in the way): its `was` against the text's lines."""
    from lab.tutorial.fixes import drift as fix_drift

    scenario = load(default_path(), "fixed")
    assert fix_drift(scenario.fixes, TEXT) == []
    moved = TEXT.replace("docker pull [YOUR-DOMAIN]/test-images\n",
                         "echo pulling\ndocker pull [YOUR-DOMAIN]/test-images\n")
    problems = fix_drift(scenario.fixes, moved)
    assert [p.split(":")[0] for p in problems] == ["step 'server-pull'", "step 'server-pull'"], problems


def test_the_fixed_text_is_the_tutorial_with_each_fix_and_its_note_and_what_the_fixed_edition_runs() -> None:
    from lab.reports.fixed import note, render_fixed, render_patch

    scenario = load(default_path(), "fixed")
    fixed = render_fixed(TEXT, scenario.fixes)
    before, after = code_blocks(TEXT), code_blocks(fixed)
    assert len(after) == len(before)  # the blocks keep their numbers: from_text's refs hold
    for fix in scenario.fixes:
        assert fix.text in after[fix.block - 1].text
        assert fix.was in before[fix.block - 1].text and after[fix.block - 1].text != before[fix.block - 1].text
        assert f"> {note(fix)}" in fixed
    changed = {fix.block for fix in scenario.fixes}
    assert [b.text for b in after if b.number not in changed] == [b.text for b in before if b.number not in changed]
    # What the fixed edition's from_text runs for a fixed block is the fixed text's lines.
    parts = [part for step in scenario.steps for items in step.solve.values() for item in items
             if "from_text" in item for part in item["from_text"].parts]
    for part in parts:
        assert part.written in after[part.block - 1].text, part
    assert any(part.written.startswith('echo "subjectAltName=DNS:YOUR-DOMAIN"') for part in parts)
    patch = render_patch(TEXT, fixed)
    assert patch.startswith("--- a/tutorial.md\n+++ b/tutorial.md\n")
    assert "-docker pull [YOUR-DOMAIN]/test-images\n" in patch and "+docker pull [YOUR-DOMAIN]/test-image\n" in patch


def test_the_as_written_edition_runs_the_text_as_written() -> None:
    scenario = load(default_path(), "as-written")
    parts = [part for step in scenario.steps for items in step.solve.values() for item in items
             if "from_text" in item for part in item["from_text"].parts]
    assert any("test-images" in part.written for part in parts)
    assert not any("subjectAltName" in part.written for part in parts)
