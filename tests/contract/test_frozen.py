"""Frozen layers (``trainable: false``) in every framework: a frozen layer's tensors get no
gradient and never change, the gradient still flows through it to the layers before, and a
frozen batchnorm in training either normalises with the batch's statistics and updates its
running ones (``frozen_batchnorm: batch``, PyTorch's behaviour) or runs as in evaluation
(``inference``, Keras's). ``loss_and_grads`` and three ``train_steps`` (Adam, l2 weight decay
on every weight) equal the float64 reference (``tests/reference.py``).

Adam runs with a large epsilon, as in ``test_schedule.py``, so a framework that computes
float64 partly in float32 is compared at every weight.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.spec import TrainSpec, trainable_shapes
from tests.contract.families import family_weights, frozen_spec, random_images
from tests.reference import reference_gradients, reference_train_steps

FROZEN = ("c1.kernel", "c1.bias", "bn1.gamma", "bn1.beta")


TRAIN = TrainSpec(
    optimizer="adam", epsilon=1e-2, learning_rate=1e-2, weight_decay=0.1, dtype="float64"
)


@pytest.mark.parametrize("frozen_batchnorm", ["batch", "inference"])
def test_frozen_layers_follow_the_reference(framework, info, frozen_batchnorm: str) -> None:
    spec = frozen_spec(frozen_batchnorm)
    weights = family_weights(spec, 5, "float64")
    batches = [
        (random_images(spec, 4, 20 + i, "float64"), np.array([0, 2, 1, i % 3])) for i in range(3)
    ]
    exact = info.float64_exact
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if exact else {"rtol": 1e-4, "atol": 1e-5}
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    before = framework.get_weights(model)  # as the framework holds them (keras-jax: float32)
    loss, grads = framework.loss_and_grads(model, *batches[0])
    expected_loss, expected_grads, _ = reference_gradients(spec, weights, *batches[0])
    assert sorted(grads) == sorted(expected_grads) == sorted(trainable_shapes(spec))
    assert loss == pytest.approx(expected_loss, rel=0, abs=1e-10 if exact else 1e-5)
    for name, value in expected_grads.items():
        np.testing.assert_allclose(grads[name], value, err_msg=name, **tolerance)
    losses = framework.train_steps(model, TRAIN, batches)
    expected_losses, expected = reference_train_steps(spec, TRAIN, weights, batches)
    np.testing.assert_allclose(losses, expected_losses, rtol=0, atol=1e-10 if exact else 1e-5)
    after = framework.get_weights(model)
    for name in FROZEN:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    for name, value in expected.items():
        np.testing.assert_allclose(after[name], value, err_msg=name, **tolerance)
    statistics_moved = not np.array_equal(after["bn1.moving_mean"], before["bn1.moving_mean"])
    assert statistics_moved == (frozen_batchnorm == "batch")
