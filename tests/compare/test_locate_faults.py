"""The locator names the right place for faults injected in a test-only framework variant.

``faulty`` is a third-party framework (installed with a ``dist-info``, as anyone else's would
be) that is numpy_cnn with one fault planted, chosen by ``$FAULTY_FAULT``. Each fault lives in
one small function of its package; the project's source is untouched:

- ``flatten``: ``set_weights`` reads the first dense layer's kernel rows as if they were in
  C, H, W order (PyTorch's flatten, loaded without the permutation): the classic silent bug.
  Its trace still reports the flatten output in the canonical H, W, C order.
- ``padding``: ``build`` places the odd pixel of 'same' padding before instead of after.
- ``epsilon``: ``train_steps`` uses Adam's epsilon times 1000.
- on ``examples/resnet_small.yaml``, in ``build``: ``momentum``, the stem's batchnorm keeps its
  running average in the other convention (``new = m * old + (1 - m) * batch``); ``variance``,
  it stores the batch's biased variance instead of the unbiased one; ``residual``, the first
  residual block's ``add`` joins its first batchnorm instead of the block's input.

``cnn-compare parity --frameworks numpy,faulty`` must name, as the first departure, the place
the fault is made; with no fault, the two agree exactly, in float64 too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cnn_common.spec import ModelSpec, TrainSpec, layers
from cnn_common.spec_files import apply_overrides
from tests.compare.plugins import child_env, write_plugin

FAULT_VARIABLE = "FAULTY_FAULT"
PAIR = "numpy vs faulty"

FAULTY_INIT = '''\
    """numpy_cnn with one planted fault ($FAULTY_FAULT): a test-only framework."""

    from cnn_common.framework import CONTRACT, lazy_exports

    FAULTY = ("build", "set_weights", "train_steps")  # where the faults live

    lazy_exports(
        __name__,
        {
            **{name: "numpy_cnn.model" for name in CONTRACT if name not in FAULTY},
            "train": "numpy_cnn.training",
            **{name: "faulty_cnn.model" for name in FAULTY},
        },
    )
    '''

FAULTY_MODEL = '''\
    """The three contract functions a fault changes; everything else is numpy_cnn's."""

    import dataclasses
    import os

    import numpy_cnn


    def fault():
        return os.environ.get("FAULTY_FAULT", "none")


    def build(spec, dtype="float32", *, seed=0):
        model = numpy_cnn.build(spec, dtype, seed=seed)
        if fault() == "padding":  # 'same': the odd pixel before (top/left), not after
            model.layers = [
                dataclasses.replace(layer, pad=tuple((b, a) for a, b in layer.pad))
                if layer.kind == "conv"
                else layer
                for layer in model.layers
            ]
        return replaced(model, planted)


    def set_weights(model, weights):
        numpy_cnn.set_weights(model, weights)
        if fault() == "flatten":  # rows taken as C, H, W order, without the permutation
            flatten = next(layer for layer in model.layers if layer.kind == "flatten")
            first = next(layer for layer in model.layers if layer.kind in ("dense", "logits"))
            h, w, c = flatten.input_shape
            kernel = model.weights[f"{first.name}.kernel"]
            units = kernel.shape[1]
            kernel[...] = kernel.reshape(c, h, w, units).transpose(1, 2, 0, 3).reshape(-1, units)


    def replaced(model, change):
        """``model`` with ``change`` applied to each of its layers."""
        from numpy_cnn.network import CNN, new_workspaces

        changed = [change(layer) for layer in model.layers]
        return CNN(model.spec, model.dtype, changed, model.weights, new_workspaces(changed))


    def planted(layer):
        if fault() == "momentum" and layer.name == "stem_bn":
            other = {"torch": "keras", "keras": "torch"}[layer.momentum_convention]
            return dataclasses.replace(layer, momentum_convention=other)
        if fault() == "variance" and layer.name == "stem_bn":
            return dataclasses.replace(layer, variance="biased")
        if fault() == "residual" and layer.name == "stage1_add":
            return dataclasses.replace(layer, inputs=(layer.inputs[0], "stage1_bn1"))
        return layer


    def train_steps(model, train_spec, batches, steps_per_epoch=None):
        if fault() == "epsilon":
            train_spec = dataclasses.replace(train_spec, epsilon=train_spec.epsilon * 1000)
        return numpy_cnn.train_steps(model, train_spec, batches, steps_per_epoch)
    '''

# conv2: 3x3, stride 2, 'same' on pool1's 14x14 output: TensorFlow's placement pads (0, 1)
PADDING_SPEC = [
    "conv.0.filters=8",
    "conv.0.padding=same",
    "conv.1.filters=8",
    "conv.1.kernel_size=3",
    "conv.1.stride=2",
    "conv.1.padding=same",
    "conv.1.pool_size=0",
]
SMALL = ["--steps", "2", "--batch-size", "32"]
RESNET = ["--spec", str(Path(__file__).resolve().parents[2] / "examples" / "resnet_small.yaml")]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plugin(
        tmp_path_factory.mktemp("site"),
        name="faulty",
        package="faulty_cnn",
        label="numpy_cnn with a planted fault (test only)",
        init=FAULTY_INIT,
        modules={"model.py": FAULTY_MODEL},
        info={"native_init": False, "order": 300},
    )


def locate(
    plugin: Path, out: Path, data_dir: Path, fault: str, *args: str
) -> tuple[int, dict[str, Any]]:
    """Parity of numpy and faulty with ``fault`` planted: the exit status and parity.json."""
    result = subprocess.run(
        [sys.executable, "-m", "compare", "parity", "--frameworks", "numpy,faulty"]
        + ["--in-process", "--out", str(out), *SMALL, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(plugin, CNN_DATA_DIR=str(data_dir), **{FAULT_VARIABLE: fault}),
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    record = json.loads((out / "parity.json").read_text())
    assert record["frameworks"] == ["numpy", "faulty"]
    return result.returncode, record


def check_located(status: int, record: dict[str, Any], where: str, phase: str) -> dict:
    """The pair departs first at ``where``, with no known cause: parity exits 1."""
    departure = record["departures"][PAIR]
    assert departure is not None, "the fault went unnoticed"
    assert (departure["where"], departure["phase"]) == (where, phase), departure
    assert departure["cause"] == ""  # nothing the frameworks declare explains it
    assert status == 1
    return departure


def test_the_padding_spec_has_an_asymmetric_same_pad() -> None:
    spec, _ = apply_overrides(ModelSpec(), TrainSpec(), PADDING_SPEC)
    by_name = {layer.name: layer for layer in layers(spec)}
    assert by_name["conv2"].input_shape[:2] == (14, 14)
    assert by_name["conv2"].pad == ((0, 1), (0, 1))
    assert by_name["conv1"].pad == ((2, 2), (2, 2))  # symmetric: the fault cannot move it


def test_wrong_flatten_order_departs_at_the_first_dense_forward(
    plugin: Path, tmp_path: Path, data_dir: Path
) -> None:
    status, record = locate(plugin, tmp_path, data_dir, "flatten")
    check_located(status, record, "step 0, forward of dense1", "forward")
    rows = [r for r in record["rows"] if r["pair"] == PAIR and r["step"] == 0]
    by_name = {r["name"]: r for r in rows if r["quantity"] == "forward"}
    assert by_name["flatten"]["ok"]  # the flatten output itself is canonical
    assert by_name["dense1"]["value"] > 1e-2  # a real error, not rounding


def test_wrong_same_pad_placement_departs_at_that_convolution(
    plugin: Path, tmp_path: Path, data_dir: Path
) -> None:
    args = [f"--set={item}" for item in PADDING_SPEC]
    status, record = locate(plugin, tmp_path, data_dir, "padding", *args)
    check_located(status, record, "step 0, forward of conv2", "forward")
    rows = [r for r in record["rows"] if r["pair"] == PAIR and r["step"] == 0]
    assert [r["name"] for r in rows[:3]] == ["conv1", "pool1", "conv2"]
    assert rows[0]["ok"] and rows[1]["ok"]  # conv1 and pool1 agree
    assert rows[2]["value"] > 1e-2  # a real error, not rounding


def test_another_adam_epsilon_departs_at_the_first_update(
    plugin: Path, tmp_path: Path, data_dir: Path
) -> None:
    status, record = locate(plugin, tmp_path, data_dir, "epsilon")
    departure = check_located(status, record, "step 1, update of conv1.kernel", "update")
    assert departure["step"] == 1
    step0 = [r for r in record["rows"] if r["pair"] == PAIR and r["step"] == 0]
    assert {r["phase"] for r in step0} == {"forward", "backward"}
    assert all(r["ok"] for r in step0)  # the same weights, the same pass
    assert departure["value"] > 10 * departure["tolerance"]


def test_the_other_running_average_convention_departs_at_that_batchnorms_statistics(
    plugin: Path, tmp_path: Path, data_dir: Path
) -> None:
    status, record = locate(plugin, tmp_path, data_dir, "momentum", *RESNET)
    where = "step 0, running-statistics update of stem_bn (stem_bn.moving_mean)"
    departure = check_located(status, record, where, "statistics")
    step0 = [r for r in record["rows"] if r["pair"] == PAIR and r["step"] == 0]
    assert all(r["ok"] for r in step0 if r["phase"] != "statistics")  # the batch is the same
    assert departure["value"] > 0.1  # (1 - m) for m: a real error, not rounding


def test_a_biased_stored_variance_departs_at_the_statistics_then_the_evaluation_forward(
    plugin: Path, tmp_path: Path, data_dir: Path
) -> None:
    # The variance differs by the factor n / (n - 1), n = 32 * 14 * 14 values: a relative
    # 1.6e-4 of the batch's share m = 0.1 of the average, under float32's rounding tolerance,
    # so float64 is where it can be seen.
    status, record = locate(plugin, tmp_path, data_dir, "variance", *RESNET, "--dtype=float64")
    where = "step 0, running-statistics update of stem_bn (stem_bn.moving_variance)"
    check_located(status, record, where, "statistics")
    rows = {(r["step"], r["quantity"], r["name"]): r for r in record["rows"] if r["pair"] == PAIR}
    assert rows[(0, "statistics", "stem_bn.moving_mean")]["ok"]  # only the variance is stored
    # the first forward pass in evaluation mode that reads it: step 1's
    assert rows[(0, "forward", "stem_bn")]["ok"] and not rows[(1, "forward", "stem_bn")]["ok"]


def test_a_residual_joined_to_the_wrong_layer_departs_at_that_add(
    plugin: Path, tmp_path: Path, data_dir: Path
) -> None:
    status, record = locate(plugin, tmp_path, data_dir, "residual", *RESNET)
    check_located(status, record, "step 0, forward of stage1_add", "forward")
    rows = [r for r in record["rows"] if r["pair"] == PAIR and r["step"] == 0]
    before = rows[: [r["name"] for r in rows].index("stage1_add")]
    assert before and all(r["ok"] for r in before)


@pytest.mark.parametrize("spec", ["seed", "padding", "resnet_small"])
def test_without_a_fault_the_variant_agrees_in_float64(
    plugin: Path, tmp_path: Path, data_dir: Path, spec: str
) -> None:
    args = ["--dtype", "float64"]
    if spec == "padding":
        args += [f"--set={item}" for item in PADDING_SPEC]
    if spec == "resnet_small":
        args += RESNET
    status, record = locate(plugin, tmp_path, data_dir, "none", *args)
    assert status == 0
    assert record["dtype"] == "float64" and record["departures"] == {PAIR: None}
    rows = record["rows"]
    stages = {"forward", "backward", "update"} | (
        {"statistics"} if spec == "resnet_small" else set()
    )
    assert {r["phase"] for r in rows} == stages
    # the same code: equal up to the order a multithreaded BLAS sums in (about 1e-16)
    assert max(r["value"] for r in rows) < 1e-13
