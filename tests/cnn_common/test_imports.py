"""cnn_common stays framework-free: importing or using it loads neither torch, TensorFlow nor
keras, and a plain install of the project pulls none of them in."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import cnn_common

FORBIDDEN = {"torch", "tensorflow", "tensorflow-cpu", "keras", "lightning", "jax"}
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "lightning", "pytorch_lightning")


def modules_on_disk(package: ModuleType) -> set[str]:
    """The dotted names below ``package`` (``spec``, ``sub.module``), found on disk: every
    ``.py`` file and every folder holding one, wherever it lies below the package's folder."""
    root = Path(package.__file__ or "").parent
    names = set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        for depth in range(1, len(parts) + 1):
            names.add(".".join(parts[:depth]))
    return {name.removesuffix(".__init__") for name in names if name != "__init__"}


def modules_listed(package: ModuleType) -> set[str]:
    """The modules the package docstring's bullet list names (each in double backquotes)."""
    bullets = re.search(r"(?ms)^- .*?(?=\n\n)", package.__doc__ or "")
    return set(re.findall(r"``([a-z_][a-z0-9_.]*)``", bullets.group(0) if bullets else ""))


SUBMODULES = sorted(f"cnn_common.{name}" for name in modules_on_disk(cnn_common))
REPORT = (
    "import json, sys\n"
    f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FRAMEWORKS)!r})))"
)


def frameworks_loaded_by(code: str, cwd: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the framework packages it left in sys.modules."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_submodules_are_all_listed() -> None:
    # Both ways: a module added without a line in the docstring fails, and so does a line
    # left behind for a module renamed or removed. The import tests below cover SUBMODULES.
    on_disk, listed = modules_on_disk(cnn_common), modules_listed(cnn_common)
    top_level = {m.name for m in pkgutil.iter_modules(cnn_common.__path__)}
    assert top_level == {name for name in on_disk if "." not in name}  # as Python sees them
    docstring = "cnn_common/__init__.py's docstring"
    assert not on_disk - listed, f"{docstring} does not name {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"{docstring} names no module {sorted(listed - on_disk)}"


def test_importing_cnn_common_loads_no_framework(tmp_path: Path) -> None:
    imports = "\n".join(["import cnn_common"] + [f"import {m}" for m in SUBMODULES])
    assert frameworks_loaded_by(imports, tmp_path) == []


def test_using_cnn_common_loads_no_framework(tmp_path: Path) -> None:
    # The lazy imports (PyYAML, safetensors, pooch) must not drag a framework in either.
    code = f"""
import numpy as np, pooch
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.spec_files import save_spec, load_spec, apply_overrides
from cnn_common.weights import init_weights, save_weights, load_weights, to_torch_layout
from cnn_common.batches import epoch_batches, augment_batch
from cnn_common.results import finish_result, package_versions
from cnn_common.data import Data
from cnn_common.recorder import RunRecorder
from cnn_common.events import Event
from cnn_common.files import atomic_write_npz, load_latest_checkpoint
from cnn_common.framework import FrameworkInfo, TOPICS
from cnn_common.metrics import evaluate_logits
spec = ModelSpec()
save_spec({str(tmp_path / "s.yaml")!r}, spec, TrainSpec())
load_spec({str(tmp_path / "s.yaml")!r})
apply_overrides(spec, TrainSpec(), ["learning_rate=1e-3"])
w = init_weights(spec)
save_weights({str(tmp_path / "w.safetensors")!r}, w, spec)
load_weights({str(tmp_path / "w.safetensors")!r})
to_torch_layout(w, spec)
augment_batch(np.zeros((2, 28, 28, 1)), 2, 0, 0, 0)
package_versions(["numpy"])
x, y = np.zeros((4, 28, 28, 1), np.float32), np.arange(4)
data = Data("mnist", x, y, x, y, x, y, tuple("0123456789"))
events = []
recorder = RunRecorder(
    "numpy", spec, TrainSpec(epochs=1, batch_size=4), data, {str(tmp_path / "run")!r},
    init="shared", on_event=events.append, progress=True,
)
recorder.start(w)
recorder.begin_epoch(0)
recorder.step(2.3, 1, 4)
recorder.end_epoch(2.2, 0.25)
recorder.finish(
    backend="numpy", device="cpu", versions={{}}, test_loss=2.2, predictions=y, weights=w,
    threads=1,
)
Event.from_json(events[-1].to_json())
atomic_write_npz({str(tmp_path / "run" / "checkpoints" / "epoch-0001.npz")!r}, w)
load_latest_checkpoint({str(tmp_path / "run")!r}, ".npz", np.load)
FrameworkInfo("x", "x", "x", (), "", dict.fromkeys(TOPICS, ""), ".x")
evaluate_logits(np.zeros((4, 10)), y)
"""
    assert frameworks_loaded_by(code, tmp_path) == []


def _name(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _base_requirements(requirements: list[str]) -> list[str]:
    """Requirements that apply without any extra (markers evaluated for this machine)."""
    from packaging.requirements import Requirement

    base = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            base.append(text)
    return base


def test_plain_install_pulls_in_no_framework() -> None:
    # The installed metadata of the project: what `pip install .` (no extras) would resolve.
    requires = metadata.requires("cnn-rosetta") or []
    direct = {_name(r) for r in _base_requirements(requires)}
    assert {"numpy", "pyyaml", "pooch", "safetensors"} <= direct
    assert not direct & FORBIDDEN
    under_extras = {_name(r) for r in requires} - direct
    assert {"torch", "lightning", "keras", "tensorflow-cpu"} <= under_extras
    # ... followed transitively through the installed dependencies
    seen: set[str] = set()
    todo = sorted(direct)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(_name(r) for r in _base_requirements(metadata.requires(name) or []))
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name}, a dependency of a plain install, is not installed")
    assert not seen & FORBIDDEN
