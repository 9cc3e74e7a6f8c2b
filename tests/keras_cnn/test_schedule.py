"""keras_cnn's weight decay and learning-rate schedule (``cnn_common.schedule``) against Keras's
own: ``learning_rate`` against Keras's schedules where they mean the same thing, the decoupled
convention against Keras's ``weight_decay`` argument and l2 by one step each, the decay's
reach, a resumed run continuing the schedule, and the schedule in a ``.keras`` file
(TensorFlow backend; ``tests/contract/test_schedule.py`` runs ``train_steps`` on every backend
against the float64 reference).

Keras's ``CosineDecay`` warms up linearly from ``initial_learning_rate`` to
``warmup_target`` over ``warmup_steps`` (``initial + (target - initial) * t / warmup_steps``);
its usual use starts from 0, so its first update would not move. The spec's warm-up,
``lr * (t + 1) / (W + 1)``, never 0, is Keras's with ``initial_learning_rate = lr / (W + 1)``,
``warmup_target = lr`` and ``warmup_steps = W``, then its cosine over ``decay_steps = T - W``.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cnn_common.data import Data, subset
from cnn_common.events import Event, Step
from cnn_common.results import WEIGHTS_FILE
from cnn_common.schedule import learning_rate
from cnn_common.spec import DenseLayer, ModelSpec, TrainSpec
from cnn_common.weights import init_weights, load_weights

LR = 0.1
SMALL = ModelSpec(dense=({"units": 32},))  # the seed model with a smaller dense layer
TINY = ModelSpec(input_shape=(5, 5, 2), conv=(), dense=(DenseLayer(units=6, activation="tanh"),))


# keras is imported by fixtures, not at collection: conftest points KERAS_HOME at a temporary
# folder first (importing keras writes keras.json there).
def keras_rates(keras: ModuleType, schedule, steps) -> np.ndarray:  # noqa: ANN001 - a Keras schedule
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def spec_rates(train: TrainSpec, per_epoch: int) -> np.ndarray:
    return np.array([learning_rate(train, s, per_epoch) for s in range(train.epochs * per_epoch)])


# ----------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_cosine_is_kerass_cosine_decay(interval: str, keras: ModuleType) -> None:
    train = TrainSpec(learning_rate=LR, lr_schedule="cosine", lr_interval=interval, epochs=4)
    per_epoch = 3
    t = np.arange(4 * per_epoch) // (per_epoch if interval == "epoch" else 1)
    total = 4 if interval == "epoch" else 4 * per_epoch  # T
    cosine = keras.optimizers.schedules.CosineDecay(LR, decay_steps=total)
    got = keras_rates(keras, cosine, t)  # in float32: its rounding, not another formula
    np.testing.assert_allclose(spec_rates(train, per_epoch), got, rtol=1e-6, atol=1e-8)


def test_warm_up_is_kerass_warmup_target_from_lr_over_w_plus_1(keras: ModuleType) -> None:
    warmup, per_epoch, epochs = 3, 4, 2
    train = TrainSpec(
        learning_rate=LR, lr_schedule="cosine", lr_interval="step", lr_warmup=warmup, epochs=2
    )
    total = epochs * per_epoch
    cosine = keras.optimizers.schedules.CosineDecay(
        LR / (warmup + 1), total - warmup, warmup_target=LR, warmup_steps=warmup
    )
    ours = spec_rates(train, per_epoch)
    np.testing.assert_allclose(ours, keras_rates(keras, cosine, range(total)), rtol=1e-6)
    # Keras's usual warm-up from 0 starts where the spec's does not
    from_zero = keras.optimizers.schedules.CosineDecay(
        0.0, total - warmup, warmup_target=LR, warmup_steps=warmup
    )
    assert keras_rates(keras, from_zero, [0])[0] == 0 and ours[0] == LR / (warmup + 1)


@pytest.mark.parametrize(("interval", "warmup"), [("step", 0), ("epoch", 0), ("step", 2)])
def test_step_is_kerass_staircase_exponential_decay(
    interval: str, warmup: int, keras: ModuleType
) -> None:
    train = TrainSpec(
        learning_rate=LR,
        lr_schedule="step",
        lr_step_size=2,
        lr_gamma=0.5,
        lr_interval=interval,
        lr_warmup=warmup,
        epochs=5,
    )
    per_epoch = 3
    staircase = keras.optimizers.schedules.ExponentialDecay(
        LR, decay_steps=2, decay_rate=0.5, staircase=True
    )
    t = np.arange(5 * per_epoch) // (per_epoch if interval == "epoch" else 1)
    ours = spec_rates(train, per_epoch)
    after = t >= warmup  # Keras's schedule counts from the warm-up's end
    got = keras_rates(keras, staircase, t[after] - warmup)
    np.testing.assert_allclose(ours[after], got, rtol=1e-6)  # Keras's float32
    np.testing.assert_allclose(ours[~after], LR * (t[~after] + 1) / (warmup + 1))


def test_spec_schedule_serves_learning_rate_exactly(ko: ModuleType, keras: ModuleType) -> None:
    """The optimiser's schedule is ``learning_rate`` itself, float64 in a float64 run (no
    rounding through float32), the last rate past the table; its config rebuilds it."""
    train = TrainSpec(learning_rate=LR, lr_schedule="cosine", lr_interval="step", lr_warmup=2)
    schedule = ko.SpecSchedule(train, 7, dtype="float64")
    expected = spec_rates(train, 7)
    got = keras_rates(keras, schedule, range(len(expected) + 2))
    np.testing.assert_array_equal(got, [*expected, expected[-1], expected[-1]])
    again = ko.SpecSchedule.from_config(schedule.get_config())
    np.testing.assert_array_equal(again.table, schedule.table)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ko.make_optimizer(train)


# ----------------------------------------------------------------------------- weight decay


def one_step(keras: ModuleType, kn: ModuleType, optimizer, w0: np.ndarray, *grads) -> np.ndarray:  # noqa: ANN001
    """``w0`` after one update per gradient, float64."""
    with kn.floatx("float64"):
        variable = keras.Variable(w0, dtype="float64")
        for g in grads:
            optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    return kn.to_numpy(variable)


def arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 3))


def test_decoupled_is_kerass_weight_decay(
    keras: ModuleType, kn: ModuleType, ko: ModuleType
) -> None:
    """One step of each: ``w - lr * wd * w`` and then the optimiser's own step, in the
    project's classes and in Keras's with its ``weight_decay`` argument."""
    w0, g = arrays()
    wd = 0.5  # exact in float32: Keras casts it through float32
    sgd = TrainSpec(
        optimizer="sgd",
        momentum=0.0,
        learning_rate=LR,
        weight_decay=wd,
        weight_decay_convention="decoupled",
    )
    formula = w0 - LR * wd * w0 - LR * g
    with kn.floatx("float64"):  # Keras's learning-rate variable in float64
        theirs = keras.optimizers.SGD(learning_rate=LR, weight_decay=wd)
        ours = ko.make_optimizer(sgd)
    np.testing.assert_allclose(one_step(keras, kn, theirs, w0, g), formula, rtol=1e-12)
    np.testing.assert_allclose(one_step(keras, kn, ours, w0, g), formula, rtol=1e-12)
    # Adam (Keras's epsilon): the decay is applied before the step, which it does not change
    adam = TrainSpec(
        learning_rate=LR, epsilon=1e-3, epsilon_convention="keras", weight_decay=wd,
        weight_decay_convention="decoupled",
    )  # fmt: skip
    b1, b2, eps = adam.beta_1, adam.beta_2, adam.epsilon
    adam_step = (
        LR * math.sqrt(1 - b2) / (1 - b1) * (1 - b1) * g / (math.sqrt(1 - b2) * abs(g) + eps)
    )
    formula = w0 - LR * wd * w0 - adam_step
    with kn.floatx("float64"):
        native = ko.make_optimizer(adam, native=True)
        ours = ko.make_optimizer(adam)
    assert type(native) is keras.optimizers.Adam and native.weight_decay == wd
    np.testing.assert_allclose(one_step(keras, kn, ours, w0, g), formula, rtol=1e-12)
    # Keras's own class rounds its betas through float32 (keras_cnn.optim.KerasAdam): a
    # relative 6.7e-6 of the step
    np.testing.assert_allclose(one_step(keras, kn, native, w0, g), formula, atol=1e-5 * LR)


def test_decoupled_decay_takes_the_scheduled_rate(
    keras: ModuleType, kn: ModuleType, ko: ModuleType
) -> None:
    w0, g = arrays(1)
    train = TrainSpec(
        optimizer="sgd", momentum=0.0, learning_rate=LR, weight_decay=0.3,
        weight_decay_convention="decoupled", lr_schedule="step", lr_gamma=0.5,
        lr_interval="step", epochs=1,
    )  # fmt: skip
    with kn.floatx("float64"):
        optimizer = ko.make_optimizer(train, steps_per_epoch=2)
    w = w0
    for s in range(2):
        lr = learning_rate(train, s, 2)
        w = w - lr * 0.3 * w - lr * g
    np.testing.assert_allclose(one_step(keras, kn, optimizer, w0, g, g), w, rtol=1e-12)


def test_l2_adds_wd_w_to_the_gradient(keras: ModuleType, kn: ModuleType, ko: ModuleType) -> None:
    """SGD: ``w - lr * (g + wd * w)``; Adam's first step normalises ``g + wd * w`` (torch's
    epsilon in the project's class, Keras's in Keras's own class with the term added)."""
    w0, g = arrays(2)
    wd = 0.2
    l2 = {"weight_decay": wd, "weight_decay_convention": "l2"}
    sgd = TrainSpec(optimizer="sgd", momentum=0.0, learning_rate=LR, **l2)
    with kn.floatx("float64"):
        optimizer = ko.make_optimizer(sgd)
    stepped = one_step(keras, kn, optimizer, w0, g)
    np.testing.assert_allclose(stepped, w0 - LR * (g + wd * w0), rtol=1e-12)
    g2 = g + wd * w0
    torch_adam = TrainSpec(learning_rate=LR, epsilon=1e-3, **l2)
    with kn.floatx("float64"):
        optimizer = ko.make_optimizer(torch_adam)
    stepped = one_step(keras, kn, optimizer, w0, g)
    np.testing.assert_allclose(stepped, w0 - LR * g2 / (abs(g2) + 1e-3), rtol=1e-12)
    keras_adam = TrainSpec(learning_rate=LR, epsilon=1e-3, epsilon_convention="keras", **l2)
    with kn.floatx("float64"):
        native = ko.make_optimizer(keras_adam, native=True)
    assert type(native) is ko.NativeAdam
    b2 = keras_adam.beta_2
    expected = w0 - LR * g2 / (abs(g2) + 1e-3 / math.sqrt(1 - b2))
    np.testing.assert_allclose(one_step(keras, kn, native, w0, g), expected, atol=1e-5 * LR)


