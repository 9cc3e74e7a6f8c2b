"""A worker's rosetta task: one framework's source for each layer kind, read from the code.

The framework package lists its objects as ``"module:qualname"`` strings in its own
``<package>.rosetta.SOURCES`` (kind -> list); reading them means importing the framework, so
each framework does it in its own process, with its backend set, like any other job. Each
object's source comes from ``inspect.getsource``, so the page shows the code that is
installed. Written to ``sources.json``: kind -> ``[{"object", "file", "line", "source"}]``;
an object that cannot be read keeps an empty source and says why in ``"error"``.
"""

from __future__ import annotations

import importlib
import inspect
import textwrap
from pathlib import Path
from typing import Any

from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_json
from compare.engine import registry
from compare.engine.layout import ROSETTA_RECORD
from compare.rosetta.job import RosettaJob


def resolve(name: str) -> Any:
    """The object ``"module:qualname"`` names: the module imported, then each attribute."""
    module, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _shown_path(path: str, module: str) -> str:
    """``path`` from the folder holding its top-level package (``torch/nn/modules/conv.py``),
    the same on every machine; the full path where it lies elsewhere."""
    top = importlib.import_module(module.split(".")[0])
    root = Path(top.__file__ or path).resolve().parents[1]
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return path


def source_entry(name: str) -> dict[str, Any]:
    """``{"object", "file", "line", "source"}`` of the object ``name``; an unreadable one
    (renamed in a new version, or compiled code) gets an empty source and an ``"error"``."""
    try:
        found = inspect.unwrap(resolve(name))  # decorated functions: the code itself
        lines, line = inspect.getsourcelines(found)
        path = inspect.getsourcefile(found) or ""
        module = inspect.getmodule(found)
    except (ImportError, AttributeError, TypeError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        return {"object": name, "file": "", "line": 0, "source": "", "error": error}
    return {
        "object": name,
        "file": _shown_path(path, module.__name__ if module else name.partition(":")[0]),
        "line": line,
        "source": textwrap.dedent("".join(lines)),
    }


def run_rosetta_task(job: RosettaJob, on_event: EventCallback | None = None) -> None:
    """Write ``sources.json``: for each of the job's kinds, the framework's listed objects."""
    registry.load(job.framework)  # installed, its backend set
    package = registry.get(job.framework).package
    listed: dict[str, list[str]] = importlib.import_module(f"{package}.rosetta").SOURCES
    record = {kind: [source_entry(name) for name in listed.get(kind, [])] for kind in job.kinds}
    atomic_write_json(job.path / ROSETTA_RECORD, record)
