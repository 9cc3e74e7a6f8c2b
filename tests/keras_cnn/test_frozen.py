"""Frozen layers (``trainable: false``) in keras_cnn beyond the contract suite
(tests/contract/test_frozen.py): the Keras layers are frozen Keras's way and their variables
leave ``model.trainable_variables``, the optimiser's decay names and the gradients but not the
weights; a short ``train`` leaves the frozen tensors as they were, and a frozen batchnorm's
running statistics move with ``frozen_batchnorm: batch`` only; the ``.keras`` file keeps a
model frozen (on the backend this process has: TensorFlow unless ``KERAS_BACKEND`` says)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cnn_common.data import Data, subset
from cnn_common.results import WEIGHTS_FILE
from cnn_common.spec import LayerSpec, ModelSpec, TrainSpec, trainable_shapes, weight_shapes
from cnn_common.weights import init_weights, load_weights

# keras is imported by fixtures, not at collection: conftest points KERAS_HOME at a temporary
# folder first (importing keras writes keras.json there).
FROZEN = ("c1.kernel", "c1.bias", "bn1.gamma", "bn1.beta", "d1.kernel", "d1.bias")


def frozen_spec(frozen_batchnorm: str = "batch", input_shape: tuple = (28, 28, 1)) -> ModelSpec:
    """A frozen conv, batchnorm and dense among trained ones."""
    return ModelSpec(
        input_shape=input_shape,
        layers=(
            LayerSpec("conv", name="c1", filters=4, kernel_size=3, stride=2, trainable=False),
            LayerSpec("batchnorm", name="bn1", trainable=False, frozen_batchnorm=frozen_batchnorm),
            LayerSpec("activation", name="relu1", activation="relu"),
            LayerSpec("conv", name="c2", filters=6, kernel_size=3, stride=2),
            LayerSpec("batchnorm", name="bn2", momentum=0.5),
            LayerSpec("global_avgpool", name="pool"),
            LayerSpec("dense", name="d1", units=8, activation="relu", trainable=False),
        ),
    )


RESIDUAL = ModelSpec(
    input_shape=(8, 8, 2),
    num_classes=3,
    layers=(
        LayerSpec("conv", name="stem", filters=4, kernel_size=3, padding="same"),
        LayerSpec("residual", name="block", filters=6, stride=2, trainable=False),
        LayerSpec("global_avgpool", name="pool"),
    ),
)


def images(spec: ModelSpec, n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape), dtype=np.float32)


def test_frozen_layers_are_frozen_keras_layers(km: ModuleType, kn: ModuleType) -> None:
    """Every layer of a frozen residual block (its convs, batchnorms, projection) is a Keras
    layer with trainable False whose variables are none of the model's trainable ones; the
    gradients (loss_and_grads, layer_trace) are exactly trainable_shapes', the weights still
    every tensor."""
    model = km.build(RESIDUAL)
    frozen = {name.partition(".")[0] for name in weight_shapes(RESIDUAL)} - {
        name.partition(".")[0] for name in trainable_shapes(RESIDUAL)
    }
    assert frozen == {
        "block_conv1", "block_bn1", "block_conv2", "block_bn2", "block_proj", "block_projbn",
    }  # fmt: skip
    trained_ids = {id(v) for v in model.trainable_variables}
    for layer, _ in kn.graph(model):
        assert layer.trainable == (layer.name not in frozen), layer.name
        if layer.name in frozen:
            assert layer.weights and not any(id(v) in trained_ids for v in layer.weights)
    assert [name for name, _ in kn.trainable(model)] == list(trainable_shapes(RESIDUAL))
    assert len(model.trainable_variables) == len(trainable_shapes(RESIDUAL))
    assert list(km.get_weights(model)) == list(weight_shapes(RESIDUAL))
    x, y = images(RESIDUAL), np.array([0, 1, 2, 1])
    _, grads = km.loss_and_grads(model, x, y)
    assert list(grads) == list(trainable_shapes(RESIDUAL))
    trace = km.layer_trace(model, x, y)
    assert sorted(k[5:] for k in trace if k.startswith("grad/")) == sorted(grads)


@pytest.mark.parametrize("on", ["all", "kernels"])
def test_weight_decay_names_leave_frozen_layers_out(km: ModuleType, ko: ModuleType, on) -> None:
    """The optimiser decays only trained tensors, and builds on the model's trainable
    variables without finding a decay name it lacks."""
    spec = frozen_spec(input_shape=(8, 8, 1))
    train = TrainSpec(weight_decay=0.1, weight_decay_on=on, weight_decay_convention="decoupled")
    model = km.build(spec)
    optimizer = ko.make_optimizer(train, model=model)
    trained = set(trainable_shapes(spec))
    expected = trained if on == "all" else {n for n in trained if n.endswith(".kernel")}
    assert optimizer.decayed == expected
    optimizer.build(model.trainable_variables)  # SpecDecay.build checks every name is found


@pytest.fixture(scope="module")
def small(mnist: Data) -> Data:
    return subset(mnist, 256, 64, 64)


@pytest.mark.parametrize("frozen_batchnorm", ["batch", "inference"])
def test_train_leaves_frozen_tensors_and_follows_frozen_batchnorm(
    small: Data, tmp_path: Path, kt: ModuleType, frozen_batchnorm: str
) -> None:
    """One epoch of ``fit`` (Adam with decoupled weight decay on every trained tensor): the
    frozen kernels, biases, gamma and beta are bit-identical, every trained tensor moves, and
    the frozen batchnorm's running statistics move only when it normalises with the batch's."""
    spec = frozen_spec(frozen_batchnorm)
    train_spec = TrainSpec(epochs=1, batch_size=64, learning_rate=1e-2, weight_decay=0.1)
    start = init_weights(spec, seed=0)
    kt.train(spec, train_spec, small, tmp_path, start, progress=False)
    after, _, _ = load_weights(tmp_path / WEIGHTS_FILE)
    for name in FROZEN:
        np.testing.assert_array_equal(after[name], start[name], err_msg=name)
    for name in set(trainable_shapes(spec)) | {"bn2.moving_mean", "bn2.moving_variance"}:
        assert not np.array_equal(after[name], start[name]), name
    for name in ("bn1.moving_mean", "bn1.moving_variance"):
        moved = not np.array_equal(after[name], start[name])
        assert moved == (frozen_batchnorm == "batch"), name


def test_a_frozen_model_saves_and_loads_frozen(
    tmp_path: Path, km: ModuleType, kn: ModuleType
) -> None:
    """The ``.keras`` file keeps which layers are frozen and the frozen batchnorm's mode; the
    loaded model, compiled with kernel-only weight decay, trains on without moving them."""
    spec = frozen_spec("inference", input_shape=(8, 8, 1))
    train = TrainSpec(weight_decay=0.1, weight_decay_on="kernels")
    model = km.build(spec, seed=2)
    x, y = images(spec, 6), np.arange(6) % 10
    km.train_steps(model, train, [(x, y)])
    path = tmp_path / "frozen.keras"
    km.save(model, path)
    loaded = km.load(path)
    frozen = {name.partition(".")[0] for name in FROZEN}
    for layer, _ in kn.graph(loaded):
        assert layer.trainable == (layer.name not in frozen), layer.name
    assert loaded.get_layer("bn1").frozen_batchnorm == "inference"
    assert [name for name, _ in kn.trainable(loaded)] == list(trainable_shapes(spec))
    before = km.get_weights(loaded)
    for name, value in km.get_weights(model).items():
        np.testing.assert_array_equal(before[name], value, err_msg=name)
    np.testing.assert_array_equal(km.predict_logits(loaded, x), km.predict_logits(model, x))
    loaded.train_on_batch(x, y)  # the loaded optimiser, its decay names checked at build
    assert int(loaded.optimizer.iterations) == 2
    after = km.get_weights(loaded)
    for name in (*FROZEN, "bn1.moving_mean", "bn1.moving_variance"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(after["c2.kernel"], before["c2.kernel"])
