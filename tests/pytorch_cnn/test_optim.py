"""pytorch_cnn.optim: KerasAdam follows Keras's update rule, and make_optimizer reads every
setting of the spec (the one optimiser factory of the plain loop, train_steps and LitCNN)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cnn_common.spec import TrainSpec  # noqa: E402
from pytorch_cnn.optim import KerasAdam, make_optimizer  # noqa: E402


def keras_adam_numpy(w, grads, lr, b1, b2, eps):  # noqa: ANN001, ANN201 - test helper
    """Keras's Adam in float64 NumPy: eps added to sqrt(v) before the bias correction."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("eps", [1e-7, 1e-1])
def test_keras_adam_follows_the_keras_update_rule(eps: float) -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) * 10.0**-k for k in range(4)]  # shrinking: eps matters
    param = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    spec = TrainSpec(learning_rate=0.01, epsilon=eps, epsilon_convention="keras")
    optimizer = make_optimizer([("d.kernel", param)], spec)
    assert isinstance(optimizer, KerasAdam)
    for g in grads:
        param.grad = torch.from_numpy(g.copy())
        optimizer.step()
    expected = keras_adam_numpy(w0, grads, 0.01, 0.9, 0.999, eps)
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-12, atol=1e-15)
    if eps > 1e-3:  # a large epsilon separates the two conventions clearly
        torch_param = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        torch_adam = make_optimizer(
            [("d.kernel", torch_param)], dataclasses.replace(spec, epsilon_convention="torch")
        )
        for g in grads:
            torch_param.grad = torch.from_numpy(g.copy())
            torch_adam.step()
        assert not np.allclose(torch_param.detach().numpy(), expected, rtol=1e-6)


def test_keras_adam_skips_parameters_without_a_gradient_and_refuses_bad_settings() -> None:
    with_grad = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    without = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer = KerasAdam([with_grad, without], lr=0.1)
    with_grad.grad = torch.ones(2, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(without.detach(), torch.ones(2, dtype=torch.float64))
    assert not torch.equal(with_grad.detach(), torch.ones(2, dtype=torch.float64))
    for settings in ({"lr": 0.0}, {"eps": 0.0}, {"betas": (0.9, 1.0)}):
        with pytest.raises(ValueError, match="invalid KerasAdam settings"):
            KerasAdam([without], **settings)


def test_make_optimizer_reads_every_setting_of_the_spec() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    named = [("d.bias", param)]
    adam = make_optimizer(
        named, TrainSpec(learning_rate=0.5, beta_1=0.8, beta_2=0.99, epsilon=1e-4)
    )
    assert isinstance(adam, torch.optim.Adam)
    group = adam.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (0.5, (0.8, 0.99), 1e-4)
    keras_adam = make_optimizer(
        named,
        TrainSpec(
            learning_rate=0.25, beta_1=0.7, beta_2=0.95, epsilon=1e-3, epsilon_convention="keras"
        ),
    )
    assert isinstance(keras_adam, KerasAdam)
    group = keras_adam.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (0.25, (0.7, 0.95), 1e-3)
    sgd = make_optimizer(named, TrainSpec(optimizer="sgd", learning_rate=0.1, momentum=0.5))
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.param_groups[0]["lr"], sgd.param_groups[0]["momentum"]) == (0.1, 0.5)
    # PyTorch's momentum form: v = mu*v + g; w -= lr*v
    for _ in range(2):
        param.grad = torch.ones(3)
        sgd.step()
    np.testing.assert_allclose(param.detach().numpy(), -0.1 * (1 + 1.5), rtol=1e-6)
