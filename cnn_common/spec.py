"""The model and training spec: one frozen description that every framework follows.

``ModelSpec()`` is the seed model (docs/design.md)::

    Conv2D(16, 5x5) ReLU -> MaxPool 2x2 -> Conv2D(32, 5x5) ReLU -> MaxPool 2x2 -> Flatten
    -> Dense(64) ReLU -> Dense(10)

and ``TrainSpec()`` its training run (Adam lr 1e-3, 5 epochs, batch 128, seed 0).

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnn_common.errors import SpecError

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
PADDINGS = ("valid", "same")
OPTIMIZERS = ("adam", "sgd")
EPSILON_CONVENTIONS = ("torch", "keras")
DTYPES = ("float32", "float64")
# BatchNorm's running average: "torch" new = (1 - m) * old + m * batch (PyTorch's momentum
# 0.1); "keras" new = m * old + (1 - m) * batch (Keras's momentum 0.99). The running variance
# is stored "unbiased" (the batch's variance * n / (n - 1), PyTorch) or "biased" (Keras).
# Training normalises with the batch's biased variance in either case.
MOMENTUM_CONVENTIONS = ("torch", "keras")
VARIANCES = ("unbiased", "biased")
IMAGE = "input"  # the name a layer's ``input`` or an ``add``'s ``join`` gives the image


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


@dataclass(frozen=True)
class LayerSpec:
    """One item of a layer list. ``kind`` says which fields it takes (``KIND_FIELDS``); every
    item may have a ``name`` (default: its kind and a number, ``conv3``) and an ``input`` (the
    name of an earlier layer it reads instead of the one before it, or ``input``: the image).

    - ``conv``: ``filters`` outputs from ``kernel_size`` x ``kernel_size`` windows; ``groups``
      splits the channels (``groups`` = input channels = ``filters``: depthwise); ``bias``;
      ``activation`` as shorthand for an activation layer after it.
    - ``batchnorm``: per-channel normalisation of a feature map (``momentum``, ``epsilon``,
      ``momentum_convention``, ``variance``: see ``MOMENTUM_CONVENTIONS`` and ``VARIANCES``);
      trainable ``gamma`` and ``beta``, the running statistics ``moving_mean`` and
      ``moving_variance`` kept beside them.
    - ``activation``: its ``activation`` applied on its own.
    - ``maxpool`` / ``avgpool``: ``pool_size`` windows every ``pool_stride`` (0: the size).
    - ``global_avgpool``: ``(H, W, C) -> (C,)``; ``flatten``: ``(H, W, C) -> (H*W*C,)``.
    - ``dense``: ``units`` outputs, ``activation`` shorthand; ``dropout``: ``rate``.
    - ``add``: the sum of the layer before and the earlier layer ``join`` (same shapes).
    - ``residual``: two 3x3 'same' convolutions (the first with ``stride``), each followed by
      batchnorm, relu between them; a 1x1 convolution and batchnorm project the block's input
      where its shape changes; their sum, then relu. ``bias`` and the batchnorm fields apply to
      its layers.
    """

    kind: str
    name: str = ""
    input: str = ""
    filters: int = 0
    kernel_size: int = 3
    stride: int = 1
    padding: str = "valid"
    groups: int = 1
    bias: bool = True
    activation: str = "linear"
    pool_size: int = 2
    pool_stride: int = 0
    units: int = 0
    rate: float = 0.0
    join: str = ""
    momentum: float = 0.1
    epsilon: float = 1e-5
    momentum_convention: str = "torch"
    variance: str = "unbiased"


BATCHNORM_FIELDS = ("momentum", "epsilon", "momentum_convention", "variance")
# The fields each kind of LayerSpec takes, besides kind, name and input.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "conv": ("filters", "kernel_size", "stride", "padding", "groups", "bias", "activation"),
    "batchnorm": BATCHNORM_FIELDS,
    "activation": ("activation",),
    "maxpool": ("pool_size", "pool_stride"),
    "avgpool": ("pool_size", "pool_stride"),
    "global_avgpool": (),
    "flatten": (),
    "dense": ("units", "activation"),
    "dropout": ("rate",),
    "add": ("join",),
    "residual": ("filters", "stride", "bias", *BATCHNORM_FIELDS),
}
COMMON_FIELDS = ("kind", "name", "input")


def _as_layer_spec(value: Any, where: str) -> LayerSpec:
    """A ``LayerSpec`` from itself or a mapping, refusing fields its kind does not take."""
    if isinstance(value, Mapping):
        kind = value.get("kind")
        _check_choice(f"{where}.kind", kind, KIND_FIELDS)
        allowed = (*COMMON_FIELDS, *KIND_FIELDS[kind])
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise SpecError(
                f"{where}: a {kind} layer has no field(s) {unknown}",
                f"a {kind} layer takes: {', '.join(allowed)}",
            )
        return LayerSpec(**value)
    if not isinstance(value, LayerSpec):
        raise SpecError(
            f"{where} must be a mapping with a kind, got {value!r}",
            "write it as e.g. {kind: conv, filters: 16, kernel_size: 3}",
        )
    _check_choice(f"{where}.kind", value.kind, KIND_FIELDS)
    allowed = (*COMMON_FIELDS, *KIND_FIELDS[value.kind])
    set_elsewhere = [
        f.name
        for f in dataclasses.fields(LayerSpec)
        if f.name not in allowed and getattr(value, f.name) != f.default
    ]
    if set_elsewhere:
        raise SpecError(
            f"{where}: a {value.kind} layer has no field(s) {set_elsewhere}",
            f"a {value.kind} layer takes: {', '.join(allowed)}",
        )
    return value


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
        object.__setattr__(self, "conv", tuple(_as_block(ConvBlock, b) for b in self.conv))
        object.__setattr__(self, "dense", tuple(_as_block(DenseLayer, d) for d in self.dense))
        if isinstance(self.layers, (str, bytes, Mapping)) or not isinstance(self.layers, Iterable):
            raise SpecError(
                f"layers must be a list of layers, got {self.layers!r}",
                "write it as a list, e.g. layers: [{kind: conv, filters: 16}, ...]",
            )
        items = tuple(_as_layer_spec(v, f"layers[{i}]") for i, v in enumerate(self.layers))
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

    def __post_init__(self) -> None:
        validate_train(self)


@dataclass(frozen=True)
class Layer:
    """One named layer of an unrolled spec, with its output shape.

    ``kind`` is one of ``LAYER_KINDS``: conv, batchnorm, activation, pool (max-pooling),
    avgpool, global_avgpool, flatten, dense, dropout, add, logits. ``inputs`` names the layers
    it reads (``IMAGE`` for the image): the one before it, an earlier one its spec named, or,
    for ``add``, those two. ``pad`` is the zero padding of a conv layer as
    ``((top, bottom), (left, right))``; ``params`` are the trainable tensors of the layer in
    the canonical layout with their shapes, ``state`` the others (batchnorm's running
    statistics), which travel with the weights but have no gradient.
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]  # (H, W, C) for maps, (units,) after flatten
    kernel_size: int = 0
    stride: int = 1
    pad: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    activation: str = "linear"
    units: int = 0
    rate: float = 0.0
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    groups: int = 1
    padding: str = "valid"  # conv: how the spec asked for ``pad``
    state: dict[str, tuple[int, ...]] = field(default_factory=dict)
    momentum: float = 0.0  # batchnorm: the running average's momentum, in its convention
    epsilon: float = 0.0  # batchnorm: added to the variance under the square root
    momentum_convention: str = "torch"
    variance: str = "unbiased"

    @property
    def tensors(self) -> dict[str, tuple[int, ...]]:
        """Every tensor the layer keeps, trainable first: ``params`` then ``state``."""
        return {**self.params, **self.state}


