"""The optimiser a ``TrainSpec`` names, and the learning rate of each update, built in one place
for every training path.

``make_optimizer(named_params, train_spec)`` serves the plain PyTorch loop, ``train_steps``,
``phase_times`` and Lightning's ``LitCNN.configure_optimizers``, so they cannot drift apart:

- adam, ``epsilon_convention="torch"``: ``torch.optim.Adam`` (eps added to sqrt(v_hat)):
  ``w -= lr * m_hat / (sqrt(v_hat) + eps)``; ``torch.optim.AdamW`` under decoupled decay;
- adam, ``epsilon_convention="keras"``: ``KerasAdam`` below (eps added to sqrt(v) before the
  bias correction): ``w -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)``
- sgd: ``torch.optim.SGD`` with PyTorch's momentum form ``v = mu*v + g; w -= lr*v``;
  ``DecoupledSGD`` below under decoupled decay.

Weight decay (``cnn_common.schedule``): the weights ``decays`` names form a param group with
``weight_decay=wd``, the others one with 0. ``l2`` is PyTorch's own ``weight_decay`` of
``Adam`` and ``SGD`` (``g + wd*w``); ``decoupled`` shrinks ``w *= 1 - lr_t*wd`` before the
update (``AdamW``'s form). The schedule: ``set_learning_rate`` writes
``cnn_common.schedule.learning_rate`` of the update's index into every group before each
``step``; the rate depends on that index alone, so a resumed run continues it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from cnn_common.schedule import decays, learning_rate
from cnn_common.spec import TrainSpec


class KerasAdam(torch.optim.Optimizer):
    """Adam with Keras's placement of epsilon, step for step as ``keras.optimizers.Adam``.

    Args:
        params: the parameters to optimise (or param groups).
        lr: learning rate.
        betas: ``(beta_1, beta_2)``, the decay rates of the first and second moments.
        eps: added to ``sqrt(v)`` before the bias correction (Keras's 1e-7 by default).
        weight_decay: ``wd``, the default of the groups that do not set their own.
        decoupled: ``w *= 1 - lr*wd`` before the update (as ``AdamW``); otherwise l2,
            ``g + wd*w`` (as ``torch.optim.Adam(weight_decay=wd)``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(
                f"invalid KerasAdam settings: lr={lr}, betas={betas}, eps={eps}, "
                f"weight_decay={weight_decay}"
            )
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled": decoupled,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter with a gradient; ``closure`` re-computes the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta_1, beta_2 = group["betas"]
            # .get: the groups of a checkpoint written before weight decay existed lack them
            lr, wd = group["lr"], group.get("weight_decay", 0.0)
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if wd != 0 and group.get("decoupled", False):
                    param.mul_(1 - lr * wd)  # AdamW's form, on the weights the gradient saw
                elif wd != 0:
                    grad = grad.add(param, alpha=wd)  # torch.optim.Adam's l2
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(param)
                    state["v"] = torch.zeros_like(param)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
                # Keras's order of operations: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2).
                m.add_((grad - m) * (1 - beta_1))
                v.add_((grad * grad - v) * (1 - beta_2))
                param.sub_((m * alpha) / (v.sqrt() + group["eps"]))
        return loss


class DecoupledSGD(torch.optim.SGD):
    """``torch.optim.SGD`` with decoupled weight decay, which PyTorch has no class for: each
    parameter with a gradient shrinks ``w *= 1 - lr*wd`` (its group's ``decoupled_decay``),
    then SGD steps as usual (its own l2 ``weight_decay`` stays 0).

    Args:
        params: the parameters to optimise (or param groups).
        lr: learning rate.
        momentum: PyTorch's momentum ``mu``.
        decoupled_decay: ``wd``, the default of the groups that do not set their own.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        decoupled_decay: float = 0.0,
    ) -> None:
        if decoupled_decay < 0:
            raise ValueError(f"invalid decoupled_decay {decoupled_decay}")
        super().__init__(params, lr=lr, momentum=momentum)
        self.defaults["decoupled_decay"] = decoupled_decay
        for group in self.param_groups:
            group.setdefault("decoupled_decay", decoupled_decay)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Decay, then SGD's update; ``closure`` (the gradient) runs first, on the weights as
        they were, as in ``AdamW``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd = group.get("decoupled_decay", 0.0)
            if wd != 0:
                shrink = 1 - group["lr"] * wd
                for param in group["params"]:
                    if param.grad is not None:
                        param.mul_(shrink)
        super().step()
        return loss


def _param_groups(
    named_params: Iterable[tuple[str, torch.Tensor]], train_spec: TrainSpec, key: str
) -> list[dict[str, Any]]:
    """The parameters ``decays`` reaches with ``key = wd``, the rest with 0 (empty groups
    left out)."""
    named = list(named_params)
    decayed = decays(train_spec, [name for name, _ in named])
    groups = [
        {"params": [p for n, p in named if n in decayed], key: train_spec.weight_decay},
        {"params": [p for n, p in named if n not in decayed], key: 0.0},
    ]
    return [group for group in groups if group["params"]]


def make_optimizer(
    named_params: Iterable[tuple[str, torch.Tensor]], train_spec: TrainSpec
) -> torch.optim.Optimizer:
    """A fresh optimiser over ``named_params`` (canonical name, parameter: a ``CNN``'s
    ``canonical_parameters()``) with the settings of ``train_spec``, its weight decay on the
    weights ``cnn_common.schedule.decays`` names, at the spec's base learning rate
    (``set_learning_rate`` sets each update's)."""
    lr, decoupled = train_spec.learning_rate, train_spec.weight_decay_convention == "decoupled"
    if train_spec.optimizer == "sgd":
        if decoupled:
            groups = _param_groups(named_params, train_spec, "decoupled_decay")
            return DecoupledSGD(groups, lr=lr, momentum=train_spec.momentum)
        groups = _param_groups(named_params, train_spec, "weight_decay")
        return torch.optim.SGD(groups, lr=lr, momentum=train_spec.momentum)
    groups = _param_groups(named_params, train_spec, "weight_decay")
    betas, eps = (train_spec.beta_1, train_spec.beta_2), train_spec.epsilon
    if train_spec.epsilon_convention == "keras":
        return KerasAdam(groups, lr=lr, betas=betas, eps=eps, decoupled=decoupled)
    adam = torch.optim.AdamW if decoupled else torch.optim.Adam
    return adam(groups, lr=lr, betas=betas, eps=eps, weight_decay=0.0)


def set_learning_rate(
    optimizer: torch.optim.Optimizer, train_spec: TrainSpec, step: int, steps_per_epoch: int
) -> float:
    """Give every param group of ``optimizer`` the learning rate of update ``step`` (0-based
    over the run, ``steps_per_epoch`` updates an epoch): ``cnn_common.schedule.learning_rate``.
    Call it before each ``step()``; returns the rate."""
    lr = learning_rate(train_spec, step, steps_per_epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
