"""lightning_cnn.model beyond the contract suite (tests/contract): specs the suite does not
build against the float64 reference, feature maps, chunked evaluation, train_steps on a LitCNN
against the plain PyTorch loop, and the Lightning checkpoint file. (KerasAdam and
make_optimizer are pytorch_cnn.optim's: tests/pytorch_cnn/test_optim.py.)"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import lightning_cnn as lc  # noqa: E402
import numpy_cnn  # noqa: E402
import pytorch_cnn  # noqa: E402
from cnn_common.batches import epoch_batches  # noqa: E402
from cnn_common.data import Data  # noqa: E402
from cnn_common.results import WEIGHTS_FILE  # noqa: E402
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, layers  # noqa: E402
from cnn_common.weights import init_weights, load_weights  # noqa: E402
from tests.reference import reference_logits  # noqa: E402

# Specs the contract suite does not build (it builds the seed model and three 3x3 blocks).
SPECS = {
    # even kernel, stride 1, 'same': TensorFlow pads 1 before and 2 after (asymmetric)
    "same-even-kernel": ModelSpec(
        conv=(
            ConvBlock(filters=4, kernel_size=4, padding="same"),
            ConvBlock(filters=6, pool_size=0),
        ),
        dense=(DenseLayer(units=16),),
    ),
    # strides, 'same' with odd total padding, pooling with its own stride, two dense layers,
    # dropout, every activation, a non-square RGB input
    "strided-rgb": ModelSpec(
        input_shape=(13, 11, 3),
        conv=(
            ConvBlock(
                filters=5,
                kernel_size=4,
                stride=2,
                padding="same",
                activation="tanh",
                pool_size=2,
                pool_stride=1,
            ),
            ConvBlock(filters=7, kernel_size=3, activation="sigmoid", pool_size=0),
        ),
        dense=(
            DenseLayer(units=12, activation="sigmoid", dropout=0.5),
            DenseLayer(units=9, activation="linear"),
        ),
        num_classes=4,
    ),
    "no-conv": ModelSpec(
        input_shape=(6, 5, 2), conv=(), dense=(DenseLayer(units=8),), num_classes=3
    ),
}


def random_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Glorot kernels and non-zero biases, so a bias in the wrong place shows."""
    weights = init_weights(spec, seed, "float64")
    rng = np.random.default_rng(seed + 1)
    return {
        k: v + rng.normal(0, 0.1, v.shape) if k.endswith(".bias") else v for k, v in weights.items()
    }


def images(spec: ModelSpec, n: int, seed: int = 0, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape)).astype(dtype)


@pytest.mark.parametrize("name", SPECS)
def test_logits_match_the_float64_reference(name: str) -> None:
    spec = SPECS[name]
    weights = random_weights(spec, 3)
    model = lc.build(spec, "float64")
    assert isinstance(model, lc.LitCNN)
    lc.set_weights(model, weights)
    x = images(spec, 5, dtype="float64")
    expected = reference_logits(spec, weights, x)
    np.testing.assert_allclose(lc.predict_logits(model, x), expected, rtol=1e-10, atol=1e-12)


def test_feature_maps_are_the_nhwc_outputs_of_conv_and_pool_layers() -> None:
    """Read by forward hooks from the NCHW network, returned NHWC: equal to numpy_cnn's maps
    of the same weights (a strided 'same' conv with tanh, pooling with its own stride)."""
    spec = SPECS["strided-rgb"]
    weights = random_weights(spec, 2)
    model = lc.build(spec, "float64")
    lc.set_weights(model, weights)
    x = images(spec, 3, dtype="float64")
    maps = lc.feature_maps(model, x)
    assert list(maps) == ["conv1", "pool1", "conv2"]
    shapes = {layer.name: layer.output_shape for layer in layers(spec)}
    reference = numpy_cnn.build(spec, "float64")
    numpy_cnn.set_weights(reference, weights)
    expected = numpy_cnn.feature_maps(reference, x)
    for name, value in maps.items():
        assert value.dtype == np.float32
        assert value.shape == (3, *shapes[name])
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_evaluate_and_predict_agree_with_the_logits() -> None:
    spec = ModelSpec()
    model = lc.build(spec)
    x = images(spec, 2500)  # more than one evaluation batch
    y = np.random.default_rng(1).integers(0, 10, 2500)
    logits = lc.predict_logits(model, x).astype(np.float64)
    probabilities = lc.predict(model, x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    loss, accuracy, predictions = lc.evaluate(model, x, y)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    assert loss == pytest.approx(-log_softmax[np.arange(2500), y].mean(), rel=1e-5)
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(predictions, logits.argmax(1))
    assert accuracy == pytest.approx(np.mean(predictions == y))


def test_train_steps_on_a_litcnn_equal_the_plain_loop_on_the_same_batches(tmp_path) -> None:
    """``train_steps`` on a LitCNN (no Trainer) takes the plain PyTorch loop's steps:
    ``pytorch_cnn.train`` over the shared batches of one epoch, bit for bit."""
    spec, train_spec = ModelSpec(), TrainSpec(batch_size=16, epochs=1)
    x = images(spec, 48)
    y = np.random.default_rng(2).integers(0, 10, 48)
    data = Data("random", x, y, x[:8], y[:8], x[:8], y[:8], tuple(str(k) for k in range(10)))
    weights = init_weights(spec)
    run = pytorch_cnn.train(
        spec, train_spec, data, tmp_path, init_weights=weights, progress=False, device="cpu"
    )
    batches = [(x[idx], y[idx]) for idx in epoch_batches(48, 16, train_spec.seed, 0)]
    model = lc.build(spec)
    lc.set_weights(model, weights)
    assert lc.train_steps(model, train_spec, batches) == run.step_losses
    trained = load_weights(tmp_path / WEIGHTS_FILE)[0]
    for key, value in lc.get_weights(model).items():
        np.testing.assert_array_equal(value, trained[key], err_msg=key)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_and_load_round_trip_through_a_lightning_checkpoint(tmp_path, dtype: str) -> None:
    spec = SPECS["strided-rgb"]
    model = lc.build(spec, dtype)
    path = tmp_path / "model.ckpt"
    lc.save(model, path)
    loaded = lc.load(path)
    assert isinstance(loaded, lc.LitCNN)
    assert loaded.model_spec == spec
    assert next(loaded.parameters()).dtype == getattr(torch, dtype)
    x = images(spec, 4)
    np.testing.assert_array_equal(lc.predict_logits(loaded, x), lc.predict_logits(model, x))
    # the file is an ordinary Lightning checkpoint, readable with weights_only loading
    same = lc.LitCNN.load_from_checkpoint(path, weights_only=True)
    np.testing.assert_array_equal(lc.predict_logits(same, x), lc.predict_logits(model, x))
    # a bare CNN saves too
    lc.save(model.model, tmp_path / "bare.ckpt")
    np.testing.assert_array_equal(
        lc.predict_logits(lc.load(tmp_path / "bare.ckpt"), x), lc.predict_logits(model, x)
    )


def test_load_of_a_missing_file_is_a_user_error(tmp_path) -> None:
    from cnn_common.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        lc.load(tmp_path / "nothing.ckpt")
