"""The canonical weight layout, its file format, initialisation and the PyTorch conversion.

Canonical layout (also Keras's):

- ``convK.kernel``: ``(KH, KW, C_in, F)``; ``convK.bias``: ``(F,)``
- ``denseK.kernel`` / ``logits.kernel``: ``(in, out)``; biases ``(out,)``
- flatten reads the last feature map in H, W, C order, so row ``(h*W + w)*C + c`` of the first
  dense kernel belongs to pixel ``(h, w)``, channel ``c``.
- a grouped convolution's kernel is ``(KH, KW, C_in / groups, F)``: output channel ``f``
  reads the input channels of its group, ``f // (F / groups)``.
- ``bnK.gamma``, ``bnK.beta`` (trainable) and ``bnK.moving_mean``, ``bnK.moving_variance``
  (the running statistics, in the spec's variance convention): ``(C,)`` each. The running
  statistics are part of the weights everywhere weights go, but have no gradient.

PyTorch stores conv weights ``(F, C_in, KH, KW)``, linear weights ``(out, in)``, and flattens
``(C, H, W)``, so column ``(c*H + h)*W + w`` of its first linear weight belongs to that same
pixel and channel. ``to_torch_layout`` / ``from_torch_layout`` are the only place that
converts, so a forgotten transpose or permutation cannot hide anywhere else.

Files are safetensors with the specs (JSON) in the metadata under ``"spec"``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import DataError, WeightsError
from cnn_common.files import atomic_write_bytes
from cnn_common.seeds import generator
from cnn_common.spec import ModelSpec, TrainSpec, layers, spec_from_dict, spec_to_dict

Weights = dict[str, np.ndarray]


def weight_names(spec: ModelSpec) -> list[str]:
    """Canonical tensor names in layer order: conv1.kernel, conv1.bias, ..., logits.bias
    (batchnorm's running statistics included: ``Layer.tensors``)."""
    return [name for layer in layers(spec) for name in layer.tensors]


# Where a tensor that is no kernel starts: gamma and the running variance at one (the identity
# normalisation), biases, beta and the running mean at zero.
ONES = (".gamma", ".moving_variance")


def glorot_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Glorot/Xavier-uniform in Keras's convention: limit ``sqrt(6 / (fan_in + fan_out))``.

    For a conv kernel ``(KH, KW, C_in, F)``: fan_in = KH*KW*C_in, fan_out = KH*KW*F.
    """
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def init_weights(spec: ModelSpec, seed: int = 0, dtype: str = "float32") -> Weights:
    """Framework-neutral initial weights: Glorot-uniform kernels, zero biases (Keras's
    defaults); batchnorm's gamma and running variance ones, its beta and running mean zeros.

    Drawn in float64 from the ``init`` seed stream of ``seed`` in layer order, then cast, so
    float32 and float64 runs start from the same numbers.
    """
    rng = generator(seed, "init")
    weights: Weights = {}
    for layer in layers(spec):
        for name, shape in layer.tensors.items():
            if name.endswith(".kernel"):
                weights[name] = glorot_uniform(shape, rng).astype(dtype)
            elif name.endswith(ONES):
                weights[name] = np.ones(shape, dtype=dtype)
            else:
                weights[name] = np.zeros(shape, dtype=dtype)
    return weights


def weights_digest(weights: Weights) -> str:
    """A short fingerprint of ``weights`` (names and float32 values, canonical layout): equal
    digests mean runs started from the same numbers, whatever framework held them."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def check_weights(spec: ModelSpec, weights: Weights) -> None:
    """Raise ``WeightsError`` (a ``ValueError``) naming the tensor when ``weights`` does not
    fit ``spec``."""
    check_weight_shapes(
        {name: shape for layer in layers(spec) for name, shape in layer.tensors.items()}, weights
    )


def check_weight_shapes(expected: dict[str, tuple[int, ...]], weights: Weights) -> None:
    """Raise ``WeightsError`` naming the tensor when ``weights`` has other names or shapes
    than ``expected`` (canonical name -> shape)."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    hint = "use weights saved for this spec (the spec is in the weight file's metadata)"
    if missing or extra:
        raise WeightsError(
            f"weights do not match the spec: missing {missing}, unexpected {extra}", hint
        )
    for name, shape in expected.items():
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise WeightsError(f"{name}: expected shape {shape}, got {got}", hint)


# ----------------------------------------------------------------------------- PyTorch layout


def _flattened_inputs(spec: ModelSpec) -> dict[str, tuple[int, int, int]]:
    """The dense layers that read a flatten layer's output, each with the (H, W, C) map that
    flatten read (their kernels' rows follow the flatten order)."""
    all_layers = layers(spec)
    flat = {layer.name: layer.input_shape for layer in all_layers if layer.kind == "flatten"}
    through = {}  # a layer that passes a flattened vector on in its order (dropout, activation)
    found: dict[str, tuple[int, int, int]] = {}
    for layer in all_layers:
        source = layer.inputs[0] if layer.inputs else ""
        shape = flat.get(source) or through.get(source)
        if shape is None:
            continue
        if layer.kind in ("dropout", "activation"):
            through[layer.name] = shape
        elif layer.kind in ("dense", "logits"):
            found[layer.name] = shape  # type: ignore[assignment]
    return found


def _relayout(
    weights: Weights,
    spec: ModelSpec,
    conv_axes: tuple[int, int, int, int],
    first_dense: Callable[[np.ndarray, int, int, int], np.ndarray],
) -> Weights:
    """``weights`` in the other layout: conv kernels transposed by ``conv_axes``, a dense
    kernel that reads a flattened map by ``first_dense(kernel, h, w, c)`` (``(H, W, C)``: the
    map flatten read), the other dense kernels transposed, the rest (biases, batchnorm's
    vectors) copied."""
    flattened = {f"{name}.kernel": shape for name, shape in _flattened_inputs(spec).items()}
    out: Weights = {}
    for name, value in weights.items():
        if name.endswith(".kernel") and value.ndim == 4:
            out[name] = np.ascontiguousarray(value.transpose(conv_axes))
        elif name in flattened:
            out[name] = np.ascontiguousarray(first_dense(value, *flattened[name]))
        elif name.endswith(".kernel"):
            out[name] = np.ascontiguousarray(value.T)
        else:
            out[name] = value.copy()
    return out


def _hwc_to_torch(kernel: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
    """The first dense kernel ``(H*W*C, out)`` -> PyTorch's ``(out, C*H*W)``."""
    units = kernel.shape[1]
    chw = kernel.reshape(h, w, c, units).transpose(2, 0, 1, 3)  # (C, H, W, out)
    return chw.reshape(c * h * w, units).T  # (out, C*H*W)


def _torch_to_hwc(kernel: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
    """PyTorch's first linear weight ``(out, C*H*W)`` -> canonical ``(H*W*C, out)``."""
    units = kernel.shape[0]
    hwc = kernel.T.reshape(c, h, w, units).transpose(1, 2, 0, 3)  # (H, W, C, out)
    return hwc.reshape(h * w * c, units)  # (H*W*C, out)


def to_torch_layout(weights: Weights, spec: ModelSpec) -> Weights:
    """Canonical -> PyTorch: conv ``(KH, KW, C, F) -> (F, C, KH, KW)``; dense ``(in, out) ->
    (out, in)``; the first dense layer's inputs reordered from H, W, C to C, H, W."""
    return _relayout(weights, spec, (3, 2, 0, 1), _hwc_to_torch)


def from_torch_layout(weights: Weights, spec: ModelSpec) -> Weights:
    """PyTorch -> canonical: the exact inverse of ``to_torch_layout``."""
    return _relayout(weights, spec, (2, 3, 1, 0), _torch_to_hwc)


# ----------------------------------------------------------------------------- files


def save_weights(
    path: str | Path,
    weights: Weights,
    spec: ModelSpec,
    train: TrainSpec | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save canonical weights (safetensors) with the specs in the metadata; atomic."""
    from safetensors.numpy import save

    check_weights(spec, weights)
    metadata = {"spec": json.dumps(spec_to_dict(spec, train)), "layout": "canonical-nhwc"}
    if extra:
        metadata.update({k: json.dumps(v) for k, v in extra.items()})
    tensors = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_weights(path: str | Path) -> tuple[Weights, ModelSpec, TrainSpec]:
    """Read a file written by ``save_weights``: ``(weights, model_spec, train_spec)``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"weight file {path} does not exist", "check the path")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            weights = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise DataError(
            f"{path} is not a readable safetensors weight file ({exc})",
            "write it again with save_weights",
        ) from None
    if "spec" not in metadata:
        raise DataError(
            f"{path} has no spec in its metadata", "write it with cnn_common.weights.save_weights"
        )
    model, train = spec_from_dict(json.loads(metadata["spec"]))
    check_weights(model, weights)
    return weights, model, train
