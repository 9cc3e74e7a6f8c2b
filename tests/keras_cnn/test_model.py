"""keras_cnn's model, network and optimisers beyond the contract suite (tests/contract): Keras
layers for specs the suite does not build, the canonical layout without transposes, feature
maps, float64 under floatx, the optimisers' update rules (TorchAdam/TorchSGD against Keras's
own), train_steps as gradient descent, and the .keras file (TensorFlow backend)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import numpy_cnn
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, layers, param_count
from cnn_common.weights import init_weights
from tests.reference import reference_logits

# keras is imported by fixtures, not at collection: conftest points KERAS_HOME at a temporary
# folder first (importing keras writes keras.json there).
# Specs the contract suite does not build (it builds the seed model and three 3x3 blocks).
SPECS = {
    "same-stride2-even-kernel": ModelSpec(
        input_shape=(13, 12, 2),
        conv=(
            ConvBlock(filters=4, kernel_size=4, stride=2, padding="same", pool_size=0),
            ConvBlock(filters=3, kernel_size=3, padding="same", activation="tanh", pool_size=2),
        ),
        dense=(DenseLayer(units=7, activation="sigmoid"),),
        num_classes=5,
    ),
    "strided-pool-deep-dense": ModelSpec(
        input_shape=(16, 16, 3),
        conv=(ConvBlock(filters=5, kernel_size=3, stride=2, pool_size=3, pool_stride=2),),
        dense=(DenseLayer(units=9, dropout=0.5), DenseLayer(units=6, activation="linear")),
        num_classes=4,
    ),
    "dense-only": ModelSpec(
        input_shape=(5, 5, 2), conv=(), dense=(DenseLayer(units=6, activation="tanh"),)
    ),
    "no-conv-pooling": ModelSpec(
        input_shape=(9, 9, 1),
        conv=(ConvBlock(filters=2, kernel_size=2, padding="same", pool_size=0),),
        dense=(),
        num_classes=3,
    ),
}


def images(spec: ModelSpec, n: int = 6, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape), dtype=np.float32)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_build_follows_the_spec(name: str, km: ModuleType) -> None:
    spec = SPECS[name]
    model = km.build(spec)
    expected = layers(spec)
    assert [layer.name for layer in model.layers] == [layer.name for layer in expected]
    for built, layer in zip(model.layers, expected, strict=True):
        assert tuple(built.output.shape[1:]) == layer.output_shape
    assert model.count_params() == param_count(spec)
    assert tuple(model.layers[-1].output.shape) == (None, spec.num_classes)


def test_seed_model_matches_the_design(km: ModuleType) -> None:
    model = km.build(ModelSpec())
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    assert model.count_params() == 46_730
    assert model.layers[-1].activation.__name__ == "linear"  # logits, no softmax


@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_matches_the_reference_in_the_canonical_layout(name: str, km: ModuleType) -> None:
    """Same canonical weights -> the float64 reference's logits (tests/reference.py) and
    numpy_cnn's feature maps: this pins the kernel layout, the flatten order and TensorFlow's
    'same' placement at once, for specs the contract suite does not build."""
    spec = SPECS[name]
    weights = init_weights(spec, seed=3)
    weights = {k: v + 0.05 for k, v in weights.items()}  # non-zero biases
    model = km.build(spec)
    km.set_weights(model, weights)
    x = images(spec)
    expected_logits = reference_logits(spec, weights, x)
    np.testing.assert_allclose(km.predict_logits(model, x), expected_logits, rtol=1e-5, atol=1e-5)
    reference = numpy_cnn.build(spec)
    numpy_cnn.set_weights(reference, weights)
    expected_maps = numpy_cnn.feature_maps(reference, x)
    maps = km.feature_maps(model, x)
    assert list(maps) == list(expected_maps)
    for key, value in maps.items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, expected_maps[key], rtol=1e-5, atol=1e-5)


def test_weights_round_trip_without_transposes(km: ModuleType) -> None:
    spec = SPECS["same-stride2-even-kernel"]
    weights = init_weights(spec, seed=5)
    model = km.build(spec)
    km.set_weights(model, weights)
    got = km.get_weights(model)
    assert list(got) == list(weights)
    for key in weights:
        assert got[key].shape == weights[key].shape
        np.testing.assert_array_equal(got[key], weights[key])
    # Keras's own variables hold the very same arrays: its layout is the canonical one.
    np.testing.assert_array_equal(
        model.get_layer("conv1").get_weights()[0], weights["conv1.kernel"]
    )


def test_a_float64_model_computes_in_float64_under_floatx(
    km: ModuleType, kn: ModuleType, keras: ModuleType
) -> None:
    """Keras casts inputs to floatx: predict_logits runs under the model's dtype, and leaves
    floatx as it found it."""
    spec = SPECS["strided-pool-deep-dense"]
    model = km.build(spec, "float64")
    assert kn.model_dtype(model) == "float64"
    assert all(w.dtype == np.float64 for w in km.get_weights(model).values())
    before = keras.config.floatx()
    x = images(spec).astype(np.float64)
    logits = km.predict_logits(model, x)
    assert logits.dtype == np.float64
    assert keras.config.floatx() == before
    weights = km.get_weights(model)
    np.testing.assert_allclose(logits, reference_logits(spec, weights, x), rtol=0, atol=1e-10)
    with kn.floatx("float64"):
        assert keras.config.floatx() == "float64"
    assert keras.config.floatx() == before


def _adam_reference(w, grads, spec: TrainSpec, native: bool = False):
    """Adam in float64 NumPy, both epsilon conventions of ``TrainSpec``; ``native``: as
    ``keras.optimizers.Adam`` computes it, from float32-rounded betas."""
    lr = float(np.float32(spec.learning_rate))  # Keras keeps the learning rate in float32
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = spec.beta_1 * m + (1 - spec.beta_1) * g
        v = spec.beta_2 * v + (1 - spec.beta_2) * g * g
        if spec.epsilon_convention == "torch":
            m_hat, v_hat = m / (1 - spec.beta_1**t), v / (1 - spec.beta_2**t)
            w = w - lr * m_hat / (np.sqrt(v_hat) + spec.epsilon)
        else:  # keras.optimizers.Adam takes its powers of float32-rounded betas
            b1, b2 = spec.beta_1, spec.beta_2
            if native:
                b1, b2 = float(np.float32(b1)), float(np.float32(b2))
            alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            w = w - alpha * m / (np.sqrt(v) + spec.epsilon)
    return w


def _sgd_reference(w, grads, spec: TrainSpec):
    """PyTorch's SGD with momentum: v = mu*v + g; w -= lr*v."""
    lr = float(np.float32(spec.learning_rate))  # Keras keeps the learning rate in float32
    buf = np.zeros_like(w)
    for g in grads:
        buf = spec.momentum * buf + g
        w = w - lr * buf
    return w


