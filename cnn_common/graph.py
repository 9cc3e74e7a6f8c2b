"""The layer graph: ``Layer`` (one named layer of an unrolled spec, with the layers it reads
and its shapes), the layer-list items (``LayerSpec``) and their unrolling.

``cnn_common.spec.layers`` is the one entry point: it unrolls the block form itself and a
layer list here, so names, pads and shapes are decided in these two modules only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnn_common.errors import SpecError
from cnn_common.spec_checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    conv_output_size,
    same_padding,
)

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
PADDINGS = ("valid", "same")
# BatchNorm's running average: "torch" new = (1 - m) * old + m * batch (PyTorch's momentum
# 0.1); "keras" new = m * old + (1 - m) * batch (Keras's momentum 0.99). The running variance
# is stored "unbiased" (the batch's variance * n / (n - 1), PyTorch) or "biased" (Keras).
# Training normalises with the batch's biased variance in either case.
MOMENTUM_CONVENTIONS = ("torch", "keras")
VARIANCES = ("unbiased", "biased")
FROZEN_BATCHNORM = ("batch", "inference")  # what a frozen batchnorm does in training
IMAGE = "input"  # the name a layer's ``input`` or an ``add``'s ``join`` gives the image


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
    - ``trainable: false`` (conv, batchnorm, dense, residual) freezes the layer: its tensors
      are weights, never trained, and the gradient still flows through it. A frozen batchnorm
      in training normalises with the batch's statistics and updates its running ones
      (``frozen_batchnorm: batch``, PyTorch's module with ``requires_grad`` off) or runs as in
      evaluation (``inference``, Keras's ``trainable = False``).
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
    frozen_batchnorm: str = "batch"
    trainable: bool = True


BATCHNORM_FIELDS = ("momentum", "epsilon", "momentum_convention", "variance", "frozen_batchnorm")
# The fields each kind of LayerSpec takes, besides kind, name and input.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "conv": (
        "filters",
        "kernel_size",
        "stride",
        "padding",
        "groups",
        "bias",
        "activation",
        "trainable",
    ),
    "batchnorm": (*BATCHNORM_FIELDS, "trainable"),
    "activation": ("activation",),
    "maxpool": ("pool_size", "pool_stride"),
    "avgpool": ("pool_size", "pool_stride"),
    "global_avgpool": (),
    "flatten": (),
    "dense": ("units", "activation", "trainable"),
    "dropout": ("rate",),
    "add": ("join",),
    "residual": ("filters", "stride", "bias", *BATCHNORM_FIELDS, "trainable"),
}
COMMON_FIELDS = ("kind", "name", "input")


def as_layer_spec(value: Any, where: str) -> LayerSpec:
    """A ``LayerSpec`` from itself or a mapping, refusing fields its kind does not take."""
    if isinstance(value, Mapping):
        kind = value.get("kind")
        check_choice(f"{where}.kind", kind, KIND_FIELDS)
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
    check_choice(f"{where}.kind", value.kind, KIND_FIELDS)
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
    trainable: bool = True  # False: frozen (LayerSpec), its params never trained
    frozen_batchnorm: str = "batch"  # a frozen batchnorm in training: FROZEN_BATCHNORM

    @property
    def batch_statistics(self) -> bool:
        """A batchnorm that normalises with its batch's statistics in training: all but a
        frozen one with ``frozen_batchnorm: inference``."""
        return self.kind == "batchnorm" and (self.trainable or self.frozen_batchnorm == "batch")

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


def logits_layer(num_classes: int, units_in: int, before: str = "") -> Layer:
    """The logits layer every model ends with: ``units_in`` -> ``num_classes``."""
    params = {"logits.kernel": (units_in, num_classes), "logits.bias": (num_classes,)}
    return Layer(
        "logits",
        "logits",
        (units_in,),
        (num_classes,),
        units=num_classes,
        params=params,
        inputs=(before,) if before else (),
    )


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

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.out: list[Layer] = []
        self.shapes: dict[str, tuple[int, ...]] = {IMAGE: tuple(input_shape)}
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
            self.add(self.trained(item, self.conv(item, name, src, where), where), where)
        elif kind == "batchnorm":
            self.add(self.trained(item, self.batchnorm(item, name, src, where), where), where)
        elif kind == "activation":
            check_choice(f"{where}.activation", item.activation, ACTIVATIONS)
            self.add(
                Layer(name, "activation", shape, shape, activation=item.activation, inputs=(src,)),
                where,
            )
        elif kind in ("maxpool", "avgpool"):
            h, w, c = self.map_shape(src, where, kind)
            check_int(f"{where}.pool_size", item.pool_size, 1)
            check_int(f"{where}.pool_stride", item.pool_stride, 0)
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
            check_int(f"{where}.units", item.units, 1)
            check_choice(f"{where}.activation", item.activation, ACTIVATIONS)
            params = {f"{name}.kernel": (shape[0], item.units), f"{name}.bias": (item.units,)}
            dense = Layer(name, "dense", shape, (item.units,), activation=item.activation)
            dense = dataclasses.replace(dense, units=item.units, params=params, inputs=(src,))
            self.add(self.trained(item, dense, where), where)
        elif kind == "dropout":
            check_float(f"{where}.rate", item.rate, 0.0, 1.0, low_open=False)
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
        check_int(f"{where}.filters", item.filters, 1)
        check_int(f"{where}.kernel_size", item.kernel_size, 1)
        check_int(f"{where}.stride", item.stride, 1)
        check_int(f"{where}.groups", item.groups, 1)
        check_choice(f"{where}.padding", item.padding, PADDINGS)
        check_choice(f"{where}.activation", item.activation, ACTIVATIONS)
        check_bool(f"{where}.bias", item.bias)
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
        check_float(f"{where}.momentum", item.momentum, 0.0, 1.0, low_open=False)
        check_float(f"{where}.epsilon", item.epsilon, 0.0, 1.0, low_open=True)
        check_choice(f"{where}.momentum_convention", item.momentum_convention, MOMENTUM_CONVENTIONS)
        check_choice(f"{where}.variance", item.variance, VARIANCES)
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

    def trained(self, item: LayerSpec, layer: Layer, where: str) -> Layer:
        """``layer`` with its spec's ``trainable`` and ``frozen_batchnorm``."""
        check_bool(f"{where}.trainable", item.trainable)
        check_choice(f"{where}.frozen_batchnorm", item.frozen_batchnorm, FROZEN_BATCHNORM)
        frozen = {"trainable": item.trainable, "frozen_batchnorm": item.frozen_batchnorm}
        return dataclasses.replace(layer, **frozen)

    def residual(self, item: LayerSpec, where: str) -> None:
        """The ``residual`` shorthand unrolled into ``<name>_conv1`` ... ``<name>_relu2``."""
        block = item.name or self.auto_name("res")
        src = self.source(item.input, where, "input")
        h, w, c = self.map_shape(src, where, "residual")
        check_int(f"{where}.filters", item.filters, 1)
        check_int(f"{where}.stride", item.stride, 1)
        trainable = {"trainable": item.trainable}
        conv = {"kind": "conv", "kernel_size": 3, "padding": "same", "bias": item.bias, **trainable}
        bn = {"kind": "batchnorm", **{f: getattr(item, f) for f in BATCHNORM_FIELDS}, **trainable}
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


def list_layers(
    items: tuple[LayerSpec, ...], input_shape: tuple[int, ...], num_classes: int
) -> list[Layer]:
    """The layer list unrolled, then the logits layer reading the last output."""
    unroller = _Unroller(input_shape)
    for i, item in enumerate(items):
        unroller.item(item, f"layers[{i}]")
    last = unroller.shapes[unroller.last]
    if len(last) != 1:
        raise SpecError(
            f"the layer list ends with a feature map {last}, but the logits layer needs a vector",
            "end the list with flatten or global_avgpool (and dense layers if you like)",
        )
    return [*unroller.out, logits_layer(num_classes, last[0], unroller.last)]
