"""The layout holds: no import cycle, each room imports only what it may, and no file or function outgrows a read.

Everything is read with ``ast`` (imports inside functions count too: the circle this guards against was one),
so the checks see what the code could import, not only what one test run happened to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestration", "recmodels", "benchmarks")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
# Kept long on purpose; each entry says why. Anything else over the limits fails.
LONG_FUNCTIONS: dict[str, str] = {}
LONG_FILES: dict[str, str] = {}


# Which rooms each room may import (besides itself), as the README's layout section draws them: one direction,
# from entry points down to the library.
_BELOW_DEFS = {"ingest", "quality", "store", "registry", "serving", "recmodels"}
ALLOWED_IMPORTS = {
    "apps": {"definitions", "defs", *_BELOW_DEFS},
    "benchmarks": {"apps", "definitions", "defs", *_BELOW_DEFS},
    "definitions": {"defs", *_BELOW_DEFS},
    "defs": _BELOW_DEFS,
    "ingest": {"store", "recmodels"},
    "quality": {"store", "recmodels"},
    # The API takes events in: it checks and writes them with ingest's rules and events log (no Dagster there).
    "serving": {"ingest", "registry", "store", "recmodels"},
    "registry": {"store", "recmodels"},
    "store": {"recmodels"},
    "recmodels": set(),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = _sources()


def _imported_names(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file, relative imports resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def _project_edges() -> dict[str, set[str]]:
    return {module: {name for name in _imported_names(path) if name in MODULES and name != module}
            for module, path in MODULES.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges[module])
    return seen


def _third_party(module: str) -> set[str]:
    return {name.split(".")[0] for name in _imported_names(MODULES[module])}


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    assert len(MODULES) > 50, "the scan found too few modules to mean anything"
    assert _cycles(_project_edges()) == []


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "orchestration" and len(parts) > 1 else parts[0]


def test_rooms_import_only_downwards():
    assert {_room(module) for module in MODULES} - {"orchestration"} <= set(ALLOWED_IMPORTS)
    wrong = sorted(f"{module} -> {target}" for module, targets in _project_edges().items() for target in targets
                   if _room(target) != _room(module) and _room(target) not in ALLOWED_IMPORTS.get(_room(module), set()))
    assert wrong == []


def test_recmodels_names_no_orchestration_stack_anywhere():
    offenders = {module: sorted(_third_party(module) & {"dagster", "dagster_dbt", "dbt", "mlflow", "orchestration"})
                 for module in MODULES if module.split(".")[0] == "recmodels"}
    assert {module: names for module, names in offenders.items() if names} == {}


def test_serving_reaches_no_dagster():
    edges = _project_edges()
    serving = [module for module in MODULES if module.startswith("orchestration.serving")]
    assert serving
    leaks = {}
    for module in serving:
        reached = _reachable(edges, module)
        leaks[module] = sorted(m for m in reached if _third_party(m) & {"dagster", "dagster_dbt"})
    assert {module: via for module, via in leaks.items() if via} == {}


def test_only_definitions_assembles_the_definitions():
    builders, importers = [], []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name == "Definitions":
                    builders.append(module)
        if module.startswith("orchestration.defs") and "orchestration.definitions" in _imported_names(path):
            importers.append(module)
    assert sorted(set(builders)) == ["orchestration.definitions"]
    assert importers == []


def _long_functions(path: Path) -> dict[str, int]:
    rel = path.relative_to(ROOT).as_posix()
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found[f"{rel}::{node.name}"] = length
    return found


@pytest.mark.parametrize("package", ["orchestration", "recmodels"])
def test_files_and_functions_stay_readable(package):
    paths = sorted((ROOT / package).rglob("*.py"))
    long_files = {p.relative_to(ROOT).as_posix(): n for p in paths
                  if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    long_functions = {name: n for p in paths for name, n in _long_functions(p).items()}
    assert {f: n for f, n in long_files.items() if f not in LONG_FILES} == {}
    assert {f: n for f, n in long_functions.items() if f not in LONG_FUNCTIONS} == {}
