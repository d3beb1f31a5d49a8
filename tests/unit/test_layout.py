"""lab/'s layout: a folder per concern, one direction of imports, no import circle.

The order is written in `lab/__init__.py`'s docstring; this test reads it from
there, so the docstring and the rule cannot drift apart. Every import counts:
at module level, inside functions and under `TYPE_CHECKING`, because a circle
that only type checkers follow is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lab

LAB = Path(lab.__file__).resolve().parent
TOP_LEVEL = {"lab", "lab.__main__", "lab.pytest_plugin"}  # entry points: they may import anything


def layers() -> list[str]:
    """The packages in the order the docstring gives, lowest first."""
    found = re.search(r"^Layers, lowest first: (.+?)\.$", lab.__doc__ or "", re.M | re.S)
    assert found, "lab/__init__.py's docstring must say `Layers, lowest first: a, b, c.`"
    return [name.strip() for name in found.group(1).replace("\n", " ").split(",")]


def module_name(path: Path) -> str:
    parts = path.relative_to(LAB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in LAB.rglob("*.py")}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every lab module `path` imports, wherever the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            # `from pkg import module` depends on the module; `from pkg import name` on pkg itself
            targets = submodules if len(submodules) == len(node.names) else [*submodules, base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("lab"):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, name, known) for name, path in found.items()}


def layer_of(name: str, order: list[str]) -> int | None:
    parts = name.split(".")
    return order.index(parts[1]) if len(parts) > 1 and parts[1] in order else None


def test_every_module_sits_in_a_folder_named_for_its_concern() -> None:
    order = layers()
    strays = sorted(n for n in modules() if n not in TOP_LEVEL and layer_of(n, order) is None)
    assert not strays, f"modules outside the layers of lab/__init__.py: {strays}"
    assert all((LAB / folder / "__init__.py").is_file() for folder in order)


def test_imports_point_down_the_layers_only() -> None:
    order = layers()
    upward = []
    for name, targets in graph().items():
        mine = layer_of(name, order)
        if mine is None:
            continue
        for target in targets:
            theirs = layer_of(target, order)
            if theirs is None or theirs > mine:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_the_circle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
