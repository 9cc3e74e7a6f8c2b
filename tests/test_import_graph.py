"""The project's import graph, read from the source with ``ast``: no cycles, and the layers
stay layers (cnn_common below the frameworks, the frameworks below compare, tests below none;
within compare, the engine below the features).

Every ``import`` and ``from ... import`` counts, wherever it stands: at the top, inside a
function (lazy imports), under ``if TYPE_CHECKING:``. ``from pkg import name`` is an edge to
the submodule ``pkg.name`` when there is one, else to ``pkg`` itself. Imports of anything
outside the project are ignored. Also: no module is longer than ``MAX_LINES``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON = "cnn_common"
FRAMEWORK_PACKAGES = ("numpy_cnn", "keras_cnn", "pytorch_cnn", "lightning_cnn")
PACKAGES = (COMMON, *FRAMEWORK_PACKAGES, "compare")
PROJECT = (*PACKAGES, "tests")  # what counts as a project import
# The one dependency between framework packages: Lightning trains the plain PyTorch network.
FRAMEWORK_DEPENDENCIES = {"lightning_cnn": {"pytorch_cnn"}}
MAX_LINES = 500


def module_name(path: Path) -> str:
    """``cnn_common/files.py`` -> ``cnn_common.files``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    """Every module of the packages under test, by dotted name."""
    files = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


MODULES = source_files()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from`` import (relative ones resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _project(name: str) -> bool:
    return name.split(".")[0] in PROJECT


def imports_of(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports, anywhere in its source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _project(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if not _project(base):
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                is_module = (
                    child in MODULES
                    or (REPO / Path(*child.split("."))).with_suffix(".py").is_file()
                )
                found.add(child if is_module else base)
    found.discard(module)
    return found


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif child not in graph or state.get(child) == 2:
                continue
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            else:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def edges_from(package: str) -> list[tuple[str, str]]:
    """``(importer, imported)`` for every project import made by a module of ``package``."""
    return [
        (module, target)
        for module, targets in sorted(GRAPH.items())
        if module.split(".")[0] == package
        for target in sorted(targets)
    ]


def test_the_source_was_read() -> None:
    # The graph is not vacuous: every package was found and the known edges are there.
    assert {module.split(".")[0] for module in MODULES} == set(PACKAGES)
    assert {"cnn_common.results", "cnn_common.events"} <= GRAPH["cnn_common.recorder"]
    assert "numpy_cnn.model" in GRAPH["numpy_cnn.training"]
    assert "compare.engine.registry" in GRAPH["compare.run.command"]


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Lazy imports in functions and TYPE_CHECKING blocks count; outside imports do not."""
    path = tmp_path / "example.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy as np\n"
        "from cnn_common import files, not_a_module\n"
        "if TYPE_CHECKING:\n"
        "    from compare.engine.jobs import TrainJob\n"
        "def f():\n"
        "    import numpy_cnn.train\n"
        "    from tests.reference import reference_logits\n"
    )
    assert imports_of("cnn_common.example", path) == {
        "cnn_common.files",
        "cnn_common",
        "compare.engine.jobs",
        "numpy_cnn.train",
        "tests.reference",
    }


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cnn_common_imports_no_other_project_package() -> None:
    bad = [(a, b) for a, b in edges_from(COMMON) if b.split(".")[0] != COMMON]
    assert not bad, bad


@pytest.mark.parametrize("package", FRAMEWORK_PACKAGES)
def test_framework_imports_only_cnn_common_and_its_own(package: str) -> None:
    allowed = {COMMON, package, *FRAMEWORK_DEPENDENCIES.get(package, ())}
    bad = [(a, b) for a, b in edges_from(package) if b.split(".")[0] not in allowed]
    assert not bad, f"{package} may import only {sorted(allowed)}: {bad}"


def test_compare_names_no_framework_package() -> None:
    # compare reaches the frameworks through the registry (entry points) only.
    bad = [(a, b) for a, b in edges_from("compare") if b.split(".")[0] in FRAMEWORK_PACKAGES]
    assert not bad, bad


def test_compare_engine_imports_no_feature() -> None:
    # The features use the engine and register themselves; the engine finds them through the
    # entry points (compare.engine.features) and never imports one.
    bad = [
        (a, b)
        for a, b in edges_from("compare")
        if a.startswith("compare.engine")
        and b.startswith("compare.")
        and not b.startswith("compare.engine")
    ]
    assert not bad, bad


def test_nothing_imports_from_tests() -> None:
    bad = [
        (module, target)
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if target.split(".")[0] == "tests"
    ]
    assert not bad, bad


def test_no_module_is_over_the_line_limit() -> None:
    lengths = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    over = {module: n for module, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_no_test_script_or_example_is_over_the_line_limit() -> None:
    paths = [
        path
        for folder in ("tests", "benchmarks", "examples")
        for path in sorted((REPO / folder).rglob("*.py"))
        if "__pycache__" not in path.parts
    ] + [REPO / "dev.py"]
    lengths = {str(path.relative_to(REPO)): len(path.read_text().splitlines()) for path in paths}
    over = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not over, f"files over {MAX_LINES} lines: {over}"
