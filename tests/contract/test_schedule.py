"""Weight decay and the learning-rate schedule in every framework (``cnn_common.schedule``):
``train_steps`` over four batches (one epoch, or the first four updates of an epoch of six)
from the same float64 weights equals the
float64 reference (``reference_train_steps``) in its losses, every trained weight and the
running statistics, for each optimiser, epsilon convention, decay convention and reach, and
schedule.

Adam runs with a large epsilon here: its step ``lr * g / (|g| + eps)`` then changes smoothly
with ``g``, so a framework that computes float64 partly in float32 (``float64_exact=False``,
held to float32 tolerances) is compared at every weight, where an epsilon of 1e-8 would turn
its step from ``-lr`` to ``lr`` on a float32 rounding of a gradient near 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.spec import LayerSpec, ModelSpec, TrainSpec
from tests.contract.families import family_weights, random_images
from tests.reference import reference_train_steps

SPEC = ModelSpec(
    input_shape=(6, 6, 2),
    num_classes=3,
    layers=(
        LayerSpec("conv", name="c1", filters=4, kernel_size=3, padding="same"),
        LayerSpec("batchnorm", name="bn1"),
        LayerSpec("activation", name="relu1", activation="relu"),
        LayerSpec("conv", name="c2", filters=4, kernel_size=3, stride=2, bias=False),
        LayerSpec("global_avgpool", name="pool"),
    ),
)
ADAM = {"optimizer": "adam", "epsilon": 1e-2, "learning_rate": 1e-2, "dtype": "float64"}
SGD = {"optimizer": "sgd", "momentum": 0.9, "learning_rate": 5e-2, "dtype": "float64"}
CASES = {
    "adam l2 on all, step decay per step after a warm-up step": TrainSpec(
        **ADAM,
        weight_decay=0.1,
        lr_schedule="step",
        lr_gamma=0.5,
        lr_interval="step",
        lr_warmup=1,
    ),
    "adam (keras epsilon) decoupled on kernels, cosine per step, epochs of 6": TrainSpec(
        **ADAM,
        epsilon_convention="keras",
        weight_decay=0.5,
        weight_decay_convention="decoupled",
        weight_decay_on="kernels",
        lr_schedule="cosine",
        lr_interval="step",
        epochs=2,
    ),
    "sgd l2 on kernels, cosine per epoch in its warm-up": TrainSpec(
        **SGD,
        weight_decay=0.2,
        weight_decay_on="kernels",
        lr_schedule="cosine",
        lr_warmup=1,
        epochs=3,
    ),
    "sgd decoupled on all, step decay every two steps": TrainSpec(
        **SGD,
        weight_decay=0.3,
        weight_decay_convention="decoupled",
        lr_schedule="step",
        lr_step_size=2,
        lr_gamma=0.3,
        lr_interval="step",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_decay_and_schedule_follow_the_reference(framework, info, case: str) -> None:
    train = CASES[case]
    weights = family_weights(SPEC, 3, "float64")
    batches = [
        (random_images(SPEC, 4, 10 + i, "float64"), np.array([0, 2, 1, i % 3])) for i in range(4)
    ]
    model = framework.build(SPEC, "float64")
    framework.set_weights(model, weights)
    per_epoch = 6 if "epochs of 6" in case else None
    losses = framework.train_steps(model, train, batches, per_epoch)
    expected_losses, expected = reference_train_steps(SPEC, train, weights, batches, per_epoch)
    exact = info.float64_exact
    np.testing.assert_allclose(losses, expected_losses, rtol=0, atol=1e-10 if exact else 1e-5)
    after = framework.get_weights(model)
    assert sorted(after) == sorted(expected)
    for name, value in expected.items():
        tolerance = {"rtol": 1e-9, "atol": 1e-12} if exact else {"rtol": 1e-4, "atol": 1e-5}
        np.testing.assert_allclose(after[name], value, err_msg=f"{case}: {name}", **tolerance)


def test_the_cases_decay_and_schedule_for_real() -> None:
    """Each case moves the weights away from the same run without decay and with a constant
    learning rate, so matching the reference checks both."""
    weights = family_weights(SPEC, 3, "float64")
    batches = [
        (random_images(SPEC, 4, 10 + i, "float64"), np.array([0, 2, 1, 0])) for i in range(4)
    ]
    for case, train in CASES.items():
        plain = TrainSpec(**{**train.__dict__, "weight_decay": 0.0})
        constant = TrainSpec(**{**train.__dict__, "lr_schedule": "constant", "lr_warmup": 0})
        _, decayed = reference_train_steps(SPEC, train, weights, batches)
        for other in (plain, constant):
            _, moved = reference_train_steps(SPEC, other, weights, batches)
            gap = max(np.abs(decayed[n] - moved[n]).max() for n in moved)
            assert gap > 1e-4, case
