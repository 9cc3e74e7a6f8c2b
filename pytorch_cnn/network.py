"""The network: the CNN of a ``ModelSpec`` as a plain ``torch.nn.Module``.

Letters: N batch, C channels, H, W spatial, F filters, K classes. Inside the network tensors
are NCHW (PyTorch's layout) and flatten reads C, H, W; everything that crosses the contract is
NumPy in the canonical layout (images NHWC, weights through ``cnn_common.weights``).

``CNN`` holds one child module per layer of ``cnn_common.spec.layers`` (conv1, pool1, ...,
logits; or a layer list's names), in that order, and its forward pass follows each layer's
``inputs``: a chain for the block form, a graph where a layer list joins earlier outputs with
``add``. Its tensors are ``conv1.weight``, ``conv1.bias``, ``bn1.running_mean``, ...;
``CNN.tensor_names`` maps the canonical names onto them (``conv1.kernel`` is
``conv1.weight``). It needs no Trainer: the plain loop (``pytorch_cnn.training``) trains it
directly, and ``LitCNN`` (``lightning_cnn``) wraps it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnn_common.errors import SpecError
from cnn_common.spec import IMAGE, Layer, ModelSpec, layers

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
Pad = tuple[tuple[int, int], ...]  # ((top, bottom), (left, right))

ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}
# A canonical tensor's suffix -> its name in a PyTorch module (``conv1.kernel`` is
# ``conv1.weight``, ``bn1.moving_variance`` is ``bn1.running_var``).
TORCH_SUFFIXES = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


class SpecConv2d(nn.Conv2d):
    """A convolution with the spec's zero padding, groups, bias and activation.

    Symmetric padding goes to ``nn.Conv2d`` itself; TensorFlow's 'same' placement (the odd
    pixel after) is asymmetric where the total is odd, and is applied with ``F.pad`` first.
    ``pad`` replaces the spec's padding (PyTorch's own placement, ``cnn_common.spec.native_pads``).
    A grouped convolution's weight is ``(F, C_in / groups, KH, KW)``.

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
            groups=layer.groups,
            bias=f"{layer.name}.bias" in layer.params,
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


