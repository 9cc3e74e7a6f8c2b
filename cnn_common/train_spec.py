"""How a model is trained: ``TrainSpec``, every value a framework reads to train it.

``TrainSpec()`` is the seed's run (Adam lr 1e-3, 5 epochs, batch 128, seed 0). No framework
has defaults of its own inside a run: where frameworks decide differently (Adam's epsilon,
weight decay, the schedule's interval, TensorFloat-32, deterministic kernels), the spec states
which, and ``cnn_common.conventions`` says what each framework would have chosen.

``cnn_common.spec`` re-exports everything here; the model and the training run are one spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnn_common.schedule import check_schedule
from cnn_common.spec_checks import check_bool, check_choice, check_float, check_int

OPTIMIZERS = ("adam", "sgd")
EPSILON_CONVENTIONS = ("torch", "keras")
DTYPES = ("float32", "float64")
# Where a GPU may round float32 products to TensorFloat-32 (10 mantissa bits): nowhere, in
# convolutions only (PyTorch's default), or in convolutions and matrix multiplies.
TF32_MODES = ("off", "conv", "all")


@dataclass(frozen=True)
class TrainSpec:
    """How a model is trained. Every framework reads these values; none has its own defaults."""

    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd
    learning_rate: float = 1e-3
    beta_1: float = 0.9  # Adam first-moment decay
    beta_2: float = 0.999  # Adam second-moment decay
    # Adam epsilon and where it is added. "torch" (Kingma & Ba, Algorithm 1; PyTorch):
    #   w -= lr * m_hat / (sqrt(v_hat) + eps)
    # "keras" (Keras/TensorFlow): eps is added to sqrt(v) before bias correction:
    #   w -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)
    # The default is the paper's Algorithm 1 (PyTorch's form) with PyTorch's 1e-8; Keras applies
    # it with its own class (docs/design.md: "the spec states the values").
    epsilon: float = 1e-8
    epsilon_convention: str = "torch"
    momentum: float = 0.9  # SGD momentum (PyTorch's form: v = mu*v + g; w -= lr*v)
    seed: int = 0  # initial weights, batch order, augmentation, dropout
    validation_size: int = 5000  # training images held out for validation
    augment_shift: int = 0  # 0 = no augmentation; N = random shift of up to N pixels
    dtype: str = "float32"  # float32 | float64
    # Weight decay and the learning-rate schedule: their formulas are cnn_common.schedule's.
    weight_decay: float = 0.0
    weight_decay_convention: str = "l2"  # l2 | decoupled
    weight_decay_on: str = "all"  # all | kernels
    lr_schedule: str = "constant"  # constant | step | cosine
    lr_step_size: int = 1  # step: epochs (or steps) between two decays
    lr_gamma: float = 0.1  # step: the factor of each decay
    lr_warmup: int = 0  # epochs (or steps) of linear warm-up
    lr_interval: str = "epoch"  # epoch | step: what the schedule counts
    # On a GPU only (cnn_common.gpu sets them; a CPU computes float32 in float32, and its
    # kernels are deterministic): TensorFloat-32 (TF32_MODES), and kernels that give the same
    # bits on every run (no atomics-based reductions, no timing-based algorithm choice).
    tf32: str = "off"
    deterministic: bool = True

    def __post_init__(self) -> None:
        validate_train(self)


def validate_train(spec: TrainSpec) -> None:
    """Raise ``SpecError`` naming the field when a training setting is out of range."""
    check_int("epochs", spec.epochs, 1)
    check_int("batch_size", spec.batch_size, 1)
    check_choice("optimizer", spec.optimizer, OPTIMIZERS)
    check_float("learning_rate", spec.learning_rate, 0.0, math.inf, low_open=True)
    check_float("beta_1", spec.beta_1, 0.0, 1.0, low_open=False)
    check_float("beta_2", spec.beta_2, 0.0, 1.0, low_open=False)
    check_float("epsilon", spec.epsilon, 0.0, 1.0, low_open=True)
    check_choice("epsilon_convention", spec.epsilon_convention, EPSILON_CONVENTIONS)
    check_float("momentum", spec.momentum, 0.0, 1.0, low_open=False)
    check_int("seed", spec.seed, 0)
    check_int("validation_size", spec.validation_size, 0)
    check_int("augment_shift", spec.augment_shift, 0)
    check_choice("dtype", spec.dtype, DTYPES)
    check_schedule(spec)
    check_choice("tf32", spec.tf32, TF32_MODES)
    check_bool("deterministic", spec.deterministic)