@pytest.mark.parametrize("convention", ["l2", "decoupled"])
@pytest.mark.parametrize("native", [False, True])
def test_decay_reaches_the_kernels_only_when_told(
    convention: str,
    native: bool,
    keras: ModuleType,
    km: ModuleType,
    kn: ModuleType,
    ko: ModuleType,
) -> None:
    """With a zero gradient and plain SGD or Adam's first step, only the decay moves a
    weight: the kernels shrink, the biases stay."""
    train = TrainSpec(
        learning_rate=LR, epsilon_convention="keras", weight_decay=0.5,
        weight_decay_convention=convention, weight_decay_on="kernels", dtype="float64",
    )  # fmt: skip
    model = km.build(TINY, "float64")
    before = km.get_weights(model)
    with kn.floatx("float64"):
        optimizer = ko.make_optimizer(train, native, model=model)
        named = kn.trainable(model)
        zeros = [keras.ops.zeros(v.shape, "float64") for _, v in named]
        optimizer.apply_gradients(list(zip(zeros, [v for _, v in named], strict=True)))
    after = km.get_weights(model)
    for name, value in before.items():
        if name.endswith(".kernel"):
            assert np.abs(after[name] - value).max() > 1e-3, name
        else:
            np.testing.assert_array_equal(after[name], value, err_msg=name)
    if convention == "decoupled":  # w * (1 - lr * wd), whichever class
        for name in ("dense1.kernel", "logits.kernel"):
            np.testing.assert_allclose(after[name], before[name] * (1 - LR * 0.5), rtol=1e-12)


