"""cnn_common.framework: ``lazy_exports`` (names resolved on first use, contract functions
that a submodule of the same name cannot replace) and the ``FrameworkInfo`` declaration."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnn_common.framework import CONTRACT, TOPICS, FrameworkInfo

PACKAGE = "lazy_demo_pkg"


@pytest.fixture()
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package whose ``__init__`` exports ``train`` (from its submodule ``training``) and
    ``build`` (from ``model``) with ``lazy_exports``."""
    root = tmp_path / PACKAGE
    root.mkdir()
    (root / "__init__.py").write_text(
        textwrap.dedent(
            """\
            from cnn_common.framework import lazy_exports

            HOMES = {"train": "training", "build": "model", "VERSION": "model"}
            lazy_exports(__name__, {k: f"{__name__}.{v}" for k, v in HOMES.items()})
            """
        )
    )
    (root / "model.py").write_text("VERSION = 3\n\ndef build():\n    return 'built'\n")
    (root / "training.py").write_text(
        f"from {PACKAGE}.model import build\n\ndef train():\n    return 'trained ' + build()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield PACKAGE
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def test_names_resolve_lazily(package: str) -> None:
    pkg = importlib.import_module(package)
    assert f"{package}.model" not in sys.modules and f"{package}.training" not in sys.modules
    assert sorted(pkg.__all__) == ["VERSION", "build", "train"]
    assert {"VERSION", "build", "train"} <= set(dir(pkg))
    assert f"{package}.model" not in sys.modules  # dir() imports nothing either
    assert pkg.build() == "built"
    assert f"{package}.model" in sys.modules and f"{package}.training" not in sys.modules
    assert pkg.VERSION == 3
    assert pkg.build is sys.modules[f"{package}.model"].build
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'evaluate'"):
        pkg.evaluate  # noqa: B018 - the attribute access is the test


@pytest.mark.parametrize("how", ["import_module", "import statement", "from import", "first"])
def test_a_contract_name_stays_the_function_after_its_module_is_imported(
    package: str, how: str
) -> None:
    pkg = importlib.import_module(package)
    function = pkg.train if how != "first" else None
    if how == "import_module":
        importlib.import_module(f"{package}.training")
    elif how == "import statement":
        exec(f"import {package}.training", {})  # noqa: S102 - the statement is the test
    elif how == "from import":
        exec(f"from {package} import train", {})  # noqa: S102
    else:  # the submodule imported before the name was ever used
        importlib.import_module(f"{package}.training")
        function = pkg.train
    assert inspect.isfunction(pkg.train), pkg.train
    assert function is None or pkg.train is function
    assert pkg.train() == "trained built"
    module = sys.modules[f"{package}.training"]  # the module stays reachable here
    assert inspect.ismodule(module) and module.train is pkg.train


def test_a_submodule_named_like_an_export_is_refused(package: str, tmp_path: Path) -> None:
    # Importing it would bind the module to the package over the function of the same name.
    (tmp_path / package / "train.py").write_text("def train():\n    return 'shadowed'\n")
    with pytest.raises(ValueError, match=r"named like the names it exports: \['train'\]"):
        importlib.import_module(package)


def test_other_attributes_can_still_be_set(package: str) -> None:
    pkg = importlib.import_module(package)
    pkg.extra = 5
    assert pkg.extra == 5
    pkg.build = "replaced on purpose"  # a non-module value is an ordinary assignment
    assert pkg.build == "replaced on purpose"


def test_the_contract_names() -> None:
    assert "train" in CONTRACT and "build" in CONTRACT and len(set(CONTRACT)) == len(CONTRACT)
    assert set(CONTRACT) == {
        "build",
        "train",
        "evaluate",
        "predict",
        "predict_logits",
        "feature_maps",
        "get_weights",
        "set_weights",
        "loss_and_grads",
        "layer_trace",
        "train_steps",
        "save",
        "load",
    }


# ----------------------------------------------------------------------------- the declaration


def declare(native: dict[str, str], env: dict[str, str] | None = None) -> FrameworkInfo:
    return FrameworkInfo(
        name="demo",
        label="Demo",
        package="demo_cnn",
        requires=("numpy",),
        extra="",
        native=native,
        model_suffix=".npz",
        env=env or {},
    )


def test_a_declaration_missing_a_topic_is_refused() -> None:
    for topic in TOPICS:
        native = {t: "x" for t in TOPICS if t != topic}
        with pytest.raises(ValueError) as info:
            declare(native)
        assert "'demo'" in str(info.value) and repr(topic) in str(info.value)
    info_ = declare(dict.fromkeys(TOPICS, "x"))
    assert (info_.default, info_.order, dict(info_.conventions)) == (False, 100, {})


def test_native_and_env_are_read_only() -> None:
    native = dict.fromkeys(TOPICS, "its own")
    env = {"KERAS_BACKEND": "jax"}
    info = declare(native, env)
    with pytest.raises(TypeError):
        info.native["init"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        info.env["KERAS_BACKEND"] = "torch"  # type: ignore[index]
    native["init"] = "changed by the caller afterwards"
    env["KERAS_BACKEND"] = "torch"
    assert info.native["init"] == "its own" and info.env["KERAS_BACKEND"] == "jax"  # copies
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
