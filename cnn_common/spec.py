"""The model and training spec: one frozen description that every framework follows.

``ModelSpec()`` is the seed model (docs/design.md)::

    Conv2D(16, 5x5) ReLU -> MaxPool 2x2 -> Conv2D(32, 5x5) ReLU -> MaxPool 2x2 -> Flatten
    -> Dense(64) ReLU -> Dense(10)

and ``TrainSpec()`` its training run (Adam lr 1e-3, 5 epochs, batch 128, seed 0).

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
class ModelSpec:
    """The architecture. Frozen: change it with ``dataclasses.replace`` or overrides."""

    input_shape: tuple[int, int, int] = (28, 28, 1)  # (H, W, C)
    conv: tuple[ConvBlock, ...] = (ConvBlock(filters=16), ConvBlock(filters=32))
    dense: tuple[DenseLayer, ...] = (DenseLayer(units=64),)
    num_classes: int = 10

    def __post_init__(self) -> None:
        # Accept lists (from YAML/JSON) and dicts for the nested blocks.
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "conv", tuple(_as_block(ConvBlock, b) for b in self.conv))
        object.__setattr__(self, "dense", tuple(_as_block(DenseLayer, d) for d in self.dense))
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

    ``kind`` is one of conv, pool, flatten, dense, dropout, logits. ``pad`` is the zero padding
    of a conv layer as ``((top, bottom), (left, right))``; ``params`` are the weight names of
    the layer in the canonical layout with their shapes.
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]  # (H, W, C) for conv/pool, (units,) after flatten
    kernel_size: int = 0
    stride: int = 1
    pad: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    activation: str = "linear"
    units: int = 0
    rate: float = 0.0
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)


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
    convs = [layer for layer in layers(spec) if layer.kind == "conv"]
    for block, layer in zip(spec.conv, convs, strict=True):
        k = layer.kernel_size
        if block.padding != "same" or layer.stride == 1 or k % 2 == 0:
            continue
        symmetric = ((k // 2, k // 2), (k // 2, k // 2))
        if symmetric != layer.pad:
            found[layer.name] = symmetric
    return found


def layers(spec: ModelSpec) -> list[Layer]:
    """Unroll ``spec`` into named layers with their shapes and canonical parameter shapes.

    Names: conv1, pool1, conv2, pool2, ..., flatten, dense1, dropout1, ..., logits.
    """
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
    params = {"logits.kernel": (units_in, spec.num_classes), "logits.bias": (spec.num_classes,)}
    out.append(
        Layer(
            "logits",
            "logits",
            (units_in,),
            (spec.num_classes,),
            units=spec.num_classes,
            params=params,
        )
    )
    return out


def layer_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Output shape of every named layer, without the batch axis, e.g. conv1 -> (24, 24, 16)."""
    return {layer.name: layer.output_shape for layer in layers(spec)}


def weight_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Canonical shape of every weight tensor, in layer order: conv1.kernel (5, 5, 1, 16), ..."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers(spec):
        shapes.update(layer.params)
    return shapes


def param_count(spec: ModelSpec) -> int:
    """Number of trainable parameters (46,730 for the seed model)."""
    return sum(math.prod(shape) for shape in weight_shapes(spec).values())


def flops(spec: ModelSpec) -> int:
    """Forward-pass floating-point operations for one image (a multiply-add counts as 2).

    Convolutions and dense layers count 2 per weight an output reads (a multiply and an add;
    the bias add takes the place of the first sum's add); a non-linear activation counts 1 per
    output element and max-pooling 1 per window element it reads.
    """
    total = 0
    for layer in layers(spec):
        size = math.prod(layer.output_shape)
        if layer.kind == "conv":
            k, c_in = layer.kernel_size, layer.input_shape[2]
            total += size * (2 * k * k * c_in)  # MACs * 2, bias folded into the last add
            total += size if layer.activation != "linear" else 0
        elif layer.kind == "pool":
            total += size * layer.kernel_size * layer.kernel_size
        elif layer.kind in ("dense", "logits"):
            total += size * 2 * layer.input_shape[0]
            total += size if layer.activation != "linear" else 0
    return total


# ----------------------------------------------------------------------------- plain data


def spec_to_dict(model: ModelSpec, train: TrainSpec | None = None) -> dict[str, Any]:
    """Plain-data form of the specs (JSON/YAML-safe): ``{"model": {...}, "train": {...}}``."""
    data: dict[str, Any] = {"model": _plain(dataclasses.asdict(model))}
    if train is not None:
        data["train"] = dataclasses.asdict(train)
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
