"""Each framework's own conventions (``cnn_common.conventions``) and a run that hands topics
back to them: the spec a native topic trains, what changes nothing and why, and the checks of a
declaration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cnn_common.conventions import (
    CONVENTION_TOPICS,
    NATIVE_TOPICS,
    TOPIC_FIELDS,
    Convention,
    native_specs,
)
from cnn_common.data import Data
from cnn_common.framework import check_native, native_settings, not_native_here
from cnn_common.graph import BATCHNORM_FIELDS
from cnn_common.spec import LayerSpec, ModelSpec, TrainSpec, layers
from cnn_common.trainer import TrainCall
from keras_cnn.framework import KERAS
from lightning_cnn.framework import FRAMEWORK as LIGHTNING
from numpy_cnn.framework import FRAMEWORK as NUMPY
from pytorch_cnn.framework import FRAMEWORK as PYTORCH
from tests.contract.families import FAMILIES, frozen_spec

RESNET = FAMILIES["resnet_small"]
SCHEDULED = TrainSpec(lr_schedule="cosine", lr_warmup=1, weight_decay=1e-4)


def batchnorm_values(model: ModelSpec) -> set[tuple]:
    """The distinct batchnorm settings of every batchnorm the spec builds."""
    return {
        tuple(getattr(layer, f) for f in BATCHNORM_FIELDS if f != "frozen_batchnorm")
        for layer in layers(model)
        if layer.kind == "batchnorm"
    }


def test_keras_batchnorm_conventions_reach_every_batchnorm_residual_blocks_included() -> None:
    topics = ("bn_momentum", "bn_epsilon", "bn_variance")
    model, train = native_specs(KERAS.conventions, topics, RESNET, TrainSpec(), 10)
    assert train == TrainSpec()  # batchnorm topics touch the model alone
    assert batchnorm_values(RESNET) == {(0.1, 1e-5, "torch", "unbiased")}
    assert batchnorm_values(model) == {(0.99, 1e-3, "keras", "biased")}
    # one topic at a time changes its own fields only
    model, _ = native_specs(KERAS.conventions, ("bn_epsilon",), RESNET, TrainSpec(), 10)
    assert batchnorm_values(model) == {(0.1, 1e-3, "torch", "unbiased")}
    # PyTorch's own are the spec's defaults: nothing changes
    assert native_specs(PYTORCH.conventions, topics, RESNET, TrainSpec(), 10) == (
        RESNET,
        TrainSpec(),
    )


def test_frozen_batchnorm_native_is_inference_in_keras_and_batch_in_pytorch() -> None:
    model = frozen_spec("batch")
    keras_model, _ = native_specs(KERAS.conventions, ("frozen_bn",), model, TrainSpec(), 10)
    frozen = [layer for layer in layers(keras_model) if layer.kind == "batchnorm"]
    assert {layer.frozen_batchnorm for layer in frozen} == {"inference"}
    assert not not_native_here(KERAS, "frozen_bn", model, TrainSpec())
    assert not_native_here(PYTORCH, "frozen_bn", model, TrainSpec()) == (
        "pytorch's own frozen batchnorm is the spec's"
    )
    assert not_native_here(KERAS, "frozen_bn", RESNET, TrainSpec()) == (
        "not applicable: the spec has no frozen batchnorm"
    )


def test_weight_decay_native_is_l2_in_pytorch_and_decoupled_in_keras() -> None:
    decoupled = dataclasses.replace(SCHEDULED, weight_decay_convention="decoupled")
    _, torch_train = native_specs(PYTORCH.conventions, ("weight_decay",), RESNET, decoupled, 10)
    _, keras_train = native_specs(KERAS.conventions, ("weight_decay",), RESNET, SCHEDULED, 10)
    assert (torch_train.weight_decay_convention, torch_train.weight_decay_on) == ("l2", "all")
    assert (keras_train.weight_decay_convention, keras_train.weight_decay_on) == (
        "decoupled",
        "all",
    )
    assert keras_train.weight_decay == SCHEDULED.weight_decay  # the amount is the spec's
    assert not_native_here(KERAS, "weight_decay", RESNET, TrainSpec()) == (
        "not applicable: the spec has no weight decay"
    )


def test_a_schedule_changing_interval_keeps_its_durations() -> None:
    """Keras steps its schedules every update: a per-epoch warm-up of 1 epoch becomes 10 steps
    at 10 steps an epoch, and a step schedule decays after as many updates as before."""
    stepped = dataclasses.replace(SCHEDULED, lr_schedule="step", lr_step_size=2)
    _, keras_train = native_specs(KERAS.conventions, ("schedule",), RESNET, stepped, 10)
    assert (keras_train.lr_interval, keras_train.lr_warmup, keras_train.lr_step_size) == (
        "step",
        10,
        20,
    )
    per_step = dataclasses.replace(stepped, lr_interval="step", lr_warmup=10, lr_step_size=25)
    _, torch_train = native_specs(PYTORCH.conventions, ("schedule",), RESNET, per_step, 10)
    assert (torch_train.lr_interval, torch_train.lr_warmup, torch_train.lr_step_size) == (
        "epoch",
        1,
        2,  # 2.5 epochs, rounded
    )
    assert not_native_here(KERAS, "schedule", RESNET, TrainSpec()) == (
        "not applicable: the spec's learning rate is constant"
    )
    assert not_native_here(LIGHTNING, "schedule", RESNET, SCHEDULED) == (
        "lightning's own schedule stepping is the spec's"
    )


def test_numpy_has_no_conventions_and_keeps_the_spec_whatever_is_asked() -> None:
    assert dict(NUMPY.conventions) == {}
    everything = native_specs(NUMPY.conventions, NATIVE_TOPICS, RESNET, SCHEDULED, 10)
    assert everything == (RESNET, SCHEDULED)
    init, native, skipped = native_settings(NUMPY, NATIVE_TOPICS, RESNET, SCHEDULED)
    assert init == "shared" and native == ("order",)
    assert skipped["bn_momentum"] == "numpy has no batchnorm momentum of its own"
    assert skipped["init"] == "numpy has no initialisers of its own"


def test_native_settings_of_keras_on_resnet_small() -> None:
    augmented = TrainSpec(augment_shift=1)  # as resnet_small.yaml trains
    init, native, skipped = native_settings(KERAS, NATIVE_TOPICS, RESNET, augmented)
    assert init == "native"
    assert native == ("epsilon", "bn_momentum", "bn_epsilon", "bn_variance")
    assert skipped["order"].startswith("keras's own order (fit on arrays, shuffle=True) cannot")
    assert skipped["frozen_bn"] == "not applicable: the spec has no frozen batchnorm"


def test_every_declaration_sets_only_its_topics_fields() -> None:
    for info in (NUMPY, PYTORCH, LIGHTNING, KERAS):
        for topic, convention in info.conventions.items():
            assert topic in CONVENTION_TOPICS
            assert set(convention.fields) <= TOPIC_FIELDS[topic]
            assert convention.formula and convention.source.startswith("https://")
    with pytest.raises(ValueError, match="bn_epsilon cannot set \\['momentum'\\]"):
        dataclasses.replace(
            KERAS, conventions={"bn_epsilon": Convention({"momentum": 0.9}, "f", "s")}
        )
    with pytest.raises(ValueError, match="unknown convention topic 'dropout'"):
        dataclasses.replace(KERAS, conventions={"dropout": Convention({}, "f", "s")})


def test_check_native_takes_the_topics_and_epsilon_brings_the_optimiser() -> None:
    assert check_native(["epsilon"]) == {"epsilon", "optimizer"}
    assert check_native(["bn_momentum", "order"]) == {"bn_momentum", "order"}
    with pytest.raises(ValueError, match="unknown native topic"):
        check_native(["init"])  # no shared weights says it, not a choice
    with pytest.raises(ValueError, match="unknown native topic"):
        check_native(["bn_mometum"])


def test_train_reads_and_records_the_spec_with_the_frameworks_own_values(tmp_path) -> None:
    """``TrainCall`` (every framework's ``train``) hands the loop the native spec."""
    images = np.zeros((300, 28, 28, 1), np.float32)
    labels = np.zeros(300, np.int64)
    few = (images[:10], labels[:10])
    data = Data("mnist", images, labels, *few, *few, tuple("0123456789"))
    spec = ModelSpec(
        layers=(
            LayerSpec("conv", name="c", filters=2, kernel_size=3),
            LayerSpec("batchnorm", name="bn"),
            LayerSpec("global_avgpool"),
        )
    )
    call = TrainCall(
        KERAS, spec, SCHEDULED, data, tmp_path, None, None, resume=False, device="cpu",
        progress=False, native=("bn_momentum", "schedule"), name=None, devices=1,
    )  # fmt: skip
    assert call.native == {"bn_momentum", "schedule"}
    bn = next(layer for layer in call.spec.layers if layer.kind == "batchnorm")
    assert (bn.momentum, bn.momentum_convention, bn.epsilon) == (0.99, "keras", 1e-5)
    # 300 images, batch 128: 3 steps an epoch, the one-epoch warm-up is 3 steps
    assert (call.train_spec.lr_interval, call.train_spec.lr_warmup) == ("step", 3)
