"""``cnn-compare parity`` and its locator (``compare.parity.locate``): the frameworks agree from
shared weights on the shared batches, and where two of them part, the first place is named.

The end-to-end runs start ``cnn-compare parity`` (one process per framework); the unit tests
feed ``compare.parity.locate`` hand-made records.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnn_common.spec import ModelSpec, layers, weight_shapes
from compare.engine import registry
from compare.parity.command import known_cause, without_dropout
from compare.parity.locate import (
    NEAR_TIE,
    TOLERANCES,
    compare_records,
    first_departures,
    near_tie_pools,
    order_of,
    relative_difference,
)

FOUR = ("numpy", "keras", "lightning", "pytorch")
REPO = Path(__file__).resolve().parents[2]


def need(*names: str) -> None:
    """Skip unless every framework in ``names`` is installed (checked without importing:
    TensorFlow and PyTorch do not share this process)."""
    missing = [module for name in names for module in registry.missing_modules(name)]
    if missing:
        pytest.skip(f"not installed: {', '.join(sorted(set(missing)))}")


def parity(out: Path, data_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, Any]:
    """Run ``cnn-compare parity`` of the four frameworks; its result and parity.json."""
    need(*FOUR)
    result = subprocess.run(
        [sys.executable, "-m", "compare", "parity", "--frameworks", ",".join(FOUR)]
        + ["--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
    )
    record = json.loads((out / "parity.json").read_text()) if result.returncode in (0, 1) else {}
    return result, record


def expected_keys(spec: ModelSpec, steps: int) -> set[tuple[int, str, str]]:
    """(step, quantity, name) of every row one pair has after ``steps`` steps."""
    keys = set()
    for step in range(steps):
        for layer in layers(spec):
            keys |= {(step, "forward", layer.name), (step, "grad_input", layer.name)}
            keys |= {(step, "grad", tensor) for tensor in layer.params if layer.trainable}
            keys |= {(step, "statistics", tensor) for tensor in layer.state}
            keys |= {(step + 1, "update", tensor) for tensor in layer.params}
    return keys


def check_float64_agreement(record: dict[str, Any], spec: ModelSpec, steps: int = 3) -> None:
    """Float64 leaves only the order of summation: every activation, weight gradient and
    update agrees within 1e-9 in every pair, NumPy with Keras and Lightning with PyTorch
    agree everywhere. The only rows that may part are input gradients below a max-pooling
    window whose two largest inputs are equal up to a few float64 ulps (identical image
    patches that PyTorch's convolution rounds apart), and the locator names that cause."""
    assert record["dtype"] == "float64"
    pairs = [f"{a} vs {b}" for a, b in itertools.combinations(FOUR, 2)]
    assert list(record["departures"]) == pairs
    for pair in pairs:
        rows = [r for r in record["rows"] if r["pair"] == pair]
        assert {(r["step"], r["quantity"], r["name"]) for r in rows} == expected_keys(spec, steps)
        for row in rows:
            assert row["tolerance"] == TOLERANCES["float64"][row["phase"]]
            if row["quantity"] != "grad_input":
                assert row["ok"], f"{pair}: {row['where']} {row['value']:.3g}"
    for pair in ("numpy vs keras", "lightning vs pytorch"):
        assert record["departures"][pair] is None, record["departures"][pair]
    for pair, departure in record["departures"].items():
        if departure is not None:
            assert departure["quantity"] == "grad_input", (pair, departure["where"])
            assert "max-pooling near-tie" in departure["cause"], (pair, departure["cause"])


# ----------------------------------------------------------------------------- end to end


def test_float32_default_spec_exits_0_and_records_every_pair(
    tmp_path: Path, data_dir: Path
) -> None:
    result, record = parity(tmp_path, data_dir, "--steps", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert record["frameworks"] == list(FOUR) and record["dtype"] == "float32"
    assert record["steps"] == 3 and record["tolerances"] == TOLERANCES["float32"]
    pairs = [f"{a} vs {b}" for a, b in itertools.combinations(FOUR, 2)]
    assert list(record["departures"]) == pairs
    spec = ModelSpec()
    for pair in pairs:
        rows = [r for r in record["rows"] if r["pair"] == pair]
        assert {r["phase"] for r in rows} == {"forward", "backward", "update"}
        assert {(r["step"], r["quantity"], r["name"]) for r in rows} == expected_keys(spec, 3)
        departure = record["departures"][pair]
        if departure is not None:  # float32 may part, but only for a reason it can name
            assert departure["cause"], f"{pair}: unexplained {departure['where']}"
            assert not departure["ok"]
    # the same network and optimiser class under Lightning and plain PyTorch: identical
    assert record["departures"]["lightning vs pytorch"] is None
    table = result.stdout
    assert all(pair in table for pair in pairs)
    assert (tmp_path / "report.html").is_file()


def test_float64_the_four_agree(tmp_path: Path, data_dir: Path) -> None:
    result, record = parity(tmp_path, data_dir, "--dtype", "float64", "--steps", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    check_float64_agreement(record, ModelSpec())


def test_float64_keras_epsilon_convention_agrees(tmp_path: Path, data_dir: Path) -> None:
    """Keras's own Adam computes beta^t from float32-rounded betas, which parts from the others
    by ~1e-8 in float64; keras_cnn.optim.KerasAdam takes them exactly. With decoupled weight
    decay on the kernels and a per-step cosine schedule after a warm-up step, each update at
    its own rate."""
    args = ["--dtype", "float64", "--steps", "3"]
    args += ["--set", "epsilon_convention=keras", "--set", "epsilon=1e-7"]
    for setting in ("weight_decay=0.05", "weight_decay_convention=decoupled", "lr_warmup=1"):
        args += ["--set", setting]
    for setting in ("weight_decay_on=kernels", "lr_schedule=cosine", "lr_interval=step"):
        args += ["--set", setting]
    result, record = parity(tmp_path, data_dir, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert record["optimizer"] == (
        "adam (keras epsilon 1e-07); decoupled weight decay 0.05 on kernels; "
        "cosine schedule per step after 1 of warm-up"
    )
    check_float64_agreement(record, ModelSpec())


def test_float64_wide_same_spec_agrees(tmp_path: Path, data_dir: Path) -> None:
    """Three 'same' blocks, dropout (left out by parity) and Keras's epsilon convention."""
    from cnn_common.spec_files import load_spec

    spec_file = REPO / "examples" / "wide_same.yaml"
    args = ["--spec", str(spec_file), "--dtype", "float64", "--steps", "3", "--batch-size", "32"]
    result, record = parity(tmp_path, data_dir, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert record["batch_size"] == 32 and "keras epsilon" in record["optimizer"]
    spec, _ = load_spec(spec_file)
    assert any(layer.kind == "dropout" for layer in layers(spec))
    check_float64_agreement(record, without_dropout(spec))  # parity leaves dropout out


# resnet_small's stem frozen, its batchnorm in inference mode: no gradient of theirs, no
# update, the running statistics kept, in every framework
FROZEN_STEM = ["layers.0.trainable=false", "layers.1.trainable=false"]
FROZEN_STEM += ["layers.1.frozen_batchnorm=inference"]


@pytest.mark.parametrize(
    "name",
    ["resnet_small", "mobilenet_small", pytest.param("vgg_small", marks=pytest.mark.grid)],
)  # vgg_small's kinds are resnet_small's and the seed's: with -m grid
def test_float64_every_example_spec_agrees(tmp_path: Path, data_dir: Path, name: str) -> None:
    """Batchnorm (its forward in evaluation mode, its backward, its running statistics after
    every step), residual joins and depthwise convolutions agree as the seed's layers do."""
    from cnn_common.spec_files import apply_overrides, load_spec

    spec_file = REPO / "examples" / f"{name}.yaml"
    args = ["--spec", str(spec_file), "--dtype", "float64", "--steps", "2", "--batch-size", "16"]
    frozen = FROZEN_STEM if name == "resnet_small" else []
    for setting in frozen:
        args += ["--set", setting]
    result, record = parity(tmp_path, data_dir, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    spec, _ = apply_overrides(*load_spec(spec_file), frozen)
    check_float64_agreement(record, spec, steps=2)
    frozen_updates = [r for r in record["rows"] if r["quantity"] == "update" and frozen]
    for row in frozen_updates:  # a frozen tensor's update is 0 in every framework
        if row["name"].startswith("stem."):
            assert row["max_abs"] == 0, row
    phases = {r["phase"] for r in record["rows"]}
    assert phases == {"forward", "backward", "statistics", "update"}


# ----------------------------------------------------------------------------- the locator

SPEC = ModelSpec()


def fake_record(seed: int, steps: int = 2, n: int = 2) -> dict[str, np.ndarray]:
    """A parity record of the seed spec with random values of the right shapes, its keys in
    a shuffled order (the locator must not rely on the order it reads them in)."""
    rng = np.random.default_rng(seed)
    shapes = weight_shapes(SPEC)
    record: dict[str, np.ndarray] = {}
    for step in range(steps):
        for layer in layers(SPEC):
            record[f"step{step}/forward/{layer.name}"] = rng.normal(size=(n, *layer.output_shape))
            record[f"step{step}/grad_input/{layer.name}"] = rng.normal(size=(n, *layer.input_shape))
        for name, shape in shapes.items():
            record[f"step{step}/grad/{name}"] = rng.normal(size=shape)
            record[f"step{step + 1}/update/{name}"] = rng.normal(size=shape)
        record[f"step{step}/loss"] = np.asarray(rng.random())
    keys = list(record)
    random.Random(seed).shuffle(keys)
    return {key: record[key] for key in keys}


def copy(record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value.copy() for key, value in record.items()}


def test_rows_run_in_computation_order() -> None:
    """Forward in layer order, backward from the last layer (its weight gradients, then the
    gradient of its input), then the update that step makes; step by step."""
    a = fake_record(0)
    rows = compare_records({"x": a, "y": copy(a)}, SPEC, "float32")
    got = [(r.step, r.quantity, r.name) for r in rows]
    names = [layer.name for layer in layers(SPEC)]
    expected = []
    for step in range(2):
        expected += [(step, "forward", name) for name in names]
        expected += [
            (step, "grad", "logits.kernel"),
            (step, "grad", "logits.bias"),
            (step, "grad_input", "logits"),
            (step, "grad", "dense1.kernel"),
            (step, "grad", "dense1.bias"),
            (step, "grad_input", "dense1"),
            (step, "grad_input", "flatten"),
            (step, "grad_input", "pool2"),
            (step, "grad", "conv2.kernel"),
            (step, "grad", "conv2.bias"),
            (step, "grad_input", "conv2"),
            (step, "grad_input", "pool1"),
            (step, "grad", "conv1.kernel"),
            (step, "grad", "conv1.bias"),
            (step, "grad_input", "conv1"),
        ]
        expected += [(step + 1, "update", t) for t in weight_shapes(SPEC)]  # in layer order
    assert got == expected
    assert all(r.ok and r.value == 0 and r.pair == "x vs y" for r in rows)
    assert [r.phase for r in rows[:7]] == ["forward"] * 7
    assert {r.phase for r in rows if r.quantity in ("grad", "grad_input")} == {"backward"}
    assert rows[10].layer == "dense1" and rows[10].name == "dense1.kernel"
    assert rows[22].where() == "step 1, update of conv1.kernel"
    assert rows[9].where() == "step 0, backward: gradient of logits's input"
    # order_of is the order within one step
    order = order_of(SPEC)
    assert sorted(order, key=order.get)[:7] == [("forward", name) for name in names]
    assert max(order, key=order.get) == ("update", "logits.bias")


def test_first_departure_is_the_earliest_in_computation_order() -> None:
    a = fake_record(1)
    b = copy(a)
    b["step1/grad/conv2.kernel"][0, 0, 0, 0] += 0.5  # a gradient at step 1
    b["step1/forward/logits"] += 1.0  # earlier in step 1: the forward pass
    b["step2/update/dense1.bias"] *= 2  # later: step 1's update
    c = copy(a)
    firsts = first_departures(compare_records({"a": a, "b": b, "c": c}, SPEC, "float32"))
    assert list(firsts) == ["a vs b", "a vs c", "b vs c"]
    assert firsts["a vs c"] is None
    for pair in ("a vs b", "b vs c"):
        first = firsts[pair]
        assert first is not None
        assert (first.step, first.phase, first.name) == (1, "forward", "logits")
        assert first.where() == "step 1, forward of logits"
    # without the forward fault, the gradient is first; without both, the update
    b["step1/forward/logits"] = a["step1/forward/logits"].copy()
    first = first_departures(compare_records({"a": a, "b": b}, SPEC, "float32"))["a vs b"]
    assert first is not None and first.where() == "step 1, backward: gradient of conv2.kernel"
    assert first.layer == "conv2"
    b["step1/grad/conv2.kernel"] = a["step1/grad/conv2.kernel"].copy()
    first = first_departures(compare_records({"a": a, "b": b}, SPEC, "float32"))["a vs b"]
    assert first is not None and (first.step, first.phase) == (2, "update")
    assert first.where() == "step 2, update of dense1.bias"


def test_an_update_sorts_after_the_backward_it_comes_from() -> None:
    """``update`` k+1 is made from step k's gradients: it comes before step k+1's forward."""
    a = fake_record(2)
    b = copy(a)
    b["step1/update/conv1.kernel"] *= 1.5
    b["step1/forward/conv1"] *= 1.5
    first = first_departures(compare_records({"a": a, "b": b}, SPEC, "float32"))["a vs b"]
    assert first is not None and first.where() == "step 1, update of conv1.kernel"


def test_tolerances_are_relative_and_by_dtype() -> None:
    """Forward outputs by the maximum, gradients and updates by the norm; float64 is tight."""
    a = fake_record(3, steps=1)
    b = copy(a)
    scale = float(np.abs(a["step0/forward/conv1"]).max())
    b["step0/forward/conv1"][0, 0, 0, 0] += 5e-5 * scale  # within float32's 1e-4
    rows32 = compare_records({"a": a, "b": b}, SPEC, "float32")
    rows64 = compare_records({"a": a, "b": b}, SPEC, "float64")
    assert first_departures(rows32)["a vs b"] is None
    first = first_departures(rows64)["a vs b"]
    assert first is not None and first.where() == "step 0, forward of conv1"
    assert first.value == pytest.approx(5e-5, rel=1e-6) and first.tolerance == 1e-9
    # one entry of a large gradient moved by 10% of the largest moves its norm very little
    value, max_abs = relative_difference(np.ones(10_000) * 1.1, np.ones(10_000), norm=False)
    assert value == pytest.approx(0.1) and max_abs == pytest.approx(0.1)
    one = np.ones(10_000)
    other = one.copy()
    other[0] = 1.1
    assert relative_difference(other, one, norm=True)[0] == pytest.approx(1e-3)
    assert relative_difference(other, one, norm=False)[0] == pytest.approx(0.1)


def pool_record(seed: int) -> dict[str, np.ndarray]:
    """Step 0 of the seed spec around pool1, as NumPy would record it: conv1's output with
    distinct values in every window, and pool1's input gradient sent to each window's max."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 1.0, size=(2, 24, 24, 16))
    windows = values.reshape(2, 12, 2, 12, 2, 16)
    top = windows.max(axis=(2, 4), keepdims=True)
    upstream = rng.normal(size=(2, 12, 1, 12, 1, 16))
    grad = np.where(windows == top, upstream, 0.0).reshape(values.shape)
    return {"step0/forward/conv1": values, "step0/grad_input/pool1": grad}


def reroute(record: dict[str, np.ndarray], n: int, h: int, w: int, c: int, to: tuple[int, int]):
    """A copy with the gradient of the window holding pixel (n, h, w, c) sent to ``to``."""
    grad = record["step0/grad_input/pool1"].copy()
    top, left = h // 2 * 2, w // 2 * 2
    window = grad[n, top : top + 2, left : left + 2, c]
    total = window.sum()
    window[...] = 0
    window[to] = total
    return {**record, "step0/grad_input/pool1": grad}


def test_a_near_tie_window_routed_elsewhere_is_recognised() -> None:
    a = pool_record(4)
    values = a["step0/forward/conv1"]
    # window (0, rows 4-5, cols 6-7, channel 3): its two largest inputs a near-tie
    values[0, 4:6, 6:8, 3] = [[0.5, 0.9], [0.9 * (1 - NEAR_TIE["float32"] / 10), 0.2]]
    grad = a["step0/grad_input/pool1"]
    grad[0, 4:6, 6:8, 3] = [[0.0, 0.25], [0.0, 0.0]]
    b = reroute(a, 0, 4, 6, 3, to=(1, 0))  # the other framework picked the other 0.9
    assert near_tie_pools(a, b, SPEC, 0) == ["pool1"]
    # the locator's row is a departure; parity names the near-tie as its cause
    rows = compare_records({"numpy": a, "pytorch": b}, SPEC, "float32")
    first = first_departures(rows)["numpy vs pytorch"]
    assert first is not None and first.where() == "step 0, backward: gradient of pool1's input"
    cause = known_cause(first, "float32", {"numpy": a, "pytorch": b}, SPEC)
    assert "near-tie in pool1 at step 0" in cause
    # agreement is no near-tie either
    assert near_tie_pools(a, copy(a), SPEC, 0) == []


def test_a_real_routing_difference_is_not_a_near_tie() -> None:
    a = pool_record(5)
    values = a["step0/forward/conv1"]
    values[1, 10:12, 2:4, 7] = [[0.95, 0.2], [0.8, 0.3]]  # a clear maximum: 0.95
    grad = a["step0/grad_input/pool1"]
    grad[1, 10:12, 2:4, 7] = [[0.4, 0.0], [0.0, 0.0]]
    b = reroute(a, 1, 10, 2, 7, to=(1, 0))  # sent to 0.8: a wrong max
    assert near_tie_pools(a, b, SPEC, 0) == []
    rows = compare_records({"numpy": a, "other": b}, SPEC, "float32")
    first = first_departures(rows)["numpy vs other"]
    assert first is not None
    assert known_cause(first, "float32", {"numpy": a, "other": b}, SPEC) == ""
    # a near-tie window whose gradient changed, not only moved, is no near-tie either
    values[1, 10:12, 2:4, 7] = [[0.95, 0.2], [0.95 * (1 - NEAR_TIE["float32"] / 10), 0.3]]
    c = reroute(a, 1, 10, 2, 7, to=(1, 0))
    assert near_tie_pools(a, c, SPEC, 0) == ["pool1"]
    c["step0/grad_input/pool1"][1, 10, 2, 7] = 0.0
    c["step0/grad_input/pool1"][1, 11, 2, 7] = 0.7  # moved and grown
    assert near_tie_pools(a, c, SPEC, 0) == []
