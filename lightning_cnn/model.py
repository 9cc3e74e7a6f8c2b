"""The CNN as a plain ``torch.nn.Module`` built from a ``ModelSpec``, and the contract functions.

Letters: N batch, C channels, H, W spatial, F filters, K classes. Inside the network tensors
are NCHW (PyTorch's layout) and flatten reads C, H, W; everything that crosses the contract is
NumPy in the canonical layout (images NHWC, weights through ``cnn_common.weights``).

``CNN`` is a ``torch.nn.Sequential`` of named layers (conv1, pool1, ..., flatten, dense1,
[dropout1], logits) from ``cnn_common.spec.layers``, so its parameters are ``conv1.weight``,
``conv1.bias``, ... and the canonical ``conv1.kernel`` is its ``conv1.weight``. It needs no
Trainer: the parity test and the plain reference loop use it directly. ``LitCNN``
(``lightning_cnn.module``) wraps it for Lightning; the contract's ``model`` is a ``LitCNN``
(``build``, ``load``), and every function below also accepts a bare ``CNN``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnn_common.data import check_images
from cnn_common.errors import DataError
from cnn_common.spec import Layer, ModelSpec, TrainSpec, layers
from cnn_common.weights import Weights, check_weights, from_torch_layout, to_torch_layout
from lightning_cnn.batching import to_nchw
from lightning_cnn.optim import make_optimizer

if TYPE_CHECKING:
    from lightning_cnn.module import LitCNN

EVAL_BATCH = 1000  # images per forward pass in evaluate/predict: 10,000 fit in memory

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

    Input shape: ``(N, C_in, H, W)``. Output shape: ``(N, F, Ho, Wo)``.
    """

    def __init__(self, layer: Layer) -> None:
        (top, bottom), (left, right) = layer.pad
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


def _make_layer(layer: Layer) -> nn.Module:
    if layer.kind == "conv":
        return SpecConv2d(layer)
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

    Input shape: ``(N, C, H, W)``. Output shape: ``(N, K)`` logits.
    """

    def __init__(self, spec: ModelSpec) -> None:
        unrolled = layers(spec)
        super().__init__(OrderedDict((layer.name, _make_layer(layer)) for layer in unrolled))
        self.spec = spec
        self.layer_kinds = {layer.name: layer.kind for layer in unrolled}

    @property
    def has_dropout(self) -> bool:
        return "dropout" in self.layer_kinds.values()


# ----------------------------------------------------------------------------- contract


def _network(model: nn.Module) -> CNN:
    """The ``CNN`` inside a ``LitCNN`` (or ``model`` itself when it is one)."""
    net = getattr(model, "model", model)
    if not isinstance(net, CNN):
        raise TypeError(f"expected a LitCNN or CNN, got {type(model).__name__}")
    return net


def _param(net: CNN) -> torch.Tensor:
    return next(net.parameters())


def _inputs(net: CNN, x: object) -> torch.Tensor:
    """Checked NHWC images -> an NCHW tensor of the network's dtype on its device."""
    images = check_images(x, net.spec.input_shape)
    param = _param(net)
    return to_nchw(images, param.dtype).to(param.device)


def _labels(net: CNN, y: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y, dtype=np.int64), device=_param(net).device)


def build(spec: ModelSpec, dtype: str = "float32") -> LitCNN:
    """A ``LitCNN`` for ``spec`` with PyTorch's default initialisers, in ``dtype``."""
    from lightning_cnn.module import LitCNN  # module.py imports this file

    return LitCNN(spec, TrainSpec(dtype=dtype))


@torch.no_grad()
def _eval_logits(net: CNN, images: torch.Tensor) -> torch.Tensor:
    """Logits ``(N, K)`` of ``images: (N, C, H, W)`` in eval mode, ``EVAL_BATCH`` at a time."""
    was_training = net.training
    net.eval()
    try:
        chunks = [net(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)]
    finally:
        net.train(was_training)
    return torch.cat(chunks)


