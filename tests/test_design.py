"""``docs/design.md`` is kept true: these tests fail when the code and the design part.

- every module of the project's packages is named in ``docs/`` (and every module a package's
  table names exists);
- the contract's signatures in the design are those of ``cnn_common.framework.CONTRACT`` and
  of every framework package's functions (names, order, keyword-only, defaults);
- no docstring or comment speaks of the three implementations the project once had, or
  carries a measured timing (those live in ``benchmarks/`` and the docs, where they are
  measured again).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest

from cnn_common.framework import CONTRACT, OPTIONAL_CONTRACT

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DESIGN = DOCS / "design.md"
PACKAGES = ("cnn_common", "numpy_cnn", "keras_cnn", "pytorch_cnn", "lightning_cnn", "compare")
FRAMEWORK_PACKAGES = ("numpy_cnn", "keras_cnn", "pytorch_cnn", "lightning_cnn")
FRAMEWORK_TABLE = "Framework packages"  # the heading of the table that covers all four


def package_modules(package: str) -> list[str]:
    """Every module file of ``package`` as a path inside it (``engine/pool.py``); the
    ``__init__.py`` files (exports and registrations) excepted."""
    folder = ROOT / package
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    )


def design_sections() -> dict[str, str]:
    """The design's sections by heading (``##`` and ``###``)."""
    text = DESIGN.read_text()
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def table_modules(body: str) -> set[str]:
    """The module paths inside a package (``spec.py``, ``engine/pool.py``) that the rows of a
    section's tables name."""
    rows = [line for line in body.splitlines() if line.startswith("|")]
    return {
        name
        for row in rows
        for name in re.findall(r"`([\w/]+\.py)`", row)
        if name.split("/")[0] not in PACKAGES
    }


def named_in_section(package: str) -> set[str]:
    """The modules named in the tables of the design sections that describe ``package``: its
    own (its heading names ``package/``) and, for a framework package, the table of every
    framework package."""
    found: set[str] = set()
    for heading, body in design_sections().items():
        own = f"`{package}/`" in heading
        shared = heading.startswith(FRAMEWORK_TABLE) and package in FRAMEWORK_PACKAGES
        if own or shared:
            found |= table_modules(body)
    return found


def all_docs() -> str:
    return "\n".join(path.read_text() for path in sorted(DOCS.glob("*.md")))


@pytest.mark.parametrize("package", PACKAGES)
def test_docs_name_every_module(package: str) -> None:
    docs = all_docs()
    in_section = named_in_section(package)
    missing = [
        module
        for module in package_modules(package)
        if module not in in_section
        and f"{package}/{module}" not in docs
        and f"{package}.{module[:-3].replace('/', '.')}" not in docs
    ]
    assert missing == [], f"docs/ does not name these {package} modules: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_the_design_names_exists(package: str) -> None:
    real = set(package_modules(package)) | {"__init__.py"}
    named: set[str] = set()
    for heading, body in design_sections().items():
        if f"`{package}/`" in heading:
            named |= table_modules(body)
    stale = sorted(named - real)
    assert stale == [], f"the design names {package} modules that do not exist: {stale}"


def test_the_framework_table_names_files_every_framework_package_has() -> None:
    body = next(b for h, b in design_sections().items() if h.startswith(FRAMEWORK_TABLE))
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    files = [re.match(r"\| `([\w/]+\.py)`", row).group(1) for row in rows]
    assert files, "the framework packages' table lists no files"
    for name in files:
        for package in FRAMEWORK_PACKAGES:
            assert (ROOT / package / name).is_file(), f"{package}/{name}"


def contract_signatures() -> dict[str, inspect.Signature]:
    """The signatures the design's contract section gives, parsed as Python."""
    text = DESIGN.read_text()
    section = text.split("## The contract", 1)[1].split("\n## ", 1)[0]
    found: dict[str, inspect.Signature] = {}
    for match in re.finditer(r"`(\w+)\(([^`]*?)\)(?: -> [^`]*)?`", section.replace("\n  ", " ")):
        name, params = match.group(1), match.group(2)
        if name not in CONTRACT + OPTIONAL_CONTRACT:
            continue
        # "[(x, y), ...]" stands for a list argument: a plain name to the parser
        params = re.sub(r"\[.*?\]", "batches", params)
        tree = ast.parse(f"def {name}({params}): pass")
        found[name] = _signature(tree.body[0])
    return found


def _signature(node: ast.FunctionDef) -> inspect.Signature:
    args = node.args
    defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    positional = [
        inspect.Parameter(
            arg.arg,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=inspect.Parameter.empty if default is None else ast.literal_eval(default),
        )
        for arg, default in zip(args.args, defaults, strict=True)
    ]
    keyword = [
        inspect.Parameter(
            arg.arg,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if default is None else ast.literal_eval(default),
        )
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    return inspect.Signature(positional + keyword)


def _plain(signature: inspect.Signature) -> inspect.Signature:
    """Names, kinds and defaults only (no annotations)."""
    return inspect.Signature(
        [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    )


def test_the_design_states_every_contract_function() -> None:
    stated = contract_signatures()
    assert set(CONTRACT) <= set(stated), f"not in the design: {set(CONTRACT) - set(stated)}"
    assert set(OPTIONAL_CONTRACT) <= set(stated)


@pytest.mark.parametrize("package", FRAMEWORK_PACKAGES)
def test_every_package_has_the_signatures_the_design_states(package: str) -> None:
    pytest.importorskip({"numpy_cnn": "numpy", "keras_cnn": "keras"}.get(package, "torch"))
    module = importlib.import_module(package)
    for name, stated in contract_signatures().items():
        if name in OPTIONAL_CONTRACT and not hasattr(module, name):
            continue
        real = _plain(inspect.signature(getattr(module, name)))
        # a package may add options of its own after the contract's: keyword-only, defaulted
        head = list(real.parameters.values())[: len(stated.parameters)]
        extra = list(real.parameters.values())[len(stated.parameters) :]
        assert inspect.Signature(head) == stated, (
            f"{package}.{name}{real} but the design says {name}{stated}"
        )
        for parameter in extra:
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{package}.{name}"
            assert parameter.default is not inspect.Parameter.empty, f"{package}.{name}"


# Phrases that once described a project of three implementations.
STALE = re.compile(r"three (implementations|trainers)|(all|the) three frameworks", re.IGNORECASE)
# A measured timing: "0.8 ms", "2.5x slower", "10 to 45 times slower", "costs some 9%".
TIMING = re.compile(
    r"\d+(\.\d+)?\s?(ms|µs)\b|\d+(\.\d+)?x (faster|slower)|\d+ (to \d+ )?times (faster|slower)"
    r"|costs? (some|about) \d+ ?%",
    re.IGNORECASE,
)


def prose(path: Path) -> list[tuple[int, str]]:
    """The docstrings and comments of a module, with their line numbers."""
    source = path.read_text()
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((node.body[0].lineno, doc))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_docstring_speaks_of_three_implementations_or_carries_a_timing(package: str) -> None:
    stale, timed = [], []
    for module in package_modules(package) + ["__init__.py"]:
        path = ROOT / package / module
        if not path.is_file():
            continue
        for line, text in prose(path):
            where = f"{package}/{module}:{line}"
            stale += [f"{where}: {m.group(0)}" for m in STALE.finditer(text)]
            timed += [f"{where}: {m.group(0)}" for m in TIMING.finditer(text)]
    assert stale == [], stale
    assert timed == [], f"measured timings belong in benchmarks/ and docs/: {timed}"
