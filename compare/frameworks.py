"""The frameworks compare knows: which package implements each and how to get it."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from cnn_common.errors import FrameworkMissingError, UserError


@dataclass(frozen=True)
class Framework:
    name: str  # the name on the command line and in the run record
    package: str  # the package meeting the contract of DESIGN.md
    requires: tuple[str, ...]  # top-level modules it needs
    extra: str  # the pip extra that installs them
    label: str  # how the report names it


FRAMEWORKS: dict[str, Framework] = {
    "numpy": Framework("numpy", "numpy_cnn", ("numpy",), "", "NumPy (from scratch)"),
    "keras": Framework("keras", "keras_cnn", ("keras", "tensorflow"), "keras", "Keras 3"),
    "lightning": Framework(
        "lightning",
        "lightning_cnn",
        ("torch", "lightning", "torchmetrics"),
        "lightning",
        "PyTorch Lightning",
    ),
}


def parse_frameworks(text: str) -> list[str]:
    """``"numpy,keras"`` -> ``["numpy", "keras"]``; an unknown name raises ``UserError``."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown or not names:
        raise UserError(
            f"unknown framework(s) {unknown or [text]}",
            f"use a comma-separated list of: {', '.join(FRAMEWORKS)}",
        )
    return list(dict.fromkeys(names))


def missing_modules(name: str) -> list[str]:
    """Modules ``name`` needs that are not installed (checked without importing them).

    A Keras run on another backend (``KERAS_BACKEND``) does not need TensorFlow.
    """
    import os

    required = list(FRAMEWORKS[name].requires)
    if name == "keras" and os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        required = ["keras", os.environ["KERAS_BACKEND"]]
    return [mod for mod in required if importlib.util.find_spec(mod) is None]


def check_installed(name: str) -> None:
    """Raise ``FrameworkMissingError`` naming the missing modules and the install command."""
    missing = missing_modules(name)
    if missing:
        extra = FRAMEWORKS[name].extra
        raise FrameworkMissingError(
            f"framework {name!r} needs {', '.join(missing)}, which is not installed",
            f'pip install -e ".[{extra}]"  (or leave it out: --frameworks ...)',
        )


def load(name: str) -> ModuleType:
    """Import the package of framework ``name`` (after checking it is installed)."""
    check_installed(name)
    return importlib.import_module(FRAMEWORKS[name].package)
