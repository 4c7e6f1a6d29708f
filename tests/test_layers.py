"""The import rules of docs/INTERNALS.md, checked on the source (ast), not by convention.

- certify's own modules are imported at the top of each file, and the graph they make
  has no cycle;
- only heavy third-party libraries may be imported inside a function (LAZY);
- printing, exiting and reading the environment happen in certify/cli/ alone;
- the network library (huggingface_hub) is used by hub.py alone, plus card.py's
  offline model-card helpers; rich and typer belong to the CLI;
- pipeline.py composes the stages: no stage imports it;
- ``import certify.cli`` (every ``certify --help``) loads neither torch nor transformers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "certify"

#: third-party libraries slow to import (or pulling in one that is), loaded where used
LAZY = frozenset(
    {
        "torch",
        "transformers",
        "datasets",
        "matplotlib",
        "jsonschema",
        "huggingface_hub",
        "model_signing",
        # the same stacks: safetensors.torch and accelerate import torch, pyarrow is the
        # datasets engine, tokenizers is transformers' engine, gguf and scipy load numpy
        # extensions worth deferring until a GGUF file or a Beta quantile is needed
        "safetensors",
        "accelerate",
        "pyarrow",
        "tokenizers",
        "gguf",
        "scipy",
    }
)
#: who may import which third-party package at all
ONLY_IN = {
    "huggingface_hub": ("certify/hub.py", "certify/card.py", "certify/cli/_hub.py"),
    "rich": ("certify/cli/",),
    "typer": ("certify/cli/",),
}
#: modules that may import certify.pipeline (the composition root and its callers)
PIPELINE_USERS = ("certify/__init__.py", "certify/cli/", "certify/verify.py")


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _module(path: Path) -> str:
    if not path.is_relative_to(PACKAGE.parent):  # a file made by a test of these rules
        return path.stem
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(path: Path) -> list[tuple[ast.stmt, str, bool]]:
    """(node, absolute module name, inside a function) for every import of ``path``."""
    found: list[tuple[ast.stmt, str, bool]] = []
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((child, alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    name = ".".join([*base, child.module] if child.module else base)
                else:
                    name = child.module or ""
                found.append((child, name, inside))
            visit(child, inside)

    visit(_tree(path), False)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(path) for path in _files()}
    graph: dict[str, set[str]] = {}
    for path in _files():
        edges = graph.setdefault(_module(path), set())
        for node, name, _ in _imports(path):
            if not name.startswith("certify"):
                continue
            names = {name}
            if isinstance(node, ast.ImportFrom):  # from certify import errors -> certify.errors
                submodules = {f"{name}.{alias.name}" for alias in node.names} & modules
                names = submodules or names
            edges.update(target for target in names if target in modules)
        edges.discard(_module(path))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if colour.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in colour and (found := visit(target)) is not None:
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)) is not None:
            return found
    return None


def _where(path: Path, node: ast.AST) -> str:
    name = _relative(path) if path.is_relative_to(PACKAGE.parent) else path.name
    return f"{name}:{getattr(node, 'lineno', '?')}"


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert len(graph) > 20  # the walk found the package
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_own_modules_are_imported_at_the_top() -> None:
    late = [
        f"{_where(path, node)} imports {name}"
        for path in _files()
        for node, name, inside in _imports(path)
        if inside and name.startswith("certify")
    ]
    assert not late, "\n".join(late)


def test_only_heavy_libraries_load_lazily() -> None:
    late = [
        f"{_where(path, node)} imports {name} inside a function"
        for path in _files()
        for node, name, inside in _imports(path)
        if inside and not name.startswith("certify") and name.split(".")[0] not in LAZY
    ]
    assert not late, "\n".join(late)


@pytest.mark.parametrize("package", sorted(ONLY_IN))
def test_libraries_stay_in_their_layer(package: str) -> None:
    allowed = ONLY_IN[package]
    misplaced = [
        _where(path, node)
        for path in _files()
        for node, name, _ in _imports(path)
        if name.split(".")[0] == package and not _relative(path).startswith(allowed)
    ]
    assert not misplaced, f"{package} imported outside {allowed}: {misplaced}"


def test_no_stage_imports_the_pipeline() -> None:
    misplaced = [
        _where(path, node)
        for path in _files()
        for node, name, _ in _imports(path)
        if name == "certify.pipeline" and not _relative(path).startswith(PIPELINE_USERS)
    ]
    assert not misplaced, misplaced


def _side_effects(path: Path) -> list[str]:
    """print(), sys.exit/exit(), os.environ and os.getenv/putenv uses in ``path``."""
    found = []
    for node in ast.walk(_tree(path)):
        called = node.func if isinstance(node, ast.Call) else None
        if isinstance(called, ast.Name) and called.id in ("print", "exit", "quit"):
            found.append(f"{_where(path, node)} calls {called.id}()")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in {("sys", "exit"), ("os", "environ"), ("os", "getenv"), ("os", "putenv")}:
                found.append(f"{_where(path, node)} uses {'.'.join(pair)}")
    return found


def test_only_the_cli_prints_exits_or_reads_the_environment() -> None:
    found = [
        problem
        for path in _files()
        if not _relative(path).startswith("certify/cli/")
        for problem in _side_effects(path)
    ]
    assert not found, "\n".join(found)


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """The checks above are not vacuous: each flags a file that breaks its rule."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\n\ndef f():\n    from certify import errors\n    import yaml\n"
        "    print(os.environ['X'])\n",
        encoding="utf-8",
    )
    kinds = {(name, inside) for _, name, inside in _imports(bad)}
    assert ("certify", True) in kinds and ("yaml", True) in kinds
    assert len(_side_effects(bad)) == 2
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_command_line_does_not_load_torch() -> None:
    code = (
        "import sys, certify.cli\n"
        "heavy = sorted({'torch', 'transformers', 'matplotlib', 'datasets'} & set(sys.modules))\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
