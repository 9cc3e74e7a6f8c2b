"""Installing a framework or a command as a third party would: a package and the ``dist-info``
folder that registers it under the ``cnn_rosetta.frameworks`` (or ``cnn_rosetta.features``)
entry points, written into a folder that goes on ``sys.path``
(``monkeypatch.syspath_prepend``) or on a child's ``PYTHONPATH``.

Nothing here touches the project's own packages: a test-only framework is compared exactly
as a framework someone else published would be, and a test-only command runs as one would.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnn_common.framework import TOPICS
from compare.engine import features, registry


def write_plugin(
    root: Path,
    *,
    name: str,
    package: str,
    init: str,
    label: str,
    modules: Mapping[str, str] | None = None,
    native: Mapping[str, str] | None = None,
    entry_name: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write the framework ``name`` into ``root`` and return ``root``.

    ``init`` is the source of ``<package>/__init__.py`` (it exports the contract); ``modules``
    maps further module files (``"model.py"``) to their source; ``native`` is the declaration's
    sentence per topic (default: ``"as numpy_cnn (<topic>)"``); ``info`` adds fields of the
    ``FrameworkInfo``; ``entry_name`` is the entry point's name (default: ``name``).
    """
    folder = root / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(init))
    for filename, source in (modules or {}).items():
        (folder / filename).write_text(textwrap.dedent(source))
    native = dict(native or {topic: f"as numpy_cnn ({topic})" for topic in TOPICS})
    fields = {
        "requires": ("numpy",),
        "extra": "",
        "model_suffix": ".safetensors",
        "order": 200,
        **(info or {}),
    }
    arguments = "".join(f"    {key}={value!r},\n" for key, value in fields.items())
    (folder / "framework.py").write_text(
        "from cnn_common.framework import FrameworkInfo\n\n"
        "FRAMEWORK = FrameworkInfo(\n"
        f"    name={name!r},\n"
        f"    label={label!r},\n"
        f"    package={package!r},\n"
        f"    native={native!r},\n"
        f"{arguments})\n"
    )
    dist = root / f"{name}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{registry.GROUP}]\n{entry_name or name} = {package}.framework:FRAMEWORK\n"
    )
    return root


def write_feature(root: Path, *, name: str, package: str, modules: Mapping[str, str]) -> Path:
    """Write the feature ``name`` into ``root`` and return ``root``: the package ``package``
    with ``modules`` (file name -> source; ``__init__.py`` defines ``FEATURE``) and the
    ``dist-info`` folder that registers ``<package>:FEATURE`` under ``features.GROUP``."""
    folder = root / package
    folder.mkdir(parents=True)
    for filename, source in modules.items():
        (folder / filename).write_text(textwrap.dedent(source))
    dist = root / f"{package}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{features.GROUP}]\n{name} = {package}:FEATURE\n")
    return root


def child_env(root: Path, **extra: str) -> dict[str, str]:
    """This process's environment with ``root`` first on ``PYTHONPATH`` (and ``extra`` set):
    a child started with it finds the framework installed in ``root``."""
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
