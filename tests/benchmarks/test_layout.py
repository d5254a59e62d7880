"""Imports run one way: entry points -> runner -> executors -> engine -> experiment -> records,
methods, datasets; reporting reads records only; nothing imports an entry point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "benchmarks"
ENTRY_POINTS = {"run", "report"}
#: what each folder of benchmarks/ may import from benchmarks/ (besides itself)
ALLOWED = {
    "experiment": set(),
    "records": set(),
    "engine": {"experiment", "records"},
    "executors": {"engine", "experiment", "records"},
    "reporting": {"records"},
    "speed": {"engine", "experiment", "records", "executors"},
    "runner": {"engine", "experiment", "records", "executors", "reporting"},
    "zoo": {"engine", "experiment", "records", "reporting"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _group(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _benchmarks_imports(path: Path) -> set[str]:
    """The first component under ``benchmarks.`` of every module ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "benchmarks" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_no_relative_imports_hide_the_direction():
    for path in _modules():
        tree = ast.parse(path.read_text())
        relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
        assert not relative, f"{path.relative_to(REPO)} uses relative imports"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    group = _group(path)
    imported = _benchmarks_imports(path) - {group}
    assert not imported & ENTRY_POINTS, (
        f"{path.relative_to(REPO)} imports an entry point: {sorted(imported & ENTRY_POINTS)}"
    )
    if group in ALLOWED:
        assert imported <= ALLOWED[group], (
            f"{path.relative_to(REPO)} ({group}) imports {sorted(imported - ALLOWED[group])}"
        )


def test_every_folder_is_described():
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = folder / "__init__.py"
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), folder.name


#: The longest a function of the packages may be, in lines (a screen).
FUNCTION_LINES = 80


@pytest.mark.parametrize("package", ["benchmarks", "methods", "datasets"])
def test_every_function_fits_on_a_screen(package):
    long = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"
