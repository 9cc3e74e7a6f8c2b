"""The network: the CNN of a ``ModelSpec`` as a plain ``torch.nn.Module``.

Letters: N batch, C channels, H, W spatial, F filters, K classes. Inside the network tensors
are NCHW (PyTorch's layout) and flatten reads C, H, W; everything that crosses the contract is
NumPy in the canonical layout (images NHWC, weights through ``cnn_common.weights``).

``CNN`` is a ``torch.nn.Sequential`` of named layers (conv1, pool1, ..., flatten, dense1,
[dropout1], logits) from ``cnn_common.spec.layers``, so its parameters are ``conv1.weight``,
``conv1.bias``, ... and the canonical ``conv1.kernel`` is its ``conv1.weight``. It needs no
Trainer: the plain loop (``pytorch_cnn.training``) trains it directly, and ``LitCNN``
(``lightning_cnn``) wraps it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnn_common.spec import Layer, ModelSpec, layers

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
Pad = tuple[tuple[int, int], ...]  # ((top, bottom), (left, right))

ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


class SpecConv2d(nn.Conv2d):
    """A convolution with the spec's zero padding and activation.

    Symmetric padding goes to ``nn.Conv2d`` itself; TensorFlow's 'same' placement (the odd
    pixel after) is asymmetric where the total is odd, and is applied with ``F.pad`` first.
    ``pad`` replaces the spec's padding (PyTorch's own placement, ``cnn_common.spec.native_pads``).

    Input shape: ``(N, C_in, H, W)``. Output shape: ``(N, F, Ho, Wo)``.
    """

    def __init__(self, layer: Layer, pad: Pad | None = None) -> None:
        (top, bottom), (left, right) = pad or layer.pad
        symmetric = top == bottom and left == right
        super().__init__(
            layer.input_shape[2],
            layer.output_shape[2],
            layer.kernel_size,
            stride=layer.stride,
            padding=(top, left) if symmetric else 0,
        )
        self.explicit_pad = None if symmetric else (left, right, top, bottom)
        self.activation = layer.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_pad is not None:
            x = F.pad(x, self.explicit_pad)  # (N, C, H + top + bottom, W + left + right)
        return ACTIVATIONS[self.activation](super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad={self.explicit_pad}, activation={self.activation}"


class SpecLinear(nn.Linear):
    """A fully connected layer with the spec's activation.

    Input shape: ``(N, in)``. Output shape: ``(N, out)``.
    """

    def __init__(self, layer: Layer) -> None:
        super().__init__(layer.input_shape[0], layer.output_shape[0])
        self.activation = layer.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}"


def _make_layer(layer: Layer, pads: Mapping[str, Pad]) -> nn.Module:
    if layer.kind == "conv":
        return SpecConv2d(layer, pads.get(layer.name))
    if layer.kind == "pool":
        return nn.MaxPool2d(layer.kernel_size, stride=layer.stride)
    if layer.kind == "flatten":
        return nn.Flatten()  # (N, C, H, W) -> (N, C*H*W): C, H, W order
    if layer.kind == "dropout":
        return nn.Dropout(layer.rate)
    return SpecLinear(layer)  # dense and logits


class CNN(nn.Sequential):
    """The spec's network: NCHW images in, logits out (no softmax).

    Args:
        spec: the architecture; layer names and shapes come from ``cnn_common.spec.layers``.
        pads: conv layers padded otherwise than the spec says (by name), for a run that hands
            'same' padding back to PyTorch's own placement.

    Input shape: ``(N, C, H, W)``. Output shape: ``(N, K)`` logits.
    """

    def __init__(self, spec: ModelSpec, pads: Mapping[str, Pad] | None = None) -> None:
        unrolled = layers(spec)
        pads = dict(pads or {})
        super().__init__(OrderedDict((layer.name, _make_layer(layer, pads)) for layer in unrolled))
        self.spec = spec
        self.pads = pads
        self.layer_kinds = {layer.name: layer.kind for layer in unrolled}

    @property
    def has_dropout(self) -> bool:
        return "dropout" in self.layer_kinds.values()


def network_of(model: nn.Module) -> CNN:
    """The ``CNN`` itself, or the one a wrapper holds as ``.model`` (a ``LitCNN``)."""
    net = getattr(model, "model", model)
    if not isinstance(net, CNN):
        raise TypeError(f"expected a CNN or a module holding one, got {type(model).__name__}")
    return net


def to_nchw(x: np.ndarray, dtype: str | torch.dtype = "float32") -> torch.Tensor:
    """Images ``(N, H, W, C)`` (NumPy) -> a contiguous tensor ``(N, C, H, W)`` of ``dtype``."""
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, C, H, W)
    return torch.from_numpy(nchw).to(TORCH_DTYPES.get(dtype, dtype))


def kernel_builds() -> dict[str, str]:
    """The compute libraries this PyTorch build uses, for the run record's environment."""
    config = torch.__config__.show()
    onednn = re.search(r"(?:oneDNN|MKL-DNN) (v[\d.]+)", config)
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    builds = {
        "onednn": onednn.group(1) if onednn else "none",
        "torch_blas": blas.group(1) if blas else "unknown",
    }
    if torch.cuda.is_available():
        builds["cudnn"] = str(torch.backends.cudnn.version())
    return builds
