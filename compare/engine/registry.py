"""The frameworks compare knows: every ``FrameworkInfo`` registered under the
``cnn_rosetta.frameworks`` entry-point group, whoever installed it.

compare never names a framework in its own code: it lists, checks, imports and describes
frameworks through this module only (``docs/frameworks.md`` shows how to add one).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from importlib import metadata
from types import ModuleType
from typing import Protocol, TypeVar

from cnn_common.errors import FrameworkMissingError, UserError
from cnn_common.framework import FrameworkInfo

GROUP = "cnn_rosetta.frameworks"


class Declaration(Protocol):
    """What an entry point of compare's groups declares: a named, ordered frozen object."""

    @property
    def name(self) -> str: ...

    @property
    def order(self) -> int: ...


DeclarationT = TypeVar("DeclarationT", bound=Declaration)


def declarations(
    group: str, kind: type[DeclarationT], noun: str, *builtin: DeclarationT
) -> dict[str, DeclarationT]:
    """Every ``kind`` registered under the entry-point group ``group`` by name, after the
    ``builtin`` ones, in ``order`` (then by name); the first of a name wins. An entry point
    that is not a ``kind``, or that declares a ``noun`` of another name, raises."""
    found = {declared.name: declared for declared in builtin}
    for entry in metadata.entry_points(group=group):
        declared = entry.load()
        if not isinstance(declared, kind):
            raise TypeError(f"entry point {entry.name!r} of {group} is not a {kind.__name__}")
        if declared.name != entry.name:
            raise ValueError(f"entry point {entry.name!r} declares the {noun} {declared.name!r}")
        found.setdefault(declared.name, declared)
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


@functools.cache
def frameworks() -> dict[str, FrameworkInfo]:
    """Every registered framework by name, in report order (``FrameworkInfo.order``)."""
    return declarations(GROUP, FrameworkInfo, "framework")


def default_names() -> list[str]:
    """The frameworks ``--frameworks`` means when it is not given."""
    return [name for name, info in frameworks().items() if info.default]


def bench_reference() -> str | None:
    """The framework ``cnn-compare bench`` times the others against (the first declared
    ``bench_reference``); None when none is registered."""
    return next((name for name, info in frameworks().items() if info.bench_reference), None)


def get(name: str) -> FrameworkInfo:
    """The declaration of ``name``; an unknown name raises ``UserError`` listing the known."""
    known = frameworks()
    if name not in known:
        raise UserError(f"unknown framework {name!r}", f"known frameworks: {', '.join(known)}")
    return known[name]


def parse_frameworks(text: str) -> list[str]:
    """``"numpy,keras"`` -> ``["numpy", "keras"]``; an unknown name raises ``UserError``."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in frameworks()]
    if unknown or not names:
        raise UserError(
            f"unknown framework(s) {unknown or [text]}",
            f"use a comma-separated list of: {', '.join(frameworks())}",
        )
    return list(dict.fromkeys(names))


def missing_modules(name: str) -> list[str]:
    """Modules ``name`` needs that are not installed (checked without importing them)."""
    return [mod for mod in get(name).requires if importlib.util.find_spec(mod) is None]


def check_installed(name: str) -> None:
    """Raise ``FrameworkMissingError`` naming the missing modules and the install command."""
    missing = missing_modules(name)
    if missing:
        info = get(name)
        install = f'pip install -e ".[{info.extra}]"' if info.extra else "pip install -e ."
        raise FrameworkMissingError(
            f"framework {name!r} needs {', '.join(missing)}, which is not installed",
            f"{install}  (or leave it out: --frameworks ...)",
        )


def check_environment(name: str) -> None:
    """Raise ``UserError`` when this process cannot host ``name``: its ``env`` (a Keras
    backend) disagrees with what this process has already set."""
    for key, value in get(name).env.items():
        current = os.environ.get(key)
        if current is not None and current != value:
            raise UserError(
                f"framework {name!r} needs {key}={value}, but this process has {key}={current}",
                "run it in its own process (leave out --in-process)",
            )


def load(name: str) -> ModuleType:
    """Import the package of framework ``name`` in this process, its ``env`` set first."""
    check_installed(name)
    check_environment(name)
    os.environ.update(get(name).env)
    return importlib.import_module(get(name).package)
