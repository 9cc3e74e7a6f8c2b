"""`cnn-compare convert` on the model families: canonical weights with running statistics
(off their initial 0 and 1) go through every framework's own file and ONNX; each file read
back gives the same logits (evaluation mode: the running statistics decide them) and, for the
frameworks this process hosts, every tensor as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnn_common.weights import save_weights
from compare.__main__ import main
from compare.engine import registry
from compare.engine.layout import CONVERT_FILE
from tests.compare.test_convert import rows
from tests.contract.conftest import hosted_here
from tests.contract.families import FAMILIES, family_weights


def convert_and_read_back(
    spec_name: str, targets: list[str], tmp_path: Path, data_dir: Path
) -> dict[str, dict]:
    """Convert a canonical weight file of ``spec_name`` to ``targets`` and ONNX; every row
    within tolerance, and each hosted framework's file holds the weights exactly."""
    spec = FAMILIES[spec_name]
    weights = family_weights(spec, 11)
    source = tmp_path / "w.safetensors"
    save_weights(source, weights, spec)
    args = ["convert", str(source), "--to", ",".join(targets), "--onnx"]
    args += ["--images", "50", "--repeats", "3"]
    assert main([*args, "--data-dir", str(data_dir)]) == 0
    out = tmp_path / "w-converted"
    got = rows(out)
    assert list(got) == [*targets, "onnx"]
    assert all(row["ok"] for row in got.values()), got
    for name in targets:
        if not hosted_here(name):
            continue
        framework = registry.load(name)
        back = framework.get_weights(framework.load(got[name]["file"]))
        assert list(back) == list(weights), name
        for tensor, value in weights.items():
            np.testing.assert_array_equal(back[tensor], value, err_msg=f"{name}: {tensor}")
    return got


def test_resnet_weights_with_running_statistics_convert_to_numpy_pytorch_and_onnx(
    tmp_path: Path, data_dir: Path
) -> None:
    pytest.importorskip("onnxruntime")
    targets = [n for n in ("numpy", "pytorch") if not registry.missing_modules(n)]
    convert_and_read_back("resnet_small", targets, tmp_path, data_dir)
    assert (tmp_path / "w-converted" / CONVERT_FILE).is_file()


# Every family through every framework's file: resnet_small in CI, the others with -m grid.
@pytest.mark.slow
@pytest.mark.parametrize(
    "spec_name",
    [name if name == "resnet_small" else pytest.param(name, marks=pytest.mark.grid)
     for name in FAMILIES],
)  # fmt: skip
def test_every_family_converts_to_every_framework_and_onnx(
    spec_name: str, tmp_path: Path, data_dir: Path
) -> None:
    pytest.importorskip("onnxruntime")
    every = [n for n in registry.frameworks() if not registry.missing_modules(n)]
    convert_and_read_back(spec_name, every, tmp_path, data_dir)
