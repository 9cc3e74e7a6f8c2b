"""The optimisers a ``TrainSpec`` names, as Keras optimisers.

- adam, ``epsilon_convention="torch"`` (the spec's default): ``TorchAdam`` below adds epsilon
  to ``sqrt(v_hat)`` (Kingma & Ba, Algorithm 1; PyTorch);
- adam, ``epsilon_convention="keras"``: ``KerasAdam`` below, Keras's own update (epsilon added
  to ``sqrt(v)`` before the bias correction) with exact bias corrections; the framework's
  native optimiser, ``keras.optimizers.Adam`` itself, with ``make_optimizer(native=True)``;
- sgd: ``TorchSGD`` keeps PyTorch's momentum buffer ``v = mu*v + g; w -= lr*v`` where Keras's
  ``SGD`` keeps ``m = mu*m - lr*g; w += m`` (equal for a constant learning rate, but rounded
  differently).

Weight decay and the learning-rate schedule follow ``cnn_common.schedule`` (its formulas are
used, not re-derived): ``SpecSchedule`` serves ``learning_rate(train, step, steps_per_epoch)``
at the optimiser's ``iterations``, and ``SpecDecay`` (a base of every class above) adds
``l2`` decay to the gradients or applies ``decoupled`` decay before the update, on the
variables ``decays`` names. ``make_optimizer(native=True)`` is Keras's own ``Adam`` with its
own ``weight_decay`` argument (see ``make_optimizer`` for what it does with ``l2``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from cnn_common import schedule
from cnn_common.schedule import decays, learning_rate, scheduled
from cnn_common.spec import TrainSpec
from keras_cnn.network import StepLoss, cross_entropy, model_dtype, trainable

# The TrainSpec fields cnn_common.schedule reads: what a SpecSchedule keeps of the spec.
SCHEDULE_FIELDS = tuple(schedule.TrainSpec.__annotations__)


@keras.saving.register_keras_serializable(package="keras_cnn")
class SpecSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The spec's learning rate of every update: at ``step`` (the optimiser's ``iterations``:
    the updates done so far, so the 0-based index of the one being made) it is
    ``cnn_common.schedule.learning_rate(train, step, steps_per_epoch)``.

    Keras traces the schedule into its train function; rather than re-writing the formula in
    ``keras.ops``, the run's rates are computed once in Python (float64) into a table of
    ``updates`` entries (at least the run's ``epochs * steps_per_epoch``) in ``dtype`` (floatx
    when the optimiser is made, so a float64 run's rates are never rounded through float32),
    and a call takes the entry. An update past the table keeps its last rate.
    """

    def __init__(
        self,
        train: TrainSpec | Mapping[str, Any],
        steps_per_epoch: int,
        updates: int | None = None,
        dtype: str = "float32",
    ) -> None:
        get = train.get if isinstance(train, Mapping) else lambda f: getattr(train, f)
        self.train = {field: get(field) for field in SCHEDULE_FIELDS}
        spec = TrainSpec(**self.train)  # validated, as a run's spec is
        self.steps_per_epoch = int(steps_per_epoch)
        self.updates = max(int(updates or 0), spec.epochs * self.steps_per_epoch)
        self.dtype = dtype
        rates = [learning_rate(spec, s, self.steps_per_epoch) for s in range(self.updates)]
        self.table = np.array(rates, dtype=np.float64).astype(dtype)
        self._tensor = None  # the table on the torch backend, converted once

    def rates(self) -> Any:
        """The table as a backend tensor. TensorFlow and jax embed it as a constant of the
        traced function (a tensor kept from one trace would not belong to the next); torch
        runs eagerly, so its copy (on the GPU, if there is one) is made once."""
        if keras.backend.backend() != "torch":
            return ops.convert_to_tensor(self.table, self.dtype)
        if self._tensor is None:
            self._tensor = ops.convert_to_tensor(self.table, self.dtype)
        return self._tensor

    def __call__(self, step: Any) -> Any:
        index = ops.minimum(ops.convert_to_tensor(step), self.updates - 1)
        return ops.take(self.rates(), index)

    def get_config(self) -> dict[str, Any]:
        return {
            "train": dict(self.train),
            "steps_per_epoch": self.steps_per_epoch,
            "updates": self.updates,
            "dtype": self.dtype,
        }


