"""The house's layers hold: no import cycles, no arrow up a layer (DESIGN.md, "Layers").

Every import counts, at module level or inside a function (a lazy import hides an
arrow, it does not remove it); only imports under ``if TYPE_CHECKING:`` are left
out, since they never run. A ``from package import module`` is an arrow to the
module, not to the package's ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("releaser", "promptregistry")

# What each part of releaser may import of the project, beyond itself (DESIGN.md).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "core": {"errors"},
    "config": {"core", "errors", "promptregistry"},
    "store": {"core", "config", "errors"},
    "integrations": {"core", "config", "store", "errors", "promptregistry"},
    "router": {"core", "config", "store", "errors", "promptregistry"},
}
UPPER = {"api", "cli", "docs", "demo", "serve"}


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skipped


def imports_of(name: str) -> Iterator[str]:
    """The project modules ``name`` imports (any level; not under TYPE_CHECKING)."""
    mods = modules()
    yield from imports_in(mods[name].read_text(encoding="utf-8"), name, mods)


def parse_source(source: str) -> ast.Module:
    """``ast.parse``, again when CPython 3.11's AST constructor says its depth mismatched.

    CPython 3.11 keeps that depth per interpreter, not per thread (python/cpython#106905
    and the reports around it): a parse here that races one in another thread, such as a
    traceback a server thread left by an earlier test in this worker formats, can fail
    with ``SystemError: AST constructor recursion depth mismatch``. The source is fine;
    a second parse gives its tree.
    """
    try:
        return ast.parse(source)
    except SystemError:
        return ast.parse(source)


def imports_in(source: str, name: str, mods: dict[str, Path]) -> Iterator[str]:
    tree = parse_source(source)
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            package = mods.get(node.module)
            only_modules = package is not None and package.name == "__init__.py"
            only_modules = only_modules and all(s in mods for s in subs)
            targets = subs if only_modules else [node.module, *subs]
        else:
            continue
        for target in targets:
            if target in mods and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    return {name: set(imports_of(name)) for name in modules()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "promptregistry":
        return "promptregistry"
    return parts[1] if len(parts) > 1 else "releaser"


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Every arrow from a lower part to one it may not import."""
    found = []
    for module, targets in sorted(edges.items()):
        part = _part(module)
        for target in sorted(targets):
            other = _part(target)
            if other in (part, "releaser"):
                continue
            if part == "promptregistry" or (part in ALLOWED and other not in ALLOWED[part]):
                found.append(f"{module} -> {target}")  # promptregistry: a library of its own
            elif other == "cli":
                found.append(f"{module} -> {target}")
    return found


def test_no_import_runs_up_a_layer() -> None:
    assert upward(graph()) == []


def test_the_checks_catch_lazy_arrows_and_skip_type_checking_ones() -> None:
    mods = {
        name: Path(f"{name.replace('.', '/')}.py")
        for name in ("releaser.api.releases", "releaser.api.workspace", "releaser.core.x")
    }
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from releaser.api.workspace import Workspace\n"
        "def f():\n    from releaser.api.releases import get_release\n"
    )
    found = set(imports_in(source, "releaser.integrations.docker_target", mods))
    assert found == {"releaser.api.releases"}
    edges = {"releaser.integrations.docker_target": found, "releaser.core.x": set()}
    assert upward(edges) == ["releaser.integrations.docker_target -> releaser.api.releases"]
    assert upward({"promptregistry.sdk": {"releaser.core.x"}}) == [
        "promptregistry.sdk -> releaser.core.x"
    ]