def predict_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Raw logits ``(N, K)`` for images ``x: (N, H, W, C)``, in eval mode (no dropout)."""
    net = _network(model)
    return _eval_logits(net, _inputs(net, x)).cpu().numpy()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, K)`` (softmax of the logits) for images ``x: (N, H, W, C)``."""
    logits = torch.from_numpy(predict_logits(model, x))
    return torch.softmax(logits, dim=1).numpy()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean softmax cross-entropy, accuracy and predicted classes ``(N,)`` int64 on ``x, y``."""
    net = _network(model)
    logits = torch.from_numpy(predict_logits(net, x))  # (N, K)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    loss = F.cross_entropy(logits.double(), labels).item()
    predictions = logits.argmax(dim=1).numpy().astype(np.int64)
    return loss, float(np.mean(predictions == labels.numpy())), predictions


def feature_maps(model: nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of every conv (after its activation) and pool layer, NHWC float32, in order.

    Read with forward hooks, so the maps are exactly what the forward pass computed.
    """
    net = _network(model)
    images = _inputs(net, x)
    maps: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in net.named_children():
        if net.layer_kinds[name] in ("conv", "pool"):
            maps[name] = []

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
                maps[name].append(out.permute(0, 2, 3, 1).float().cpu())  # (N, H, W, C)

            handles.append(module.register_forward_hook(hook))
    try:
        _eval_logits(net, images)
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts).numpy() for name, parts in maps.items()}


def _torch_name(name: str) -> str:
    """Canonical tensor name -> parameter name: ``conv1.kernel`` -> ``conv1.weight``."""
    return name.replace(".kernel", ".weight")


def _canonical_name(name: str) -> str:
    return name.replace(".weight", ".kernel")


def get_weights(model: nn.Module) -> Weights:
    """The weights in the canonical layout: ``{conv1.kernel: (KH, KW, C, F), ...}``."""
    net = _network(model)
    torch_weights = {
        _canonical_name(name): param.detach().cpu().numpy().copy()
        for name, param in net.named_parameters()
    }
    return from_torch_layout(torch_weights, net.spec)


@torch.no_grad()
def set_weights(model: nn.Module, weights: Weights) -> None:
    """Load canonical weights (cast to the model's dtype); a shape mismatch raises ValueError."""
    net = _network(model)
    check_weights(net.spec, weights)
    torch_weights = to_torch_layout(weights, net.spec)
    params = dict(net.named_parameters())
    for name, value in torch_weights.items():
        param = params[_torch_name(name)]
        param.copy_(torch.from_numpy(np.asarray(value)).to(param.dtype))


def loss_and_grads(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean cross-entropy of the batch and its gradients, canonical layout, dropout off."""
    net = _network(model)
    images, labels = _inputs(net, x), _labels(net, y)
    was_training = net.training
    net.eval()
    try:
        params = dict(net.named_parameters())
        loss = F.cross_entropy(net(images), labels)
        grads = torch.autograd.grad(loss, list(params.values()))
    finally:
        net.train(was_training)
    torch_grads = {
        _canonical_name(name): grad.cpu().numpy() for name, grad in zip(params, grads, strict=True)
    }
    return loss.item(), from_torch_layout(torch_grads, net.spec)


def train_steps(
    model: nn.Module, train_spec: TrainSpec, batches: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    """One optimiser step per ``(x: (B, H, W, C), y: (B,))`` batch from a fresh optimiser.

    The weights are updated in place; returns the loss of each step (before its update).
    """
    net = _network(model)
    optimizer = make_optimizer(net.parameters(), train_spec)
    net.train()
    losses = []
    for x, y in batches:
        images, labels = _inputs(net, x), _labels(net, y)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def save(model: nn.Module, path: str | Path) -> None:
    """Write a checkpoint ``LitCNN.load_from_checkpoint`` (and ``load``) reads; atomic."""
    from lightning_cnn.module import save_checkpoint

    save_checkpoint(model, path)


def load(path: str | Path) -> LitCNN:
    """Read a checkpoint written by ``save`` or by a Trainer (``last.ckpt``), on the CPU."""
    from lightning_cnn.module import LitCNN

    if not Path(path).is_file():
        raise DataError(f"checkpoint {path} does not exist", "check the path")
    return LitCNN.load_from_checkpoint(path, map_location="cpu")