class SpecBatchNorm(nn.Module):
    """Batch normalisation exactly as the spec states it (``cnn_common.spec.LayerSpec``),
    whatever ``nn.BatchNorm2d`` would do: per channel over the batch's N*H*W values (n),

    - training: ``y = weight * (x - mean) / sqrt(var_b + eps) + bias`` with the batch's mean
      and BIASED variance ``var_b``; then, while ``update_running`` is set, the running
      statistics take the batch's (its variance ``var_b * n / (n - 1)`` if the layer stores it
      "unbiased", else ``var_b``) in the layer's momentum convention: "torch"
      ``new = (1 - m) * old + m * batch``, "keras" ``new = m * old + (1 - m) * batch``;
    - evaluation: ``y = weight * (x - running_mean) / sqrt(running_var + eps) + bias``.

    A frozen layer (``trainable: false``) whose ``frozen_batchnorm`` is "inference" runs as in
    evaluation in training mode too (``frozen_inference``): the running statistics normalise
    and stay as they are, and its backward is evaluation's (Keras's ``trainable=False``); with
    "batch" it trains as any other (PyTorch's module with ``requires_grad`` off).

    ``weight``/``bias`` are the canonical gamma/beta, ``running_mean``/``running_var`` (buffers)
    the moving mean and variance. There is no ``num_batches_tracked``.

    Input shape: ``(N, C, H, W)``. Output shape: ``(N, C, H, W)``.
    """

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        channels = layer.output_shape[2]
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum = layer.momentum
        self.eps = layer.epsilon
        self.momentum_convention = layer.momentum_convention
        self.variance = layer.variance
        self.frozen_inference = not layer.batch_statistics  # frozen, in inference mode
        self.update_running = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.frozen_inference:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if not self.update_running:  # no running tensors given: nothing is updated
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        # With momentum 1, PyTorch's own update leaves exactly the batch's mean and its
        # unbiased variance in the tensors it is given: the statistics of the same pass.
        mean, unbiased = torch.zeros_like(self.running_mean), torch.ones_like(self.running_var)
        y = F.batch_norm(x, mean, unbiased, self.weight, self.bias, True, 1.0, self.eps)
        self.update_running_statistics(mean, unbiased, x.numel() // x.shape[1])
        return y

    @torch.no_grad()
    def update_running_statistics(self, mean: torch.Tensor, unbiased: torch.Tensor, n: int) -> None:
        """Fold a batch's statistics into the running ones: its ``mean`` and ``unbiased``
        variance ``(C,)`` over ``n`` values a channel (biased: ``unbiased * (n - 1) / n``)."""
        batch_var = unbiased if self.variance == "unbiased" else unbiased * (n - 1) / n
        m = self.momentum
        for running, batch in ((self.running_mean, mean), (self.running_var, batch_var)):
            if self.momentum_convention == "torch":
                running.copy_((1 - m) * running + m * batch)
            else:
                running.copy_(m * running + (1 - m) * batch)

    def extra_repr(self) -> str:
        return (
            f"{len(self.weight)}, eps={self.eps}, momentum={self.momentum} "
            f"({self.momentum_convention}), variance={self.variance}"
            + (", frozen: inference" if self.frozen_inference else "")
        )


class Activation(nn.Module):
    """An activation as a layer of its own. Any shape in, the same shape out."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](x)

    def extra_repr(self) -> str:
        return self.activation


class GlobalAvgPool(nn.Module):
    """The mean of each channel over H and W: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class Add(nn.Module):
    """A residual join: the sum of the layer's two inputs, each ``(N, ...)`` of one shape."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _make_layer(layer: Layer, pads: Mapping[str, Pad]) -> nn.Module:
    if layer.kind == "conv":
        return SpecConv2d(layer, pads.get(layer.name))
    if layer.kind == "batchnorm":
        return SpecBatchNorm(layer)
    if layer.kind == "activation":
        return Activation(layer.activation)
    if layer.kind == "pool":
        return nn.MaxPool2d(layer.kernel_size, stride=layer.stride)
    if layer.kind == "avgpool":
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride)  # no padding: window means
    if layer.kind == "global_avgpool":
        return GlobalAvgPool()
    if layer.kind == "flatten":
        return nn.Flatten()  # (N, C, H, W) -> (N, C*H*W): C, H, W order
    if layer.kind == "dropout":
        return nn.Dropout(layer.rate)
    if layer.kind == "add":
        return Add()
    return SpecLinear(layer)  # dense and logits


class CNN(nn.Module):
    """The spec's network: NCHW images in, logits out (no softmax).

    Args:
        spec: the architecture; layer names, inputs and shapes come from
            ``cnn_common.spec.layers``.
        pads: conv layers padded otherwise than the spec says (by name), for a run that hands
            'same' padding back to PyTorch's own placement.

    The layers are child modules in layer order, so the block form's parameters (names, order
    and PyTorch's default initialisation draws) are those of the ``nn.Sequential`` of the same
    layers. ``forward`` keeps a layer's output only while a later layer still reads it.
    A layer the spec freezes (``trainable: false``) has ``requires_grad`` off on its
    parameters and is left out of ``canonical_parameters`` (the optimiser's); the gradient
    still flows through it to the layers before.

    Input shape: ``(N, C, H, W)``. Output shape: ``(N, K)`` logits.
    """

    def __init__(self, spec: ModelSpec, pads: Mapping[str, Pad] | None = None) -> None:
        super().__init__()
        unrolled = layers(spec)
        pads = dict(pads or {})
        self.spec = spec
        self.pads = pads
        self.layer_kinds = {layer.name: layer.kind for layer in unrolled}
        # canonical tensor name -> the module's: conv1.kernel -> conv1.weight, ...
        self.tensor_names = {
            name: f"{layer.name}.{TORCH_SUFFIXES[name.split('.')[1]]}"
            for layer in unrolled
            for name in layer.tensors
        }
        # the canonical names of the tensors the optimiser trains: cnn_common.spec's
        # trainable_shapes (no running statistics, no frozen layer's tensors)
        self.trained_tensors = frozenset(
            name for layer in unrolled if layer.trainable for name in layer.params
        )
        last_read = {src: i for i, layer in enumerate(unrolled) for src in layer.inputs}
        # (name, what it reads, what no later layer reads once it has run)
        self.steps = [
            (
                layer.name,
                layer.inputs,
                tuple(src for src in dict.fromkeys(layer.inputs) if last_read[src] == i),
            )
            for i, layer in enumerate(unrolled)
        ]
        taken = [layer.name for layer in unrolled if hasattr(self, layer.name)]
        if taken:
            raise SpecError(
                f"layer name(s) {taken} clash with attributes of the PyTorch module",
                "rename those layers (e.g. add a number)",
            )
        for layer in unrolled:
            self.add_module(layer.name, _make_layer(layer, pads))
        self.freeze_spec_layers()

    @property
    def has_dropout(self) -> bool:
        return "dropout" in self.layer_kinds.values()

    def freeze_spec_layers(self) -> None:
        """``requires_grad`` as the spec says: on for the trained parameters, off for those of
        the layers it freezes (after e.g. Lightning's ``unfreeze``, which turns all on)."""
        canonical = {torch_name: name for name, torch_name in self.tensor_names.items()}
        for name, param in self.named_parameters():
            param.requires_grad_(canonical[name] in self.trained_tensors)

    def canonical_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The trained parameters under their canonical names (``conv1.kernel``, ...), in
        ``named_parameters`` order, without those of the layers the spec freezes: what
        ``make_optimizer`` reads (so a frozen tensor gets no update, decay or state) and whose
        gradients ``loss_and_grads`` returns."""
        canonical = {torch_name: name for name, torch_name in self.tensor_names.items()}
        return [
            (canonical[name], param)
            for name, param in self.named_parameters()
            if canonical[name] in self.trained_tensors
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)[0]

    def outputs(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The logits ``(N, K)`` of ``x: (N, C, H, W)`` and the outputs of the layers named in
        ``keep`` (``cnn_common.spec.IMAGE`` is ``x`` itself), by name, NCHW or ``(N, units)``."""
        values = {IMAGE: x}
        kept = {IMAGE: x} if IMAGE in keep else {}
        out = x
        for name, inputs, done in self.steps:
            out = self._modules[name](*(values[src] for src in inputs))
            for src in done:
                del values[src]
            values[name] = out
            if name in keep:
                kept[name] = out
        return out, kept


@contextmanager
def batch_statistics(net: CNN) -> Iterator[None]:
    """Inside: training-mode normalisation (each batch's statistics) with dropout off and the
    running statistics left as they are: a query of the training loss, not a training step.
    The modes the network had come back afterwards."""
    modules = list(net.modules())
    before = [(m, m.training, getattr(m, "update_running", None)) for m in modules]
    try:
        for module in modules:
            module.training = not isinstance(module, nn.Dropout)
            if isinstance(module, SpecBatchNorm):
                module.update_running = False
        yield
    finally:
        for module, training, update in before:
            module.training = training
            if update is not None:
                module.update_running = update


def network_of(model: nn.Module) -> CNN:
    """The ``CNN`` itself, or the one a wrapper holds as ``.model`` (a ``LitCNN``)."""
    net = getattr(model, "model", model)
    if not isinstance(net, CNN):
        raise TypeError(f"expected a CNN or a module holding one, got {type(model).__name__}")
    return net


def to_nchw(x: np.ndarray, dtype: str | torch.dtype = "float32") -> torch.Tensor:
    """Images ``(N, H, W, C)`` (NumPy) -> a contiguous tensor ``(N, C, H, W)`` of ``dtype``."""
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, C, H, W)
    if not nchw.flags.writeable:  # a read-only buffer (np.frombuffer: the explorer's images),
        nchw = nchw.copy()  # which torch.from_numpy would share and warn about
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
