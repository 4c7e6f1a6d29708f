"""Measure the shape of the code base: the issue-10 'before and after' numbers.

Writes bench/results/house.json: lines of the five largest functions, import cycles
between certify's own modules (counting function-level imports too), the number of
function-level imports, duplicated blocks (the `duplicates` tool, when on PATH) and
the start-up time of `certify --help`.
"""

from __future__ import annotations

import ast
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "certify"
RESULTS = ROOT / "bench" / "results" / "house.json"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _scan() -> tuple[list[tuple[int, str]], int, dict[str, set[str]]]:
    functions: list[tuple[int, str]] = []
    function_imports = 0
    graph: dict[str, set[str]] = {}
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    for path in paths:
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = graph.setdefault(module, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append((length, f"{module}.{node.name}"))
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        function_imports += 1
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("certify"))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node, path.name == "__init__.py")
                if target.startswith("certify"):
                    # `from certify import errors` depends on certify.errors, not on
                    # the package's __init__ (which Python loads first in any case).
                    submodules = {f"{target}.{a.name}" for a in node.names} & modules
                    edges.update(submodules or {target})
    known = set(graph)
    return (
        functions,
        function_imports,
        {m: {e for e in es if e in known and e != m} for m, es in graph.items()},
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _duplicates() -> dict[str, object]:
    tool = shutil.which("duplicates")
    if tool is None:
        return {"available": False}
    out = subprocess.run(
        [tool, "--most", "200", "--seconds", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("D")]
    return {
        "available": True,
        "summary": out.splitlines()[0] if out else "",
        "pairs_listed": len(rows),
        "pairs_not_boilerplate": sum("boilerplate" not in r for r in rows),
    }


def _help_seconds(repeats: int = 5) -> dict[str, float]:
    exe = Path(sys.executable).parent / "certify"
    command = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "certify", "--help"]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times)}


def _imports_torch() -> bool:
    code = "import sys, certify.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def main() -> None:
    functions, function_imports, graph = _scan()
    functions.sort(reverse=True)
    cycles = _cycles(graph)
    result = {
        "largest_functions": [{"name": n, "lines": k} for k, n in functions[:5]],
        "functions_over_40_lines": sum(k > 40 for k, _ in functions),
        "function_level_imports": function_imports,
        "import_cycles": cycles,
        "duplicates": _duplicates(),
        "certify_help_startup": _help_seconds(),
        "import_certify_cli_loads_torch": _imports_torch(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(RESULTS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
