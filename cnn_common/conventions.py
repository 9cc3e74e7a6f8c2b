"""What each framework decides by itself, and a run that hands topics back to it.

The spec states every convention, and every framework implements the spec's (no framework
default inside a run). A user of one framework does not write the spec, though: they write
``torch.nn.BatchNorm2d(16)`` or ``keras.layers.BatchNormalization()`` and get that framework's
own momentum, epsilon and running variance. Each framework declares those choices here
(``FrameworkInfo.conventions``: topic -> ``Convention``), with the formula as the framework
writes it and the documentation that states it, and ``native_specs`` turns a run's spec into
the one that framework's user would have run.

The topics a run can hand back (``NATIVE_TOPICS``; ``cnn-compare run --native``):

- ``init``: the framework's own initialisers (``train(init_weights=None)``);
- ``order``, ``padding``: its own shuffling and 'same' placement (the framework's ``train``);
- ``CONVENTION_TOPICS``, each a set of spec fields: ``epsilon`` (Adam's, and the framework's
  own optimiser class), ``bn_momentum``, ``bn_epsilon``, ``bn_variance``, ``frozen_bn``
  (the batchnorm fields of every batchnorm and residual layer), ``weight_decay`` (its
  convention and what it touches), ``schedule`` (whether it advances per step or per epoch),
  and the GPU's ``tf32`` and ``deterministic`` (``cnn_common.gpu``; not applicable on a CPU).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cnn_common.graph import BATCHNORM_FIELDS, KIND_FIELDS
from cnn_common.spec import ModelSpec, TrainSpec, layers

CONVENTION_TOPICS = (
    "epsilon",
    "bn_momentum",
    "bn_epsilon",
    "bn_variance",
    "frozen_bn",
    "weight_decay",
    "schedule",
    "tf32",
    "deterministic",
)
BATCHNORM_TOPICS = ("bn_momentum", "bn_epsilon", "bn_variance", "frozen_bn")
GPU_TOPICS = ("tf32", "deterministic")  # cnn_common.gpu: they change nothing on a CPU
NATIVE_TOPICS = ("init", "order", "padding", *CONVENTION_TOPICS)
# What a framework's ``train(native=...)`` takes: every topic but ``init`` (the absence of
# shared initial weights says it), and ``optimizer``, the framework's own optimiser class
# (``epsilon`` implies it).
TRAIN_CHOICES = (*(topic for topic in NATIVE_TOPICS if topic != "init"), "optimizer")

# Each topic in words, for tables and messages.
TOPIC_WORDS: Mapping[str, str] = types.MappingProxyType(
    {
        "init": "initial weights",
        "order": "batch order",
        "padding": "'same' padding",
        "epsilon": "Adam epsilon",
        "bn_momentum": "batchnorm momentum",
        "bn_epsilon": "batchnorm epsilon",
        "bn_variance": "batchnorm running variance",
        "frozen_bn": "frozen batchnorm",
        "weight_decay": "weight decay",
        "schedule": "schedule stepping",
        "tf32": "TensorFloat-32",
        "deterministic": "deterministic kernels",
    }
)
# The spec fields each convention topic may set.
TOPIC_FIELDS: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "epsilon": frozenset({"epsilon", "epsilon_convention"}),
        "bn_momentum": frozenset({"momentum", "momentum_convention"}),
        "bn_epsilon": frozenset({"epsilon"}),
        "bn_variance": frozenset({"variance"}),
        "frozen_bn": frozenset({"frozen_batchnorm"}),
        "weight_decay": frozenset({"weight_decay_convention", "weight_decay_on"}),
        "schedule": frozenset({"lr_interval"}),
        "tf32": frozenset({"tf32"}),
        "deterministic": frozenset({"deterministic"}),
    }
)


@dataclass(frozen=True)
class Convention:
    """A framework's own choice on one topic.

    ``fields``: the spec fields it sets (the batchnorm topics' on every batchnorm);
    ``formula``: the rule as the framework writes it; ``source``: where its documentation
    states it.
    """

    fields: Mapping[str, Any]
    formula: str
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", types.MappingProxyType(dict(self.fields)))


def check_conventions(framework: str, conventions: Mapping[str, Convention]) -> None:
    """Raise ``ValueError`` for a topic outside ``CONVENTION_TOPICS`` or a field the topic does
    not set (a declaration is checked when it is made)."""
    for topic, convention in conventions.items():
        if topic not in TOPIC_FIELDS:
            raise ValueError(f"framework {framework!r}: unknown convention topic {topic!r}")
        stray = sorted(set(convention.fields) - TOPIC_FIELDS[topic])
        if stray:
            raise ValueError(f"framework {framework!r}: {topic} cannot set {stray}")


def check_topics(topics: Iterable[str], allowed: tuple[str, ...] = NATIVE_TOPICS) -> frozenset[str]:
    """``topics`` as a set; one outside ``allowed`` raises ``ValueError``."""
    chosen = frozenset(topics or ())
    unknown = sorted(chosen - set(allowed))
    if unknown:
        raise ValueError(f"unknown native topic(s) {unknown}; choose from {allowed}")
    return chosen


def _has_batchnorm(model: ModelSpec, frozen: bool = False) -> bool:
    return any(
        layer.kind == "batchnorm" and (not frozen or not layer.trainable) for layer in layers(model)
    )


def _rescaled(train: TrainSpec, interval: str, steps_per_epoch: int) -> dict[str, int]:
    """The step size and warm-up of ``train`` counted in ``interval`` instead of its own
    interval: the same durations, as a user of the other convention writes them (Keras's
    ``decay_steps = epochs * steps_per_epoch``)."""
    if interval == train.lr_interval:
        return {}
    if interval == "step":
        return {
            "lr_step_size": train.lr_step_size * steps_per_epoch,
            "lr_warmup": train.lr_warmup * steps_per_epoch,
        }
    return {
        "lr_step_size": max(1, round(train.lr_step_size / steps_per_epoch)),
        "lr_warmup": round(train.lr_warmup / steps_per_epoch),
    }


def native_specs(
    conventions: Mapping[str, Convention],
    topics: Iterable[str],
    model: ModelSpec,
    train: TrainSpec,
    steps_per_epoch: int,
) -> tuple[ModelSpec, TrainSpec]:
    """``(model, train)`` with each of ``topics`` that ``conventions`` declares set to the
    framework's own values; other topics (and a framework without a convention there) keep
    the spec's. ``steps_per_epoch`` converts the schedule's counts when its interval changes."""
    chosen = frozenset(topics)
    batchnorm: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    for topic in CONVENTION_TOPICS:
        if topic in chosen and topic in conventions:
            target = batchnorm if topic in BATCHNORM_TOPICS else trained
            target.update(conventions[topic].fields)
    if "lr_interval" in trained:
        trained.update(_rescaled(train, trained["lr_interval"], steps_per_epoch))
    if batchnorm and model.layers:
        model = dataclasses.replace(
            model,
            layers=tuple(
                dataclasses.replace(item, **batchnorm)
                if set(BATCHNORM_FIELDS) <= set(KIND_FIELDS.get(item.kind, ()))
                else item
                for item in model.layers
            ),
        )
    return model, dataclasses.replace(train, **trained) if trained else train


def not_native(
    framework: str,
    conventions: Mapping[str, Convention],
    topic: str,
    model: ModelSpec,
    train: TrainSpec,
    gpu: bool = False,
) -> str:
    """Why handing ``topic`` back to the framework changes nothing in this run ("" when it
    does): the spec has nothing it applies to, the framework has no convention of its own
    there, or its own is the spec's. ``gpu``: the run can reach a GPU (``GPU_TOPICS``)."""
    if topic in GPU_TOPICS and not gpu:
        return "not applicable on a CPU: it computes float32 in float32, deterministically"
    if topic == "tf32" and train.dtype != "float32":
        return f"not applicable: TensorFloat-32 rounds float32 only, the run is {train.dtype}"
    if topic in BATCHNORM_TOPICS and not _has_batchnorm(model, frozen=topic == "frozen_bn"):
        what = "frozen batchnorm" if topic == "frozen_bn" else "batchnorm"
        return f"not applicable: the spec has no {what}"
    if topic == "epsilon" and train.optimizer != "adam":
        return f"not applicable: the run uses {train.optimizer}, not Adam"
    if topic == "weight_decay" and train.weight_decay == 0:
        return "not applicable: the spec has no weight decay"
    if topic == "schedule" and train.lr_schedule == "constant" and not train.lr_warmup:
        return "not applicable: the spec's learning rate is constant"
    if topic not in conventions:
        return f"{framework} has no {TOPIC_WORDS[topic]} of its own"
    # Any steps per epoch above one tells a changed interval from the spec's.
    if native_specs(conventions, {topic}, model, train, 2) == (model, train):
        return f"{framework}'s own {TOPIC_WORDS[topic]} is the spec's"
    return ""