def canonical_name(variable: keras.Variable) -> str:
    """A layer variable's canonical name from its Keras path (``cnn/conv1/kernel`` ->
    ``conv1.kernel``): Keras names each layer and variable as ``keras_cnn.network.tensors``
    names them. For a ``.keras`` file loaded back, where no model hands the optimiser its
    names; ``SpecDecay.build`` checks that every decayed name is found."""
    return ".".join(variable.path.split("/")[-2:])


class SpecDecay:
    """Weight decay as ``cnn_common.schedule`` states it, for the Keras optimiser class listed
    after this one: ``weight_decay`` (Keras's argument; None or 0 = none) in
    ``weight_decay_convention``

    - ``"l2"``: ``g <- g + wd * w`` before the optimiser's rule, added to the gradients
      before ``update_step`` sees them (Keras's optimisers have no such option);
    - ``"decoupled"``: ``w <- w - lr_t * wd * w`` before the update, where Keras applies its
      own ``weight_decay`` (``_apply_weight_decay``), but with ``wd`` converted exactly:
      Keras's ``ops.cast`` of the Python float goes through float32.

    ``decayed``: the canonical names of the variables that decay (None = every variable the
    optimiser updates), kept in the config so that a ``.keras`` file loads with them.
    """

    def __init__(
        self,
        *args: Any,
        weight_decay_convention: str = "decoupled",
        decayed: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weight_decay_convention = weight_decay_convention
        self.decayed = None if decayed is None else frozenset(decayed)
        self._decay_keys = None  # the decayed variables' keys, once built

    def build(self, variables: list) -> None:
        super().build(variables)
        if self.decayed is None:
            return
        by_name = {canonical_name(variable): variable for variable in variables}
        unknown = sorted(self.decayed - set(by_name))
        if unknown:
            raise ValueError(f"weight decay names {unknown}, which no variable has")
        self._decay_keys = frozenset(self._var_key(by_name[name]) for name in self.decayed)

    def _use_weight_decay(self, variable: Any) -> bool:
        return self._decay_keys is None or self._var_key(variable) in self._decay_keys

    def _constant(self, value: float, dtype: str) -> Any:
        return ops.convert_to_tensor(value, dtype)  # not cast: that goes through float32

    def _apply_weight_decay(self, variables: list) -> None:
        if not self.weight_decay or self.weight_decay_convention != "decoupled":
            return
        lr = self.learning_rate
        for variable in variables:
            if self._use_weight_decay(variable):
                dtype = variable.dtype
                rate = ops.multiply(ops.cast(lr, dtype), self._constant(self.weight_decay, dtype))
                self.assign_sub(variable, ops.multiply(rate, variable))

    def _backend_update_step(
        self, grads: list, trainable_variables: list, learning_rate: Any
    ) -> None:
        if self.weight_decay and self.weight_decay_convention == "l2":
            grads = [
                ops.add(
                    ops.cast(g, v.dtype),
                    ops.multiply(self._constant(self.weight_decay, v.dtype), v),
                )
                if self._use_weight_decay(v)
                else g
                for g, v in zip(grads, trainable_variables, strict=True)
            ]
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def get_config(self) -> dict[str, Any]:
        decayed = None if self.decayed is None else sorted(self.decayed)
        return {
            **super().get_config(),
            "weight_decay_convention": self.weight_decay_convention,
            "decayed": decayed,
        }


@keras.saving.register_keras_serializable(package="keras_cnn")
class TorchAdam(SpecDecay, keras.optimizers.Adam):
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
class KerasAdam(SpecDecay, keras.optimizers.Adam):
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
class TorchSGD(SpecDecay, keras.optimizers.SGD):
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


@keras.saving.register_keras_serializable(package="keras_cnn")
class NativeAdam(SpecDecay, keras.optimizers.Adam):
    """``keras.optimizers.Adam``'s own update (its ``update_step``, float32-rounded betas) with
    the spec's ``l2`` term added to the gradients: Keras's optimisers decay only decoupled."""


def make_optimizer(
    train_spec: TrainSpec,
    native: bool = False,
    *,
    model: keras.Model | None = None,
    steps_per_epoch: int | None = None,
    updates: int | None = None,
) -> keras.optimizers.Optimizer:
    """A fresh optimiser for ``train_spec`` (see the module docstring for the conventions);
    ``native`` gives Keras's own class where the project's differs from it.

    ``steps_per_epoch``: the updates an epoch, which a scheduled learning rate needs
    (``SpecSchedule``, its rates for ``updates`` updates if the run has fewer; a constant
    rate is a plain float). ``model``: whose variables weight
    decay reaches (``cnn_common.schedule.decays`` of their canonical names); without it every
    variable the optimiser updates decays, and ``weight_decay_on="kernels"`` raises.

    ``native`` Adam (the keras epsilon convention) is ``keras.optimizers.Adam`` itself, with
    decoupled decay through its own ``weight_decay`` argument (Keras casts ``wd`` through
    float32, and ``exclude_from_weight_decay`` keeps the others, which a ``.keras`` file does
    not save). Keras has no l2 decay in its optimisers: with ``l2``, native mode trains
    ``NativeAdam``, Keras's own Adam update with the l2 term added to the gradients.
    """
    rate: float | SpecSchedule = train_spec.learning_rate
    if scheduled(train_spec):
        if steps_per_epoch is None:
            raise ValueError("a scheduled learning rate needs steps_per_epoch")
        rate = SpecSchedule(train_spec, steps_per_epoch, updates, keras.config.floatx())
    wd = train_spec.weight_decay or None
    decayed = None
    if wd and model is not None:
        decayed = decays(train_spec, [name for name, _ in trainable(model)])
    elif wd and train_spec.weight_decay_on != "all":
        raise ValueError(f"weight_decay_on={train_spec.weight_decay_on!r} needs the model")
    spec_decay = {
        "weight_decay": wd,
        "weight_decay_convention": train_spec.weight_decay_convention,
        "decayed": decayed,
    }
    if train_spec.optimizer == "sgd":
        return TorchSGD(learning_rate=rate, momentum=train_spec.momentum, **spec_decay)
    adam = {
        "learning_rate": rate,
        "beta_1": train_spec.beta_1,
        "beta_2": train_spec.beta_2,
        "epsilon": train_spec.epsilon,
    }
    if train_spec.epsilon_convention == "torch":
        return TorchAdam(**adam, **spec_decay)
    if not native:
        return KerasAdam(**adam, **spec_decay)
    if wd and train_spec.weight_decay_convention == "l2":
        return NativeAdam(**adam, **spec_decay)
    optimizer = keras.optimizers.Adam(**adam, weight_decay=wd)
    if decayed is not None:
        kept = [variable for name, variable in trainable(model) if name not in decayed]
        optimizer.exclude_from_weight_decay(var_list=kept)
    return optimizer


def compile_model(
    model: keras.Model,
    train_spec: TrainSpec,
    native: bool = False,
    *,
    steps_per_epoch: int | None = None,
    updates: int | None = None,
) -> None:
    """Compile with a fresh optimiser (``make_optimizer``: Keras's own class with ``native``,
    weight decay on ``model``'s variables, the schedule over ``steps_per_epoch`` updates an
    epoch), cross-entropy on logits, accuracy and the step loss."""
    model.compile(
        optimizer=make_optimizer(
            train_spec, native, model=model, steps_per_epoch=steps_per_epoch, updates=updates
        ),
        loss=cross_entropy(model_dtype(model)),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            StepLoss(dtype=model_dtype(model)),
        ],
    )
