"""The optimiser a ``TrainSpec`` names, built in one place for every training path.

``make_optimizer(params, train_spec)`` serves the plain PyTorch loop, ``train_steps`` and
Lightning's ``LitCNN.configure_optimizers``, so they cannot drift apart:

- adam, ``epsilon_convention="torch"``: ``torch.optim.Adam`` (eps added to sqrt(v_hat)):
  ``w -= lr * m_hat / (sqrt(v_hat) + eps)``
- adam, ``epsilon_convention="keras"``: ``KerasAdam`` below (eps added to sqrt(v) before the
  bias correction): ``w -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)``
- sgd: ``torch.optim.SGD`` with PyTorch's momentum form ``v = mu*v + g; w -= lr*v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from cnn_common.spec import TrainSpec


class KerasAdam(torch.optim.Optimizer):
    """Adam with Keras's placement of epsilon, step for step as ``keras.optimizers.Adam``.

    Args:
        params: the parameters to optimise.
        lr: learning rate.
        betas: ``(beta_1, beta_2)``, the decay rates of the first and second moments.
        eps: added to ``sqrt(v)`` before the bias correction (Keras's 1e-7 by default).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
    ) -> None:
        if lr <= 0 or eps <= 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid KerasAdam settings: lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter with a gradient; ``closure`` re-computes the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta_1, beta_2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(param)
                    state["v"] = torch.zeros_like(param)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                alpha = group["lr"] * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
                # Keras's order of operations: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2).
                m.add_((grad - m) * (1 - beta_1))
                v.add_((grad * grad - v) * (1 - beta_2))
                param.sub_((m * alpha) / (v.sqrt() + group["eps"]))
        return loss


def make_optimizer(params: Iterable[torch.Tensor], train_spec: TrainSpec) -> torch.optim.Optimizer:
    """A fresh optimiser over ``params`` with the settings of ``train_spec``."""
    if train_spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train_spec.learning_rate, momentum=train_spec.momentum)
    betas = (train_spec.beta_1, train_spec.beta_2)
    if train_spec.epsilon_convention == "keras":
        return KerasAdam(params, lr=train_spec.learning_rate, betas=betas, eps=train_spec.epsilon)
    return torch.optim.Adam(
        params, lr=train_spec.learning_rate, betas=betas, eps=train_spec.epsilon
    )
