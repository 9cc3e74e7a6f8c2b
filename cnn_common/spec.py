"""The model and training spec: one frozen description that every framework follows.

``ModelSpec()`` is the seed model (docs/design.md)::

    Conv2D(16, 5x5) ReLU -> MaxPool 2x2 -> Conv2D(32, 5x5) ReLU -> MaxPool 2x2 -> Flatten
    -> Dense(64) ReLU -> Dense(10)

and ``TrainSpec()`` its training run (Adam lr 1e-3, 5 epochs, batch 128, seed 0;
``cnn_common.train_spec``, re-exported here).

A model is written in one of two forms. The block form (``conv``: convolution blocks, each
with its activation and pooling; ``dense``: hidden layers) covers plain chains like the seed.
The layer-list form (``layers``: ``LayerSpec`` items) adds what the block form cannot say:
batch normalisation, activations as layers of their own, average and global average pooling,
grouped (depthwise) convolutions, and ``add`` joining a named earlier layer (a residual
connection), with a ``residual`` block as shorthand. Both end with the logits layer that
``num_classes`` implies.

``layers(spec)`` unrolls a spec into the named layer list every framework builds from, with
the output shape of each layer; it is the one place where layer names, padding amounts and
output sizes are decided.

Shapes: H, W spatial, C channels; image shapes are ``(H, W, C)`` (NHWC without the batch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cnn_common.errors import SpecError
from cnn_common.graph import (
    ACTIVATIONS,
    BATCHNORM_FIELDS,
    COMMON_FIELDS,
    IMAGE,
    KIND_FIELDS,
    LAYER_KINDS,
    MAP_KINDS,
    MOMENTUM_CONVENTIONS,
    PADDINGS,
    VARIANCES,
    Layer,
    LayerSpec,
    as_layer_spec,
    list_layers,
    logits_layer,
)
from cnn_common.spec_checks import (
    as_block,
    check_choice,
    check_float,
    check_int,
    conv_output_size,
    refuse_unknown_fields,
    same_padding,
)
from cnn_common.train_spec import (
    DTYPES,
    EPSILON_CONVENTIONS,
    OPTIMIZERS,
    TF32_MODES,
    TrainSpec,
    validate_train,
)

__all__ = [
    "ACTIVATIONS",
    "BATCHNORM_FIELDS",
    "COMMON_FIELDS",
    "DTYPES",
    "EPSILON_CONVENTIONS",
    "IMAGE",
    "KIND_FIELDS",
    "LAYER_KINDS",
    "MAP_KINDS",
    "MOMENTUM_CONVENTIONS",
    "OPTIMIZERS",
    "PADDINGS",
    "PADDING_CONVENTIONS",
    "TF32_MODES",
    "VARIANCES",
    "ConvBlock",
    "DenseLayer",
    "Layer",
    "LayerSpec",
    "ModelSpec",
    "TrainSpec",
    "conv_output_size",
    "feature_map_layers",
    "flops",
    "layer_shapes",
    "layers",
    "native_pads",
    "param_count",
    "same_padding",
    "spec_from_dict",
    "spec_to_dict",
    "state_count",
    "trainable_shapes",
    "validate_model",
    "validate_train",
    "weight_shapes",
]


@dataclass(frozen=True)
class ConvBlock:
    """One convolution, its activation and an optional max-pooling after it."""

    filters: int = 16  # output channels F
    kernel_size: int = 5  # square kernel KH = KW
    stride: int = 1
    padding: str = "valid"  # valid | same (TensorFlow's placement: the odd pixel goes last)
    activation: str = "relu"
    pool_size: int = 2  # 0 = no pooling after this convolution
    pool_stride: int = 0  # 0 = same as pool_size


@dataclass(frozen=True)
class DenseLayer:
    """One hidden fully connected layer (the logits layer is implied by ``num_classes``)."""

    units: int = 64
    activation: str = "relu"
    dropout: float = 0.0  # dropout rate after the activation; 0 = no dropout layer


DEFAULT_CONV = (ConvBlock(filters=16), ConvBlock(filters=32))
DEFAULT_DENSE = (DenseLayer(units=64),)


@dataclass(frozen=True)
class ModelSpec:
    """The architecture. Frozen: change it with ``dataclasses.replace`` or overrides."""

    input_shape: tuple[int, int, int] = (28, 28, 1)  # (H, W, C)
    conv: tuple[ConvBlock, ...] = DEFAULT_CONV
    dense: tuple[DenseLayer, ...] = DEFAULT_DENSE
    num_classes: int = 10
    layers: tuple[LayerSpec, ...] = ()  # the layer-list form; empty = the block form

    def __post_init__(self) -> None:
        # Accept lists (from YAML/JSON) and dicts for the nested blocks.
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "conv", tuple(as_block(ConvBlock, b) for b in self.conv))
        object.__setattr__(self, "dense", tuple(as_block(DenseLayer, d) for d in self.dense))
        if isinstance(self.layers, (str, bytes, Mapping)) or not isinstance(self.layers, Iterable):
            raise SpecError(
                f"layers must be a list of layers, got {self.layers!r}",
                "write it as a list, e.g. layers: [{kind: conv, filters: 16}, ...]",
            )
        items = tuple(as_layer_spec(v, f"layers[{i}]") for i, v in enumerate(self.layers))
        object.__setattr__(self, "layers", items)
        if items:
            blocks = (self.conv, self.dense)
            if blocks not in ((DEFAULT_CONV, DEFAULT_DENSE), ((), ())):
                raise SpecError(
                    "a model has conv/dense blocks and a layer list",
                    "write it in one form: either conv and dense, or layers",
                )
            object.__setattr__(self, "conv", ())
            object.__setattr__(self, "dense", ())
        validate_model(self)


def validate_model(spec: ModelSpec) -> None:
    """Raise ``SpecError`` naming the field or layer when ``spec`` cannot be built."""
    shape = spec.input_shape
    if len(shape) != 3:
        raise SpecError(
            f"input_shape must be (H, W, C), got {shape!r}",
            "give three positive integers, e.g. input_shape: [28, 28, 1]",
        )
    for i, dim in enumerate(shape):
        check_int(f"input_shape[{i}]", dim, 1)
    check_int("num_classes", spec.num_classes, 2)
    for i, block in enumerate(spec.conv):
        where = f"conv[{i}]"
        check_int(f"{where}.filters", block.filters, 1)
        check_int(f"{where}.kernel_size", block.kernel_size, 1)
        check_int(f"{where}.stride", block.stride, 1)
        check_choice(f"{where}.padding", block.padding, PADDINGS)
        check_choice(f"{where}.activation", block.activation, ACTIVATIONS)
        check_int(f"{where}.pool_size", block.pool_size, 0)
        check_int(f"{where}.pool_stride", block.pool_stride, 0)
    for i, layer in enumerate(spec.dense):
        where = f"dense[{i}]"
        check_int(f"{where}.units", layer.units, 1)
        check_choice(f"{where}.activation", layer.activation, ACTIVATIONS)
        check_float(f"{where}.dropout", layer.dropout, 0.0, 1.0, low_open=False)
    layers(spec)  # raises a SpecError naming the layer whose output would be empty


# ----------------------------------------------------------------------------- shapes


PADDING_CONVENTIONS = ("tensorflow", "torch")


def native_pads(spec: ModelSpec, convention: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """The conv layers a framework would pad otherwise by its own 'same' convention, with
    those pads: ``{layer name: ((top, bottom), (left, right))}``; empty where it agrees.

    - ``tensorflow``: the spec's placement (``same_padding``) everywhere.
    - ``torch``: ``padding='same'`` (the spec's placement) for stride 1; for a larger stride
      PyTorch has no 'same', and the usual ``padding=k // 2`` pads both sides alike. That
      gives the spec's output size for odd kernels only; an even kernel with a stride keeps
      the spec's pads (the layer would change shape otherwise).
    """
    if convention not in PADDING_CONVENTIONS:
        raise ValueError(f"unknown padding convention {convention!r}")
    found: dict[str, tuple[tuple[int, int], ...]] = {}
    if convention == "tensorflow":
        return found
    for layer in layers(spec):
        k = layer.kernel_size
        if layer.kind != "conv" or layer.padding != "same" or layer.stride == 1 or k % 2 == 0:
            continue
        symmetric = ((k // 2, k // 2), (k // 2, k // 2))
        if symmetric != layer.pad:
            found[layer.name] = symmetric
    return found


def layers(spec: ModelSpec) -> list[Layer]:
    """Unroll ``spec`` into named layers with their shapes and canonical tensor shapes.

    Block form: conv1, pool1, conv2, pool2, ..., flatten, dense1, dropout1, ..., logits.
    Layer list: each item's name (or its kind and a number), a ``residual`` item unrolled into
    its layers (``res1_conv1``, ``res1_bn1``, ...), then logits. Raises ``SpecError`` naming the
    layer whose shapes do not fit.
    """
    if spec.layers:
        return list_layers(spec.layers, spec.input_shape, spec.num_classes)
    return _block_layers(spec)


def _block_layers(spec: ModelSpec) -> list[Layer]:
    """The block form unrolled: conv1, pool1, conv2, pool2, ..., flatten, dense1, dropout1,
    ..., logits, each reading the one before."""
    out: list[Layer] = []
    h, w, c = spec.input_shape
    for i, block in enumerate(spec.conv, start=1):
        k, s = block.kernel_size, block.stride
        if block.padding == "same":
            pad = (same_padding(h, k, s), same_padding(w, k, s))
        else:
            pad = ((0, 0), (0, 0))
        ho = conv_output_size(h, k, s, sum(pad[0]))
        wo = conv_output_size(w, k, s, sum(pad[1]))
        if ho <= 0 or wo <= 0:
            raise SpecError(
                f"layer conv{i}: a {k}x{k} kernel does not fit its {h}x{w} input "
                f"(padding {block.padding!r}, stride {s})",
                f"use a smaller conv[{i - 1}].kernel_size, padding 'same', or fewer blocks",
            )
        params = {f"conv{i}.kernel": (k, k, c, block.filters), f"conv{i}.bias": (block.filters,)}
        out.append(
            Layer(
                f"conv{i}",
                "conv",
                (h, w, c),
                (ho, wo, block.filters),
                k,
                s,
                pad,
                block.activation,
                params=params,
                padding=block.padding,
            )
        )
        h, w, c = ho, wo, block.filters
        if block.pool_size:
            p = block.pool_size
            ps = block.pool_stride or p
            ho, wo = conv_output_size(h, p, ps, 0), conv_output_size(w, p, ps, 0)
            if ho <= 0 or wo <= 0:
                raise SpecError(
                    f"layer pool{i}: a {p}x{p} pooling window does not fit its {h}x{w} input",
                    f"use a smaller conv[{i - 1}].pool_size, or pool_size 0 for no pooling",
                )
            out.append(Layer(f"pool{i}", "pool", (h, w, c), (ho, wo, c), p, ps))
            h, w = ho, wo
    flat = h * w * c
    out.append(Layer("flatten", "flatten", (h, w, c), (flat,)))
    units_in = flat
    for i, dense in enumerate(spec.dense, start=1):
        params = {f"dense{i}.kernel": (units_in, dense.units), f"dense{i}.bias": (dense.units,)}
        out.append(
            Layer(
                f"dense{i}",
                "dense",
                (units_in,),
                (dense.units,),
                activation=dense.activation,
                units=dense.units,
                params=params,
            )
        )
        if dense.dropout > 0:
            out.append(
                Layer(f"dropout{i}", "dropout", (dense.units,), (dense.units,), rate=dense.dropout)
            )
        units_in = dense.units
    out.append(logits_layer(spec.num_classes, units_in))
    chained, before = [], IMAGE
    for layer in out:
        chained.append(dataclasses.replace(layer, inputs=(before,)))
        before = layer.name
    return chained


def layer_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Output shape of every named layer, without the batch axis, e.g. conv1 -> (24, 24, 16)."""
    return {layer.name: layer.output_shape for layer in layers(spec)}


def weight_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Canonical shape of every tensor a model keeps, in layer order, each layer's trainable
    ones first: conv1.kernel (5, 5, 1, 16), ..., bn1.gamma, bn1.beta, bn1.moving_mean, ..."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers(spec):
        shapes.update(layer.tensors)
    return shapes


def trainable_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The tensors that have gradients and are trained (``weight_shapes`` without batchnorm's
    statistics and without the layers the spec freezes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers(spec):
        shapes.update(layer.params if layer.trainable else {})
    return shapes


def param_count(spec: ModelSpec) -> int:
    """Number of trainable parameters (46,730 for the seed model)."""
    return sum(math.prod(shape) for shape in trainable_shapes(spec).values())


def state_count(spec: ModelSpec) -> int:
    """Number of non-trainable values kept with the weights (batchnorm's statistics)."""
    return sum(math.prod(s) for layer in layers(spec) for s in layer.state.values())


def feature_map_layers(spec: ModelSpec) -> list[str]:
    """The layers ``feature_maps`` returns, in order: every layer of ``MAP_KINDS`` (a conv
    after its activation)."""
    return [layer.name for layer in layers(spec) if layer.kind in MAP_KINDS]


def flops(spec: ModelSpec) -> int:
    """Forward-pass floating-point operations for one image (a multiply-add counts as 2).

    Convolutions and dense layers count 2 per weight an output reads (a multiply and an add;
    the bias add takes the place of the first sum's add); a grouped convolution's output reads
    ``C_in / groups`` channels. A non-linear activation counts 1 per output element,
    max- and average pooling 1 per window element they read, global average pooling 1 per
    input element, add 1 per output element, and batchnorm 2 (its scale and shift, folded as
    at inference).
    """
    total = 0
    for layer in layers(spec):
        size = math.prod(layer.output_shape)
        nonlinear = size if layer.activation != "linear" else 0
        if layer.kind == "conv":
            k, c_in = layer.kernel_size, layer.input_shape[2] // layer.groups
            total += size * (2 * k * k * c_in) + nonlinear  # MACs * 2, bias in the last add
        elif layer.kind in ("pool", "avgpool"):
            total += size * layer.kernel_size * layer.kernel_size
        elif layer.kind in ("dense", "logits"):
            total += size * 2 * layer.input_shape[0] + nonlinear
        elif layer.kind == "activation":
            total += nonlinear
        elif layer.kind == "global_avgpool":
            total += math.prod(layer.input_shape)
        elif layer.kind == "add":
            total += size
        elif layer.kind == "batchnorm":
            total += 2 * size
    return total


# ----------------------------------------------------------------------------- plain data


def spec_to_dict(model: ModelSpec, train: TrainSpec | None = None) -> dict[str, Any]:
    """Plain-data form of the specs (JSON/YAML-safe): ``{"model": {...}, "train": {...}}``.

    The model has the fields of its form only: ``conv`` and ``dense``, or ``layers``, each
    item with its kind's fields (``KIND_FIELDS``), and ``name`` and ``input`` where set.
    """
    plain = _plain(dataclasses.asdict(model))
    if model.layers:
        del plain["conv"], plain["dense"]
        plain["layers"] = [_layer_to_dict(item) for item in model.layers]
    else:
        del plain["layers"]
    data: dict[str, Any] = {"model": plain}
    if train is not None:
        data["train"] = dataclasses.asdict(train)
    return data


def _layer_to_dict(item: LayerSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": item.kind}
    data.update({f: getattr(item, f) for f in ("name", "input") if getattr(item, f)})
    data.update({f: getattr(item, f) for f in KIND_FIELDS[item.kind]})
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def spec_from_dict(data: Mapping[str, Any]) -> tuple[ModelSpec, TrainSpec]:
    """Build both specs from ``{"model": {...}, "train": {...}}``; missing parts take defaults."""
    if not isinstance(data, Mapping):
        raise SpecError(
            "a spec must be a mapping with 'model' and/or 'train' sections",
            "write e.g. {model: {num_classes: 10}, train: {epochs: 5}}",
        )
    unknown = set(data) - {"model", "train"}
    if unknown:
        raise SpecError(
            f"unknown section(s) {sorted(unknown)} in the spec",
            "a spec has two sections: 'model' and 'train'",
        )
    model_data = dict(data.get("model") or {})
    train_data = dict(data.get("train") or {})
    model = _build(ModelSpec, model_data, "model")
    train = _build(TrainSpec, train_data, "train")
    return model, train


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    refuse_unknown_fields(cls, values, f"'{section}'", ", ".join)
    try:
        return cls(**values)
    except TypeError as exc:  # e.g. a block given as a number
        raise SpecError(f"bad value in '{section}': {exc}", "check the spec's types") from None