LAYER_KINDS = (
    "conv",
    "batchnorm",
    "activation",
    "pool",
    "avgpool",
    "global_avgpool",
    "flatten",
    "dense",
    "dropout",
    "add",
    "logits",
)
# The layers whose output is a feature map shown as one: the convolutions (after their
# activation), the poolings, and in a layer list the batch normalisations and the joins.
MAP_KINDS = ("conv", "pool", "avgpool", "batchnorm", "add")


def _refuse_unknown_fields(
    cls: type, values: Mapping[str, Any], where: str, listed: Callable[[list[str]], str]
) -> None:
    """Raise ``SpecError`` naming the keys of ``values`` that are no field of ``cls`` (the
    hint lists the fields, written by ``listed``)."""
    allowed = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise SpecError(
            f"unknown field(s) {unknown} in {where}", f"allowed fields: {listed(allowed)}"
        )


def _as_block(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        _refuse_unknown_fields(cls, value, f"a {cls.__name__}", str)
        return cls(**value)
    raise SpecError(
        f"a {cls.__name__} must be a mapping of its fields, got {value!r}",
        f"write it as {{{', '.join(f.name + ': ...' for f in dataclasses.fields(cls))}}}",
    )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(
            f"{name} must be an integer >= {minimum}, got {value!r}",
            f"set {name} to a whole number of at least {minimum}",
        )


def _check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise SpecError(
            f"{name} must be one of {list(allowed)}, got {value!r}",
            f"set {name} to one of {', '.join(allowed)}",
        )


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value < high
    if not ok:
        bracket = "(" if low_open else "["
        raise SpecError(
            f"{name} must be a number in {bracket}{low}, {high}), got {value!r}",
            f"set {name} to a value in that range",
        )


def validate_model(spec: ModelSpec) -> None:
    """Raise ``SpecError`` naming the field or layer when ``spec`` cannot be built."""
    shape = spec.input_shape
    if len(shape) != 3:
        raise SpecError(
            f"input_shape must be (H, W, C), got {shape!r}",
            "give three positive integers, e.g. input_shape: [28, 28, 1]",
        )
    for i, dim in enumerate(shape):
        _check_int(f"input_shape[{i}]", dim, 1)
    _check_int("num_classes", spec.num_classes, 2)
    for i, block in enumerate(spec.conv):
        where = f"conv[{i}]"
        _check_int(f"{where}.filters", block.filters, 1)
        _check_int(f"{where}.kernel_size", block.kernel_size, 1)
        _check_int(f"{where}.stride", block.stride, 1)
        _check_choice(f"{where}.padding", block.padding, PADDINGS)
        _check_choice(f"{where}.activation", block.activation, ACTIVATIONS)
        _check_int(f"{where}.pool_size", block.pool_size, 0)
        _check_int(f"{where}.pool_stride", block.pool_stride, 0)
    for i, layer in enumerate(spec.dense):
        where = f"dense[{i}]"
        _check_int(f"{where}.units", layer.units, 1)
        _check_choice(f"{where}.activation", layer.activation, ACTIVATIONS)
        _check_float(f"{where}.dropout", layer.dropout, 0.0, 1.0, low_open=False)
    layers(spec)  # raises a SpecError naming the layer whose output would be empty


def validate_train(spec: TrainSpec) -> None:
    """Raise ``SpecError`` naming the field when a training setting is out of range."""
    _check_int("epochs", spec.epochs, 1)
    _check_int("batch_size", spec.batch_size, 1)
    _check_choice("optimizer", spec.optimizer, OPTIMIZERS)
    _check_float("learning_rate", spec.learning_rate, 0.0, math.inf, low_open=True)
    _check_float("beta_1", spec.beta_1, 0.0, 1.0, low_open=False)
    _check_float("beta_2", spec.beta_2, 0.0, 1.0, low_open=False)
    _check_float("epsilon", spec.epsilon, 0.0, 1.0, low_open=True)
    _check_choice("epsilon_convention", spec.epsilon_convention, EPSILON_CONVENTIONS)
    _check_float("momentum", spec.momentum, 0.0, 1.0, low_open=False)
    _check_int("seed", spec.seed, 0)
    _check_int("validation_size", spec.validation_size, 0)
    _check_int("augment_shift", spec.augment_shift, 0)
    _check_choice("dtype", spec.dtype, DTYPES)


# ----------------------------------------------------------------------------- shapes


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int) -> int:
    """Output length of a convolution or pooling window along one axis.

    ``out = (size + pad_total - kernel) // stride + 1``, where ``pad_total`` is the sum of the
    zero padding on both sides; <= 0 means the window does not fit.
    """
    return (size + pad_total - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Zero padding (before, after) for 'same' along one axis, as TensorFlow places it.

    The output length is ``ceil(size / stride)``; when the total padding is odd the extra
    pixel goes after (bottom/right). PyTorch's ``padding='same'`` agrees, but exists for
    stride 1 only, so the frameworks pad explicitly with these amounts.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


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
    return _list_layers(spec) if spec.layers else _block_layers(spec)


def _logits(spec: ModelSpec, units_in: int, before: str = "") -> Layer:
    params = {"logits.kernel": (units_in, spec.num_classes), "logits.bias": (spec.num_classes,)}
    return Layer(
        "logits",
        "logits",
        (units_in,),
        (spec.num_classes,),
        units=spec.num_classes,
        params=params,
        inputs=(before,) if before else (),
    )


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
    out.append(_logits(spec, units_in))
    chained, before = [], IMAGE
    for layer in out:
        chained.append(dataclasses.replace(layer, inputs=(before,)))
        before = layer.name
    return chained


DEFAULT_NAMES = {
    "conv": "conv",
    "batchnorm": "bn",
    "maxpool": "pool",
    "avgpool": "avgpool",
    "global_avgpool": "gap",
    "flatten": "flatten",
    "dense": "dense",
    "dropout": "dropout",
    "add": "add",
    "residual": "res",
}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class _Unroller:
    """Builds the layer list's ``Layer`` objects one item at a time, keeping every output's
    shape by name so that ``input`` and ``join`` can name any earlier layer."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.out: list[Layer] = []
        self.shapes: dict[str, tuple[int, ...]] = {IMAGE: tuple(spec.input_shape)}
        self.counts: dict[str, int] = {}
        self.last = IMAGE

    def auto_name(self, stem: str) -> str:
        """``stem`` and the next free number: conv1, conv2, ..., relu1, ...; the first flatten
        is ``flatten``, as in the block form."""
        if stem == "flatten" and stem not in self.shapes:
            return stem
        self.counts[stem] = self.counts.get(stem, 0) + 1
        name = f"{stem}{self.counts[stem]}"
        while name in self.shapes:
            self.counts[stem] += 1
            name = f"{stem}{self.counts[stem]}"
        return name

    def source(self, named: str, where: str, field_name: str) -> str:
        if not named:
            return self.last
        if named not in self.shapes:
            earlier = ", ".join(self.shapes)
            raise SpecError(
                f"{where}: {field_name} {named!r} names no earlier layer",
                f"name one of: {earlier}",
            )
        return named

    def map_shape(self, name: str, where: str, kind: str) -> tuple[int, int, int]:
        shape = self.shapes[name]
        if len(shape) != 3:
            raise SpecError(
                f"{where}: a {kind} layer needs a feature map (H, W, C), but {name!r} gives "
                f"{shape}",
                f"put the {kind} layer before flatten or global_avgpool",
            )
        return shape  # type: ignore[return-value]

    def add(self, layer: Layer, where: str) -> None:
        if layer.name in self.shapes:
            raise SpecError(
                f"{where}: the name {layer.name!r} is used twice",
                "give every layer its own name",
            )
        if not layer.name or not set(layer.name) <= _NAME_CHARS or layer.name[0].isdigit():
            raise SpecError(
                f"{where}: {layer.name!r} is not a layer name",
                "use letters, digits and _ (not first a digit), e.g. block2_conv",
            )
        for size in layer.output_shape:
            if size <= 0:
                raise SpecError(
                    f"layer {layer.name} ({where}): its window does not fit its "
                    f"{layer.input_shape[:2]} input",
                    "use a smaller kernel or pool, a stride of 1, or padding 'same'",
                )
        self.out.append(layer)
        self.shapes[layer.name] = layer.output_shape
        self.last = layer.name

    def item(self, item: LayerSpec, where: str) -> None:
        kind = item.kind
        if kind == "residual":
            self.residual(item, where)
            return
        stem = item.activation if kind == "activation" else DEFAULT_NAMES[kind]
        name = item.name or self.auto_name(stem)
        src = self.source(item.input, where, "input")
        shape = self.shapes[src]
        if kind == "conv":
            self.add(self.conv(item, name, src, where), where)
        elif kind == "batchnorm":
            self.add(self.batchnorm(item, name, src, where), where)
        elif kind == "activation":
            _check_choice(f"{where}.activation", item.activation, ACTIVATIONS)
            self.add(
                Layer(name, "activation", shape, shape, activation=item.activation, inputs=(src,)),
                where,
            )
        elif kind in ("maxpool", "avgpool"):
            h, w, c = self.map_shape(src, where, kind)
            _check_int(f"{where}.pool_size", item.pool_size, 1)
            _check_int(f"{where}.pool_stride", item.pool_stride, 0)
            p, ps = item.pool_size, item.pool_stride or item.pool_size
            out = (conv_output_size(h, p, ps, 0), conv_output_size(w, p, ps, 0), c)
            unrolled = "pool" if kind == "maxpool" else "avgpool"
            self.add(Layer(name, unrolled, (h, w, c), out, p, ps, inputs=(src,)), where)
        elif kind == "global_avgpool":
            h, w, c = self.map_shape(src, where, kind)
            self.add(Layer(name, kind, (h, w, c), (c,), inputs=(src,)), where)
        elif kind == "flatten":
            h, w, c = self.map_shape(src, where, kind)
            self.add(Layer(name, kind, (h, w, c), (h * w * c,), inputs=(src,)), where)
        elif kind == "dense":
            if len(shape) != 1:
                raise SpecError(
                    f"{where}: a dense layer needs a vector, but {src!r} gives {shape}",
                    "put flatten or global_avgpool before it",
                )
            _check_int(f"{where}.units", item.units, 1)
            _check_choice(f"{where}.activation", item.activation, ACTIVATIONS)
            params = {f"{name}.kernel": (shape[0], item.units), f"{name}.bias": (item.units,)}
            self.add(
                Layer(
                    name,
                    "dense",
                    shape,
                    (item.units,),
                    activation=item.activation,
                    units=item.units,
                    params=params,
                    inputs=(src,),
                ),
                where,
            )
        elif kind == "dropout":
            _check_float(f"{where}.rate", item.rate, 0.0, 1.0, low_open=False)
            self.add(Layer(name, "dropout", shape, shape, rate=item.rate, inputs=(src,)), where)
        else:  # add
            if not item.join:
                raise SpecError(f"{where}: an add layer needs join", "name the layer it adds")
            other = self.source(item.join, where, "join")
            if self.shapes[other] != shape:
                raise SpecError(
                    f"layer {name} ({where}): cannot add {src!r} {shape} and {other!r} "
                    f"{self.shapes[other]}: the shapes differ",
                    "join a layer of the same shape, or project it with a 1x1 conv first",
                )
            self.add(Layer(name, "add", shape, shape, inputs=(src, other)), where)

    def conv(self, item: LayerSpec, name: str, src: str, where: str) -> Layer:
        h, w, c = self.map_shape(src, where, "conv")
        _check_int(f"{where}.filters", item.filters, 1)
        _check_int(f"{where}.kernel_size", item.kernel_size, 1)
        _check_int(f"{where}.stride", item.stride, 1)
        _check_int(f"{where}.groups", item.groups, 1)
        _check_choice(f"{where}.padding", item.padding, PADDINGS)
        _check_choice(f"{where}.activation", item.activation, ACTIVATIONS)
        if not isinstance(item.bias, bool):
            raise SpecError(
                f"{where}.bias must be true or false, got {item.bias!r}",
                "set bias to true or false",
            )
        g = item.groups
        if c % g or item.filters % g:
            raise SpecError(
                f"{where}: groups {g} must divide the input's {c} channels and the "
                f"{item.filters} filters",
                f"use groups {c} with filters a multiple of {c} for a depthwise convolution",
            )
        k, s = item.kernel_size, item.stride
        if item.padding == "same":
            pad = (same_padding(h, k, s), same_padding(w, k, s))
        else:
            pad = ((0, 0), (0, 0))
        out = (
            conv_output_size(h, k, s, sum(pad[0])),
            conv_output_size(w, k, s, sum(pad[1])),
            item.filters,
        )
        params = {f"{name}.kernel": (k, k, c // g, item.filters)}
        if item.bias:
            params[f"{name}.bias"] = (item.filters,)
        return Layer(
            name,
            "conv",
            (h, w, c),
            out,
            k,
            s,
            pad,
            item.activation,
            params=params,
            inputs=(src,),
            groups=g,
            padding=item.padding,
        )

    def batchnorm(self, item: LayerSpec, name: str, src: str, where: str) -> Layer:
        h, w, c = self.map_shape(src, where, "batchnorm")
        _check_float(f"{where}.momentum", item.momentum, 0.0, 1.0, low_open=False)
        _check_float(f"{where}.epsilon", item.epsilon, 0.0, 1.0, low_open=True)
        _check_choice(
            f"{where}.momentum_convention", item.momentum_convention, MOMENTUM_CONVENTIONS
        )
        _check_choice(f"{where}.variance", item.variance, VARIANCES)
        params = {f"{name}.gamma": (c,), f"{name}.beta": (c,)}
        state = {f"{name}.moving_mean": (c,), f"{name}.moving_variance": (c,)}
        return Layer(
            name,
            "batchnorm",
            (h, w, c),
            (h, w, c),
            params=params,
            state=state,
            inputs=(src,),
            momentum=item.momentum,
            epsilon=item.epsilon,
            momentum_convention=item.momentum_convention,
            variance=item.variance,
        )

    def residual(self, item: LayerSpec, where: str) -> None:
        """The ``residual`` shorthand unrolled into ``<name>_conv1`` ... ``<name>_relu2``."""
        block = item.name or self.auto_name("res")
        src = self.source(item.input, where, "input")
        h, w, c = self.map_shape(src, where, "residual")
        _check_int(f"{where}.filters", item.filters, 1)
        _check_int(f"{where}.stride", item.stride, 1)
        conv = {"kind": "conv", "kernel_size": 3, "padding": "same", "bias": item.bias}
        bn = {"kind": "batchnorm", **{f: getattr(item, f) for f in BATCHNORM_FIELDS}}
        parts = [
            {
                **conv,
                "name": f"{block}_conv1",
                "input": src,
                "filters": item.filters,
                "stride": item.stride,
            },
            {**bn, "name": f"{block}_bn1"},
            {"kind": "activation", "activation": "relu", "name": f"{block}_relu1"},
            {**conv, "name": f"{block}_conv2", "filters": item.filters},
            {**bn, "name": f"{block}_bn2"},
        ]
        shortcut = src
        if item.stride != 1 or item.filters != c:
            parts += [
                {
                    **conv,
                    "name": f"{block}_proj",
                    "input": src,
                    "filters": item.filters,
                    "kernel_size": 1,
                    "stride": item.stride,
                    "padding": "valid",
                },
                {**bn, "name": f"{block}_projbn"},
            ]
            shortcut = f"{block}_projbn"
        parts += [
            {"kind": "add", "name": f"{block}_add", "input": f"{block}_bn2", "join": shortcut},
            {"kind": "activation", "activation": "relu", "name": f"{block}_relu2"},
        ]
        for part in parts:
            self.item(LayerSpec(**part), f"{where} ({block})")


def _list_layers(spec: ModelSpec) -> list[Layer]:
    """The layer list unrolled, then the logits layer reading the last output."""
    unroller = _Unroller(spec)
    for i, item in enumerate(spec.layers):
        unroller.item(item, f"layers[{i}]")
    last = unroller.shapes[unroller.last]
    if len(last) != 1:
        raise SpecError(
            f"the layer list ends with a feature map {last}, but the logits layer needs a vector",
            "end the list with flatten or global_avgpool (and dense layers if you like)",
        )
    return [*unroller.out, _logits(spec, last[0], unroller.last)]


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
    """The tensors that have gradients (``weight_shapes`` without batchnorm's statistics)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers(spec):
        shapes.update(layer.params)
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
    _refuse_unknown_fields(cls, values, f"'{section}'", ", ".join)
    try:
        return cls(**values)
    except TypeError as exc:  # e.g. a block given as a number
        raise SpecError(f"bad value in '{section}': {exc}", "check the spec's types") from None