KERAS_BIG_EPS = TrainSpec(epsilon=1e-3, learning_rate=0.05, epsilon_convention="keras")


@pytest.mark.parametrize(
    ("train_spec", "native"),
    [
        (TrainSpec(), False),  # torch convention, eps 1e-8
        (TrainSpec(epsilon=1e-3, learning_rate=0.05), False),  # large eps: conventions differ
        (KERAS_BIG_EPS, False),  # the spec's Keras convention: exact bias corrections
        (KERAS_BIG_EPS, True),  # keras.optimizers.Adam itself: float32-rounded betas
        (TrainSpec(optimizer="sgd", learning_rate=0.1, momentum=0.9), False),
        (TrainSpec(optimizer="sgd", learning_rate=0.1, momentum=0.0), False),
    ],
    ids=[
        "adam-torch",
        "adam-torch-big-eps",
        "adam-keras-big-eps",
        "adam-keras-native",
        "sgd-momentum",
        "sgd-plain",
    ],
)
def test_optimizers_follow_the_spec_formula(
    train_spec: TrainSpec, native: bool, ko: ModuleType, kn: ModuleType, keras: ModuleType
) -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) * 10.0**-k for k in range(6)]  # shrinking: eps matters
    variable = keras.Variable(w0, dtype="float64")
    optimizer = ko.make_optimizer(train_spec, native)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    if train_spec.optimizer == "adam":
        expected = _adam_reference(w0, grads, train_spec, native)
    else:
        expected = _sgd_reference(w0, grads, train_spec)
    np.testing.assert_allclose(kn.to_numpy(variable), expected, rtol=1e-12)


def test_epsilon_conventions_give_different_steps(ko: ModuleType, keras: ModuleType) -> None:
    """The point of implementing both: with a large eps the two rules differ measurably."""
    torch_spec = TrainSpec(epsilon=1e-3, learning_rate=0.05)
    keras_spec = TrainSpec(epsilon=1e-3, learning_rate=0.05, epsilon_convention="keras")
    w0, grads = np.ones(3), [np.full(3, 1e-3)]
    assert not np.allclose(
        _adam_reference(w0, grads, torch_spec), _adam_reference(w0, grads, keras_spec), rtol=1e-6
    )
    assert type(ko.make_optimizer(torch_spec)) is ko.TorchAdam
    assert type(ko.make_optimizer(keras_spec)) is ko.KerasAdam
    assert type(ko.make_optimizer(keras_spec, native=True)) is keras.optimizers.Adam
    sgd = TrainSpec(optimizer="sgd", learning_rate=0.1, momentum=0.5)
    assert type(ko.make_optimizer(sgd)) is ko.TorchSGD


def test_train_steps_is_gradient_descent_on_loss_and_grads(km: ModuleType) -> None:
    spec = SPECS["strided-pool-deep-dense"]
    model = km.build(spec, "float64", seed=1)
    x = images(spec, n=8).astype(np.float64)
    y = np.arange(8) % spec.num_classes
    before = km.get_weights(model)
    loss, grads = km.loss_and_grads(model, x, y)
    sgd = TrainSpec(optimizer="sgd", learning_rate=0.5, momentum=0.0)
    # dropout is active in a training step: switch it off to compare with loss_and_grads
    model.get_layer("dropout1").rate = 0.0
    losses = km.train_steps(model, sgd, [(x, y)])
    assert losses[0] == pytest.approx(loss, rel=1e-12)
    after = km.get_weights(model)
    for key in before:
        np.testing.assert_allclose(
            after[key], before[key] - 0.5 * grads[key], rtol=1e-10, atol=1e-14
        )
    more = km.train_steps(model, TrainSpec(learning_rate=1e-2), [(x, y)] * 5)
    assert len(more) == 5 and more[-1] < more[0]


def test_save_and_load_keep_the_optimizer_and_leave_no_temporary(
    tmp_path, km: ModuleType, ko: ModuleType
) -> None:
    spec = SPECS["strided-pool-deep-dense"]
    model = km.build(spec, seed=3)
    ko.compile_model(model, TrainSpec())
    x = images(spec)
    km.train_steps(model, TrainSpec(), [(x, np.arange(6) % 4)])
    path = tmp_path / "cnn.keras"
    km.save(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.keras"]  # no temporary left
    loaded = km.load(path)
    np.testing.assert_array_equal(km.predict_logits(loaded, x), km.predict_logits(model, x))
    assert type(loaded.optimizer).__name__ == "TorchAdam"
    assert int(loaded.optimizer.iterations) == 1
    with pytest.raises(ValueError, match="Received: path="):
        km.save(model, tmp_path / "cnn.h5")
