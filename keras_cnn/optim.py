"""The optimisers a ``TrainSpec`` names, as Keras optimisers.

- adam, ``epsilon_convention="torch"`` (the spec's default): ``TorchAdam`` below adds epsilon
  to ``sqrt(v_hat)`` (Kingma & Ba, Algorithm 1; PyTorch);
- adam, ``epsilon_convention="keras"``: ``KerasAdam`` below, Keras's own update (epsilon added
  to ``sqrt(v)`` before the bias correction) with exact bias corrections; the framework's
  native optimiser, ``keras.optimizers.Adam`` itself, with ``make_optimizer(native=True)``;
- sgd: ``TorchSGD`` keeps PyTorch's momentum buffer ``v = mu*v + g; w -= lr*v`` where Keras's
  ``SGD`` keeps ``m = mu*m - lr*g; w += m`` (equal for a constant learning rate, but rounded
  differently).
"""

from __future__ import annotations

import keras
from keras import ops

from cnn_common.spec import TrainSpec
from keras_cnn.network import StepLoss, cross_entropy, model_dtype


@keras.saving.register_keras_serializable(package="keras_cnn")
class TorchAdam(keras.optimizers.Adam):
    """Adam with epsilon added to ``sqrt(v_hat)`` (Kingma & Ba, Algorithm 1; PyTorch).

    ``m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``. Written with ``keras.ops`` only,
    so it runs on every backend.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        # convert_to_tensor, not cast: casting a Python float goes through float32 first
        bias_1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, variable.dtype), step)
        bias_2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.sqrt(ops.divide(v, bias_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(lr, ops.divide(m, bias_1)), denominator))


@keras.saving.register_keras_serializable(package="keras_cnn")
class KerasAdam(keras.optimizers.Adam):
    """Keras's own Adam update (epsilon added to ``sqrt(v)`` before the bias correction),
    with the bias corrections computed from the exact betas.

    ``keras.optimizers.Adam`` computes ``beta^t`` from ``ops.cast(beta, dtype)``, and casting
    a Python float goes through float32: in a float64 run its step is off by a factor
    ``sqrt(1 - fl32(0.999)) / sqrt(0.001)``, a relative 6.7e-6 on every weight's update. That
    is Keras's behaviour, not the convention's, so the spec's "keras" convention uses this
    class; the ablation's ``epsilon`` arm runs ``keras.optimizers.Adam`` itself. The two are
    identical in float32, where the betas are float32 anyway.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1_power = ops.power(ops.convert_to_tensor(self.beta_1, variable.dtype), step)
        beta_2_power = ops.power(ops.convert_to_tensor(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        self.assign_sub(
            variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))
        )


@keras.saving.register_keras_serializable(package="keras_cnn")
class TorchSGD(keras.optimizers.SGD):
    """SGD with PyTorch's momentum buffer: ``v = mu*v + g; w -= lr*v``."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(lr, gradient))
            return
        v = self.momentums[self._get_variable_index(variable)]
        momentum = ops.convert_to_tensor(self.momentum, variable.dtype)  # exact in float64
        self.assign(v, ops.add(ops.multiply(v, momentum), gradient))
        self.assign_sub(variable, ops.multiply(lr, v))


def make_optimizer(train_spec: TrainSpec, native: bool = False) -> keras.optimizers.Optimizer:
    """A fresh optimiser for ``train_spec`` (see the module docstring for the conventions);
    ``native`` gives Keras's own class where the project's differs from it."""
    if train_spec.optimizer == "sgd":
        return TorchSGD(learning_rate=train_spec.learning_rate, momentum=train_spec.momentum)
    if train_spec.epsilon_convention == "torch":
        adam = TorchAdam
    else:
        adam = keras.optimizers.Adam if native else KerasAdam
    return adam(
        learning_rate=train_spec.learning_rate,
        beta_1=train_spec.beta_1,
        beta_2=train_spec.beta_2,
        epsilon=train_spec.epsilon,
    )


def compile_model(model: keras.Model, train_spec: TrainSpec, native: bool = False) -> None:
    """Compile with a fresh optimiser (Keras's own class with ``native``), cross-entropy on
    logits, accuracy and the step loss."""
    model.compile(
        optimizer=make_optimizer(train_spec, native),
        loss=cross_entropy(model_dtype(model)),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            StepLoss(dtype=model_dtype(model)),
        ],
    )