def test_kernels_only_needs_the_model(ko: ModuleType) -> None:
    train = TrainSpec(weight_decay=0.1, weight_decay_on="kernels")
    with pytest.raises(ValueError, match="needs the model"):
        ko.make_optimizer(train)


# ----------------------------------------------------------------------------- runs and files

SCHEDULED = TrainSpec(
    epochs=2,
    batch_size=64,
    lr_schedule="cosine",
    lr_interval="step",
    lr_warmup=1,
    weight_decay=0.05,
    weight_decay_convention="decoupled",
    weight_decay_on="kernels",
)


class Interrupted(Exception):
    """Raised from the event stream to cut a run short."""


def stop_at(epoch: int, step: int):  # noqa: ANN201 - an event handler
    def on_event(event: Event) -> None:
        if isinstance(event, Step) and (event.epoch, event.step) == (epoch, step):
            raise Interrupted

    return on_event


def test_a_resumed_run_continues_the_schedule_exactly(
    mnist: Data, tmp_path: Path, kt: ModuleType
) -> None:
    """Cut after checkpoint 1 (at the first step of epoch 2) and resumed, a run with a cosine
    schedule per step and decoupled decay ends as the uninterrupted run does."""
    data = subset(mnist, 256, 64, 64)  # 4 steps an epoch
    weights = init_weights(SMALL, 0)
    whole = kt.train(SMALL, SCHEDULED, data, tmp_path / "whole", weights, progress=False)
    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        kt.train(SMALL, SCHEDULED, data, cut, weights, on_event=stop_at(2, 1), progress=False)
    resumed = kt.train(SMALL, SCHEDULED, data, cut, weights, resume=True, progress=False)
    assert resumed.extra["resumed_from_epoch"] == 1
    assert resumed.step_losses == whole.step_losses
    assert (resumed.test_loss, resumed.predictions) == (whole.test_loss, whole.predictions)
    assert resumed.train_spec["lr_schedule"] == "cosine"  # the record keeps the whole spec
    wa, wb = load_weights(tmp_path / "whole" / WEIGHTS_FILE)[0], load_weights(cut / WEIGHTS_FILE)[0]
    for name, value in wa.items():
        np.testing.assert_array_equal(wb[name], value, err_msg=name)


