"""The optimisers a ``TrainSpec`` names, as Keras optimisers.

- adam, ``epsilon_convention="torch"`` (the spec's default): ``TorchAdam`` below adds epsilon
  to ``sqrt(v_hat)`` (Kingma & Ba, Algorithm 1; PyTorch);
- adam, ``epsilon_convention="keras"``: Keras's own ``Adam``, which adds it to ``sqrt(v)``
  before the bias correction;
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


def make_optimizer(train_spec: TrainSpec) -> keras.optimizers.Optimizer:
    """A fresh optimiser for ``train_spec`` (see the module docstring for the conventions)."""
    if train_spec.optimizer == "sgd":
        return TorchSGD(learning_rate=train_spec.learning_rate, momentum=train_spec.momentum)
    adam = TorchAdam if train_spec.epsilon_convention == "torch" else keras.optimizers.Adam
    return adam(
        learning_rate=train_spec.learning_rate,
        beta_1=train_spec.beta_1,
        beta_2=train_spec.beta_2,
        epsilon=train_spec.epsilon,
    )


def compile_model(model: keras.Model, train_spec: TrainSpec) -> None:
    """Compile with a fresh optimiser, cross-entropy on logits, accuracy and the step loss."""
    model.compile(
        optimizer=make_optimizer(train_spec),
        loss=cross_entropy(model_dtype(model)),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            StepLoss(dtype=model_dtype(model)),
        ],
    )
