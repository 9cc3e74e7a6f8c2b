"""The checks a spec's values pass, each raising ``SpecError`` that names the field and the
fix, and the window arithmetic every layer's shape comes from."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cnn_common.errors import SpecError


def refuse_unknown_fields(
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


def as_block(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        refuse_unknown_fields(cls, value, f"a {cls.__name__}", str)
        return cls(**value)
    raise SpecError(
        f"a {cls.__name__} must be a mapping of its fields, got {value!r}",
        f"write it as {{{', '.join(f.name + ': ...' for f in dataclasses.fields(cls))}}}",
    )


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(
            f"{name} must be an integer >= {minimum}, got {value!r}",
            f"set {name} to a whole number of at least {minimum}",
        )


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(
            f"{name} must be true or false, got {value!r}", f"set {name} to true or false"
        )


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise SpecError(
            f"{name} must be one of {list(allowed)}, got {value!r}",
            f"set {name} to one of {', '.join(allowed)}",
        )


def check_float(name: str, value: Any, low: float, high: float, *, low_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value < high
    if not ok:
        bracket = "(" if low_open else "["
        raise SpecError(
            f"{name} must be a number in {bracket}{low}, {high}), got {value!r}",
            f"set {name} to a value in that range",
        )


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
