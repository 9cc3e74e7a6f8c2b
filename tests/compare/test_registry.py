"""compare.engine.registry: the frameworks come from the ``cnn_rosetta.frameworks`` entry points, so
a framework a third party installs is listed, run and reported with no change in compare."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnn_common.errors import FrameworkMissingError, UserError
from cnn_common.framework import TOPICS, FrameworkInfo
from cnn_common.results import RunResult
from compare.engine import registry
from compare.engine.layout import RESULTS_FILE, run_dir
from tests.compare.plugins import child_env, write_plugin

OWN = ["numpy", "keras", "keras-torch", "keras-jax", "lightning", "pytorch"]
LABEL = "Third party (NumPy under another name)"


def test_the_six_frameworks_in_report_order() -> None:
    found = registry.frameworks()
    assert list(found) == OWN
    assert all(
        isinstance(info, FrameworkInfo) and info.name == name for name, info in found.items()
    )
    orders = [info.order for info in found.values()]
    assert orders == sorted(orders)
    assert {name: info.package for name, info in found.items()} == {
        "numpy": "numpy_cnn",
        "keras": "keras_cnn",
        "keras-torch": "keras_cnn",
        "keras-jax": "keras_cnn",
        "lightning": "lightning_cnn",
        "pytorch": "pytorch_cnn",
    }
    assert registry.default_names() == ["numpy", "keras", "lightning"]


def test_parse_frameworks_and_unknown_names() -> None:
    assert registry.parse_frameworks(" numpy,keras ,numpy") == ["numpy", "keras"]
    with pytest.raises(UserError) as info:
        registry.parse_frameworks("numpy,caffe")
    assert "caffe" in info.value.message and ", ".join(OWN) in info.value.hint
    with pytest.raises(UserError, match="unknown framework 'caffe'"):
        registry.get("caffe")


# ----------------------------------------------------------------------------- a third party


def write_third_party(root: Path, entry_name: str = "thirdparty") -> Path:
    """An installed third-party framework under ``root``: the package ``thirdparty_cnn`` (the
    NumPy network under its own name) and the ``dist-info`` that registers it."""
    return write_plugin(
        root,
        name="thirdparty",
        package="thirdparty_cnn",
        label=LABEL,
        entry_name=entry_name,
        init='''\
            """numpy_cnn's functions, published under another name."""

            from cnn_common.framework import CONTRACT, lazy_exports

            lazy_exports(
                __name__,
                {
                    **{name: "numpy_cnn.model" for name in CONTRACT if name != "train"},
                    # compare passes train(name="thirdparty"): the record says whose it is
                    "train": "numpy_cnn.training",
                },
            )
            ''',
    )


@pytest.fixture()
def third_party_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The third party installed for this process; the registry reads the entry points again."""
    write_third_party(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.frameworks.cache_clear()
    yield tmp_path
    registry.frameworks.cache_clear()
    for name in [m for m in sys.modules if m.split(".")[0] == "thirdparty_cnn"]:
        del sys.modules[name]


def test_a_third_party_is_listed_after_the_own(third_party_here: Path) -> None:
    assert list(registry.frameworks()) == [*OWN, "thirdparty"]
    assert registry.get("thirdparty").label == LABEL
    assert "thirdparty" not in registry.default_names()
    registry.check_installed("thirdparty")
    package = registry.load("thirdparty")
    numpy_cnn = registry.load("numpy")
    assert package.build is numpy_cnn.build
    assert package.train is numpy_cnn.train


def test_an_entry_point_must_name_its_declaration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_third_party(tmp_path, entry_name="other-name")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.frameworks.cache_clear()
    try:
        with pytest.raises(ValueError, match="'other-name' declares the framework 'thirdparty'"):
            registry.frameworks()
    finally:
        registry.frameworks.cache_clear()
        sys.modules.pop("thirdparty_cnn.framework", None)
        sys.modules.pop("thirdparty_cnn", None)


def test_a_third_party_framework_is_run_and_reported(tmp_path: Path, data_dir: Path) -> None:
    root = write_third_party(tmp_path / "site")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare",
            "run",
            "--frameworks",
            "thirdparty,numpy",
            "--subset",
            "300",
            "--eval-subset",
            "200",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(root, CNN_DATA_DIR=str(data_dir)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / RESULTS_FILE).read_text())["summary"]
    assert [row["framework"] for row in summary] == ["numpy", "thirdparty"]  # report order
    assert "thirdparty" in result.stdout
    report = (out / "report.md").read_text()
    assert LABEL in report  # its declaration heads its column of the differences table
    assert "as numpy_cnn (batch_order)" in report
    ours = RunResult.from_json(run_dir(out, "thirdparty", 0) / "run.json")
    theirs = RunResult.from_json(run_dir(out, "numpy", 0) / "run.json")
    assert ours.framework == "thirdparty" and ours.sizes == {"train": 300, "val": 200, "test": 200}
    # The same code from the same shared weights on the same batches: the same losses.
    assert ours.init_digest == theirs.init_digest
    assert ours.step_losses == theirs.step_losses and len(ours.step_losses) == 3
    events = (run_dir(out, "thirdparty", 0) / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0])["framework"] == "thirdparty"


# ----------------------------------------------------------------------------- not installed


def declaration(name: str, requires: tuple[str, ...], extra: str) -> FrameworkInfo:
    return FrameworkInfo(
        name=name,
        label=name,
        package=f"{name}_cnn",
        requires=requires,
        extra=extra,
        native=dict.fromkeys(TOPICS, "-"),
        model_suffix=".bin",
    )


def test_check_installed_names_the_missing_module_and_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = {
        "ghost": declaration("ghost", ("numpy", "no_such_module_here"), "ghost"),
        "bare": declaration("bare", ("no_such_module_either",), ""),
    }
    monkeypatch.setattr(registry, "frameworks", lambda: declared)
    assert registry.missing_modules("ghost") == ["no_such_module_here"]  # numpy is there
    with pytest.raises(FrameworkMissingError) as info:
        registry.check_installed("ghost")
    err = info.value
    assert isinstance(err, UserError)
    assert "'ghost'" in err.message and "no_such_module_here" in err.message
    assert "numpy" not in err.message
    assert 'pip install -e ".[ghost]"' in err.hint
    with pytest.raises(FrameworkMissingError) as info:
        registry.check_installed("bare")
    assert "no_such_module_either" in info.value.message
    assert "pip install -e ." in info.value.hint and "[" not in info.value.hint
    with pytest.raises(FrameworkMissingError):
        registry.load("ghost")  # nothing is imported for a framework that is not there