def test_a_compiled_model_with_the_schedule_saves_and_loads(
    tmp_path: Path, km: ModuleType, kn: ModuleType, ko: ModuleType
) -> None:
    """The ``.keras`` file keeps the schedule, the decay's reach and the update count: the
    loaded model's next update is the original's. (In float32: a float64 model's loss loads
    back in float32, Keras's loss config having no dtype, whatever the optimiser.)"""
    model = km.build(TINY, seed=2)
    rng = np.random.default_rng(3)
    x, y = rng.random((6, *TINY.input_shape), np.float32), np.arange(6) % TINY.num_classes
    with kn.floatx("float32"):
        ko.compile_model(model, SCHEDULED, steps_per_epoch=3)
        for _ in range(2):
            model.train_on_batch(x, y)
    path = tmp_path / "cnn.keras"
    km.save(model, path)
    loaded = km.load(path)
    assert type(loaded.optimizer) is ko.TorchAdam
    # Keras keeps the schedule object in _learning_rate (learning_rate is its current value)
    assert isinstance(loaded.optimizer._learning_rate, ko.SpecSchedule)
    np.testing.assert_array_equal(
        loaded.optimizer._learning_rate.table, model.optimizer._learning_rate.table
    )
    assert loaded.optimizer.decayed == {"dense1.kernel", "logits.kernel"}
    assert int(loaded.optimizer.iterations) == 2
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    after, again = km.get_weights(model), km.get_weights(loaded)
    for name, value in after.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
