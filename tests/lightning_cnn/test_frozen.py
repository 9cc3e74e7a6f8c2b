"""lightning_cnn with frozen layers (``trainable: false``): ``LitCNN``'s optimiser holds the
trained parameters only, Lightning's ``unfreeze`` leaves the spec's frozen layers frozen, and
the files (``lightning_cnn.save``, a run's checkpoints) hold every tensor while a run leaves
the frozen ones bit-identical. (Step-for-step parity with the plain loop on a spec with frozen
layers is tests/lightning_cnn/test_train.py's.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import lightning_cnn as lc  # noqa: E402
from cnn_common.data import Data, subset  # noqa: E402
from cnn_common.results import WEIGHTS_FILE  # noqa: E402
from cnn_common.spec import (  # noqa: E402
    LayerSpec,
    ModelSpec,
    TrainSpec,
    layers,
    trainable_shapes,
    weight_shapes,
)
from cnn_common.weights import init_weights, load_weights  # noqa: E402

SPEC = ModelSpec(
    layers=(
        LayerSpec("conv", name="c1", filters=4, padding="same", trainable=False),
        LayerSpec("batchnorm", name="bn1", trainable=False, frozen_batchnorm="inference"),
        LayerSpec("activation", activation="relu"),
        LayerSpec("maxpool"),
        LayerSpec("conv", name="c2", filters=8, stride=2),
        LayerSpec("batchnorm", name="bn2"),
        LayerSpec("global_avgpool"),
        LayerSpec("dense", name="d1", units=8, activation="relu", trainable=False),
    )
)
# every tensor of the frozen layers, bn1's running statistics included ("inference")
FROZEN = [name for layer in layers(SPEC) if not layer.trainable for name in layer.tensors]
TRAIN = TrainSpec(epochs=1, batch_size=100, learning_rate=0.01, weight_decay=0.01)


def grad_flags(model: lc.LitCNN) -> dict[str, bool]:
    params = dict(model.model.named_parameters())
    names = model.model.tensor_names
    return {name: params[t].requires_grad for name, t in names.items() if t in params}


EXPECTED = {name: name in trainable_shapes(SPEC) for layer in layers(SPEC) for name in layer.params}


def test_the_optimiser_holds_the_trained_parameters_and_unfreeze_keeps_the_frozen() -> None:
    model = lc.LitCNN(SPEC, TRAIN)
    assert grad_flags(model) == EXPECTED and not all(EXPECTED.values())
    optimizer = model.configure_optimizers()
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trained = {id(p) for _, p in model.model.canonical_parameters()}
    assert held == trained and len(held) == len(trainable_shapes(SPEC))
    model.freeze()
    assert not any(grad_flags(model).values())
    assert model.unfreeze() is model and model.training
    assert grad_flags(model) == EXPECTED


def test_the_checkpoint_file_holds_every_tensor_and_loads_frozen(tmp_path: Path) -> None:
    model = lc.LitCNN(SPEC, TrainSpec(dtype="float64"))
    path = tmp_path / "model.ckpt"
    lc.save(model, path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert sorted(saved) == sorted(f"model.{t}" for t in model.model.tensor_names.values())
    loaded = lc.load(path)
    assert grad_flags(loaded) == EXPECTED
    assert list(lc.get_weights(loaded)) == list(weight_shapes(SPEC))
    for name, value in lc.get_weights(model).items():
        np.testing.assert_array_equal(lc.get_weights(loaded)[name], value, err_msg=name)


def test_a_run_leaves_the_frozen_tensors_and_checkpoints_every_tensor(
    mnist: Data, tmp_path: Path
) -> None:
    weights = init_weights(SPEC, TRAIN.seed)
    lc.train(SPEC, TRAIN, subset(mnist, 300, 100, 100), tmp_path, weights, progress=False,
             device="cpu")  # fmt: skip
    final = load_weights(tmp_path / WEIGHTS_FILE)[0]
    for name in FROZEN:
        np.testing.assert_array_equal(final[name], weights[name], err_msg=name)
    for name in trainable_shapes(SPEC):
        assert not np.array_equal(final[name], weights[name]), name
    checkpoint = torch.load(tmp_path / "checkpoints" / "epoch-0001.ckpt", weights_only=False)
    net = lc.build(SPEC).model
    assert {f"model.{k}" for k in net.state_dict()} <= set(checkpoint["state_dict"])
    (optimizer,) = checkpoint["optimizer_states"]
    assert len(optimizer["state"]) == len(trainable_shapes(SPEC))
