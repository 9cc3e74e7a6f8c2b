"""Optimisers, one update rule per function, one weight tensor at a time.

The interface::

    adam(w, dw, state) -> (w, state)
    sgd_momentum(w, dw, state) -> (w, state)

``w`` is a weight array, updated in place (and returned); ``dw`` its gradient; ``state`` a dict
holding the hyperparameters and what the rule carries from step to step:

- Adam: ``learning_rate``, ``beta_1``, ``beta_2``, ``epsilon``, ``convention`` and
  ``m`` (first moment), ``v`` (second moment), ``t`` (steps taken). With
  ``m = b1 m + (1 - b1) g`` and ``v = b2 v + (1 - b2) g^2``, the two epsilon conventions are

  - ``"torch"`` (Kingma & Ba, Algorithm 1; PyTorch):
    ``w -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``,
    ``v_hat = v / (1 - b2^t)``;
  - ``"keras"`` (Keras/TensorFlow): eps is added to ``sqrt(v)`` before the bias correction:
    ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.

  They differ by a factor ``sqrt(1 - b2^t)`` on eps, which matters in the first steps.
- SGD with momentum, PyTorch's form: ``learning_rate``, ``momentum`` and ``velocity``:
  ``velocity = momentum * velocity + g``; ``w -= lr * velocity``.

``Optimizer`` keeps one state per weight name and applies the rule the ``TrainSpec`` names,
at the learning rate of the spec's schedule for each update, after the spec's weight decay
(``cnn_common.schedule``: ``l2`` adds ``wd * w`` to the gradient, ``decoupled`` first takes
``w -= lr * wd * w``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnn_common.schedule import decays, learning_rate
from cnn_common.spec import TrainSpec

State = dict[str, Any]


def adam(w: np.ndarray, dw: np.ndarray, state: State) -> tuple[np.ndarray, State]:
    """One Adam step on ``w`` (in place) in the state's epsilon convention."""
    b1, b2, lr, eps = state["beta_1"], state["beta_2"], state["learning_rate"], state["epsilon"]
    state["t"] += 1
    t = state["t"]
    m, v = state["m"], state["v"]
    m *= b1
    m += (1 - b1) * dw
    v *= b2
    v += (1 - b2) * (dw * dw)
    if state["convention"] == "torch":
        denom = np.sqrt(v / (1 - b2**t)) + eps  # sqrt(v_hat) + eps
        w -= (lr / (1 - b1**t)) * m / denom  # lr * m_hat / denom
    else:
        step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        w -= step * m / (np.sqrt(v) + eps)
    return w, state


def sgd_momentum(w: np.ndarray, dw: np.ndarray, state: State) -> tuple[np.ndarray, State]:
    """One SGD step with momentum (PyTorch's form) on ``w`` in place."""
    velocity = state["velocity"]
    velocity *= state["momentum"]
    velocity += dw
    w -= state["learning_rate"] * velocity
    return w, state


def initial_state(train_spec: TrainSpec, w: np.ndarray) -> State:
    """A fresh state for one weight tensor under ``train_spec``'s optimiser."""
    if train_spec.optimizer == "adam":
        return {
            "learning_rate": train_spec.learning_rate,
            "beta_1": train_spec.beta_1,
            "beta_2": train_spec.beta_2,
            "epsilon": train_spec.epsilon,
            "convention": train_spec.epsilon_convention,
            "m": np.zeros_like(w),
            "v": np.zeros_like(w),
            "t": 0,
        }
    return {
        "learning_rate": train_spec.learning_rate,
        "momentum": train_spec.momentum,
        "velocity": np.zeros_like(w),
    }


class Optimizer:
    """The spec's update rule applied to every weight, each with its own state, and the run's
    position in the learning-rate schedule: ``updates`` taken so far, ``steps_per_epoch``
    updates an epoch."""

    def __init__(
        self, train_spec: TrainSpec, weights: dict[str, np.ndarray], steps_per_epoch: int = 1
    ) -> None:
        self.train_spec, self.steps_per_epoch, self.updates = train_spec, steps_per_epoch, 0
        self.rule = adam if train_spec.optimizer == "adam" else sgd_momentum
        self.states = {name: initial_state(train_spec, w) for name, w in weights.items()}
        self.decayed = decays(train_spec, weights)

    def step(self, weights: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every weight in place from its gradient, at this update's learning rate."""
        train = self.train_spec
        lr = learning_rate(train, self.updates, self.steps_per_epoch)
        l2 = train.weight_decay_convention == "l2"
        for name, w in weights.items():
            g = grads[name].astype(w.dtype, copy=False)
            if name in self.decayed:
                if l2:
                    g = g + train.weight_decay * w
                else:
                    w -= lr * train.weight_decay * w
            self.states[name]["learning_rate"] = lr
            self.rule(w, g, self.states[name])
        self.updates += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The array part of the state, as ``{"<weight name>/<key>": array}`` (checkpoints)."""
        return {
            f"{name}/{key}": value
            for name, state in self.states.items()
            for key, value in state.items()
            if isinstance(value, np.ndarray)
        }

    def steps(self) -> dict[str, int]:
        """Adam's step count per weight (empty for SGD), for checkpoints."""
        return {name: s["t"] for name, s in self.states.items() if "t" in s}

    def restore(self, arrays: dict[str, np.ndarray], steps: dict[str, int], updates: int) -> None:
        """Put back what ``arrays``, ``steps`` and ``updates`` were, exactly."""
        self.updates = updates
        for key, value in arrays.items():
            name, part = key.split("/")
            self.states[name][part][...] = value
        for name, t in steps.items():
            self.states[name]["t"] = int(t)
